//! A fleet of simulated agents for the campaign: each node enrolls, then pushes through the
//! agent's own client (`HubClient::push_tracked`: values pushes, full snapshots after 409) on
//! its interval with jitter, and on failure waits as the agent does (its `Backoff`, or the
//! hub's `Retry-After`). Every outcome is counted per node, so the campaign can say how many
//! pushes failed and recovered, and whether any node lost its identity (a 401).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fleetgate_agent::hub_client::{Enrollment, HubClient, HubError, PushBase};
use fleetgate_agent::push::Backoff;
use futures_util::StreamExt;
use rand::Rng;

use crate::workload::Workload;

/// What the fleet counted.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Accepted pushes.
    pub ok: AtomicU64,
    /// Failed pushes by reason.
    pub failures: Mutex<BTreeMap<String, u64>>,
    /// Pushes accepted right after one or more failures of the same node.
    pub recovered: AtomicU64,
    /// Nodes whose token the hub stopped accepting (401): identities lost.
    pub identities_lost: AtomicU64,
    /// Push latencies of accepted pushes, microseconds.
    pub latencies_us: Mutex<Vec<u32>>,
    /// 429 answers, and how many of them carried a `Retry-After`.
    pub rate_limited: AtomicU64,
    /// 429 answers with a `Retry-After`.
    pub retry_after_given: AtomicU64,
}

impl FleetStats {
    fn failed(&self, reason: &str) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(reason.to_string()).or_default() += 1;
        }
    }

    /// Failed pushes of every reason.
    pub fn failed_total(&self) -> u64 {
        self.failures.lock().map(|f| f.values().sum()).unwrap_or(0)
    }

    /// The failures by reason as JSON.
    pub fn failures_json(&self) -> serde_json::Value {
        serde_json::json!(self.failures.lock().map(|f| f.clone()).unwrap_or_default())
    }

    /// Latency quantile `q` of accepted pushes, milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        let v = self
            .latencies_us
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        crate::latency::quantile_ms(&v, q)
    }

    /// Forgets the latencies recorded so far (to measure one phase).
    pub fn reset_latencies(&self) {
        if let Ok(mut v) = self.latencies_us.lock() {
            v.clear();
        }
    }
}

/// Enrolled simulated nodes.
#[derive(Debug)]
pub struct Fleet {
    /// Node names.
    pub names: Vec<String>,
    /// Their push tokens.
    tokens: Vec<String>,
    /// One client per node, each with its own connection, like a real fleet.
    clients: Vec<HubClient>,
    /// What they push.
    workload: Arc<Workload>,
    /// Shared counters.
    pub stats: Arc<FleetStats>,
    /// Set to stop every node's loop.
    stop: Arc<AtomicBool>,
}

impl Fleet {
    /// Enrolls `n` nodes named `<prefix>-00000`… at `url` with `enroll_token`, 32 at a time.
    pub async fn enroll(
        url: &str,
        enroll_token: &str,
        prefix: &str,
        n: usize,
        workload: Arc<Workload>,
        timeout: Duration,
    ) -> Result<Fleet> {
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:05}")).collect();
        let clients = names
            .iter()
            .map(|_| HubClient::new(url, timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let results: Vec<Result<String, HubError>> =
            futures_util::stream::iter(names.iter().zip(&clients).map(|(name, client)| {
                let enrollment = Enrollment {
                    node: name.clone(),
                    labels: [("node_type".to_string(), "cpu".to_string())].into(),
                    ..Enrollment::default()
                };
                async move { client.enroll(enroll_token, &enrollment).await }
            }))
            .buffered(32)
            .collect()
            .await;
        let mut tokens = Vec::with_capacity(n);
        for (name, r) in names.iter().zip(results) {
            match r {
                Ok(t) => tokens.push(t),
                Err(e) => bail!("enrolling {name}: {e}"),
            }
        }
        Ok(Fleet {
            names,
            tokens,
            clients,
            workload,
            stats: Arc::default(),
            stop: Arc::default(),
        })
    }

    /// Starts every node's push loop (first pushes spread over one interval), pushing as the
    /// agent does; they run until [`Fleet::stop`].
    pub fn start(&self, interval: Duration) -> Vec<tokio::task::JoinHandle<()>> {
        self.start_pushing(interval, false)
    }

    /// Like [`Fleet::start`], but every push a full snapshot (`full_only`), the most work per
    /// push the hub can be given.
    pub fn start_pushing(
        &self,
        interval: Duration,
        full_only: bool,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.stop.store(false, Ordering::Relaxed);
        (0..self.names.len())
            .map(|idx| {
                let node = NodeLoop {
                    idx,
                    name: self.names[idx].clone(),
                    token: self.tokens[idx].clone(),
                    client: self.clients[idx].clone(),
                    workload: self.workload.clone(),
                    stats: self.stats.clone(),
                    stop: self.stop.clone(),
                    interval,
                    full_only,
                };
                tokio::spawn(node.run())
            })
            .collect()
    }

    /// Pushes `workload` from now on (loops started later); its interval is the one the
    /// snapshots declare, which the hub's stale window follows.
    pub fn set_workload(&mut self, workload: Arc<Workload>) {
        self.workload = workload;
    }

    /// Asks every node loop to end after its current push (a later start runs them again).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct NodeLoop {
    idx: usize,
    name: String,
    token: String,
    client: HubClient,
    workload: Arc<Workload>,
    stats: Arc<FleetStats>,
    stop: Arc<AtomicBool>,
    interval: Duration,
    full_only: bool,
}

impl NodeLoop {
    async fn run(self) {
        let first = self
            .interval
            .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        tokio::time::sleep(first).await;
        let mut base: Option<PushBase> = None;
        let mut backoff = Backoff::for_interval(self.interval);
        let mut seq = 1u64;
        let mut failing = false;
        while !self.stop.load(Ordering::Relaxed) {
            seq += 1;
            let snap = self.workload.snapshot(self.idx, &self.name, seq);
            let started = Instant::now();
            let result = if self.full_only {
                self.client.push(&self.token, &snap).await
            } else {
                self.client
                    .push_tracked(&self.token, &snap, &mut base)
                    .await
                    .result
            };
            let took = started.elapsed();
            self.workload.recycle(snap);
            let next = match result {
                Ok(_) => {
                    self.stats.ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = self.stats.latencies_us.lock() {
                        l.push(took.as_micros().min(u32::MAX as u128) as u32);
                    }
                    if failing {
                        self.stats.recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    failing = false;
                    backoff.reset();
                    started
                        + self
                            .interval
                            .mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
                }
                Err(HubError::Unauthorized(message)) => {
                    self.stats.failed("unauthorized");
                    self.stats.identities_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(node = %self.name, %message, "identity lost: the hub refused the push token");
                    return;
                }
                Err(e) => {
                    self.stats.failed(e.reason());
                    failing = true;
                    let delay = match e {
                        HubError::RateLimited { retry_after } => {
                            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                            match retry_after {
                                Some(after) => {
                                    self.stats.retry_after_given.fetch_add(1, Ordering::Relaxed);
                                    after
                                }
                                None => backoff.next_delay(),
                            }
                        }
                        _ => backoff.next_delay(),
                    };
                    Instant::now() + delay
                }
            };
            // Sleep in slices so a stop is seen within a second.
            while Instant::now() < next && !self.stop.load(Ordering::Relaxed) {
                let left = next.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            }
        }
    }
}

/// Nodes whose `fleetgate_node_up` is 1 in an exposition.
pub fn nodes_up(text: &str) -> std::collections::HashSet<String> {
    let mut up = std::collections::HashSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("fleetgate_node_up{") else {
            continue;
        };
        if !line.ends_with(" 1") {
            continue;
        }
        if let Some(node) = label(rest, "node") {
            up.insert(node.to_string());
        }
    }
    up
}

/// The value of label `name` in the label part of a series line (no escapes in node names).
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = labels
        .match_indices(&key)
        .find(|(i, _)| *i == 0 || matches!(labels.as_bytes()[i - 1], b',' | b'{'))?
        .0
        + key.len();
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// Polls `/metrics` every `every` until every one of `nodes` is up, for at most `within`;
/// returns how long it took, or `None` (and the nodes missing) when it did not happen.
pub async fn wait_all_up(
    http: &reqwest::Client,
    url: &str,
    nodes: &[String],
    within: Duration,
    every: Duration,
) -> Result<Duration, Vec<String>> {
    let started = Instant::now();
    let mut missing: Vec<String> = nodes.to_vec();
    while started.elapsed() < within {
        if let Ok(resp) = http.get(url).send().await {
            if let Ok(text) = resp.text().await {
                // Every node up in the same scrape.
                let up = nodes_up(&text);
                missing = nodes.iter().filter(|n| !up.contains(*n)).cloned().collect();
                if missing.is_empty() {
                    return Ok(started.elapsed());
                }
            }
        }
        tokio::time::sleep(every).await;
    }
    missing.truncate(10);
    Err(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_up_lines_are_read() {
        let text = "fleetgate_node_up{instance=\"a\",node=\"a\",node_type=\"cpu\"} 1\n\
                    fleetgate_node_up{instance=\"b\",node=\"b\"} 0\n\
                    fleetgate_node_upx{node=\"c\"} 1\n\
                    fleetgate_node_up{xnode=\"z\",node=\"d\"} 1\n";
        let up = nodes_up(text);
        assert!(up.contains("a") && up.contains("d"));
        assert!(!up.contains("b") && !up.contains("c") && !up.contains("z"));
    }
}
