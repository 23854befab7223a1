//! Host metrics with node_exporter's names, types, labels, units and HELP texts: one file per
//! node_exporter collector, run from the flat list in [`HostCollector::new`]. A sub-collector
//! that fails reports `node_scrape_collector_success{collector} 0`, logs once, and never stops
//! the others; one whose source is absent on this kernel (no PSI, no conntrack) is skipped quietly.

mod arp;
mod conntrack;
mod cpu;
mod cpufreq;
mod diskstats;
mod dmi;
mod edac;
mod entropy;
mod filefd;
mod filesystem;
mod hwmon;
mod loadavg;
mod meminfo;
mod netclass;
mod netdev;
mod netstat;
mod nvme;
mod os;
mod pressure;
mod schedstat;
mod selinux;
mod sockstat;
mod softnet;
mod stat;
mod thermal_zone;
mod time;
mod timex;
mod udp_queues;
mod uname;
mod vmstat;

use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{CollectError, CollectFuture, Collector, MetricBuffer};

pub use uname::{uname_info, UnameInfo};

/// Where the host's `/proc`, `/sys` and `/` are visible to the agent; inside a container they
/// are the host's directories mounted read-only under `/host/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The host's procfs (default `/proc`).
    pub proc: PathBuf,
    /// The host's sysfs (default `/sys`).
    pub sys: PathBuf,
    /// The host's root filesystem (default `/`): file systems are measured under it and reported
    /// with their host paths.
    pub rootfs: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            rootfs: PathBuf::from("/"),
        }
    }
}

impl HostPaths {
    /// `rel` under the host's procfs.
    fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    /// `rel` under the host's sysfs.
    fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }

    /// `rel` (an absolute host path or a relative one) under the host's root filesystem.
    fn rootfs(&self, rel: &str) -> PathBuf {
        self.rootfs.join(rel.trim_start_matches('/'))
    }
}

/// Why one node_exporter collector produced nothing this cycle.
#[derive(Debug)]
enum SubError {
    /// The kernel does not offer this source (no PSI, no conntrack, no hwmon): reported as
    /// unsuccessful like node_exporter's `ErrNoData`, without a warning.
    Absent(String),
    /// The source exists but could not be read or parsed.
    Failed(String),
}

impl From<io::Error> for SubError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound {
            SubError::Absent(e.to_string())
        } else {
            SubError::Failed(e.to_string())
        }
    }
}

impl std::fmt::Display for SubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubError::Absent(m) => write!(f, "absent: {m}"),
            SubError::Failed(m) => write!(f, "{m}"),
        }
    }
}

/// One node_exporter collector. Implementations keep their read buffers between cycles.
trait Subcollector: Send + Debug {
    /// node_exporter's collector name, the `collector` label of `node_scrape_collector_*`.
    fn name(&self) -> &'static str;
    /// Appends this cycle's families to `out`.
    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError>;
}

/// A sub-collector and whether its current failure streak was already logged.
#[derive(Debug)]
struct Part {
    /// The node_exporter collector.
    collector: Box<dyn Subcollector>,
    /// Set after the first warning of a failure streak, so a broken source logs once.
    logged: bool,
}

/// The host collector: node_exporter's default Linux collectors in one pass.
#[derive(Debug)]
pub struct HostCollector {
    /// Where the host's /proc, /sys and / are mounted.
    paths: HostPaths,
    /// The sub-collectors, in the order they run.
    parts: Vec<Part>,
    /// Per sub-collector `(seconds, success)` of the current cycle, reused between cycles.
    results: Vec<(f64, bool)>,
}

impl HostCollector {
    /// Builds the collector; `Unavailable` when `<proc>/stat` cannot be read (no procfs there).
    pub fn new(paths: HostPaths) -> Result<HostCollector, CollectError> {
        let probe = paths.proc("stat");
        File::open(&probe).map_err(|e| {
            CollectError::Unavailable(format!("cannot read {}: {e}", probe.display()))
        })?;
        let collectors: Vec<Box<dyn Subcollector>> = vec![
            Box::new(arp::Arp::default()),
            Box::new(conntrack::Conntrack::default()),
            Box::new(cpu::Cpu::default()),
            Box::new(cpufreq::CpuFreq::default()),
            Box::new(diskstats::Diskstats::default()),
            Box::new(dmi::Dmi::default()),
            Box::new(edac::Edac::default()),
            Box::new(entropy::Entropy::default()),
            Box::new(filefd::Filefd::default()),
            Box::new(filesystem::Filesystem::default()),
            Box::new(hwmon::Hwmon::default()),
            Box::new(loadavg::Loadavg::default()),
            Box::new(meminfo::Meminfo::default()),
            Box::new(netclass::Netclass::default()),
            Box::new(netdev::Netdev::default()),
            Box::new(netstat::Netstat::default()),
            Box::new(nvme::Nvme::default()),
            Box::new(os::Os::default()),
            Box::new(pressure::Pressure::default()),
            Box::new(schedstat::Schedstat::default()),
            Box::new(selinux::Selinux::default()),
            Box::new(sockstat::Sockstat::new()),
            Box::new(softnet::Softnet::default()),
            Box::new(stat::Stat::default()),
            Box::new(thermal_zone::ThermalZone::default()),
            Box::new(time::Time::default()),
            Box::new(timex::Timex),
            Box::new(udp_queues::UdpQueues::default()),
            Box::new(uname::Uname),
            Box::new(vmstat::Vmstat::default()),
        ];
        let parts: Vec<Part> = collectors
            .into_iter()
            .map(|collector| Part {
                collector,
                logged: false,
            })
            .collect();
        Ok(HostCollector {
            paths,
            results: Vec::with_capacity(parts.len()),
            parts,
        })
    }

    /// Runs every sub-collector once and appends their families plus
    /// `node_scrape_collector_{duration_seconds,success}`; returns how many succeeded.
    pub fn collect_into(&mut self, out: &mut MetricBuffer) -> usize {
        self.results.clear();
        for part in &mut self.parts {
            let start = Instant::now();
            let result = part.collector.collect(&self.paths, out);
            let seconds = start.elapsed().as_secs_f64();
            let name = part.collector.name();
            match &result {
                Ok(()) => part.logged = false,
                Err(SubError::Absent(e)) => {
                    tracing::debug!(collector = name, error = %e, "host source absent");
                }
                Err(SubError::Failed(e)) if !part.logged => {
                    part.logged = true;
                    tracing::warn!(collector = name, error = %e, "host sub-collector failed");
                }
                Err(SubError::Failed(_)) => {}
            }
            self.results.push((seconds, result.is_ok()));
        }
        for (part, (seconds, _)) in self.parts.iter().zip(&self.results) {
            out.gauge(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                &[("collector", part.collector.name())],
                *seconds,
            );
        }
        for (part, (_, ok)) in self.parts.iter().zip(&self.results) {
            out.gauge(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                &[("collector", part.collector.name())],
                if *ok { 1.0 } else { 0.0 },
            );
        }
        self.results.iter().filter(|(_, ok)| *ok).count()
    }
}

impl Collector for HostCollector {
    fn name(&self) -> &'static str {
        "host"
    }

    fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
        Box::pin(async move {
            // Plain file reads and a few syscalls, a few milliseconds: not worth a thread hop.
            if self.collect_into(out) == 0 {
                return Err(CollectError::Failed(format!(
                    "no host source readable under {}",
                    self.paths.proc.display()
                )));
            }
            Ok(())
        })
    }
}

/// Reads a whole file into `buf`, replacing its contents and keeping its allocation.
fn read_to(path: &Path, buf: &mut String) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// Reads a one-value sysfs or procfs file into `buf` and returns it trimmed.
fn read_value<'b>(path: &Path, buf: &'b mut String) -> io::Result<&'b str> {
    read_to(path, buf)?;
    Ok(buf.trim())
}

/// Parses an integer the way Go's `strconv.ParseInt(s, 0, 64)` does for sysfs values
/// (`0x1003`, `42`, `-1`).
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Entries of a directory whose names start with `prefix` followed by a number, sorted by
/// that number (`cpu0`, `cpu1`, ..., `cpu10`).
fn numbered_entries(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort_unstable_by_key(|(n, _)| *n);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_reads_sysfs_forms() {
        assert_eq!(parse_int("0x1003\n"), Some(4099));
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("up"), None);
    }

    #[test]
    fn missing_proc_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths {
            proc: dir.path().join("nope"),
            ..HostPaths::default()
        };
        assert!(matches!(
            HostCollector::new(paths),
            Err(CollectError::Unavailable(_))
        ));
    }
}
