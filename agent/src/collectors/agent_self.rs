//! The agent's own metrics: collector health, push statistics and `process_*` read from
//! `/proc/self`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::MetricBuffer;

/// Health of one collector in the last cycle, as the orchestrator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorHealth {
    /// The collector's name (`collector` label).
    pub name: &'static str,
    /// Whether it produced metrics this cycle.
    pub up: bool,
    /// How long its collection took, in seconds.
    pub duration_seconds: f64,
    /// Failed collections since start.
    pub failures: u64,
}

/// Push statistics shared between the hub pushers (which record) and the collection (which
/// reports them): a cheap clonable handle, one set of counters per hub.
#[derive(Debug, Clone, Default)]
pub struct PushStats {
    inner: Arc<Mutex<BTreeMap<Arc<str>, HubCounters>>>,
}

/// The push statistics of one hub: what its pusher records through.
#[derive(Debug, Clone)]
pub struct HubStats {
    /// The counters of every hub, shared with [`PushStats`].
    inner: Arc<Mutex<BTreeMap<Arc<str>, HubCounters>>>,
    /// The hub's base URL as configured (the `hub` label).
    hub: Arc<str>,
}

#[derive(Debug, Default)]
struct HubCounters {
    /// Whether the last push to this hub was accepted (`fleetgate_agent_hub_up`).
    up: bool,
    /// Duration of the last push attempt, in seconds.
    last_duration_seconds: f64,
    /// Failed pushes by reason since start.
    failures: BTreeMap<&'static str, u64>,
    /// Request body bytes of successful pushes since start.
    sent_bytes: u64,
    /// Accepted pushes by kind (`full`, `values`, `text`) since start.
    accepted: BTreeMap<&'static str, u64>,
    /// Values pushes the hub refused with 409 (each followed by a full snapshot).
    conflicts: u64,
}

fn lock(
    inner: &Mutex<BTreeMap<Arc<str>, HubCounters>>,
) -> MutexGuard<'_, BTreeMap<Arc<str>, HubCounters>> {
    // A panic while holding this lock leaves plain numbers behind; they stay usable.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PushStats {
    /// A fresh set of counters, with no hub yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of the hub at `url`, reported (as down, with zero counts) from now on even
    /// before its first push.
    pub fn hub(&self, url: &str) -> HubStats {
        let hub: Arc<str> = Arc::from(url);
        lock(&self.inner).entry(hub.clone()).or_default();
        HubStats {
            inner: self.inner.clone(),
            hub,
        }
    }
}

impl HubStats {
    fn with<T>(&self, f: impl FnOnce(&mut HubCounters) -> T) -> T {
        let mut all = lock(&self.inner);
        f(all.entry(self.hub.clone()).or_default())
    }

    /// Records a successful push.
    pub fn record_success(&self, took: Duration, body_bytes: usize) {
        self.with(|c| {
            c.up = true;
            c.last_duration_seconds = took.as_secs_f64();
            c.sent_bytes += body_bytes as u64;
        });
    }

    /// Counts an accepted push of `kind` (`full`, `values` or `text`).
    pub fn record_accepted(&self, kind: &'static str) {
        self.with(|c| *c.accepted.entry(kind).or_default() += 1);
    }

    /// Counts a values push the hub refused with 409 because it did not hold the base.
    pub fn record_conflict(&self) {
        self.with(|c| c.conflicts += 1);
    }

    /// Records a failed push.
    pub fn record_failure(&self, took: Duration, reason: &'static str) {
        self.with(|c| {
            c.up = false;
            c.last_duration_seconds = took.as_secs_f64();
            *c.failures.entry(reason).or_default() += 1;
        });
    }

    /// Failed pushes with `reason` so far.
    pub fn failures(&self, reason: &str) -> u64 {
        self.with(|c| c.failures.get(reason).copied().unwrap_or(0))
    }

    /// Whether the last push to this hub was accepted.
    pub fn up(&self) -> bool {
        self.with(|c| c.up)
    }
}

/// Appends the agent's self metrics: per-collector health, push statistics, the number of
/// series in this snapshot (counting these self metrics) and the process metrics.
pub fn write(collectors: &[CollectorHealth], push: &PushStats, out: &mut MetricBuffer) {
    for c in collectors {
        let labels = [("collector", c.name)];
        out.gauge(
            "fleetgate_agent_collector_up",
            "Whether the collector produced metrics in the last cycle (0: source absent or failing).",
            &labels,
            if c.up { 1.0 } else { 0.0 },
        );
    }
    for c in collectors {
        out.gauge(
            "fleetgate_agent_collector_duration_seconds",
            "How long the collector took in the last cycle.",
            &[("collector", c.name)],
            c.duration_seconds,
        );
    }
    for c in collectors {
        out.counter(
            "fleetgate_agent_collector_failures_total",
            "Collections that failed, per collector.",
            &[("collector", c.name)],
            c.failures as f64,
        );
    }
    write_push(push, out);
    write_process(out);
    // One more series for this gauge itself.
    let series = out.series_count() + 1;
    out.gauge(
        "fleetgate_agent_snapshot_series",
        "Series in the snapshot of this cycle.",
        &[],
        series as f64,
    );
}

/// Per hub (label `hub`, the base URL as configured): whether its last push was accepted, the
/// last push's duration, failures by reason, accepted pushes by kind, 409s and bytes sent.
fn write_push(push: &PushStats, out: &mut MetricBuffer) {
    let all = lock(&push.inner);
    for (hub, c) in all.iter() {
        out.gauge(
            "fleetgate_agent_hub_up",
            "Whether the last push to this hub was accepted (0: failing, stopped, or none yet).",
            &[("hub", hub)],
            if c.up { 1.0 } else { 0.0 },
        );
    }
    for (hub, c) in all.iter() {
        out.gauge(
            "fleetgate_agent_push_duration_seconds",
            "Duration of the last push to this hub.",
            &[("hub", hub)],
            c.last_duration_seconds,
        );
    }
    for (hub, c) in all.iter() {
        for (reason, n) in &c.failures {
            out.counter(
                "fleetgate_agent_push_failures_total",
                "Pushes to the hub that failed, by reason.",
                &[("hub", hub), ("reason", reason)],
                *n as f64,
            );
        }
    }
    for (hub, c) in all.iter() {
        for kind in ["full", "values", "text"] {
            out.counter(
                "fleetgate_agent_pushes_total",
                "Pushes the hub accepted, by kind: full snapshots, only the values against the last accepted push, or the text format (for a hub that does not read this agent's snapshot encoding).",
                &[("hub", hub), ("kind", kind)],
                c.accepted.get(kind).copied().unwrap_or(0) as f64,
            );
        }
    }
    for (hub, c) in all.iter() {
        out.counter(
            "fleetgate_agent_push_conflicts_total",
            "Values pushes the hub answered with 409 (it held no matching base); each was followed by a full snapshot.",
            &[("hub", hub)],
            c.conflicts as f64,
        );
    }
    for (hub, c) in all.iter() {
        out.counter(
            "fleetgate_agent_sent_bytes_total",
            "Request body bytes of successful pushes to this hub (compressed snapshots).",
            &[("hub", hub)],
            c.sent_bytes as f64,
        );
    }
}

/// `process_*` as every Prometheus client library exports them, read from `/proc/self`
/// (the agent's own process even when the host's /proc is mounted elsewhere).
fn write_process(out: &mut MetricBuffer) {
    let Ok(me) = procfs::process::Process::myself() else {
        return;
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        out.counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            &[],
            (stat.utime + stat.stime) as f64 / ticks,
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            out.gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                &[],
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
            (stat.rss * procfs::page_size()) as f64,
        );
        out.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[],
            stat.vsize as f64,
        );
    }
    if let Ok(fds) = me.fd_count() {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            &[],
            fds as f64,
        );
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
            out.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                &[],
                max as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_shared::{MetricType, Value};

    fn value(buf: &MetricBuffer, name: &str) -> f64 {
        let f = buf.families().iter().find(|f| f.name == name).unwrap();
        match f.series[0].value {
            Value::Scalar(v) => v,
            _ => panic!("not scalar"),
        }
    }

    #[test]
    fn self_metrics_are_plausible() {
        let push = PushStats::new();
        let a = push.hub("http://hub-a:8000");
        a.record_success(Duration::from_millis(20), 1000);
        a.record_failure(Duration::from_millis(5), "unreachable");
        a.record_failure(Duration::from_millis(5), "unreachable");
        let health = [CollectorHealth {
            name: "host",
            up: true,
            duration_seconds: 0.01,
            failures: 2,
        }];
        let mut buf = MetricBuffer::new();
        write(&health, &push, &mut buf);
        assert_eq!(value(&buf, "fleetgate_agent_collector_up"), 1.0);
        assert_eq!(value(&buf, "fleetgate_agent_collector_failures_total"), 2.0);
        assert_eq!(value(&buf, "fleetgate_agent_push_failures_total"), 2.0);
        assert_eq!(value(&buf, "fleetgate_agent_sent_bytes_total"), 1000.0);
        assert_eq!(
            value(&buf, "fleetgate_agent_hub_up"),
            0.0,
            "the last push failed"
        );
        let rss = value(&buf, "process_resident_memory_bytes");
        assert!(rss > 1e6 && rss < 1e10, "rss {rss}");
        assert!(value(&buf, "process_open_fds") >= 3.0);
        let start = value(&buf, "process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > now - 86_400.0 * 365.0 && start <= now + 5.0,
            "start {start} now {now}"
        );
        assert_eq!(
            value(&buf, "fleetgate_agent_snapshot_series"),
            buf.series_count() as f64
        );
        let cpu = buf
            .families()
            .iter()
            .find(|f| f.name == "process_cpu_seconds_total")
            .unwrap();
        assert_eq!(cpu.kind, MetricType::Counter);
    }

    fn hub_value(buf: &MetricBuffer, name: &str, hub: &str, extra: Option<(&str, &str)>) -> f64 {
        let f = buf.families().iter().find(|f| f.name == name).unwrap();
        let s = f
            .series
            .iter()
            .find(|s| {
                s.labels.iter().any(|l| l.name == "hub" && l.value == hub)
                    && extra
                        .is_none_or(|(k, v)| s.labels.iter().any(|l| l.name == k && l.value == v))
            })
            .unwrap_or_else(|| panic!("{name}{{hub={hub}}} missing"));
        match s.value {
            Value::Scalar(v) => v,
            _ => panic!("not scalar"),
        }
    }

    #[test]
    fn every_hub_has_its_own_series_from_the_start() {
        let push = PushStats::new();
        let a = push.hub("http://hub-a:8000");
        let b = push.hub("https://hub-b:8443");
        a.record_success(Duration::from_millis(20), 700);
        a.record_accepted("values");
        b.record_failure(Duration::from_secs(10), "unreachable");
        let c = push.hub("http://hub-c:8000");
        let mut buf = MetricBuffer::new();
        write(&[], &push, &mut buf);
        let up = |hub| hub_value(&buf, "fleetgate_agent_hub_up", hub, None);
        assert_eq!(up("http://hub-a:8000"), 1.0);
        assert_eq!(up("https://hub-b:8443"), 0.0);
        assert_eq!(up("http://hub-c:8000"), 0.0, "no push yet");
        assert_eq!(
            hub_value(
                &buf,
                "fleetgate_agent_sent_bytes_total",
                "http://hub-a:8000",
                None
            ),
            700.0
        );
        assert_eq!(
            hub_value(
                &buf,
                "fleetgate_agent_sent_bytes_total",
                "https://hub-b:8443",
                None
            ),
            0.0
        );
        assert_eq!(
            hub_value(
                &buf,
                "fleetgate_agent_push_failures_total",
                "https://hub-b:8443",
                Some(("reason", "unreachable"))
            ),
            1.0
        );
        assert_eq!(
            hub_value(
                &buf,
                "fleetgate_agent_pushes_total",
                "http://hub-a:8000",
                Some(("kind", "values"))
            ),
            1.0
        );
        assert_eq!(
            hub_value(
                &buf,
                "fleetgate_agent_push_duration_seconds",
                "https://hub-b:8443",
                None
            ),
            10.0
        );
        assert_eq!(b.failures("unreachable"), 1);
        assert!(a.up() && !b.up() && !c.up());
        // Every family keeps its series together: one HELP/TYPE each.
        let names: Vec<&str> = buf.families().iter().map(|f| f.name.as_str()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
    }
}
