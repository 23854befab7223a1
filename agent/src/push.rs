//! The push loop: enroll (or reuse the stored push token), then collect and push every interval
//! with jitter. Failures back off exponentially with jitter and honour `429 Retry-After`; while
//! the hub is unreachable only the latest snapshot is kept, so memory stays flat however long
//! the outage. A `401` on push means the node was removed or its token revoked: pushing stops
//! until the agent is restarted.
//!
//! Once the hub has accepted a full snapshot, the following pushes carry only the values
//! (relative to the last accepted ones) as long as the layout stays the same: a few hundred
//! bytes instead of kilobytes. A `409` (the hub restarted, evicted or never had the base) is
//! answered with the full snapshot in the same cycle; any other failure forgets the base, since
//! the hub may or may not have applied the push. Every
//! [`FULL_PUSH_EVERY`](crate::hub_client::FULL_PUSH_EVERY)th push is full anyway.
//! [`HubClient::push_tracked`] holds that policy, so the load-test rig pushes the same way.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetgate_shared::Snapshot;
use rand::Rng;

use crate::collection::Collection;
use crate::collectors::agent_self::PushStats;
use crate::config::Config;
use crate::enroll::{Credentials, EnrolledAs, StateDir};
use crate::hub_client::{Enrollment, HubClient, HubError, PushBase, PushOutcome};
use crate::AgentError;

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
    /// doubling up to eight intervals (1 s … 5 min).
    pub fn for_interval(interval: Duration) -> Self {
        let initial = (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let max = (interval * 8).clamp(Duration::from_secs(1), Duration::from_secs(300));
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

/// Waits for `deadline` unless `shutdown` fires first; returns whether it fired.
async fn sleep_or_shutdown(
    deadline: Instant,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> bool {
    tokio::select! {
        biased;
        _ = shutdown => true,
        _ = tokio::time::sleep_until(deadline.into()) => false,
    }
}

/// The running agent: everything the loop needs, owned in one place.
#[derive(Debug)]
pub struct PushLoop {
    /// Validated configuration.
    config: Config,
    /// Enabled collectors.
    collection: Collection,
    /// Push statistics, shared with the self metrics of `collection`.
    stats: PushStats,
    /// Client for the configured hub.
    client: HubClient,
    /// Where the push token is kept.
    state: StateDir,
    /// What `/add_node` is sent.
    enrollment: Enrollment,
}

impl PushLoop {
    /// Prepares the loop; `stats` must be the handle given to `collection`.
    pub fn new(
        config: Config,
        collection: Collection,
        stats: PushStats,
        enrollment: Enrollment,
    ) -> Result<Self, AgentError> {
        let client = HubClient::with_options(
            &config.hub,
            config.push_timeout,
            &config.tls,
            config.proxy.as_ref(),
        )?;
        let state = StateDir::new(&config.state_dir);
        Ok(PushLoop {
            config,
            collection,
            stats,
            client,
            state,
            enrollment,
        })
    }

    fn identity(&self) -> EnrolledAs {
        EnrolledAs {
            node: self.config.node.clone(),
            hub: self.config.hub.clone(),
        }
    }

    /// Runs until `shutdown` resolves (then finishes an in-flight push and returns `Ok`).
    /// Returns an error when enrollment is refused.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let node = self.config.node.clone();
        let hub = self.config.hub.clone();

        // A token obtained by this process is trusted until the hub refuses it; a stored one
        // that is refused before its first accepted push was revoked while the agent was down.
        let (mut creds, mut fresh) = match self.state.load()? {
            Some(c) if c.enrolled_as == self.identity() => {
                tracing::info!(%node, %hub, "reusing the stored push token");
                (c, false)
            }
            stored => {
                if let Some(c) = stored {
                    tracing::info!(stored_node = %c.enrolled_as.node, stored_hub = %c.enrolled_as.hub, %node, %hub,
                        "stored push token belongs to another node or hub, enrolling again");
                }
                match self.enroll_until_done(&mut shutdown).await? {
                    Some(c) => (c, true),
                    None => return Ok(()),
                }
            }
        };

        let mut seq = unix_millis();
        let mut backoff = Backoff::for_interval(self.config.interval);
        let mut next = Instant::now();
        // The snapshot not yet accepted by the hub: only the latest is ever kept.
        let mut pending: Option<(Snapshot, Instant)> = None;
        let mut accepted_once = false;
        let mut failing = false;
        let mut base: Option<PushBase> = None;
        loop {
            if sleep_or_shutdown(next, &mut shutdown).await {
                tracing::info!("shutting down");
                return Ok(());
            }
            let mut snapshot = match pending.take() {
                Some((s, at)) if at.elapsed() < self.config.interval => s,
                stale => {
                    // Freed before the next collection, so an outage never holds two.
                    drop(stale);
                    self.collect().await
                }
            };
            let collected_at = Instant::now();
            seq += 1;
            snapshot.seq = seq;
            let started = Instant::now();
            let PushOutcome {
                result,
                kind,
                conflict,
            } = self
                .client
                .push_tracked(creds.token.expose(), &snapshot, &mut base)
                .await;
            let took = started.elapsed();
            if conflict {
                self.stats.record_conflict();
            }
            if let Ok(report) = &result {
                tracing::debug!(
                    ?kind,
                    seq,
                    bytes = report.body_bytes,
                    samples = base.as_ref().map_or(0, PushBase::samples),
                    "push accepted"
                );
            }
            match result {
                Ok(report) => {
                    self.stats.record_success(took, report.body_bytes);
                    self.stats.record_accepted(kind.label());
                    if failing {
                        tracing::info!(%hub, "pushes are accepted again");
                    }
                    failing = false;
                    accepted_once = true;
                    backoff.reset();
                    next = started + jittered(self.config.interval);
                }
                Err(HubError::Unauthorized(message)) => {
                    self.stats.record_failure(took, "unauthorized");
                    if !fresh && !accepted_once {
                        tracing::warn!(%node, %hub, hub_says = %message,
                            "the hub refused the stored push token, enrolling again with the enrollment token");
                        match self.enroll_until_done(&mut shutdown).await? {
                            Some(c) => {
                                creds = c;
                                fresh = true;
                                next = Instant::now();
                                continue;
                            }
                            None => return Ok(()),
                        }
                    }
                    tracing::error!(%node, %hub, hub_says = %message,
                        "the hub refused the push token (401): this node was removed or its token revoked; pushing stopped, restart the agent to enroll again");
                    shutdown.as_mut().await;
                    tracing::info!("shutting down");
                    return Ok(());
                }
                Err(HubError::Rejected { status, message }) if status < 500 => {
                    let reason = if status == 413 {
                        "too_large"
                    } else {
                        "rejected"
                    };
                    self.stats.record_failure(took, reason);
                    tracing::error!(%hub, status, hub_says = %message, series = snapshot_series(&snapshot),
                        "the hub rejected the snapshot; the next one is sent at the next interval");
                    next = started + jittered(self.config.interval);
                }
                Err(e) => {
                    self.stats.record_failure(took, e.reason());
                    let delay = match &e {
                        HubError::RateLimited {
                            retry_after: Some(after),
                        } => *after,
                        _ => backoff.next_delay(),
                    };
                    if failing {
                        tracing::debug!(%hub, error = %e, retry_in = ?delay, "push failed again");
                    } else {
                        tracing::warn!(%hub, error = %e, retry_in = ?delay, "push failed, retrying with backoff and keeping only the latest snapshot");
                    }
                    failing = true;
                    pending = Some((snapshot, collected_at));
                    next = Instant::now() + delay;
                }
            }
        }
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

    /// Enrolls, retrying while the hub is unreachable; `Ok(None)` when shut down meanwhile.
    /// A refusal (bad token, node name taken or removed) is an error naming the hub's answer.
    async fn enroll_until_done(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Option<Credentials>, AgentError> {
        let node = self.config.node.clone();
        let Some(enroll_token) = self.config.enroll_token.clone() else {
            return Err(AgentError::NoEnrollToken { node });
        };
        let mut backoff = Backoff::for_interval(self.config.interval);
        let mut logged = false;
        loop {
            match self
                .client
                .enroll(enroll_token.expose(), &self.enrollment)
                .await
            {
                Ok(token) => {
                    let creds = Credentials {
                        token: crate::config::Secret::new(token),
                        enrolled_as: self.identity(),
                    };
                    self.state.save(&creds)?;
                    tracing::info!(%node, hub = %self.config.hub, labels = ?self.enrollment.labels, "enrolled; push token stored");
                    return Ok(Some(creds));
                }
                Err(e @ (HubError::Transport(_) | HubError::RateLimited { .. }))
                | Err(e @ HubError::Rejected { status: 500.., .. }) => {
                    let delay = match &e {
                        HubError::RateLimited {
                            retry_after: Some(after),
                        } => *after,
                        _ => backoff.next_delay(),
                    };
                    if !logged {
                        tracing::warn!(hub = %self.config.hub, error = %e, "cannot enroll yet, retrying with backoff");
                        logged = true;
                    }
                    if sleep_or_shutdown(Instant::now() + delay, shutdown).await {
                        return Ok(None);
                    }
                }
                Err(source) => {
                    return Err(AgentError::Enroll {
                        node,
                        hub: self.config.hub.clone(),
                        source,
                    })
                }
            }
        }
    }
}

fn snapshot_series(s: &Snapshot) -> usize {
    s.families.iter().map(|f| f.series.len()).sum()
}

/// `deregister`: removes the node with its own stored token and forgets the token.
pub async fn deregister(config: &Config) -> Result<(), AgentError> {
    let state = StateDir::new(&config.state_dir);
    let Some(creds) = state.load()? else {
        tracing::warn!(state_dir = %config.state_dir.display(), "no stored push token: this node is not enrolled, nothing to deregister");
        return Ok(());
    };
    let EnrolledAs { node, hub } = &creds.enrolled_as;
    let client =
        HubClient::with_options(hub, config.push_timeout, &config.tls, config.proxy.as_ref())?;
    match client.remove(creds.token.expose(), node).await {
        Ok(()) => tracing::info!(%node, %hub, "node removed from the hub"),
        Err(HubError::Rejected { status: 404, .. }) => {
            tracing::info!(%node, %hub, "the hub does not know this node (already removed)")
        }
        Err(HubError::Unauthorized(message)) => {
            tracing::warn!(%node, %hub, hub_says = %message, "the hub no longer accepts this node's token (already removed)")
        }
        Err(source) => {
            return Err(AgentError::Deregister {
                node: node.clone(),
                hub: hub.clone(),
                source,
            })
        }
    }
    state.delete()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::for_interval(Duration::from_secs(15));
        let mut steps = Vec::new();
        for _ in 0..12 {
            steps.push(b.next_delay());
        }
        // Step n lies in [d/2, d] with d = 3.75 s * 2^n, capped at 120 s.
        assert!(steps[0] >= Duration::from_millis(1875) && steps[0] <= Duration::from_millis(3750));
        assert!(steps[3] >= Duration::from_secs(15) && steps[3] <= Duration::from_secs(30));
        assert!(steps.iter().all(|d| *d <= Duration::from_secs(120)));
        assert!(steps[11] >= Duration::from_secs(60));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(3750));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
        }
    }
}
