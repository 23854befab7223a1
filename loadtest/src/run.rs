//! One measured run against one system: enroll (Fleetgate only), N simulated nodes pushing on
//! their interval with jitter, a Prometheus-like scraper, /proc sampling, a probe node that joins
//! and leaves, and an optional saturation phase; returns the [`Figures`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fleetgate_agent::hub_client::{Enrollment, HubClient, PushBase};
use futures_util::StreamExt;
use rand::Rng;
use tokio::time::sleep_until;

use crate::latency::{quantile, quantile_ms, PushLog};
use crate::procstat;
use crate::report::Figures;
use crate::workload::Workload;

/// Which gateway a run drives, and how to reach it.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Fleetgate hub: nodes enroll with `enroll_token` and push native snapshots.
    Fleetgate {
        /// Base URL.
        url: String,
        /// Enrollment (or admin) token for `/add_node`.
        enroll_token: String,
        /// The hub's pid when the rig started it, for RSS and CPU.
        pid: Option<u32>,
    },
    /// A Pushgateway: one group per node, text format PUT.
    Pushgateway {
        /// Base URL.
        url: String,
        /// Its pid, for RSS and CPU.
        pid: Option<u32>,
    },
}

impl Target {
    /// `fleetgate` or `pushgateway`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Fleetgate { .. } => "fleetgate",
            Target::Pushgateway { .. } => "pushgateway",
        }
    }

    fn url(&self) -> &str {
        match self {
            Target::Fleetgate { url, .. } | Target::Pushgateway { url, .. } => url,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Target::Fleetgate { pid, .. } | Target::Pushgateway { pid, .. } => *pid,
        }
    }
}

/// Everything that shapes one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Simulated nodes.
    pub nodes: usize,
    /// Push interval of every node.
    pub interval: Duration,
    /// Jitter as a fraction of the interval (0.1 = ±10 %).
    pub jitter: f64,
    /// Length of the steady phase.
    pub duration: Duration,
    /// How often the scraper pulls `/metrics` (plain, then gzip).
    pub scrape_interval: Duration,
    /// Per-request timeout of pushes and enrollments (the agent's own is 10 s).
    pub push_timeout: Duration,
    /// Per-request timeout of scrapes.
    pub scrape_timeout: Duration,
    /// Length of the closed-loop saturation phase after the steady one; zero skips it.
    pub saturate: Duration,
    /// Concurrent pushers in the saturation phase.
    pub saturate_concurrency: usize,
    /// Distinct HTTP clients (connection pools) shared round-robin by the nodes; 0 = one per node.
    pub clients: usize,
    /// Seconds between progress lines.
    pub progress: Duration,
    /// Full snapshots only, or values pushes between them (Fleetgate only).
    pub push: crate::config::PushKind,
    /// Scrape in this many shards besides the unsharded scrape (Fleetgate only); 0: unsharded
    /// plain and gzip scrapes only.
    pub scrape_shards: u32,
    /// Nodes make their first push at random within this time (at least one interval), so a
    /// fleet does not send every first full snapshot at once; measuring starts after it.
    pub ramp: Duration,
}

/// Node name of simulated node `idx`.
pub fn node_name(idx: usize) -> String {
    format!("lt-{idx:05}")
}

const PROBE_NODE: &str = "lt-probe";
const PUSHGATEWAY_JOB: &str = "fleetgate-loadtest";

/// How simulated nodes reach the system.
#[derive(Debug)]
enum Pusher {
    Fleetgate {
        clients: Vec<HubClient>,
        /// Push token per node; empty when its enrollment failed.
        tokens: Vec<String>,
        /// Per node, the base of its next values push; `None` when only full snapshots go out.
        bases: Option<Vec<std::sync::Mutex<Option<PushBase>>>>,
    },
    Pushgateway {
        clients: Vec<reqwest::Client>,
        base: String,
    },
}

impl Pusher {
    /// Pushes node `idx`'s snapshot number `seq`, recording the outcome in `log`.
    async fn push(&self, w: &Workload, idx: usize, seq: u64, log: &PushLog) {
        let name = node_name(idx);
        let snap = w.snapshot(idx, &name, seq);
        let samples = w.series_per_node();
        match self {
            Pusher::Fleetgate {
                clients,
                tokens,
                bases,
            } => {
                let token = &tokens[idx];
                if token.is_empty() {
                    w.recycle(snap);
                    log.failed("not_enrolled");
                    return;
                }
                let client = &clients[idx % clients.len()];
                let Some(bases) = bases else {
                    // Same encoder and client as the agent: `HubClient::push` is exactly
                    // `push_encoded(encode(snapshot))`; encoding first keeps the rig's CPU time
                    // out of the measured latency.
                    let body = fleetgate_shared::encode(&snap);
                    w.recycle(snap);
                    let started = Instant::now();
                    match client.push_encoded(token, body).await {
                        Ok(r) => log.ok(started.elapsed(), samples, r.body_bytes),
                        Err(e) => log.failed(e.reason()),
                    }
                    return;
                };
                // As the agent does (`HubClient::push_tracked`): values against the last
                // accepted push while the layout stays, the full snapshot first, every 20th push
                // and after a 409. Encoding is inside the measured time here, as in the agent.
                let mut base = bases[idx].lock().ok().and_then(|mut b| b.take());
                let started = Instant::now();
                let outcome = client.push_tracked(token, &snap, &mut base).await;
                let took = started.elapsed();
                w.recycle(snap);
                if let Ok(mut b) = bases[idx].lock() {
                    *b = base;
                }
                match outcome.result {
                    Ok(r) => log.ok(took, samples, r.body_bytes),
                    Err(e) => log.failed(e.reason()),
                }
            }
            Pusher::Pushgateway { clients, base } => {
                let body = fleetgate_shared::text::render(&snap.families);
                w.recycle(snap);
                let bytes = body.len();
                let started = Instant::now();
                let url = format!("{base}/metrics/job/{PUSHGATEWAY_JOB}/instance/{name}");
                let resp = clients[idx % clients.len()]
                    .put(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        fleetgate_shared::text::CONTENT_TYPE,
                    )
                    .body(body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => log.ok(started.elapsed(), samples, bytes),
                    Ok(r) if r.status().is_server_error() => log.failed("server_error"),
                    Ok(_) => log.failed("rejected"),
                    Err(e) if e.is_timeout() => log.failed("timeout"),
                    Err(_) => log.failed("unreachable"),
                }
            }
        }
    }
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scrape {
    pub(crate) seconds: f64,
    pub(crate) bytes: u64,
    /// Sample lines (plain scrapes only).
    pub(crate) series: u64,
    /// Whether the server answered with `Content-Encoding: gzip`.
    pub(crate) gzip: bool,
}

/// Runs the whole measurement against `target` and returns its figures.
pub async fn run(target: &Target, params: &Params, workload: Arc<Workload>) -> Result<Figures> {
    let system = target.name();
    let pid = target.pid().map(|p| p.to_string());
    let idle = pid.as_deref().and_then(procstat::sample);

    let n_clients = if params.clients == 0 {
        params.nodes
    } else {
        params.clients.min(params.nodes)
    }
    .max(1);
    let enroll_started = Instant::now();
    let pusher = match target {
        Target::Fleetgate {
            url, enroll_token, ..
        } => {
            let clients = crate::clients::hub_clients(url, n_clients, params.push_timeout)?;
            let tokens = enroll_all(&clients, enroll_token, params.nodes).await;
            let enrolled = tokens.iter().filter(|t| !t.is_empty()).count();
            if enrolled == 0 {
                bail!("no simulated node could enroll at {url}");
            }
            let bases = (params.push == crate::config::PushKind::Values).then(|| {
                (0..params.nodes)
                    .map(|_| std::sync::Mutex::new(None))
                    .collect()
            });
            Pusher::Fleetgate {
                clients,
                tokens,
                bases,
            }
        }
        Target::Pushgateway { url, .. } => {
            let clients = (0..n_clients)
                .map(|_| {
                    reqwest::Client::builder()
                        .timeout(params.push_timeout)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            Pusher::Pushgateway {
                clients,
                base: url.clone(),
            }
        }
    };
    let enroll_seconds = enroll_started.elapsed().as_secs_f64();
    let pusher = Arc::new(pusher);
    let log = Arc::new(PushLog::default());
    let seqs: Arc<Vec<AtomicU64>> =
        Arc::new((0..params.nodes).map(|_| AtomicU64::new(0)).collect());

    let start = Instant::now();
    // First pushes at random within the ramp (at least one interval); the steady phase
    // (and the scraper) follows the ramp.
    let ramp = params.ramp;
    let first_within = ramp.max(params.interval).as_secs_f64();
    let end = start + ramp + params.duration;
    let before = pid.as_deref().and_then(procstat::sample);
    let rig_before = procstat::sample("self");

    let mut nodes = tokio::task::JoinSet::new();
    for idx in 0..params.nodes {
        let (pusher, log, seqs, w, p) = (
            pusher.clone(),
            log.clone(),
            seqs.clone(),
            workload.clone(),
            params.clone(),
        );
        nodes.spawn(async move {
            let interval = p.interval.as_secs_f64();
            let offset = rand::thread_rng().gen_range(0.0..first_within);
            let mut next = start + Duration::from_secs_f64(offset);
            while next < end {
                sleep_until(next.into()).await;
                let seq = seqs[idx].fetch_add(1, Ordering::Relaxed) + 1;
                pusher.push(&w, idx, seq, &log).await;
                let factor = 1.0 + p.jitter * rand::thread_rng().gen_range(-1.0..=1.0);
                next += Duration::from_secs_f64(interval * factor);
                let now = Instant::now();
                let mut missed = 0;
                while next <= now {
                    next += p.interval;
                    missed += 1;
                }
                if missed > 0 {
                    log.skipped(missed);
                }
            }
        });
    }

    let url = target.url().to_string();
    let scraper = {
        let (url, mut p, pid) = (url.clone(), params.clone(), pid.clone());
        if !matches!(target, Target::Fleetgate { .. }) {
            // Pushgateway has no shards.
            p.scrape_shards = 0;
        }
        tokio::spawn(async move {
            // Measured once every node pushes.
            tokio::time::sleep(ramp).await;
            let (every, timeout) = (p.scrape_interval, p.scrape_timeout);
            if p.scrape_shards == 0 {
                return (scrape_loop(url, every, timeout, end).await, None);
            }
            let (scrapes, shards) =
                crate::shards::scrape_loop(url, p.scrape_shards, every, timeout, end, pid).await;
            (scrapes, Some(shards))
        })
    };
    let probe = {
        let (t, p, w) = (target.clone(), params.clone(), workload.clone());
        tokio::spawn(async move {
            // Half-way, so the probe runs against a loaded system.
            tokio::time::sleep(ramp + p.duration / 2).await;
            probe(&t, &p, &w).await
        })
    };

    // Sample memory and CPU every second; print progress.
    let mut peak_rss = before.map(|s| s.rss_bytes).unwrap_or(0);
    let mut rig_peak_rss = 0u64;
    let mut last_progress = Instant::now();
    let mut prev = before;
    let mut last = before;
    while Instant::now() < end {
        tokio::time::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        )
        .await;
        if let Some(s) = pid.as_deref().and_then(procstat::sample) {
            peak_rss = peak_rss.max(s.rss_bytes);
            last = Some(s);
        }
        let rig = procstat::sample("self");
        rig_peak_rss = rig_peak_rss.max(rig.map(|s| s.rss_bytes).unwrap_or(0));
        if last_progress.elapsed() >= params.progress {
            let t = log.tally();
            let cpu = match (prev, last) {
                (Some(a), Some(b)) => format!(
                    "{:.0}%",
                    100.0 * (b.cpu_seconds - a.cpu_seconds)
                        / b.at.duration_since(a.at).as_secs_f64().max(1e-3)
                ),
                _ => "n/a".into(),
            };
            eprintln!(
                "[{system} {}/{}s] pushes {} ok, {} failed, {} skipped; p99 {:.1} ms; {system} RSS {} CPU {cpu}; rig RSS {}",
                start.elapsed().as_secs(),
                params.duration.as_secs(),
                t.ok,
                t.failed(),
                t.skipped,
                quantile_ms(&t.latencies_us, 0.99),
                last.map(|s| mb(s.rss_bytes)).unwrap_or_else(|| "n/a".into()),
                rig.map(|s| mb(s.rss_bytes)).unwrap_or_default(),
            );
            prev = last;
            last_progress = Instant::now();
        }
    }
    while nodes.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let after = pid.as_deref().and_then(procstat::sample);
    if let Some(s) = after {
        peak_rss = peak_rss.max(s.rss_bytes);
    }
    let rig_after = procstat::sample("self");
    let (scrapes, shard_scrapes) = scraper.await.unwrap_or_default();
    let (appear_seconds, disappear_seconds) = probe.await.unwrap_or((None, None));

    // Saturation: closed loop, as fast as the system answers.
    let sat_log = Arc::new(PushLog::default());
    let mut sat_seconds = 0.0;
    if !params.saturate.is_zero() && params.nodes > 0 {
        let sat_start = Instant::now();
        let sat_end = sat_start + params.saturate;
        let cursor = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..params.saturate_concurrency.max(1) {
            let (pusher, log, seqs, w, cursor, n) = (
                pusher.clone(),
                sat_log.clone(),
                seqs.clone(),
                workload.clone(),
                cursor.clone(),
                params.nodes,
            );
            workers.spawn(async move {
                while Instant::now() < sat_end {
                    let idx = cursor.fetch_add(1, Ordering::Relaxed) % n;
                    let seq = seqs[idx].fetch_add(1, Ordering::Relaxed) + 1;
                    pusher.push(&w, idx, seq, &log).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
        sat_seconds = sat_start.elapsed().as_secs_f64();
    }

    let t = log.tally();
    let sat = sat_log.tally();
    let series_total = (params.nodes * workload.series_per_node()) as f64;
    let plain: Vec<&Scrape> = scrapes.iter().filter(|s| !s.gzip).collect();
    let gz: Vec<&Scrape> = scrapes.iter().filter(|s| s.gzip).collect();
    // Scrapes in the first interval see only part of the fleet; judge the full ones.
    let full_plain: Vec<f64> = {
        let max_series = plain.iter().map(|s| s.series).max().unwrap_or(0);
        plain
            .iter()
            .filter(|s| s.series * 10 >= max_series * 9)
            .map(|s| s.seconds)
            .collect()
    };
    let cpu_seconds = match (before, after) {
        (Some(a), Some(b)) => Some(b.cpu_seconds - a.cpu_seconds),
        _ => None,
    };
    let rig_cpu = match (rig_before, rig_after) {
        (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
        _ => 0.0,
    };
    let idle_rss = idle.map(|s| s.rss_bytes);
    Ok(Figures {
        system: system.to_string(),
        nodes: params.nodes,
        series_per_node: workload.series_per_node(),
        duration_seconds: elapsed,
        interval_seconds: params.interval.as_secs_f64(),
        offered_samples_per_sec: series_total / params.interval.as_secs_f64(),
        ingest_samples_per_sec: t.samples as f64 / elapsed,
        max_ingest_samples_per_sec: (sat_seconds > 0.0).then(|| sat.samples as f64 / sat_seconds),
        saturation_push_p99_ms: (sat_seconds > 0.0).then(|| quantile_ms(&sat.latencies_us, 0.99)),
        saturation_failed_pushes: sat.failed(),
        pushes: t.ok,
        failed_pushes: t.failed(),
        failure_reasons: t.failures.clone(),
        skipped_intervals: t.skipped,
        push_p50_ms: quantile_ms(&t.latencies_us, 0.5),
        push_p99_ms: quantile_ms(&t.latencies_us, 0.99),
        push_max_ms: quantile_ms(&t.latencies_us, 1.0),
        scrapes: plain.len() as u64,
        scrape_seconds: full_plain.iter().copied().fold(0.0, f64::max),
        scrape_p50_seconds: quantile(&full_plain, 0.5),
        scrape_bytes: plain.last().map(|s| s.bytes).unwrap_or(0),
        scrape_series: plain.last().map(|s| s.series).unwrap_or(0),
        scrape_gzip_seconds: gz.iter().map(|s| s.seconds).fold(0.0, f64::max),
        scrape_gzip_bytes: gz.last().map(|s| s.bytes).unwrap_or(0),
        scrape_gzip_served: gz.last().map(|s| s.gzip).unwrap_or(false),
        rss_bytes: pid.as_ref().map(|_| peak_rss),
        rss_idle_bytes: idle_rss,
        // Per series actually held (a collapsing system may hold fewer than were offered).
        rss_bytes_per_series: idle_rss.map(|i| {
            let held = plain
                .last()
                .map(|s| s.series as f64)
                .filter(|&n| n > 0.0)
                .unwrap_or(series_total.max(1.0));
            peak_rss.saturating_sub(i) as f64 / held
        }),
        cpu_seconds,
        cpu_percent: cpu_seconds.map(|c| 100.0 * c / elapsed),
        wire_bytes_per_sample: t.body_bytes as f64 / (t.samples.max(1)) as f64,
        enroll_seconds: matches!(target, Target::Fleetgate { .. }).then_some(enroll_seconds),
        appear_seconds,
        disappear_seconds,
        rig_cpu_seconds: rig_cpu,
        rig_cpu_percent: 100.0 * rig_cpu / elapsed,
        rig_rss_bytes: rig_peak_rss,
        ramp_seconds: ramp.as_secs_f64(),
        shard_scrapes,
    })
}

fn mb(b: u64) -> String {
    format!("{:.0} MB", b as f64 / 1e6)
}

fn ok(r: reqwest::Result<reqwest::Response>) -> bool {
    r.is_ok_and(|r| r.status().is_success())
}

fn lossy(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub(crate) async fn enroll_all(clients: &[HubClient], token: &str, nodes: usize) -> Vec<String> {
    let results: Vec<(usize, String)> = futures_util::stream::iter(0..nodes)
        .map(|idx| async move {
            let enrollment = enrollment(&node_name(idx));
            match clients[idx % clients.len()]
                .enroll(token, &enrollment)
                .await
            {
                Ok(t) => (idx, t),
                Err(e) => {
                    tracing::warn!(node = idx, error = %lossy(e), "enrollment failed");
                    (idx, String::new())
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut tokens = vec![String::new(); nodes];
    for (idx, t) in results {
        tokens[idx] = t;
    }
    tokens
}

fn enrollment(node: &str) -> Enrollment {
    Enrollment {
        node: node.to_string(),
        hostname: Some(node.to_string()),
        ip: None,
        labels: [("node_type".to_string(), "gpu".to_string())]
            .into_iter()
            .collect(),
    }
}

pub(crate) async fn scrape_loop(
    url: String,
    every: Duration,
    timeout: Duration,
    end: Instant,
) -> Vec<Scrape> {
    let Ok(http) = reqwest::Client::builder().timeout(timeout).build() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut next = Instant::now() + every / 2;
    while next < end {
        sleep_until(next.into()).await;
        for gzip in [false, true] {
            if let Ok(s) = scrape(&http, &format!("{url}/metrics"), gzip, None).await {
                out.push(s.0);
            }
        }
        next += every;
        while next <= Instant::now() {
            next += every;
        }
    }
    out
}

/// GETs `url`, streaming: counts bytes and (plain) sample lines, and whether `needle` occurs.
pub(crate) async fn scrape(
    http: &reqwest::Client,
    url: &str,
    gzip: bool,
    needle: Option<&[u8]>,
) -> Result<(Scrape, bool)> {
    let started = Instant::now();
    let mut req = http.get(url);
    if gzip {
        req = req.header(reqwest::header::ACCEPT_ENCODING, "gzip");
    }
    let mut resp = req.send().await?.error_for_status()?;
    let served_gzip = resp
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let (mut bytes, mut series, mut at_line_start, mut found) = (0u64, 0u64, true, false);
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len() as u64;
        if !served_gzip {
            series += crate::shards::count_samples(&chunk, &mut at_line_start);
        }
        if let (Some(n), false) = (needle, found) {
            tail.extend_from_slice(&chunk);
            found = memchr::memmem::find(&tail, n).is_some();
            let keep = tail.len().saturating_sub(n.len());
            tail.drain(..keep);
        }
    }
    Ok((
        Scrape {
            seconds: started.elapsed().as_secs_f64(),
            bytes,
            series,
            gzip: served_gzip,
        },
        found,
    ))
}

/// A node joins (enroll + first push) and later leaves; returns seconds until it shows up on
/// `/metrics` and until it is gone, each `None` when it did not happen within 60 s.
async fn probe(target: &Target, p: &Params, w: &Workload) -> (Option<f64>, Option<f64>) {
    let Ok(http) = reqwest::Client::builder().timeout(p.scrape_timeout).build() else {
        return (None, None);
    };
    let needle = format!("=\"{PROBE_NODE}\"");
    let until = |present: bool, since: Instant| {
        let (http, needle, url) = (&http, needle.as_bytes(), target.url());
        async move {
            let deadline = since + Duration::from_secs(60);
            while Instant::now() < deadline {
                // Sharded: only the probe's shard, as its Prometheus target would see it.
                let target = match p.scrape_shards {
                    0 => format!("{url}/metrics"),
                    of => crate::shards::shard_url(url, PROBE_NODE, of),
                };
                let found = scrape(http, &target, false, Some(needle))
                    .await
                    .map(|s| s.1);
                if found.is_ok_and(|found| found == present) {
                    return Some(since.elapsed().as_secs_f64());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    };
    let snap = w.snapshot(usize::MAX / 2, PROBE_NODE, 1);
    match target {
        Target::Fleetgate {
            url, enroll_token, ..
        } => {
            let Ok(client) = HubClient::new(url, p.push_timeout) else {
                return (None, None);
            };
            let joined = Instant::now();
            let Ok(token) = client.enroll(enroll_token, &enrollment(PROBE_NODE)).await else {
                return (None, None);
            };
            let pushed = client.push(&token, &snap).await;
            w.recycle(snap);
            if pushed.is_err() {
                return (None, None);
            }
            let appear = until(true, joined).await;
            let left = Instant::now();
            if client.remove(&token, PROBE_NODE).await.is_err() {
                return (appear, None);
            }
            (appear, until(false, left).await)
        }
        Target::Pushgateway { url, .. } => {
            let group = format!("{url}/metrics/job/{PUSHGATEWAY_JOB}/instance/{PROBE_NODE}");
            let body = fleetgate_shared::text::render(&snap.families);
            w.recycle(snap);
            let joined = Instant::now();
            if !ok(http.put(&group).body(body).send().await) {
                return (None, None);
            }
            let appear = until(true, joined).await;
            let left = Instant::now();
            if !ok(http.delete(&group).send().await) {
                return (appear, None);
            }
            (appear, until(false, left).await)
        }
    }
}
