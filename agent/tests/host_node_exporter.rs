//! The host collector side by side with the real node_exporter on this machine: every family
//! node_exporter emits here by default must come out of `HostCollector` with the same type and
//! label names, the same series (label values), and agreeing values. Counters are checked by
//! bracketing: node_exporter is scraped just before and just after our collection, so every
//! counter of ours must lie between its two readings. The edac collector, which needs hardware
//! this machine kind lacks, is compared on a fake sysfs tree both sides read.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_agent::collectors::host::{HostCollector, HostPaths};
use fleetgate_agent::collectors::MetricBuffer;
use fleetgate_shared::{text, Family, MetricType, Value};
use fleetgate_testkit::require_tool;

/// Families node_exporter emits that are not the host collector's business.
fn is_exporter_self_metric(name: &str) -> bool {
    name.starts_with("go_")
        || name.starts_with("process_")
        || name.starts_with("promhttp_")
        || name == "node_exporter_build_info"
}

/// Deliberate differences: node_exporter collectors (by family prefix) the agent does not
/// implement, with the reason. Most need hardware or subsystems this machine kind lacks and
/// emit nothing here; they are listed so that their absence is a decision, not an accident.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    (
        "node_textfile_",
        "textfile: the agent forwards local /metrics endpoints (--scrape-url) instead of \
         reading *.prom files from a directory",
    ),
    (
        "node_systemd_",
        "systemd: needs D-Bus; enabled by Debian's patched defaults only",
    ),
    ("node_bcache_", "bcache: rare block cache, not implemented"),
    ("node_bonding_", "bonding: not implemented"),
    ("node_btrfs_", "btrfs: not implemented"),
    ("node_fibrechannel_", "fibrechannel: not implemented"),
    ("node_infiniband_", "infiniband: not implemented"),
    ("node_ipvs_", "ipvs: not implemented"),
    ("node_md_", "mdadm: not implemented"),
    ("node_nfs_", "nfs client statistics: not implemented"),
    ("node_nfsd_", "nfsd: not implemented"),
    (
        "node_power_supply_",
        "powersupplyclass: laptops and UPSes, not implemented",
    ),
    (
        "node_rapl_",
        "rapl: energy counters readable by root only on current kernels",
    ),
    ("node_tape_", "tapestats: not implemented"),
    ("node_xfs_", "xfs: not implemented"),
    ("node_zfs_", "zfs: not implemented"),
];

/// A series key: its labels, sorted.
type Labels = BTreeMap<String, String>;

/// One scrape: family name to (type, series by labels).
type Scrape = BTreeMap<String, (MetricType, BTreeMap<Labels, f64>)>;

/// Deliberate differences in series: whether a series of ours (`ours`) or of node_exporter's
/// is expected to have no counterpart. Debian's node_exporter 1.5.0 has older or Debian-patched
/// defaults; the agent follows current upstream node_exporter (1.6 and later); each case below
/// says which default differs.
fn deliberately_different(ours: bool, family: &str, labels: &Labels) -> bool {
    let label = |n: &str| labels.get(n).map(String::as_str).unwrap_or("");
    if !ours && family.starts_with("node_disk_") {
        // Upstream >= 1.6 ignores `^(z?ram|...)\d+$`; 1.5.0 still reports zram devices.
        let dev = label("device");
        return dev.starts_with("zram") && dev[4..].bytes().all(|b| b.is_ascii_digit());
    }
    if ours && family.starts_with("node_filesystem_") {
        // 1.5.0 also excluded everything under /run, /mnt and /media; upstream >= 1.6 only
        // excludes /run/credentials, so tmpfs mounts there are measured.
        let mp = label("mountpoint");
        return ["/run", "/mnt", "/media"]
            .iter()
            .any(|p| mp == *p || mp.starts_with(&format!("{p}/")));
    }
    if ours
        && (family.starts_with("node_network_receive_")
            || family.starts_with("node_network_transmit_"))
        && family.ends_with("_total")
    {
        // Debian patches netdev's device-exclude default to `^lo$`; upstream excludes nothing.
        return label("device") == "lo";
    }
    false
}

/// Kills node_exporter when the test ends, however it ends.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad response: {head}")));
    }
    Ok(body.to_string())
}

/// Starts node_exporter with `args` (none: its default collectors) on a free loopback port and
/// waits until it serves; retries with another port if the chosen one was taken in between.
fn start_exporter(node_exporter: &std::path::Path, args: &[&str]) -> (Exporter, u16) {
    for _attempt in 0..3 {
        let port = free_port();
        let child = Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter");
        let mut exporter = Exporter(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_get(port).is_ok() {
                return (exporter, port);
            }
            if let Ok(Some(_)) = exporter.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("node_exporter did not come up");
}

fn to_scrape(families: Vec<Family>, ours: bool) -> Scrape {
    let mut scrape = Scrape::new();
    for f in families {
        if is_exporter_self_metric(&f.name) {
            continue;
        }
        let mut series = BTreeMap::new();
        for s in f.series {
            let labels: Labels = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
            if deliberately_different(ours, &f.name, &labels) {
                continue;
            }
            let Value::Scalar(v) = s.value else {
                panic!("{} is not scalar", f.name);
            };
            series.insert(labels, v);
        }
        if !series.is_empty() {
            scrape.insert(f.name, (f.kind, series));
        }
    }
    scrape
}

fn label_names(series: &BTreeMap<Labels, f64>) -> BTreeSet<Vec<String>> {
    series.keys().map(|l| l.keys().cloned().collect()).collect()
}

#[test]
fn host_collector_matches_node_exporter() {
    let Some(node_exporter) = require_tool("prometheus-node-exporter") else {
        return;
    };
    let (_exporter, port) = start_exporter(&node_exporter, &[]);
    let mut host = HostCollector::new(HostPaths::default()).expect("host collector");

    let before = text::parse(&http_get(port).unwrap()).unwrap();
    let mut buffer = MetricBuffer::new();
    host.collect_into(&mut buffer);
    let after = text::parse(&http_get(port).unwrap()).unwrap();
    // Through our own exposition, as the hub would see it.
    let ours = to_scrape(text::parse(&text::render(buffer.families())).unwrap(), true);
    let before = to_scrape(before, false);
    let after = to_scrape(after, false);

    let mut problems: Vec<String> = Vec::new();
    let mut compared: Vec<&str> = Vec::new();
    for (name, (kind, series)) in &before {
        if let Some((_, reason)) = NOT_IMPLEMENTED.iter().find(|(p, _)| name.starts_with(p)) {
            eprintln!("not compared: {name} ({reason})");
            continue;
        }
        let Some((our_kind, our_series)) = ours.get(name) else {
            problems.push(format!("missing family {name}"));
            continue;
        };
        compared.push(name);
        if our_kind != kind {
            problems.push(format!("{name}: type {our_kind:?}, node_exporter {kind:?}"));
        }
        if label_names(our_series) != label_names(series) {
            problems.push(format!(
                "{name}: label names {:?}, node_exporter {:?}",
                label_names(our_series),
                label_names(series)
            ));
            continue;
        }
        // node_scrape_collector_*: node_exporter has collectors (bcache, btrfs, ...) we do not.
        if !name.starts_with("node_scrape_collector_") {
            let theirs: BTreeSet<&Labels> = series.keys().collect();
            let mine: BTreeSet<&Labels> = our_series.keys().collect();
            if theirs != mine {
                problems.push(format!(
                    "{name}: series only in node_exporter {:?}, only ours {:?}",
                    theirs.difference(&mine).collect::<Vec<_>>(),
                    mine.difference(&theirs).collect::<Vec<_>>()
                ));
                continue;
            }
        }
        if *kind == MetricType::Counter {
            let later = &after.get(name).expect("family in second scrape").1;
            for (labels, v) in our_series {
                let (Some(lo), Some(hi)) = (series.get(labels), later.get(labels)) else {
                    continue;
                };
                // iowait can go backwards in /proc/stat; node_exporter hides the dips.
                let slack = if labels.get("mode").map(String::as_str) == Some("iowait") {
                    1.0
                } else {
                    1e-9 * hi.abs().max(1.0)
                };
                if *v < lo - slack || *v > hi + slack {
                    problems.push(format!(
                        "{name}{labels:?} = {v}, node_exporter read {lo} before and {hi} after"
                    ));
                }
            }
        }
    }

    // Values that do not move between two reads must be identical.
    for name in [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_boot_time_seconds",
        "node_filesystem_size_bytes",
        "node_filesystem_files",
        "node_filefd_maximum",
        "node_network_mtu_bytes",
        "node_network_iface_id",
        "node_entropy_pool_size_bits",
        "node_uname_info",
        "node_os_info",
        "node_os_version",
        "node_timex_tick_seconds",
    ] {
        let (Some((_, theirs)), Some((_, mine))) = (before.get(name), ours.get(name)) else {
            problems.push(format!("stable family {name} missing on one side"));
            continue;
        };
        if theirs != mine {
            problems.push(format!("{name}: ours {mine:?}, node_exporter {theirs:?}"));
        }
    }
    // Must have been compared above, not merely be absent on both sides.
    for name in [
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "node_uname_info",
    ] {
        if !compared.contains(&name) {
            problems.push(format!("{name} was not compared"));
        }
    }

    let extra: Vec<&String> = ours.keys().filter(|n| !before.contains_key(*n)).collect();
    eprintln!("compared {} families with node_exporter:", compared.len());
    for name in &compared {
        eprintln!("  {name}");
    }
    eprintln!("ours only (not emitted by node_exporter here): {extra:?}");
    assert!(problems.is_empty(), "differences:\n{}", problems.join("\n"));
}

/// The `node_edac_*` families and `node_scrape_collector_success{collector="edac"}` of one
/// exposition: name to (type, HELP, value by labels).
fn edac_part(exposition: &str) -> BTreeMap<String, (MetricType, String, BTreeMap<Labels, f64>)> {
    let mut part = BTreeMap::new();
    for f in text::parse(exposition).unwrap() {
        let edac = f.name.starts_with("node_edac_");
        if !edac && f.name != "node_scrape_collector_success" {
            continue;
        }
        let mut series = BTreeMap::new();
        for s in f.series {
            let labels: Labels = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
            if !edac && labels.get("collector").map(String::as_str) != Some("edac") {
                continue;
            }
            let Value::Scalar(v) = s.value else {
                panic!("{} is not scalar", f.name);
            };
            series.insert(labels, v);
        }
        part.insert(f.name, (f.kind, f.help, series));
    }
    part
}

/// The agent binary's `--once` exposition with only the host collector, reading `sys`.
fn agent_once_with_sys(sys: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetgate-agent"))
        .args([
            "--once",
            "--node",
            "edac-test",
            "--collectors",
            "host",
            "--sys-path",
        ])
        .arg(sys)
        .env_remove("FLEETGATE_COLLECTORS")
        .env_remove("FLEETGATE_SYS_PATH")
        .stderr(Stdio::null())
        .output()
        .expect("run fleetgate-agent --once");
    assert!(out.status.success(), "fleetgate-agent --once failed");
    String::from_utf8(out.stdout).unwrap()
}

fn write_counts(dir: &std::path::Path, counts: &[(&str, u64)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, n) in counts {
        std::fs::write(dir.join(file), format!("{n}\n")).unwrap();
    }
}

/// EDAC needs ECC memory and a kernel driver for its controller, which virtual machines lack, so
/// both sides read the same fake sysfs tree: node_exporter with `--path.sysfs` and only its edac
/// collector, the agent binary with `--sys-path`. Families, types, HELP, labels and values must
/// be equal: with two controllers (one with csrows), after new errors, and with a count missing.
#[test]
fn edac_matches_node_exporter_on_the_same_sysfs_tree() {
    let Some(node_exporter) = require_tool("prometheus-node-exporter") else {
        return;
    };
    let sys = tempfile::tempdir().unwrap();
    let mc = sys.path().join("devices/system/edac/mc");
    let controller = |ce, ce_noinfo, ue, ue_noinfo| {
        [
            ("ce_count", ce),
            ("ce_noinfo_count", ce_noinfo),
            ("ue_count", ue),
            ("ue_noinfo_count", ue_noinfo),
        ]
    };
    write_counts(&mc.join("mc0"), &controller(12, 2, 1, 0));
    write_counts(&mc.join("mc0/csrow0"), &[("ce_count", 10), ("ue_count", 1)]);
    write_counts(&mc.join("mc0/csrow1"), &[("ce_count", 0), ("ue_count", 0)]);
    write_counts(&mc.join("mc1"), &controller(0, 0, 0, 0));
    // Not a controller: sysfs keeps the device's power settings beside them.
    std::fs::create_dir_all(mc.join("power")).unwrap();

    let tree = sys.path().to_str().unwrap();
    let sysfs = format!("--path.sysfs={tree}");
    let (_exporter, port) = start_exporter(
        &node_exporter,
        &[&sysfs, "--collector.disable-defaults", "--collector.edac"],
    );

    let compare = |when: &str| {
        let theirs = edac_part(&http_get(port).unwrap());
        let ours = edac_part(&agent_once_with_sys(sys.path()));
        assert_eq!(
            ours, theirs,
            "{when}: agent (left) and node_exporter (right) differ"
        );
        theirs
    };

    let first = compare("two controllers");
    assert_eq!(
        first.len(),
        5,
        "four edac families and the success flag: {first:?}"
    );
    let ue = &first["node_edac_uncorrectable_errors_total"];
    assert_eq!(ue.0, MetricType::Counter);
    let mc0: Labels = [("controller".to_string(), "0".to_string())].into();
    assert_eq!(ue.2[&mc0], 1.0);
    let rows = &first["node_edac_csrow_correctable_errors_total"].2;
    assert_eq!(
        rows.len(),
        4,
        "csrow 0, 1 and unknown of mc0, unknown of mc1: {rows:?}"
    );

    // New errors on both controllers: both sides follow.
    write_counts(&mc.join("mc0"), &controller(15, 2, 3, 1));
    write_counts(&mc.join("mc0/csrow1"), &[("ce_count", 3), ("ue_count", 1)]);
    write_counts(&mc.join("mc1"), &controller(4, 4, 0, 0));
    let second = compare("after new errors");
    assert_eq!(second["node_edac_uncorrectable_errors_total"].2[&mc0], 3.0);

    // A controller whose count cannot be read fails the collector on both sides.
    std::fs::remove_file(mc.join("mc1/ue_noinfo_count")).unwrap();
    let broken = compare("a count missing");
    let success = &broken["node_scrape_collector_success"].2;
    assert_eq!(success.values().copied().collect::<Vec<_>>(), [0.0]);
}
