//! The push side of the agent: collect once per interval (with jitter) and hand the same
//! snapshot, behind an `Arc`, to one [`HubPusher`] per configured hub. Each pusher is a task of
//! its own with its own enrollment, token, values-push base, backoff and `Retry-After`, and
//! reads the snapshots from a `watch` channel that holds only the latest: a hub that is down,
//! slow or failing never delays the others, and never makes the agent keep more than one
//! pending snapshot per hub, however long the outage. The pending snapshot is freed before the
//! next collection, so the new one never sits in memory beside a stale one.
//!
//! A pusher ends when its hub answers `401` to an accepted token (the node was removed there:
//! only that hub stops) or refuses the enrollment. When every pusher has ended, the agent idles
//! until it is stopped, or exits with the error if every hub refused it.

mod hub;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetgate_shared::Snapshot;
use rand::Rng;
use tokio::sync::watch;

use crate::collection::Collection;
use crate::collectors::agent_self::PushStats;
use crate::config::Config;
use crate::hub_client::Enrollment;
use crate::AgentError;
pub use hub::HubPusher;

/// Exponential backoff with jitter between failed attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay after a failure.
    initial: Duration,
    /// Upper bound of the delay.
    max: Duration,
    /// Delay before jitter for the next failure.
    current: Duration,
}

impl Backoff {
    /// Backoff scaled to the push interval: starting at a quarter of it (100 ms … 5 s),
    /// doubling up to one interval. Never slower than the interval: a hub that comes back gets
    /// this agent's pushes again within an interval (what an HA pair's failback needs), and
    /// retrying once per interval costs the hub no more than the agent's normal pushes; a hub
    /// that wants fewer says so with `429 Retry-After`, which is honoured as given.
    pub fn for_interval(interval: Duration) -> Self {
        let initial = (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let max = interval.max(initial);
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay before the next attempt: the current step with "equal jitter" (half fixed,
    /// half random) so that many agents restarted together do not retry in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// The interval ±10 %, so a fleet started together spreads its pushes.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The agent is stopping: every pusher holds a copy and finishes its request in flight first.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the agent is stopping.
    pub async fn wait(&mut self) {
        // A dropped sender means the agent is gone: stopping too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    /// Waits for `deadline` unless the agent stops first; returns whether it stops.
    pub async fn sleep_until(&mut self, deadline: Instant) -> bool {
        tokio::select! {
            biased;
            () = self.wait() => true,
            () = tokio::time::sleep_until(deadline.into()) => false,
        }
    }
}

/// The running agent: the collectors and one pusher per hub.
#[derive(Debug)]
pub struct PushLoop {
    /// Validated configuration.
    config: Config,
    /// Enabled collectors.
    collection: Collection,
    /// Push statistics, shared with the self metrics of `collection`.
    stats: PushStats,
    /// What `/add_node` is sent, the same at every hub.
    enrollment: Arc<Enrollment>,
}

impl PushLoop {
    /// Prepares the loop; `stats` must be the handle given to `collection`.
    pub fn new(
        config: Config,
        collection: Collection,
        stats: PushStats,
        enrollment: Enrollment,
    ) -> Result<Self, AgentError> {
        Ok(PushLoop {
            config,
            collection,
            stats,
            enrollment: Arc::new(enrollment),
        })
    }

    /// Runs until `shutdown` resolves (then lets every pusher finish its request in flight and
    /// returns `Ok`). Returns an error when every hub refused the enrollment.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let mut shutdown = std::pin::pin!(shutdown);
        crate::enroll::migrate_legacy(&self.config.state_dir)?;

        let (stop, stopping) = watch::channel(false);
        let (latest, _) = watch::channel::<Option<Arc<Snapshot>>>(None);
        let mut pushers = tokio::task::JoinSet::new();
        for target in &self.config.hubs {
            let pusher = HubPusher::new(
                target,
                &self.config,
                self.stats.hub(&target.url),
                self.enrollment.clone(),
            )?;
            pushers.spawn(pusher.run(latest.subscribe(), Stopping(stopping.clone())));
        }

        let mut seq = unix_millis();
        let mut next = Instant::now();
        let mut refused: Option<AgentError> = None;
        let mut stopped_cleanly = false;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                ended = pushers.join_next(), if !pushers.is_empty() => {
                    match ended {
                        Some(Ok(Ok(()))) => stopped_cleanly = true,
                        Some(Ok(Err(e))) => {
                            tracing::error!(error = %e, "stopped pushing to this hub");
                            refused.get_or_insert(e);
                        }
                        Some(Err(e)) => tracing::error!(error = %e, "a hub's pusher failed"),
                        None => {}
                    }
                    if pushers.is_empty() {
                        if let (Some(e), false) = (refused, stopped_cleanly) {
                            return Err(e);
                        }
                        tracing::warn!("no hub left to push to; idle until stopped");
                        shutdown.as_mut().await;
                        break;
                    }
                    continue;
                }
                () = tokio::time::sleep_until(next.into()) => {}
            }
            // Let every pusher woken by the last snapshot take it first: when a collection
            // overran its interval, the sleep above is already over and would not yield, and on
            // the agent's one-thread runtime the pushers would never see a snapshot at all.
            tokio::task::yield_now().await;
            // The snapshot still waiting in the channel is an interval old: a hub that has not
            // taken it is failing and gets the next one. Freed before the next collection (without
            // waking the pushers), so an outage never holds two; a push in flight keeps its own.
            latest.send_if_modified(|held| {
                held.take();
                false
            });
            let started = Instant::now();
            let mut snapshot = self.collect().await;
            seq += 1;
            snapshot.seq = seq;
            latest.send_replace(Some(Arc::new(snapshot)));
            next = started + jittered(self.config.interval);
        }

        tracing::info!("shutting down");
        stop.send_replace(true);
        while pushers.join_next().await.is_some() {}
        Ok(())
    }

    async fn collect(&mut self) -> Snapshot {
        let started = Instant::now();
        let families = self.collection.collect().await;
        // The hub derives staleness from the interval sent. The next push comes an interval
        // after this one plus the next collection, which on a busy host with many containers
        // takes seconds: counting it keeps the node (and the base of its values pushes) fresh.
        let period = self.config.interval + started.elapsed();
        Snapshot {
            seq: 0,
            interval_ms: period.as_millis() as u64,
            timestamp_ms: unix_millis() as i64,
            families,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_one_interval_and_resets() {
        let mut b = Backoff::for_interval(Duration::from_secs(15));
        let mut steps = Vec::new();
        for _ in 0..12 {
            steps.push(b.next_delay());
        }
        // Step n lies in [d/2, d] with d = 3.75 s * 2^n, capped at the 15 s interval.
        assert!(steps[0] >= Duration::from_millis(1875) && steps[0] <= Duration::from_millis(3750));
        assert!(steps[1] >= Duration::from_millis(3750) && steps[1] <= Duration::from_millis(7500));
        assert!(steps.iter().all(|d| *d <= Duration::from_secs(15)));
        assert!(steps[11] >= Duration::from_millis(7500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(3750));
        // A very short interval still starts at 100 ms.
        let mut b = Backoff::for_interval(Duration::from_millis(200));
        assert!(b.next_delay() <= Duration::from_millis(100));
        assert!((0..10).all(|_| b.next_delay() <= Duration::from_millis(200)));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
        }
    }
}
