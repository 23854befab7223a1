//! A node_exporter-shaped snapshot of exactly 1,000 series per node, shared by the benchmarks.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use fleetgate_hub::config::Limits;
use fleetgate_hub::decode::{decode_body, BodyFormat};
use fleetgate_hub::labels::NodeLabels;
use fleetgate_hub::prepare::prepare;
use fleetgate_hub::store::Store;
use fleetgate_shared::{ContentEncoding, Family, Label, MetricType, Series, Snapshot, Value};

pub const NODES: usize = 1_000;
pub const SERIES_PER_NODE: usize = 1_000;

fn fam(name: &str, kind: MetricType, help: &str, series: Vec<Series>) -> Family {
    Family {
        name: name.into(),
        help: help.into(),
        kind,
        series,
    }
}

fn s(labels: &[(&str, String)], v: f64) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(n, v)| Label::new(*n, v.clone()))
            .collect(),
        value: Value::Scalar(v),
    }
}

/// One node's snapshot: cpu, memory, disk, network, filesystem, netstat, hwmon, interrupts.
pub fn node_snapshot(node: usize, seq: u64) -> Snapshot {
    let x = (node * 7919 + seq as usize) as f64;
    let mut f = Vec::new();
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    f.push(fam(
        "node_cpu_seconds_total",
        MetricType::Counter,
        "Seconds the CPUs spent in each mode.",
        (0..32)
            .flat_map(|c| {
                modes.map(|m| {
                    s(
                        &[("cpu", c.to_string()), ("mode", m.to_string())],
                        x * 1.25 + c as f64,
                    )
                })
            })
            .collect(),
    ));
    f.push(fam(
        "node_cpu_guest_seconds_total",
        MetricType::Counter,
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        (0..32)
            .flat_map(|c| {
                ["nice", "user"].map(|m| s(&[("cpu", c.to_string()), ("mode", m.to_string())], 0.0))
            })
            .collect(),
    ));
    for i in 0..60 {
        f.push(fam(
            &format!("node_memory_field{i:02}_bytes"),
            MetricType::Gauge,
            "Memory information field.",
            vec![s(&[], x * 4096.0 + i as f64)],
        ));
    }
    let disks: Vec<String> = (0..8).map(|d| format!("nvme{d}n1")).collect();
    for i in 0..16 {
        f.push(fam(
            &format!("node_disk_stat{i:02}_total"),
            MetricType::Counter,
            "Disk statistic.",
            disks
                .iter()
                .map(|d| s(&[("device", d.clone())], x * 512.0 + i as f64))
                .collect(),
        ));
    }
    let nics: Vec<String> = [
        "eth0",
        "eth1",
        "lo",
        "docker0",
        "veth1a2b3c",
        "veth4d5e6f",
        "ib0",
        "bond0",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..16 {
        f.push(fam(
            &format!("node_network_stat{i:02}_total"),
            MetricType::Counter,
            "Network device statistic.",
            nics.iter()
                .map(|d| s(&[("device", d.clone())], x * 1500.0 + i as f64))
                .collect(),
        ));
    }
    for i in 0..8 {
        f.push(fam(
            &format!("node_filesystem_stat{i}_bytes"),
            MetricType::Gauge,
            "Filesystem statistic.",
            (0..12)
                .map(|m| {
                    s(
                        &[
                            ("device", format!("/dev/mapper/vg-lv{m}")),
                            ("fstype", "ext4".into()),
                            ("mountpoint", format!("/srv/data{m}")),
                        ],
                        x * 1e6 + 0.5,
                    )
                })
                .collect(),
        ));
    }
    for i in 0..80 {
        f.push(fam(
            &format!("node_netstat_Field{i:02}"),
            MetricType::Untyped,
            "Statistic from /proc/net/netstat.",
            vec![s(&[], x + i as f64)],
        ));
    }
    f.push(fam(
        "node_hwmon_temp_celsius",
        MetricType::Gauge,
        "Hardware monitor for temperature (input)",
        (0..40)
            .map(|t| {
                s(
                    &[
                        ("chip", "platform_coretemp_0".into()),
                        ("sensor", format!("temp{t}")),
                    ],
                    40.0 + (t as f64) * 0.5,
                )
            })
            .collect(),
    ));
    f.push(fam(
        "node_interrupts_total",
        MetricType::Counter,
        "Interrupt details.",
        (0..148)
            .map(|i| {
                s(
                    &[
                        ("cpu", (i % 32).to_string()),
                        ("devices", format!("PCI-MSI {i}-edge")),
                        ("type", format!("{}", 24 + i / 32)),
                    ],
                    x * 3.0 + i as f64,
                )
            })
            .collect(),
    ));
    let series: usize = f.iter().map(|f| f.series.len()).sum();
    assert_eq!(series, SERIES_PER_NODE);
    Snapshot {
        seq,
        interval_ms: 15_000,
        timestamp_ms: 0,
        families: f,
    }
}

/// [`node_snapshot`] with a label unique to the node on every series, so no two nodes have a
/// family block in common: the store's worst case.
pub fn node_snapshot_unshared(node: usize, seq: u64) -> Snapshot {
    let mut snap = node_snapshot(node, seq);
    for f in &mut snap.families {
        for s in &mut f.series {
            s.labels.push(Label::new("serial", format!("{node:06}")));
        }
    }
    snap
}

pub fn node_name(i: usize) -> String {
    format!("gpu-node-{i:04}")
}

pub fn node_labels(i: usize) -> NodeLabels {
    let enrollment = [("node_type".to_string(), "gpu".to_string())];
    NodeLabels::new(
        "instance",
        "node",
        &node_name(i),
        enrollment.iter().map(|(k, v)| (k, v)),
    )
}

/// Decodes, validates, pre-renders and stores one encoded push: the whole ingest path.
pub fn ingest(
    store: &Store,
    node: usize,
    labels: &NodeLabels,
    body: &[u8],
    limits: &Limits,
) -> usize {
    let decoded = decode_body(
        BodyFormat::Snapshot,
        ContentEncoding::Identity,
        body,
        limits.max_decompressed_bytes,
    )
    .unwrap();
    let mut prepared = prepare(decoded.families, labels, limits).unwrap();
    // As the push route does: the layout lets values pushes follow.
    prepared.layout = decoded.layout;
    let samples = prepared.samples;
    store.apply(
        &node_name(node),
        1,
        decoded.seq,
        prepared,
        Duration::from_secs(3600),
    );
    samples
}

/// A store holding `NODES` nodes of one kind (they share their family blocks).
pub fn filled_store() -> Arc<Store> {
    filled_store_with(node_snapshot)
}

/// A store holding `NODES` nodes, each snapshot made by `snapshot(node, seq)`.
pub fn filled_store_with(snapshot: fn(usize, u64) -> Snapshot) -> Arc<Store> {
    let store = Arc::new(Store::new());
    let limits = Limits::default();
    for i in 0..NODES {
        let body = fleetgate_shared::encode(&snapshot(i, 1));
        ingest(&store, i, &node_labels(i), &body, &limits);
    }
    store
}

/// Time this thread has run on a CPU (`/proc/thread-self/schedstat`, nanoseconds): unlike
/// wall time, it does not grow when other processes take the machine's cores.
pub fn cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

/// Resident memory of this process in bytes.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
