//! One collection cycle: runs every enabled collector concurrently, each with its own buffer and
//! timeout, merges what they produced, and appends the agent's self metrics. A collector whose
//! source is absent is disabled with one log line and reported as down; a failing collector is
//! logged and counted, and the others still go out.

use std::time::{Duration, Instant};

use fleetgate_shared::Family;
use futures_util::future::join_all;

use crate::collectors::agent_self::{self, CollectorHealth, PushStats};
use crate::collectors::{CollectError, Collector, MetricBuffer};

/// Longest one collector may take before its cycle is abandoned; scrapes have their own,
/// shorter, timeout inside.
pub const DEFAULT_COLLECTOR_TIMEOUT: Duration = Duration::from_secs(10);

/// A collector slot: the collector (absent when disabled at start) and its health.
#[derive(Debug)]
struct Slot {
    /// The collector; `None` when its source was absent at start.
    collector: Option<Box<dyn Collector>>,
    /// Health reported in the self metrics.
    health: CollectorHealth,
    /// Whether "source unavailable" was already logged, so it is logged once per outage.
    unavailable_logged: bool,
    /// Families of an exclusive collector dropped last cycle because another collector has
    /// them, so each clash is logged once while it lasts.
    clashes: Vec<String>,
}

impl std::fmt::Debug for dyn Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collector({})", self.name())
    }
}

/// The enabled collectors of this agent and the statistics reported about them.
#[derive(Debug)]
pub struct Collection {
    /// Collectors in registration order; their families appear in this order.
    slots: Vec<Slot>,
    /// Push statistics written by the push loop, reported in the self metrics.
    push_stats: PushStats,
    /// Per-collector timeout.
    timeout: Duration,
}

impl Collection {
    /// An empty collection reporting `push_stats`.
    pub fn new(push_stats: PushStats, timeout: Duration) -> Self {
        Collection {
            slots: Vec::new(),
            push_stats,
            timeout,
        }
    }

    /// Adds a collector, or records it as disabled when building it failed.
    pub fn add<C: Collector + 'static>(
        &mut self,
        name: &'static str,
        built: Result<C, CollectError>,
    ) {
        match built {
            Ok(c) => self.add_boxed(name, Some(Box::new(c))),
            Err(e) => {
                tracing::info!(collector = name, reason = %e, "collector disabled");
                self.add_boxed(name, None);
            }
        }
    }

    fn add_boxed(&mut self, name: &'static str, collector: Option<Box<dyn Collector>>) {
        let unavailable_logged = collector.is_none();
        self.slots.push(Slot {
            collector,
            health: CollectorHealth {
                name,
                up: false,
                duration_seconds: 0.0,
                failures: 0,
            },
            unavailable_logged,
            clashes: Vec::new(),
        });
    }

    /// The names of the registered collectors, enabled or not.
    pub fn names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|s| s.health.name).collect()
    }

    /// Runs one cycle and returns every family, self metrics last.
    pub async fn collect(&mut self) -> Vec<Family> {
        let timeout = self.timeout;
        let runs = self.slots.iter_mut().map(|slot| async move {
            let mut buf = MetricBuffer::new();
            let Some(collector) = slot.collector.as_mut() else {
                return (slot, buf);
            };
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, collector.collect(&mut buf)).await {
                Ok(r) => r,
                Err(_) => Err(CollectError::Failed(format!("timed out after {timeout:?}"))),
            };
            let was_up = slot.health.up;
            let health = &mut slot.health;
            health.duration_seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(()) => {
                    if !health.up && (slot.unavailable_logged || health.failures > 0) {
                        tracing::info!(collector = health.name, "collector works again");
                    }
                    health.up = true;
                    slot.unavailable_logged = false;
                }
                Err(CollectError::Unavailable(reason)) => {
                    if !slot.unavailable_logged {
                        tracing::info!(collector = health.name, %reason, "collector source unavailable, reporting it as down");
                        slot.unavailable_logged = true;
                    }
                    health.up = false;
                }
                Err(CollectError::Failed(error)) => {
                    // Warn when a collector starts failing, not on every cycle it keeps failing.
                    if health.failures == 0 || was_up {
                        tracing::warn!(collector = health.name, %error, "collection failed");
                    } else {
                        tracing::debug!(collector = health.name, %error, "collection failed again");
                    }
                    health.up = false;
                    health.failures += 1;
                }
            }
            (slot, buf)
        });
        let done = join_all(runs).await;

        // What a failing collector wrote before it failed (its own failure counters, say)
        // still goes out.

        let mut out = MetricBuffer::new();
        let mut health = Vec::with_capacity(done.len());
        let mut exclusive = Vec::new();
        for (slot, buf) in done {
            health.push(slot.health.clone());
            if slot.collector.as_ref().is_some_and(|c| c.exclusive()) {
                exclusive.push((slot, buf));
                continue;
            }
            for family in buf.into_families() {
                let name = family.name.clone();
                if !out.push_family(family) {
                    tracing::debug!(collector = slot.health.name, family = %name, "family dropped: another collector sent it with another type");
                }
            }
        }
        agent_self::write(&health, &self.push_stats, &mut out);
        for (slot, buf) in exclusive {
            let mut clashes = Vec::new();
            for family in buf.into_families() {
                let name = family.name.clone();
                if !out.push_new_family(family) {
                    if !slot.clashes.contains(&name) {
                        tracing::warn!(collector = slot.health.name, family = %name,
                            "family dropped: the agent collects it already, and what it measures wins");
                    }
                    clashes.push(name);
                }
            }
            slot.clashes = clashes;
        }
        out.into_families()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::CollectFuture;
    use fleetgate_shared::Value;

    struct Fixed(&'static str, Result<f64, fn() -> CollectError>);

    impl Collector for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
            Box::pin(async move {
                match self.1 {
                    Ok(v) => {
                        out.gauge("fixed_value", "A value.", &[("from", self.0)], v);
                        Ok(())
                    }
                    Err(e) => Err(e()),
                }
            })
        }
    }

    /// Writes `fixed_value{from="x"}` like [`Fixed`], plus a family of its own, exclusively.
    struct Exclusive;
    impl Collector for Exclusive {
        fn name(&self) -> &'static str {
            "exclusive"
        }
        fn exclusive(&self) -> bool {
            true
        }
        fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
            Box::pin(async move {
                out.gauge("fixed_value", "A value.", &[("from", "x")], 9.0);
                out.gauge(
                    "process_open_fds",
                    "Clashes with the agent's own.",
                    &[],
                    9.0,
                );
                out.gauge("own_value", "Only here.", &[], 5.0);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn an_exclusive_collector_never_adds_to_families_collected_elsewhere() {
        // Registered first, merged last.
        let mut c = Collection::new(PushStats::new(), Duration::from_secs(5));
        c.add("exclusive", Ok(Exclusive));
        c.add("ok", Ok(Fixed("ok", Ok(3.0))));
        for _ in 0..2 {
            let fams = c.collect().await;
            assert_eq!(scalar(&fams, "fixed_value", "ok"), Some(3.0));
            assert_eq!(scalar(&fams, "fixed_value", "x"), None);
            let fds = fams.iter().find(|f| f.name == "process_open_fds");
            if let Some(fds) = fds {
                assert_ne!(fds.help, "Clashes with the agent's own.");
            }
            assert!(fams.iter().any(|f| f.name == "own_value"));
            assert_eq!(
                scalar(&fams, "fleetgate_agent_collector_up", "exclusive"),
                Some(1.0)
            );
        }
    }

    struct Hangs;
    impl Collector for Hangs {
        fn name(&self) -> &'static str {
            "hangs"
        }
        fn collect<'a>(&'a mut self, _out: &'a mut MetricBuffer) -> CollectFuture<'a> {
            Box::pin(std::future::pending())
        }
    }

    fn scalar(fams: &[Family], name: &str, label: &str) -> Option<f64> {
        fams.iter()
            .find(|f| f.name == name)?
            .series
            .iter()
            .find(|s| s.labels.iter().any(|l| l.value == label))
            .map(|s| match s.value {
                Value::Scalar(v) => v,
                _ => f64::NAN,
            })
    }

    #[tokio::test]
    async fn failing_absent_and_hanging_collectors_do_not_stop_the_others() {
        tokio::time::pause();
        let mut c = Collection::new(PushStats::new(), Duration::from_secs(1));
        c.add("ok", Ok(Fixed("ok", Ok(3.0))));
        c.add(
            "broken",
            Ok(Fixed("broken", Err(|| CollectError::Failed("boom".into())))),
        );
        c.add(
            "absent",
            Ok(Fixed(
                "absent",
                Err(|| CollectError::Unavailable("no socket".into())),
            )),
        );
        c.add::<Fixed>(
            "never_built",
            Err(CollectError::Unavailable("no driver".into())),
        );
        c.add("hangs", Ok(Hangs));
        for _ in 0..2 {
            let fams = c.collect().await;
            assert_eq!(scalar(&fams, "fixed_value", "ok"), Some(3.0));
            for name in ["broken", "absent", "never_built", "hangs"] {
                assert_eq!(
                    scalar(&fams, "fleetgate_agent_collector_up", name),
                    Some(0.0),
                    "{name}"
                );
            }
            assert_eq!(
                scalar(&fams, "fleetgate_agent_collector_up", "ok"),
                Some(1.0)
            );
        }
        let fams = c.collect().await;
        assert_eq!(
            scalar(&fams, "fleetgate_agent_collector_failures_total", "broken"),
            Some(3.0)
        );
        assert_eq!(
            scalar(&fams, "fleetgate_agent_collector_failures_total", "hangs"),
            Some(3.0)
        );
        assert_eq!(
            scalar(&fams, "fleetgate_agent_collector_failures_total", "absent"),
            Some(0.0)
        );
    }
}
