//! One hub's pusher: enroll there (or reuse the token stored for that hub), then push every
//! snapshot the collection hands over. Failures back off exponentially with jitter and honour
//! `429 Retry-After`; meanwhile only the latest snapshot waits, in the channel. A `401` on push
//! means the node was removed at that hub or its token revoked: pushes to that hub stop until
//! the agent is restarted, and the other hubs go on.
//!
//! Once the hub has accepted a full snapshot, the following pushes carry only the values
//! (relative to the last accepted ones) as long as the layout stays the same: a few hundred
//! bytes instead of kilobytes. A `409` (the hub restarted, evicted or never had the base) is
//! answered with the full snapshot in the same cycle; any other failure forgets the base, since
//! the hub may or may not have applied the push. Every
//! [`FULL_PUSH_EVERY`](crate::hub_client::FULL_PUSH_EVERY)th push is full anyway.
//! [`HubClient::push_tracked`] holds that policy, so the load-test rig pushes the same way.

use std::sync::Arc;
use std::time::Instant;

use fleetgate_shared::Snapshot;
use tokio::sync::watch;

use super::{Backoff, Stopping};
use crate::collectors::agent_self::HubStats;
use crate::config::{Config, HubTarget, Secret};
use crate::enroll::{Credentials, EnrolledAs, StateDir};
use crate::hub_client::{Enrollment, HubClient, HubError, PushBase, PushOutcome};
use crate::AgentError;

/// Everything one hub's pusher needs, owned by its task.
#[derive(Debug)]
pub struct HubPusher {
    /// The hub's base URL as configured.
    hub: String,
    /// Enrollment token for this hub, if any.
    enroll_token: Option<Secret>,
    /// Node name.
    node: String,
    /// Push interval (scales the backoff).
    interval: std::time::Duration,
    /// Client for this hub.
    client: HubClient,
    /// Where this hub's push token is kept.
    state: StateDir,
    /// This hub's push statistics.
    stats: HubStats,
    /// What `/add_node` is sent.
    enrollment: Arc<Enrollment>,
}

impl HubPusher {
    /// The pusher for `target`; its token lives in `STATE_DIR/hubs/<name>/`.
    pub fn new(
        target: &HubTarget,
        config: &Config,
        stats: HubStats,
        enrollment: Arc<Enrollment>,
    ) -> Result<Self, AgentError> {
        Ok(HubPusher {
            hub: target.url.clone(),
            enroll_token: target.enroll_token.clone(),
            node: config.node.clone(),
            interval: config.interval,
            client: HubClient::for_agent(&target.url, config)?,
            state: StateDir::for_hub(&config.state_dir, &target.url),
            stats,
            enrollment,
        })
    }

    fn identity(&self) -> EnrolledAs {
        EnrolledAs {
            node: self.node.clone(),
            hub: self.hub.clone(),
        }
    }

    /// Pushes every snapshot that arrives on `snapshots` until the agent stops (then returns
    /// `Ok` after the request in flight) or the hub refuses the token with 401 (`Ok`, after
    /// logging why). An error when the hub refuses the enrollment.
    pub async fn run(
        mut self,
        mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        mut stopping: Stopping,
    ) -> Result<(), AgentError> {
        let node = self.node.clone();
        let hub = self.hub.clone();

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
                match self.enroll_until_done(&mut stopping).await? {
                    Some(c) => (c, true),
                    None => return Ok(()),
                }
            }
        };

        let mut backoff = Backoff::for_interval(self.interval);
        let mut accepted_once = false;
        let mut failing = false;
        let mut base: Option<PushBase> = None;
        // When set, the latest snapshot goes out at this time whether or not a newer one came.
        let mut retry_at: Option<Instant> = None;
        loop {
            match retry_at {
                Some(at) => {
                    if stopping.sleep_until(at).await {
                        return Ok(());
                    }
                }
                None => {
                    tokio::select! {
                        biased;
                        () = stopping.wait() => return Ok(()),
                        changed = snapshots.changed() => if changed.is_err() { return Ok(()) },
                    }
                }
            }
            // None while the agent collects: the stale snapshot was freed, and the next one
            // arrives as a change.
            retry_at = None;
            let Some(snapshot) = snapshots.borrow_and_update().clone() else {
                continue;
            };
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
            match result {
                Ok(report) => {
                    tracing::debug!(%hub, ?kind, seq = snapshot.seq, bytes = report.body_bytes,
                        samples = base.as_ref().map_or(0, PushBase::samples), "push accepted");
                    self.stats.record_success(took, report.body_bytes);
                    self.stats.record_accepted(kind.label());
                    if failing {
                        tracing::info!(%hub, "pushes are accepted again");
                    }
                    failing = false;
                    accepted_once = true;
                    backoff.reset();
                }
                Err(HubError::Unauthorized(message)) => {
                    self.stats.record_failure(took, "unauthorized");
                    if !fresh && !accepted_once {
                        tracing::warn!(%node, %hub, hub_says = %message,
                            "the hub refused the stored push token, enrolling again with the enrollment token");
                        match self.enroll_until_done(&mut stopping).await? {
                            Some(c) => {
                                creds = c;
                                fresh = true;
                                // Push the latest snapshot at once with the new token.
                                retry_at = Some(Instant::now());
                                continue;
                            }
                            None => return Ok(()),
                        }
                    }
                    tracing::error!(%node, %hub, hub_says = %message,
                        "the hub refused the push token (401): this node was removed there or its token revoked; pushing stopped to this hub only, restart the agent to enroll again");
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
                    retry_at = Some(Instant::now() + delay);
                }
            }
        }
    }

    /// Enrolls, retrying while the hub is unreachable; `Ok(None)` when stopped meanwhile.
    /// A refusal (bad token, node name taken or removed) is an error naming the hub's answer.
    async fn enroll_until_done(
        &mut self,
        stopping: &mut Stopping,
    ) -> Result<Option<Credentials>, AgentError> {
        let node = self.node.clone();
        let Some(enroll_token) = self.enroll_token.clone() else {
            return Err(AgentError::NoEnrollToken {
                node,
                hub: self.hub.clone(),
            });
        };
        let mut backoff = Backoff::for_interval(self.interval);
        let mut logged = false;
        loop {
            match self
                .client
                .enroll(enroll_token.expose(), &self.enrollment)
                .await
            {
                Ok(token) => {
                    let creds = Credentials {
                        token: Secret::new(token),
                        enrolled_as: self.identity(),
                    };
                    self.state.save(&creds)?;
                    tracing::info!(%node, hub = %self.hub, labels = ?self.enrollment.labels,
                        state = %self.state.path().display(), "enrolled; push token stored");
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
                        tracing::warn!(hub = %self.hub, error = %e, "cannot enroll yet, retrying with backoff");
                        logged = true;
                    }
                    if stopping.sleep_until(Instant::now() + delay).await {
                        return Ok(None);
                    }
                }
                Err(source) => {
                    return Err(AgentError::Enroll {
                        node,
                        hub: self.hub.clone(),
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
