//! The Docker Engine API to cAdvisor mapping: turns inspect results and one-shot stats into
//! cAdvisor's `container_*` families and labels. Pure functions over plain data, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{ContainerInspectResponse, ContainerMemoryStats, ContainerStatsResponse};
use fleetgate_shared::names::sanitize_label_name;
use fleetgate_shared::{Label, MetricType, Series, Value};

use crate::collectors::MetricBuffer;

/// The kernel's CFS period when Docker leaves it unset (`cpu.cfs_period_us`).
const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
/// The kernel's `cpu.shares` when Docker leaves it unset.
const DEFAULT_CPU_SHARES: u64 = 1024;

/// What cAdvisor takes from a container's configuration rather than from its stats: identity
/// labels and the limits in its spec. Built once per container from `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Full 64-hex-digit container id; the `id` label is `/docker/<id>`.
    pub id: String,
    /// Docker name without the leading `/`.
    pub name: String,
    /// `Config.Image`, the image reference the container was started from.
    pub image: String,
    /// Docker labels as `container_label_<sanitized key>` to value. Keys that sanitize to the
    /// same name keep the value of the lexically first original key.
    pub labels: BTreeMap<String, String>,
    /// `HostConfig.Memory`; 0 means unlimited, as cAdvisor reports it.
    pub memory_limit_bytes: u64,
    /// CFS quota in microseconds per period; `None` when unlimited (cAdvisor omits the series).
    pub cpu_quota_us: Option<u64>,
    /// CFS period in microseconds.
    pub cpu_period_us: u64,
    /// Relative CPU weight (`cpu.shares`).
    pub cpu_shares: u64,
    /// `State.StartedAt` as unix seconds; `None` if the engine reports no valid time.
    pub start_time_seconds: Option<f64>,
    /// `HostConfig.CgroupParent`, empty for Docker's default: where its cgroup is.
    pub cgroup_parent: String,
}

impl ContainerSpec {
    /// Reads the spec out of an inspect response; `None` without an id.
    pub fn from_inspect(inspect: &ContainerInspectResponse) -> Option<Self> {
        let id = inspect.id.clone()?;
        let name = inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let config = inspect.config.as_ref();
        let image = config.and_then(|c| c.image.clone()).unwrap_or_default();

        let mut raw_labels: Vec<(&String, &String)> = config
            .and_then(|c| c.labels.as_ref())
            .map(|l| l.iter().collect())
            .unwrap_or_default();
        raw_labels.sort();
        let mut labels = BTreeMap::new();
        for (key, value) in raw_labels {
            let name = format!("container_label_{}", sanitize_label_name(key));
            labels.entry(name).or_insert_with(|| value.clone());
        }

        let host = inspect.host_config.as_ref();
        let positive = |v: Option<i64>| v.filter(|&v| v > 0).map(|v| v as u64);
        let memory_limit_bytes = positive(host.and_then(|h| h.memory)).unwrap_or(0);
        let cpu_period_us =
            positive(host.and_then(|h| h.cpu_period)).unwrap_or(DEFAULT_CPU_PERIOD_US);
        // `--cpus` sets NanoCpus and leaves CpuQuota at 0; the engine then writes
        // quota = NanoCpus * period / 1e9 into the cgroup, which is what cAdvisor reads.
        let cpu_quota_us = positive(host.and_then(|h| h.cpu_quota)).or_else(|| {
            positive(host.and_then(|h| h.nano_cpus))
                .map(|nanos| nanos * DEFAULT_CPU_PERIOD_US / 1_000_000_000)
        });
        let cpu_quota_us = cpu_quota_us.filter(|&q| q > 0);
        let cpu_shares = positive(host.and_then(|h| h.cpu_shares)).unwrap_or(DEFAULT_CPU_SHARES);
        let cgroup_parent = host
            .and_then(|h| h.cgroup_parent.clone())
            .unwrap_or_default();

        let start_time_seconds = inspect
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339_seconds);

        Some(ContainerSpec {
            id,
            name,
            image,
            labels,
            memory_limit_bytes,
            cpu_quota_us,
            cpu_period_us,
            cpu_shares,
            start_time_seconds,
            cgroup_parent,
        })
    }
}

/// Unix seconds of an RFC 3339 UTC time as Docker writes it (`2024-05-07T21:09:36.123456789Z`);
/// `None` for Docker's zero time (`0001-01-01T00:00:00Z`) and anything unparsable.
fn parse_rfc3339_seconds(text: &str) -> Option<f64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since.as_secs_f64())
}

/// One running container in this cycle: its spec, its stats and its OOM kill count.
#[derive(Debug, Clone, Copy)]
pub struct ContainerSample<'a> {
    /// Labels and limits from inspect.
    pub spec: &'a ContainerSpec,
    /// The one-shot stats of this cycle.
    pub stats: &'a ContainerStatsResponse,
    /// OOM kills in the container so far, from its cgroup; `None` where the cgroup could not
    /// be read (the series is left out, not reported as 0).
    pub oom_events: Option<u64>,
}

/// Appends cAdvisor's families for `containers` to `out`. `now_seconds` becomes
/// `container_last_seen`; `block_devices` names block devices by (major, minor) for the fs
/// `device` label (unknown ones are written `major:minor`).
pub fn write_families(
    containers: &[ContainerSample<'_>],
    now_seconds: f64,
    block_devices: &HashMap<(u64, u64), String>,
    out: &mut MetricBuffer,
) {
    // Every series of a family must carry the same label names, so each container gets every
    // label key seen on any container, empty where it has none.
    let label_names: BTreeSet<&str> = containers
        .iter()
        .flat_map(|c| c.spec.labels.keys().map(String::as_str))
        .collect();

    for container in containers {
        let spec = container.spec;
        let mut base = Vec::with_capacity(3 + label_names.len());
        base.push(Label::new("id", format!("/docker/{}", spec.id)));
        base.push(Label::new("name", spec.name.as_str()));
        base.push(Label::new("image", spec.image.as_str()));
        for &label in &label_names {
            let value = spec.labels.get(label).map(String::as_str).unwrap_or("");
            base.push(Label::new(label, value));
        }
        let mut w = FamilyWriter { out, base: &base };
        write_container(&mut w, container, now_seconds, block_devices);
    }
}

/// Appends series that share one container's base labels.
struct FamilyWriter<'a> {
    out: &'a mut MetricBuffer,
    base: &'a [Label],
}

impl FamilyWriter<'_> {
    fn put(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        extra: &[(&str, &str)],
        value: f64,
    ) {
        let mut labels = Vec::with_capacity(self.base.len() + extra.len());
        labels.extend_from_slice(self.base);
        labels.extend(extra.iter().map(|&(n, v)| Label::new(n, v)));
        self.out.family(name, help, kind).series.push(Series {
            labels,
            value: Value::Scalar(value),
        });
    }

    fn counter(&mut self, name: &str, help: &str, extra: &[(&str, &str)], value: Option<u64>) {
        if let Some(v) = value {
            self.put(name, help, MetricType::Counter, extra, v as f64);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.put(name, help, MetricType::Gauge, &[], v as f64);
        }
    }

    fn seconds(&mut self, name: &str, help: &str, extra: &[(&str, &str)], nanos: Option<u64>) {
        if let Some(ns) = nanos {
            self.put(name, help, MetricType::Counter, extra, ns as f64 / 1e9);
        }
    }
}

fn write_container(
    w: &mut FamilyWriter<'_>,
    container: &ContainerSample<'_>,
    now_seconds: f64,
    block_devices: &HashMap<(u64, u64), String>,
) {
    let stats = container.stats;
    let spec = container.spec;

    if let Some(cpu) = &stats.cpu_stats {
        if let Some(usage) = &cpu.cpu_usage {
            w.seconds(
                "container_cpu_usage_seconds_total",
                "Cumulative cpu time consumed in seconds.",
                &[("cpu", "total")],
                usage.total_usage,
            );
            w.seconds(
                "container_cpu_user_seconds_total",
                "Cumulative user cpu time consumed in seconds.",
                &[],
                usage.usage_in_usermode,
            );
            w.seconds(
                "container_cpu_system_seconds_total",
                "Cumulative system cpu time consumed in seconds.",
                &[],
                usage.usage_in_kernelmode,
            );
        }
        // cAdvisor reports CFS throttling only for containers with a CPU quota.
        if let (Some(throttling), Some(_)) = (&cpu.throttling_data, spec.cpu_quota_us) {
            w.counter(
                "container_cpu_cfs_periods_total",
                "Number of elapsed enforcement period intervals.",
                &[],
                throttling.periods,
            );
            w.counter(
                "container_cpu_cfs_throttled_periods_total",
                "Number of throttled period intervals.",
                &[],
                throttling.throttled_periods,
            );
            w.seconds(
                "container_cpu_cfs_throttled_seconds_total",
                "Total time duration the container has been throttled.",
                &[],
                throttling.throttled_time,
            );
        }
    }

    if let Some(memory) = &stats.memory_stats {
        write_memory(w, memory);
    }
    w.counter(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        &[],
        container.oom_events,
    );

    if let Some(networks) = &stats.networks {
        let mut interfaces: Vec<_> = networks.iter().collect();
        interfaces.sort_by(|a, b| a.0.cmp(b.0));
        for (interface, net) in interfaces {
            let l = [("interface", interface.as_str())];
            w.counter(
                "container_network_receive_bytes_total",
                "Cumulative count of bytes received",
                &l,
                net.rx_bytes,
            );
            w.counter(
                "container_network_receive_packets_total",
                "Cumulative count of packets received",
                &l,
                net.rx_packets,
            );
            w.counter(
                "container_network_receive_packets_dropped_total",
                "Cumulative count of packets dropped while receiving",
                &l,
                net.rx_dropped,
            );
            w.counter(
                "container_network_receive_errors_total",
                "Cumulative count of errors encountered while receiving",
                &l,
                net.rx_errors,
            );
            w.counter(
                "container_network_transmit_bytes_total",
                "Cumulative count of bytes transmitted",
                &l,
                net.tx_bytes,
            );
            w.counter(
                "container_network_transmit_packets_total",
                "Cumulative count of packets transmitted",
                &l,
                net.tx_packets,
            );
            w.counter(
                "container_network_transmit_packets_dropped_total",
                "Cumulative count of packets dropped while transmitting",
                &l,
                net.tx_dropped,
            );
            w.counter(
                "container_network_transmit_errors_total",
                "Cumulative count of errors encountered while transmitting",
                &l,
                net.tx_errors,
            );
        }
    }

    for (device, io) in block_io(stats, block_devices) {
        let l = [("device", device.as_str())];
        w.counter(
            "container_fs_reads_bytes_total",
            "Cumulative count of bytes read",
            &l,
            Some(io.read),
        );
        w.counter(
            "container_fs_writes_bytes_total",
            "Cumulative count of bytes written",
            &l,
            Some(io.write),
        );
    }

    w.gauge(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        Some(spec.memory_limit_bytes),
    );
    w.gauge(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        spec.cpu_quota_us,
    );
    w.gauge(
        "container_spec_cpu_period",
        "CPU period of the container.",
        Some(spec.cpu_period_us),
    );
    w.gauge(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        Some(spec.cpu_shares),
    );
    if let Some(start) = spec.start_time_seconds {
        w.put(
            "container_start_time_seconds",
            "Start time of the container since unix epoch in seconds.",
            MetricType::Gauge,
            &[],
            start,
        );
    }
    w.put(
        "container_last_seen",
        "Last time a container was seen by the exporter",
        MetricType::Gauge,
        &[],
        now_seconds,
    );
}

/// Memory families. cgroup v1 reports hierarchical `total_*` keys beside the local ones;
/// cgroup v2 has only local keys and names some differently (`anon`, `file`, `file_mapped`).
fn write_memory(w: &mut FamilyWriter<'_>, memory: &ContainerMemoryStats) {
    let get = |key: &str| memory.stats.as_ref().and_then(|s| s.get(key).copied());
    let v1 = get("total_inactive_file").is_some() || get("total_rss").is_some();
    let pick = |v1_key: &str, v2_key: &str| if v1 { get(v1_key) } else { get(v2_key) };

    let usage = memory.usage;
    w.gauge(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        usage,
    );
    let inactive_file = pick("total_inactive_file", "inactive_file").unwrap_or(0);
    w.gauge(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        usage.map(|u| u.saturating_sub(inactive_file)),
    );
    w.gauge(
        "container_memory_rss",
        "Size of RSS in bytes.",
        pick("total_rss", "anon"),
    );
    w.gauge(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        pick("total_cache", "file"),
    );
    w.gauge(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        pick("total_mapped_file", "file_mapped"),
    );
    // Docker reports swap only on cgroup v1 with swap accounting; absent means unknown, not 0.
    w.gauge(
        "container_memory_swap",
        "Container swap usage in bytes.",
        get("total_swap"),
    );

    let failures = [
        ("pgfault", "container", get("pgfault")),
        ("pgmajfault", "container", get("pgmajfault")),
        ("pgfault", "hierarchy", pick("total_pgfault", "pgfault")),
        (
            "pgmajfault",
            "hierarchy",
            pick("total_pgmajfault", "pgmajfault"),
        ),
    ];
    for (failure_type, scope, value) in failures {
        w.counter(
            "container_memory_failures_total",
            "Cumulative count of memory allocation failures.",
            &[("failure_type", failure_type), ("scope", scope)],
            value,
        );
    }
}

/// Bytes read and written on one block device.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct BlockIo {
    read: u64,
    write: u64,
}

/// Per-device read/write bytes from `io_service_bytes_recursive`, sorted by device name.
/// cgroup v1 writes ops as `Read`/`Write` (plus `Sync`, `Total`, ...), cgroup v2 as `read`/`write`.
fn block_io(
    stats: &ContainerStatsResponse,
    block_devices: &HashMap<(u64, u64), String>,
) -> BTreeMap<String, BlockIo> {
    let mut devices = BTreeMap::new();
    let entries = stats
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_deref())
        .unwrap_or_default();
    for entry in entries {
        let (Some(major), Some(minor), Some(op)) = (entry.major, entry.minor, entry.op.as_deref())
        else {
            continue;
        };
        let value = entry.value.unwrap_or(0);
        let is_read = op.eq_ignore_ascii_case("read");
        let is_write = op.eq_ignore_ascii_case("write");
        if !is_read && !is_write {
            continue;
        }
        let name = block_devices
            .get(&(major, minor))
            .cloned()
            .unwrap_or_else(|| format!("{major}:{minor}"));
        let io: &mut BlockIo = devices.entry(name).or_default();
        if is_read {
            io.read = io.read.saturating_add(value);
        } else {
            io.write = io.write.saturating_add(value);
        }
    }
    devices
}

/// The (major, minor) pairs of the block devices a stats response mentions.
pub fn block_device_numbers(
    stats: &ContainerStatsResponse,
) -> impl Iterator<Item = (u64, u64)> + '_ {
    stats
        .blkio_stats
        .iter()
        .flat_map(|b| b.io_service_bytes_recursive.iter().flatten())
        .filter_map(|e| Some((e.major?, e.minor?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, HostConfig};
    use fleetgate_shared::Family;

    const STATS_V1: &str = include_str!("testdata/stats_cgroup_v1.json");
    const STATS_V2: &str = include_str!("testdata/stats_cgroup_v2.json");

    fn inspect(
        id: &str,
        name: &str,
        labels: &[(&str, &str)],
        host: HostConfig,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some(id.to_string()),
            name: Some(format!("/{name}")),
            config: Some(ContainerConfig {
                image: Some("busybox:1.36".to_string()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            host_config: Some(host),
            state: Some(ContainerState {
                started_at: Some("2026-11-26T14:37:59.864090756Z".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn family<'a>(out: &'a MetricBuffer, name: &str) -> &'a Family {
        out.families()
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("family {name} missing"))
    }

    fn label<'a>(s: &'a Series, name: &str) -> Option<&'a str> {
        s.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    fn scalar(s: &Series) -> f64 {
        match s.value {
            Value::Scalar(v) => v,
            _ => panic!("not scalar"),
        }
    }

    fn find(
        out: &MetricBuffer,
        name: &str,
        container: &str,
        extra: &[(&str, &str)],
    ) -> Option<f64> {
        family(out, name)
            .series
            .iter()
            .find(|s| {
                label(s, "name") == Some(container)
                    && extra.iter().all(|(n, v)| label(s, n) == Some(v))
            })
            .map(scalar)
    }

    #[test]
    fn spec_from_inspect_reads_limits_labels_and_start_time() {
        let host = HostConfig {
            memory: Some(67_108_864),
            nano_cpus: Some(1_500_000_000),
            ..Default::default()
        };
        let labels = [
            ("com.example.team", "infra"),
            ("com-example-team", "other"),
            ("a", "b"),
        ];
        let spec = ContainerSpec::from_inspect(&inspect("abc", "web", &labels, host)).unwrap();
        assert_eq!(spec.name, "web");
        assert_eq!(spec.image, "busybox:1.36");
        assert_eq!(spec.memory_limit_bytes, 67_108_864);
        assert_eq!(spec.cpu_quota_us, Some(150_000));
        assert_eq!(spec.cpu_period_us, 100_000);
        assert_eq!(spec.cpu_shares, 1024);
        // "com-example-team" < "com.example.team" lexically, so it wins the sanitized name.
        assert_eq!(spec.labels["container_label_com_example_team"], "other");
        assert_eq!(spec.labels["container_label_a"], "b");
        let start = spec.start_time_seconds.unwrap();
        assert!((start - 1_795_703_879.864_090_7).abs() < 1e-3, "{start}");

        let unlimited =
            ContainerSpec::from_inspect(&inspect("d", "n", &[], HostConfig::default())).unwrap();
        assert_eq!(unlimited.memory_limit_bytes, 0);
        assert_eq!(unlimited.cpu_quota_us, None);
        assert_eq!(unlimited.cgroup_parent, "", "Docker's default place");
        let parented = HostConfig {
            cgroup_parent: Some("/batch".to_string()),
            ..Default::default()
        };
        let spec = ContainerSpec::from_inspect(&inspect("d", "n", &[], parented)).unwrap();
        assert_eq!(spec.cgroup_parent, "/batch");

        let mut never_started = inspect("d", "n", &[], HostConfig::default());
        never_started.state = Some(ContainerState {
            started_at: Some("0001-01-01T00:00:00Z".to_string()),
            ..Default::default()
        });
        assert_eq!(
            ContainerSpec::from_inspect(&never_started)
                .unwrap()
                .start_time_seconds,
            None
        );
    }

    #[test]
    fn cgroup_v1_stats_map_to_cadvisor_families() {
        let stats: ContainerStatsResponse = serde_json::from_str(STATS_V1).unwrap();
        let host = HostConfig {
            memory: Some(67_108_864),
            ..Default::default()
        };
        let spec = ContainerSpec::from_inspect(&inspect(
            stats.id.as_deref().unwrap(),
            "fgprobe",
            &[("com.example.team", "infra")],
            host,
        ))
        .unwrap();
        let mut out = MetricBuffer::new();
        let devices = HashMap::from([((8, 0), "/dev/sda".to_string())]);
        write_families(
            &[ContainerSample {
                spec: &spec,
                stats: &stats,
                oom_events: Some(2),
            }],
            1_800_000_000.0,
            &devices,
            &mut out,
        );

        let cpu = &family(&out, "container_cpu_usage_seconds_total").series[0];
        assert_eq!(label(cpu, "cpu"), Some("total"));
        assert_eq!(label(cpu, "id"), Some(&*format!("/docker/{}", spec.id)));
        assert_eq!(label(cpu, "image"), Some("busybox:1.36"));
        assert_eq!(
            label(cpu, "container_label_com_example_team"),
            Some("infra")
        );
        assert_eq!(scalar(cpu), 0.686289319);
        assert_eq!(
            find(&out, "container_cpu_user_seconds_total", "fgprobe", &[]),
            Some(0.66)
        );
        assert_eq!(
            find(&out, "container_cpu_system_seconds_total", "fgprobe", &[]),
            Some(0.02)
        );
        // No CPU quota: cAdvisor omits the CFS throttling families.
        assert!(out
            .families()
            .iter()
            .all(|f| !f.name.starts_with("container_cpu_cfs_")));
        assert_eq!(
            find(&out, "container_memory_usage_bytes", "fgprobe", &[]),
            Some(626_688.0)
        );
        // total_inactive_file (1234567) exceeds usage here: floored at 0, never negative.
        assert_eq!(
            find(&out, "container_memory_working_set_bytes", "fgprobe", &[]),
            Some(0.0)
        );
        assert_eq!(
            find(&out, "container_memory_rss", "fgprobe", &[]),
            Some(57_344.0)
        );
        assert_eq!(
            find(&out, "container_memory_cache", "fgprobe", &[]),
            Some(2_000_000.0)
        );
        assert!(out
            .families()
            .iter()
            .all(|f| f.name != "container_memory_swap"));
        let pgfault = [("failure_type", "pgfault"), ("scope", "hierarchy")];
        assert_eq!(
            find(&out, "container_memory_failures_total", "fgprobe", &pgfault),
            Some(1040.0)
        );
        let eth0 = [("interface", "eth0")];
        assert_eq!(
            find(
                &out,
                "container_network_receive_bytes_total",
                "fgprobe",
                &eth0
            ),
            Some(486.0)
        );
        let sda = [("device", "/dev/sda")];
        assert_eq!(
            find(&out, "container_fs_reads_bytes_total", "fgprobe", &sda),
            Some(1_638_400.0)
        );
        assert_eq!(
            find(&out, "container_fs_writes_bytes_total", "fgprobe", &sda),
            Some(40_960.0)
        );
        assert_eq!(
            find(&out, "container_spec_memory_limit_bytes", "fgprobe", &[]),
            Some(67_108_864.0)
        );
        assert!(out
            .families()
            .iter()
            .all(|f| f.name != "container_spec_cpu_quota"));
        assert_eq!(
            find(&out, "container_spec_cpu_shares", "fgprobe", &[]),
            Some(1024.0)
        );
        assert_eq!(
            find(&out, "container_last_seen", "fgprobe", &[]),
            Some(1_800_000_000.0)
        );
        assert_eq!(
            find(&out, "container_oom_events_total", "fgprobe", &[]),
            Some(2.0)
        );
        assert_eq!(
            family(&out, "container_oom_events_total").kind,
            MetricType::Counter
        );
        assert_eq!(
            family(&out, "container_cpu_usage_seconds_total").kind,
            MetricType::Counter
        );
        assert_eq!(family(&out, "container_memory_rss").kind, MetricType::Gauge);
    }

    #[test]
    fn cgroup_v2_stats_use_v2_keys_and_lowercase_ops() {
        let stats: ContainerStatsResponse = serde_json::from_str(STATS_V2).unwrap();
        let host = HostConfig {
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            ..Default::default()
        };
        let spec = ContainerSpec::from_inspect(&inspect("v2", "web-1", &[], host)).unwrap();
        let mut out = MetricBuffer::new();
        write_families(
            &[ContainerSample {
                spec: &spec,
                stats: &stats,
                oom_events: None,
            }],
            1.0,
            &HashMap::new(),
            &mut out,
        );

        assert_eq!(
            find(&out, "container_memory_working_set_bytes", "web-1", &[]),
            Some(5_242_880.0)
        );
        assert_eq!(
            find(&out, "container_memory_rss", "web-1", &[]),
            Some(3_145_728.0)
        );
        assert_eq!(
            find(&out, "container_memory_cache", "web-1", &[]),
            Some(6_291_456.0)
        );
        assert_eq!(
            find(&out, "container_memory_mapped_file", "web-1", &[]),
            Some(524_288.0)
        );
        let container = [("failure_type", "pgmajfault"), ("scope", "container")];
        assert_eq!(
            find(&out, "container_memory_failures_total", "web-1", &container),
            Some(3.0)
        );
        assert_eq!(
            find(
                &out,
                "container_cpu_cfs_throttled_periods_total",
                "web-1",
                &[]
            ),
            Some(7.0)
        );
        assert_eq!(
            find(
                &out,
                "container_cpu_cfs_throttled_seconds_total",
                "web-1",
                &[]
            ),
            Some(0.35)
        );
        assert_eq!(
            find(&out, "container_spec_cpu_quota", "web-1", &[]),
            Some(50_000.0)
        );
        let dev = [("device", "259:0")];
        assert_eq!(
            find(&out, "container_fs_reads_bytes_total", "web-1", &dev),
            Some(4_096_000.0)
        );
        assert_eq!(
            find(&out, "container_fs_writes_bytes_total", "web-1", &dev),
            Some(8192.0)
        );
        let eth0 = [("interface", "eth0")];
        assert_eq!(
            find(
                &out,
                "container_network_transmit_errors_total",
                "web-1",
                &eth0
            ),
            Some(3.0)
        );
        assert_eq!(
            find(
                &out,
                "container_network_receive_packets_dropped_total",
                "web-1",
                &eth0
            ),
            Some(2.0)
        );
        // No readable cgroup: the OOM count is unknown, so it is left out rather than 0.
        assert!(out
            .families()
            .iter()
            .all(|f| f.name != "container_oom_events_total"));
        // Interfaces come out in a stable order.
        let interfaces: Vec<_> = family(&out, "container_network_receive_bytes_total")
            .series
            .iter()
            .map(|s| label(s, "interface").unwrap())
            .collect();
        assert_eq!(interfaces, ["eth0", "eth1"]);
    }

    #[test]
    fn every_series_of_a_family_has_the_same_label_names() {
        let stats: ContainerStatsResponse = serde_json::from_str(STATS_V2).unwrap();
        let a = ContainerSpec::from_inspect(&inspect(
            "a",
            "a",
            &[("team", "infra")],
            HostConfig::default(),
        ))
        .unwrap();
        let b = ContainerSpec::from_inspect(&inspect(
            "b",
            "b",
            &[("com.docker.compose.project", "shop")],
            HostConfig::default(),
        ))
        .unwrap();
        let mut out = MetricBuffer::new();
        let samples = [
            ContainerSample {
                spec: &a,
                stats: &stats,
                oom_events: Some(0),
            },
            ContainerSample {
                spec: &b,
                stats: &stats,
                oom_events: Some(1),
            },
        ];
        write_families(&samples, 1.0, &HashMap::new(), &mut out);
        for family in out.families() {
            let names: Vec<Vec<&str>> = family
                .series
                .iter()
                .map(|s| s.labels.iter().map(|l| l.name.as_str()).collect())
                .collect();
            assert!(
                names.windows(2).all(|w| w[0] == w[1]),
                "{}: {names:?}",
                family.name
            );
        }
        assert_eq!(
            find(
                &out,
                "container_last_seen",
                "a",
                &[("container_label_com_docker_compose_project", "")]
            ),
            Some(1.0)
        );
        assert_eq!(
            find(
                &out,
                "container_last_seen",
                "b",
                &[("container_label_team", "")]
            ),
            Some(1.0)
        );
        let text = fleetgate_shared::text::render(out.families());
        fleetgate_shared::text::parse(&text).unwrap();
    }
}
