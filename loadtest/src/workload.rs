//! The simulated fleet: one snapshot shape (host, containers, GPUs) built once, and the values
//! every simulated node fills into it on each push — counters advance, gauges move.
//!
//! The label structure is shared by all nodes and only the few node-specific label values
//! (hostname, container ids, GPU UUIDs) are patched per push, so the rig holds one template and a
//! handful of scratch snapshots instead of thousands of full snapshots.

use std::f64::consts::TAU;
use std::fmt::Write as _;
use std::sync::Mutex;

use fleetgate_shared::{Family, Label, MetricType, Series, Snapshot, Value};

/// How many of each thing one simulated node has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Logical CPUs of the host (node_cpu_*, softnet, schedstat, cpufreq per cpu).
    pub cpus: usize,
    /// Block devices (node_disk_* per device).
    pub disks: usize,
    /// Network interfaces (node_network_* per device).
    pub nics: usize,
    /// Mounted filesystems (node_filesystem_* per mount).
    pub filesystems: usize,
    /// Docker containers (cAdvisor series per container).
    pub containers: usize,
    /// GPUs (one series of each of the agent's DCGM families per GPU).
    pub gpus: usize,
}

impl Shape {
    /// A host with `cpus` CPUs, `containers` containers and `gpus` GPUs; 16, 4 and 2 make about
    /// 1,000 series (770 node_exporter, 168 cAdvisor, 62 DCGM).
    pub fn with(cpus: usize, containers: usize, gpus: usize) -> Self {
        Shape {
            cpus,
            disks: 8,
            nics: 8,
            filesystems: 10,
            containers,
            gpus,
        }
    }
}

/// How a series' value changes from one push to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Motion {
    /// Never changes (info metrics, limits, sizes).
    Const(f64),
    /// Grows by about `rate` per second from `start`, rounded to `step`.
    Counter { start: f64, rate: f64, step: f64 },
    /// Swings around `mid` by `amp` over roughly `period` pushes, rounded to `step`.
    Gauge {
        mid: f64,
        amp: f64,
        period: f64,
        step: f64,
    },
}

/// Which node-specific string a label value is replaced with on each push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeValue {
    /// The node's name (`nodename`, `Hostname`).
    Name,
    /// A per-node container id (`/docker/<64 hex>`) for container number `usize`.
    ContainerId(usize),
    /// A per-node container name for container number `usize`.
    ContainerName(usize),
    /// A per-node GPU UUID for GPU number `usize`.
    GpuUuid(usize),
}

/// One label value to patch: family, series, label index, and what goes there.
#[derive(Debug, Clone, Copy)]
struct Patch {
    family: usize,
    series: usize,
    label: usize,
    value: NodeValue,
}

/// The snapshot every simulated node pushes, minus its values and its node-specific labels.
#[derive(Debug)]
pub struct Workload {
    /// Families with placeholder values; cloned into scratch snapshots.
    template: Vec<Family>,
    /// One motion per series, in family then series order.
    motions: Vec<Motion>,
    /// Label values that differ per node.
    patches: Vec<Patch>,
    /// Push interval in seconds, so counters advance by rate × interval per push.
    interval_s: f64,
    /// Filled snapshots waiting to be reused; one is taken per push in flight.
    scratch: Mutex<Vec<Snapshot>>,
}

impl Workload {
    /// Builds the template for `shape` pushed every `interval_s` seconds.
    pub fn new(shape: Shape, interval_s: f64) -> Self {
        let mut b = Builder::default();
        host(&mut b, shape);
        for c in 0..shape.containers {
            container(&mut b, c);
        }
        for g in 0..shape.gpus {
            gpu(&mut b, g);
        }
        Workload {
            template: b.families,
            motions: b.motions,
            patches: b.patches,
            interval_s,
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Series per snapshot (all scalar, so also samples per snapshot).
    pub fn series_per_node(&self) -> usize {
        self.motions.len()
    }

    /// The families of node `node` (index `idx`) at push number `seq`, into a reused scratch
    /// snapshot; give it back with [`Workload::recycle`].
    pub fn snapshot(&self, idx: usize, node: &str, seq: u64) -> Snapshot {
        let reused = self.scratch.lock().ok().and_then(|mut pool| pool.pop());
        let mut snap = reused.unwrap_or_else(|| Snapshot {
            families: self.template.clone(),
            ..Snapshot::default()
        });
        snap.seq = seq;
        snap.interval_ms = (self.interval_s * 1000.0) as u64;
        snap.timestamp_ms = unix_ms();
        self.fill(&mut snap.families, idx, node, seq);
        snap
    }

    /// Returns a snapshot from [`Workload::snapshot`] to the pool.
    pub fn recycle(&self, snap: Snapshot) {
        if let Ok(mut pool) = self.scratch.lock() {
            if pool.len() < 256 {
                pool.push(snap);
            }
        }
    }

    fn fill(&self, families: &mut [Family], idx: usize, node: &str, seq: u64) {
        let t = seq as f64 * self.interval_s;
        let seed = splitmix(idx as u64 + 1);
        let mut k = 0usize;
        for fam in families.iter_mut() {
            for s in fam.series.iter_mut() {
                let m = self.motions[k];
                s.value = Value::Scalar(value(m, seed, k, seq, t));
                k += 1;
            }
        }
        // Written into the label's own string, which keeps its allocation from the last node
        // this pooled snapshot was: a new string per patch was a third of the rig's time in
        // malloc and free at 10,000 nodes (docs/PERFORMANCE.md `### The rig's own CPU`).
        for p in &self.patches {
            let Some(label) = families
                .get_mut(p.family)
                .and_then(|f| f.series.get_mut(p.series))
                .and_then(|s| s.labels.get_mut(p.label))
            else {
                continue;
            };
            let v = &mut label.value;
            v.clear();
            // Writing into a String cannot fail.
            let _ = match p.value {
                NodeValue::Name => v.write_str(node),
                NodeValue::ContainerId(c) => write!(
                    v,
                    "/docker/{:016x}{:016x}{:016x}{:016x}",
                    splitmix(seed ^ c as u64),
                    splitmix(seed ^ 0x100 ^ c as u64),
                    splitmix(seed ^ 0x200 ^ c as u64),
                    splitmix(seed ^ 0x300 ^ c as u64)
                ),
                NodeValue::ContainerName(c) => write!(v, "{}-{idx}", APPS[c % APPS.len()]),
                NodeValue::GpuUuid(g) => {
                    let h = splitmix(seed ^ 0x6770 ^ g as u64);
                    write!(
                        v,
                        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                        h >> 32,
                        (h >> 16) & 0xffff,
                        h & 0xffff,
                        (h >> 48) & 0xffff,
                        splitmix(h) & 0xffff_ffff_ffff
                    )
                }
            };
        }
    }
}

fn value(m: Motion, seed: u64, k: usize, seq: u64, t: f64) -> f64 {
    // Per node and series factor in 0.5..1.5, so nodes differ but stay plausible.
    let h = splitmix(seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let f = 0.5 + (h % 1000) as f64 / 1000.0;
    match m {
        Motion::Const(v) => v,
        Motion::Counter { start, rate, step } => {
            // A little per-push noise so increments are not perfectly regular.
            let noise = (splitmix(h ^ seq) % 100) as f64 / 100.0;
            round(start * f + rate * f * (t + noise), step)
        }
        Motion::Gauge {
            mid,
            amp,
            period,
            step,
        } => {
            let phase = (h % 628) as f64 / 100.0;
            let v = mid * f + amp * (seq as f64 * TAU / period + phase).sin();
            round(v.max(0.0), step)
        }
    }
}

fn round(v: f64, step: f64) -> f64 {
    if step >= 1.0 {
        (v / step).round() * step
    } else {
        let inv = (1.0 / step).round();
        (v * inv).round() / inv
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const APPS: [&str; 8] = [
    "triton",
    "nginx",
    "redis",
    "postgres",
    "api",
    "worker",
    "promtail",
    "fluent-bit",
];

/// Appends families to the template while recording motions and patches.
#[derive(Debug, Default)]
struct Builder {
    families: Vec<Family>,
    motions: Vec<Motion>,
    patches: Vec<Patch>,
}

impl Builder {
    /// Index of family `name`, created if new.
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> usize {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return i;
        }
        self.families.push(Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            series: Vec::new(),
        });
        self.families.len() - 1
    }

    /// Adds one series; label values given as `None` come from `node` patches.
    fn series(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, LabelValue)],
        motion: Motion,
    ) {
        let fi = self.family(name, help, kind);
        let si = self.families[fi].series.len();
        let mut out = Vec::with_capacity(labels.len());
        for (li, (lname, lv)) in labels.iter().enumerate() {
            let v = match lv {
                LabelValue::Fixed(s) => s.clone(),
                LabelValue::Node(nv) => {
                    self.patches.push(Patch {
                        family: fi,
                        series: si,
                        label: li,
                        value: *nv,
                    });
                    String::new()
                }
            };
            out.push(Label::new(*lname, v));
        }
        self.families[fi].series.push(Series {
            labels: out,
            value: Value::Scalar(0.0),
        });
        // Motions follow the flattened family-then-series order, and a series may join a
        // family created earlier (one per container or GPU), so insert at its flat position.
        let pos: usize = self.families[..=fi]
            .iter()
            .map(|f| f.series.len())
            .sum::<usize>()
            - 1;
        self.motions.insert(pos, motion);
    }
}

/// A label value: fixed in the template, or patched per node.
#[derive(Debug, Clone)]
enum LabelValue {
    Fixed(String),
    Node(NodeValue),
}

fn fx(s: impl Into<String>) -> LabelValue {
    LabelValue::Fixed(s.into())
}

use MetricType::{Counter as C, Gauge as G, Untyped as U};

fn counter(start: f64, rate: f64, step: f64) -> Motion {
    Motion::Counter { start, rate, step }
}

fn gauge(mid: f64, amp: f64, step: f64) -> Motion {
    Motion::Gauge {
        mid,
        amp,
        period: 40.0,
        step,
    }
}

/// node_exporter families, sized by `shape`.
fn host(b: &mut Builder, shape: Shape) {
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    b.series(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        G,
        &[
            ("domainname", fx("(none)")),
            ("machine", fx("x86_64")),
            ("nodename", LabelValue::Node(NodeValue::Name)),
            ("release", fx("6.1.0-18-amd64")),
            ("sysname", fx("Linux")),
            (
                "version",
                fx("#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"),
            ),
        ],
        Motion::Const(1.0),
    );
    for cpu in 0..shape.cpus {
        let c = cpu.to_string();
        for (i, mode) in MODES.iter().enumerate() {
            let rate = [0.3, 0.001, 0.08, 0.55, 0.02, 0.0, 0.01, 0.0][i];
            b.series(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                C,
                &[("cpu", fx(&c)), ("mode", fx(*mode))],
                counter(1.0e5 * rate, rate, 0.01),
            );
        }
    }
    for cpu in 0..shape.cpus {
        let c = cpu.to_string();
        for mode in ["nice", "user"] {
            b.series(
                "node_cpu_guest_seconds_total",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                C,
                &[("cpu", fx(&c)), ("mode", fx(mode))],
                Motion::Const(0.0),
            );
        }
        b.series(
            "node_cpu_scaling_frequency_hertz",
            "Current scaled CPU thread frequency in hertz.",
            G,
            &[("cpu", fx(&c))],
            gauge(2.4e9, 6.0e8, 1000.0),
        );
        b.series(
            "node_softnet_processed_total",
            "Number of processed packets",
            C,
            &[("cpu", fx(&c))],
            counter(1.0e7, 500.0, 1.0),
        );
        b.series(
            "node_softnet_dropped_total",
            "Number of dropped packets",
            C,
            &[("cpu", fx(&c))],
            Motion::Const(0.0),
        );
        b.series(
            "node_schedstat_running_seconds_total",
            "Number of seconds CPU spent running a process.",
            C,
            &[("cpu", fx(&c))],
            counter(4.0e4, 0.4, 1e-9),
        );
        b.series(
            "node_schedstat_timeslices_total",
            "Number of timeslices executed by CPU.",
            C,
            &[("cpu", fx(&c))],
            counter(2.0e8, 2000.0, 1.0),
        );
    }
    for (name, help, m) in [
        ("node_load1", "1m load average.", gauge(4.0, 2.0, 0.01)),
        ("node_load5", "5m load average.", gauge(4.0, 1.0, 0.01)),
        ("node_load15", "15m load average.", gauge(4.0, 0.5, 0.01)),
        (
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            Motion::Const(1.7e9),
        ),
        (
            "node_procs_running",
            "Number of processes in runnable state.",
            gauge(5.0, 4.0, 1.0),
        ),
        (
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            gauge(1.0, 1.0, 1.0),
        ),
        (
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            counter(1.7e9, 1.0, 1e-6),
        ),
        (
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            gauge(9000.0, 300.0, 1.0),
        ),
        (
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            Motion::Const(9.2e18),
        ),
        (
            "node_entropy_available_bits",
            "Bits of available entropy.",
            Motion::Const(256.0),
        ),
        (
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            gauge(400.0, 100.0, 1.0),
        ),
        (
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            Motion::Const(262144.0),
        ),
    ] {
        b.series(name, help, G, &[], m);
    }
    for (name, m) in [
        ("node_context_switches_total", counter(1.0e10, 2.0e4, 1.0)),
        ("node_forks_total", counter(1.0e7, 20.0, 1.0)),
        ("node_intr_total", counter(5.0e9, 1.0e4, 1.0)),
    ] {
        b.series(name, "Total number of events.", C, &[], m);
    }
    for field in MEMINFO {
        let big = field.starts_with("Mem") || field.contains("Cache") || field.contains("Active");
        let m = if field.contains("Total") || field.contains("Limit") {
            Motion::Const(2.7e11)
        } else if big {
            gauge(6.0e10, 4.0e9, 4096.0)
        } else {
            gauge(2.0e8, 2.0e7, 4096.0)
        };
        b.series(
            &format!("node_memory_{field}_bytes"),
            &format!("Memory information field {field}_bytes."),
            G,
            &[],
            m,
        );
    }
    for field in ["Total", "Free", "Rsvd", "Surp"] {
        b.series(
            &format!("node_memory_HugePages_{field}"),
            &format!("Memory information field HugePages_{field}."),
            G,
            &[],
            Motion::Const(0.0),
        );
    }
    for field in [
        "oom_kill",
        "pgfault",
        "pgmajfault",
        "pgpgin",
        "pgpgout",
        "pswpin",
        "pswpout",
    ] {
        b.series(
            &format!("node_vmstat_{field}"),
            &format!("/proc/vmstat information field {field}."),
            U,
            &[],
            counter(1.0e8, 800.0, 1.0),
        );
    }
    for d in 0..shape.disks {
        let dev = if d < 4 {
            format!("nvme{d}n1")
        } else {
            format!("sd{}", (b'a' + (d - 4) as u8) as char)
        };
        for (name, m) in [
            ("node_disk_reads_completed_total", counter(1.0e7, 50.0, 1.0)),
            ("node_disk_reads_merged_total", counter(1.0e5, 2.0, 1.0)),
            ("node_disk_read_bytes_total", counter(1.0e11, 4.0e5, 512.0)),
            (
                "node_disk_read_time_seconds_total",
                counter(1.0e4, 0.02, 0.001),
            ),
            (
                "node_disk_writes_completed_total",
                counter(5.0e7, 200.0, 1.0),
            ),
            ("node_disk_writes_merged_total", counter(2.0e7, 90.0, 1.0)),
            (
                "node_disk_written_bytes_total",
                counter(9.0e11, 3.0e6, 512.0),
            ),
            (
                "node_disk_write_time_seconds_total",
                counter(4.0e4, 0.1, 0.001),
            ),
            (
                "node_disk_io_time_seconds_total",
                counter(3.0e4, 0.05, 0.001),
            ),
            (
                "node_disk_io_time_weighted_seconds_total",
                counter(6.0e4, 0.12, 0.001),
            ),
            (
                "node_disk_discards_completed_total",
                counter(1.0e4, 0.1, 1.0),
            ),
            ("node_disk_discards_merged_total", Motion::Const(0.0)),
            (
                "node_disk_discarded_sectors_total",
                counter(1.0e8, 100.0, 1.0),
            ),
            (
                "node_disk_discard_time_seconds_total",
                counter(10.0, 0.001, 0.001),
            ),
            ("node_disk_flush_requests_total", counter(1.0e6, 5.0, 1.0)),
            (
                "node_disk_flush_requests_time_seconds_total",
                counter(2.0e3, 0.005, 0.001),
            ),
        ] {
            b.series(
                name,
                "Disk statistics from /proc/diskstats.",
                C,
                &[("device", fx(&dev))],
                m,
            );
        }
        b.series(
            "node_disk_io_now",
            "The number of I/Os currently in progress.",
            G,
            &[("device", fx(&dev))],
            gauge(1.0, 1.0, 1.0),
        );
    }
    for n in 0..shape.nics {
        let dev = match n {
            0 => "lo".to_string(),
            1 => "docker0".to_string(),
            n => format!("eno{}", n - 1),
        };
        for dir in ["receive", "transmit"] {
            for (field, m) in [
                ("bytes", counter(1.0e12, 2.0e6, 1.0)),
                ("packets", counter(1.0e9, 2.0e3, 1.0)),
                ("errs", Motion::Const(0.0)),
                ("drop", counter(100.0, 0.001, 1.0)),
                ("fifo", Motion::Const(0.0)),
                ("compressed", Motion::Const(0.0)),
            ] {
                b.series(
                    &format!("node_network_{dir}_{field}_total"),
                    &format!("Network device statistic {dir}_{field}."),
                    C,
                    &[("device", fx(&dev))],
                    m,
                );
            }
        }
        for (field, m) in [
            ("receive_frame", Motion::Const(0.0)),
            ("receive_multicast", counter(1.0e5, 0.1, 1.0)),
            ("transmit_colls", Motion::Const(0.0)),
            ("transmit_carrier", Motion::Const(0.0)),
        ] {
            b.series(
                &format!("node_network_{field}_total"),
                &format!("Network device statistic {field}."),
                C,
                &[("device", fx(&dev))],
                m,
            );
        }
        for (field, m) in [
            ("up", Motion::Const(1.0)),
            ("carrier", Motion::Const(1.0)),
            ("mtu_bytes", Motion::Const(1500.0)),
            ("speed_bytes", Motion::Const(1.25e9)),
        ] {
            b.series(
                &format!("node_network_{field}"),
                &format!("Network device property {field}."),
                G,
                &[("device", fx(&dev))],
                m,
            );
        }
    }
    for f in 0..shape.filesystems {
        let (dev, mnt, fstype) = match f {
            0 => ("/dev/nvme0n1p2".to_string(), "/".to_string(), "ext4"),
            1 => (
                "/dev/nvme0n1p1".to_string(),
                "/boot/efi".to_string(),
                "vfat",
            ),
            2 => ("tmpfs".to_string(), "/run".to_string(), "tmpfs"),
            3 => ("tmpfs".to_string(), "/dev/shm".to_string(), "tmpfs"),
            f => (format!("/dev/nvme{}n1", f % 4), format!("/data{f}"), "xfs"),
        };
        let labels = [
            ("device", fx(&dev)),
            ("fstype", fx(fstype)),
            ("mountpoint", fx(&mnt)),
        ];
        for (field, m) in [
            ("size_bytes", Motion::Const(1.9e12)),
            ("free_bytes", gauge(9.0e11, 1.0e9, 4096.0)),
            ("avail_bytes", gauge(8.0e11, 1.0e9, 4096.0)),
            ("files", Motion::Const(1.2e8)),
            ("files_free", gauge(1.1e8, 1.0e4, 1.0)),
            ("readonly", Motion::Const(0.0)),
            ("device_error", Motion::Const(0.0)),
        ] {
            b.series(
                &format!("node_filesystem_{field}"),
                &format!("Filesystem {field}."),
                G,
                &labels,
                m,
            );
        }
    }
    for field in NETSTAT {
        b.series(
            &format!("node_netstat_{field}"),
            &format!("Statistic {field}."),
            U,
            &[],
            counter(1.0e6, 30.0, 1.0),
        );
    }
    for field in [
        "sockets_used",
        "TCP_inuse",
        "TCP_alloc",
        "TCP_orphan",
        "TCP_tw",
        "TCP_mem",
        "TCP_mem_bytes",
        "UDP_inuse",
        "UDP_mem",
        "UDP_mem_bytes",
        "RAW_inuse",
        "FRAG_inuse",
        "FRAG_memory",
    ] {
        b.series(
            &format!("node_sockstat_{field}"),
            &format!("Number of {field} sockets in state inuse."),
            G,
            &[],
            gauge(300.0, 50.0, 1.0),
        );
    }
    for collector in [
        "cpu",
        "diskstats",
        "filesystem",
        "loadavg",
        "meminfo",
        "netdev",
        "netstat",
        "sockstat",
        "softnet",
        "stat",
        "time",
        "uname",
        "vmstat",
        "schedstat",
        "filefd",
        "conntrack",
    ] {
        b.series(
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
            G,
            &[("collector", fx(collector))],
            gauge(0.002, 0.001, 1e-6),
        );
        b.series(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
            G,
            &[("collector", fx(collector))],
            Motion::Const(1.0),
        );
    }
}

/// cAdvisor families of container number `c` (about 40 series).
fn container(b: &mut Builder, c: usize) {
    let app = APPS[c % APPS.len()];
    let base = |extra: &[(&'static str, LabelValue)]| {
        let mut v: Vec<(&'static str, LabelValue)> = vec![
            ("container_label_com_docker_compose_service", fx(app)),
            ("id", LabelValue::Node(NodeValue::ContainerId(c))),
            ("image", fx(format!("registry.local/{app}:1.{c}"))),
            ("name", LabelValue::Node(NodeValue::ContainerName(c))),
        ];
        v.extend(extra.iter().cloned());
        v
    };
    let help = "cAdvisor container metric.";
    b.series(
        "container_cpu_usage_seconds_total",
        help,
        C,
        &base(&[("cpu", fx("total"))]),
        counter(1.0e5, 1.5, 1e-9),
    );
    for (name, kind, m) in [
        (
            "container_cpu_user_seconds_total",
            C,
            counter(8.0e4, 1.2, 0.01),
        ),
        (
            "container_cpu_system_seconds_total",
            C,
            counter(2.0e4, 0.3, 0.01),
        ),
        (
            "container_cpu_cfs_periods_total",
            C,
            counter(1.0e6, 10.0, 1.0),
        ),
        (
            "container_cpu_cfs_throttled_periods_total",
            C,
            counter(1.0e3, 0.1, 1.0),
        ),
        (
            "container_cpu_cfs_throttled_seconds_total",
            C,
            counter(100.0, 0.01, 1e-9),
        ),
        (
            "container_memory_usage_bytes",
            G,
            gauge(4.0e9, 3.0e8, 4096.0),
        ),
        (
            "container_memory_working_set_bytes",
            G,
            gauge(3.0e9, 3.0e8, 4096.0),
        ),
        ("container_memory_rss", G, gauge(2.5e9, 2.0e8, 4096.0)),
        ("container_memory_cache", G, gauge(1.0e9, 1.0e8, 4096.0)),
        (
            "container_memory_mapped_file",
            G,
            gauge(1.0e8, 1.0e6, 4096.0),
        ),
        ("container_memory_swap", G, Motion::Const(0.0)),
        (
            "container_spec_memory_limit_bytes",
            G,
            Motion::Const(1.6e10),
        ),
        ("container_spec_cpu_quota", G, Motion::Const(400000.0)),
        ("container_spec_cpu_period", G, Motion::Const(100000.0)),
        ("container_spec_cpu_shares", G, Motion::Const(1024.0)),
        ("container_start_time_seconds", G, Motion::Const(1.71e9)),
        ("container_last_seen", G, counter(1.71e9, 1.0, 1.0)),
    ] {
        b.series(name, help, kind, &base(&[]), m);
    }
    for scope in ["container", "hierarchy"] {
        for ft in ["pgfault", "pgmajfault"] {
            b.series(
                "container_memory_failures_total",
                help,
                C,
                &base(&[("failure_type", fx(ft)), ("scope", fx(scope))]),
                counter(1.0e6, 20.0, 1.0),
            );
        }
    }
    for iface in ["eth0", "eth1"] {
        for dir in ["receive", "transmit"] {
            for (field, m) in [
                ("bytes_total", counter(1.0e10, 1.0e5, 1.0)),
                ("packets_total", counter(1.0e7, 100.0, 1.0)),
                ("packets_dropped_total", Motion::Const(0.0)),
                ("errors_total", Motion::Const(0.0)),
            ] {
                b.series(
                    &format!("container_network_{dir}_{field}"),
                    help,
                    C,
                    &base(&[("interface", fx(iface))]),
                    m,
                );
            }
        }
    }
    for dev in ["/dev/nvme0n1", "/dev/nvme1n1"] {
        for (name, m) in [
            (
                "container_fs_reads_bytes_total",
                counter(1.0e9, 1.0e4, 4096.0),
            ),
            (
                "container_fs_writes_bytes_total",
                counter(5.0e9, 5.0e4, 4096.0),
            ),
        ] {
            b.series(name, help, C, &base(&[("device", fx(dev))]), m);
        }
    }
}

/// The DCGM driver version on every GPU series: the one of the H100 the agent's raw NVML
/// readings were recorded on (`agent/tests/fixtures/gpu/h100_80gb_hbm3_load.json`).
const GPU_DRIVER_VERSION: &str = "580.159.04";

/// dcgm-exporter families of GPU number `g`: every family of the agent's GPU collector, with its
/// type and HELP text (`fleetgate_agent::collectors::gpu::dcgm::families`), one series each.
fn gpu(b: &mut Builder, g: usize) {
    let labels: Vec<(&str, LabelValue)> = vec![
        ("gpu", fx(g.to_string())),
        ("UUID", LabelValue::Node(NodeValue::GpuUuid(g))),
        (
            "pci_bus_id",
            fx(format!("00000000:{:02X}:00.0", 0x18 + g * 0x10)),
        ),
        ("device", fx(format!("nvidia{g}"))),
        ("modelName", fx("NVIDIA H100 80GB HBM3")),
        ("Hostname", LabelValue::Node(NodeValue::Name)),
        ("DCGM_FI_DRIVER_VERSION", fx(GPU_DRIVER_VERSION)),
    ];
    for family in fleetgate_agent::collectors::gpu::dcgm::families() {
        // A family without a modelled motion stays at 0 (a unit test requires one for each).
        let motion = gpu_motion(family.name).unwrap_or(Motion::Const(0.0));
        b.series(family.name, family.help, family.kind, &labels, motion);
    }
}

/// How a busy H100's value of `family` moves, in dcgm-exporter's units: modelled, not measured.
fn gpu_motion(family: &str) -> Option<Motion> {
    Some(match family {
        "DCGM_FI_DEV_SM_CLOCK" => gauge(1755.0, 200.0, 1.0),
        "DCGM_FI_DEV_MEM_CLOCK" => Motion::Const(2619.0),
        "DCGM_FI_DEV_MEMORY_TEMP" => gauge(60.0, 8.0, 1.0),
        "DCGM_FI_DEV_GPU_TEMP" => gauge(55.0, 10.0, 1.0),
        "DCGM_FI_DEV_POWER_USAGE" => gauge(400.0, 150.0, 0.001),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" => counter(1.0e12, 4.0e5, 1.0),
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" => Motion::Const(0.0),
        "DCGM_FI_DEV_GPU_UTIL" => gauge(60.0, 35.0, 1.0),
        "DCGM_FI_DEV_MEM_COPY_UTIL" => gauge(30.0, 20.0, 1.0),
        "DCGM_FI_DEV_ENC_UTIL" | "DCGM_FI_DEV_DEC_UTIL" => Motion::Const(0.0),
        "DCGM_FI_DEV_XID_ERRORS" => Motion::Const(0.0),
        "DCGM_FI_DEV_FB_FREE" => gauge(3.0e4, 1.0e4, 1.0),
        "DCGM_FI_DEV_FB_USED" => gauge(5.0e4, 1.0e4, 1.0),
        "DCGM_FI_DEV_FB_RESERVED" => Motion::Const(561.0),
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"
        | "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"
        | "DCGM_FI_DEV_ROW_REMAP_FAILURE"
        | "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"
        | "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"
        | "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" => Motion::Const(0.0),
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE" => gauge(0.6, 0.3, 1e-6),
        "DCGM_FI_PROF_SM_ACTIVE" => gauge(0.5, 0.3, 1e-6),
        "DCGM_FI_PROF_SM_OCCUPANCY" => gauge(0.2, 0.1, 1e-6),
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE" => gauge(0.3, 0.2, 1e-6),
        "DCGM_FI_PROF_DRAM_ACTIVE" => gauge(0.4, 0.2, 1e-6),
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE" | "DCGM_FI_PROF_PIPE_FP16_ACTIVE" => Motion::Const(0.0),
        "DCGM_FI_PROF_PIPE_FP32_ACTIVE" => gauge(0.05, 0.03, 1e-6),
        "DCGM_FI_PROF_PCIE_TX_BYTES" => gauge(1.2e9, 8.0e8, 1.0),
        "DCGM_FI_PROF_PCIE_RX_BYTES" => gauge(2.8e9, 1.5e9, 1.0),
        _ => return None,
    })
}

const MEMINFO: [&str; 52] = [
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active_anon",
    "Inactive_anon",
    "Active_file",
    "Inactive_file",
    "Unevictable",
    "Mlocked",
    "SwapTotal",
    "SwapFree",
    "Zswap",
    "Zswapped",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "CommitLimit",
    "Committed_AS",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
    "Percpu",
    "HardwareCorrupted",
    "AnonHugePages",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "FileHugePages",
    "FilePmdMapped",
    "Hugepagesize",
    "Hugetlb",
    "DirectMap4k",
    "DirectMap2M",
    "DirectMap1G",
    "CmaTotal",
    "CmaFree",
];

const NETSTAT: [&str; 40] = [
    "Tcp_ActiveOpens",
    "Tcp_PassiveOpens",
    "Tcp_AttemptFails",
    "Tcp_EstabResets",
    "Tcp_CurrEstab",
    "Tcp_InSegs",
    "Tcp_OutSegs",
    "Tcp_RetransSegs",
    "Tcp_InErrs",
    "Tcp_OutRsts",
    "Udp_InDatagrams",
    "Udp_OutDatagrams",
    "Udp_InErrors",
    "Udp_NoPorts",
    "Udp_RcvbufErrors",
    "Udp_SndbufErrors",
    "UdpLite_InDatagrams",
    "UdpLite_InErrors",
    "Icmp_InMsgs",
    "Icmp_OutMsgs",
    "Icmp_InErrors",
    "Icmp6_InMsgs",
    "Icmp6_OutMsgs",
    "Ip6_InOctets",
    "Ip6_OutOctets",
    "IpExt_InOctets",
    "IpExt_OutOctets",
    "Ip_Forwarding",
    "TcpExt_ListenDrops",
    "TcpExt_ListenOverflows",
    "TcpExt_SyncookiesFailed",
    "TcpExt_SyncookiesRecv",
    "TcpExt_SyncookiesSent",
    "TcpExt_TCPSynRetrans",
    "TcpExt_TCPTimeouts",
    "TcpExt_TCPOFOQueue",
    "TcpExt_TCPRcvQDrop",
    "Udp6_InDatagrams",
    "Udp6_OutDatagrams",
    "Udp6_InErrors",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_node_is_about_a_thousand_series_in_family_order() {
        let w = Workload::new(Shape::with(16, 4, 2), 15.0);
        let n = w.series_per_node();
        assert!((900..=1200).contains(&n), "{n} series");
        let snap = w.snapshot(3, "node-3", 1);
        let total: usize = snap.families.iter().map(|f| f.series.len()).sum();
        assert_eq!(total, n);
        // Family names are unique, as the wire format requires.
        let mut names: Vec<_> = snap.families.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), snap.families.len());
    }

    #[test]
    fn every_gpu_family_of_the_agent_is_modelled() {
        let families = fleetgate_agent::collectors::gpu::dcgm::families();
        for f in families {
            assert!(gpu_motion(f.name).is_some(), "no motion for {}", f.name);
        }
        let w = Workload::new(Shape::with(1, 0, 2), 15.0);
        let snap = w.snapshot(0, "n0", 1);
        for f in families {
            let got = snap
                .families
                .iter()
                .find(|x| x.name == f.name)
                .expect(f.name);
            assert_eq!((got.kind, got.help.as_str()), (f.kind, f.help));
            assert_eq!(got.series.len(), 2, "{}: one series per GPU", f.name);
        }
    }

    #[test]
    fn counters_advance_gauges_move_and_nodes_differ() {
        let w = Workload::new(Shape::with(4, 1, 1), 15.0);
        let a = w.snapshot(0, "n0", 1);
        let b = w.snapshot(0, "n0", 2);
        let other = w.snapshot(1, "n1", 1);
        let cpu = |s: &Snapshot| match &s.families[1].series[0].value {
            Value::Scalar(v) => *v,
            _ => f64::NAN,
        };
        assert_eq!(a.families[1].name, "node_cpu_seconds_total");
        assert!(cpu(&b) > cpu(&a));
        assert_ne!(cpu(&a), cpu(&other));
        let gauge_moves = a
            .families
            .iter()
            .zip(&b.families)
            .filter(|(x, _)| x.kind == MetricType::Gauge)
            .any(|(x, y)| x.series != y.series);
        assert!(gauge_moves);
        let uname = &other.families[0].series[0].labels;
        assert!(uname
            .iter()
            .any(|l| l.name == "nodename" && l.value == "n1"));
    }

    #[test]
    fn snapshot_survives_the_wire_format_and_the_text_parser() {
        let w = Workload::new(Shape::with(8, 2, 1), 15.0);
        let snap = w.snapshot(7, "node-7", 5);
        let bytes = fleetgate_shared::encode(&snap);
        let back = fleetgate_shared::decode(&bytes, 64 << 20).unwrap();
        assert_eq!(back, snap);
        let text = fleetgate_shared::text::render(&snap.families);
        let parsed = fleetgate_shared::text::parse(&text).unwrap();
        assert_eq!(parsed.len(), snap.families.len());
    }
}
