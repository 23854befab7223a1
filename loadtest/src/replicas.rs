//! Several hubs (`--hubs N`, or `--hub-url URL,URL,...` for hubs already running): every
//! simulated node pushes each of its snapshots to every hub, the way an agent with several hubs
//! does — one snapshot per node per interval, handed to one pusher per hub through a latest-only
//! channel, each pusher with its own token and values-push base — and the figures are reported
//! per hub. A hub that is down or slow costs the other hubs nothing: its pushes fail or wait on
//! their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fleetgate_agent::hub_client::{HubClient, PushBase};
use fleetgate_shared::Snapshot;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{Config, PushKind};
use crate::latency::{quantile_ms, PushLog};
use crate::procstat;
use crate::run::{enroll_all, node_name, scrape_loop};
use crate::workload::Workload;

/// Whether the command line asks for several hubs.
pub fn wanted(config: &Config) -> bool {
    config.hubs > 1 || config.hub_url.as_deref().is_some_and(|u| u.contains(','))
}

/// One hub of the run.
#[derive(Debug)]
struct Hub {
    /// Base URL.
    url: String,
    /// Enrollment token.
    enroll_token: String,
    /// Pid, when the rig started the hub, for RSS and CPU.
    pid: Option<u32>,
}

/// What one hub went through.
#[derive(Debug, Clone, Serialize)]
pub struct HubFigures {
    /// Base URL.
    pub hub: String,
    /// Nodes enrolled there.
    pub enrolled: usize,
    /// Accepted pushes.
    pub pushes: u64,
    /// Failed pushes by reason.
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Push latency percentiles, milliseconds.
    pub push_p50_ms: f64,
    /// 99th percentile.
    pub push_p99_ms: f64,
    /// Samples per second the hub accepted.
    pub ingest_samples_per_sec: f64,
    /// Request body bytes per accepted sample.
    pub wire_bytes_per_sample: f64,
    /// CPU of the hub process, percent of one core (when the rig started it).
    pub cpu_percent: Option<f64>,
    /// Peak resident memory of the hub process, bytes.
    pub rss_bytes: Option<u64>,
    /// Sample lines and bytes of the last plain scrape of `/metrics`.
    pub scrape_series: u64,
    /// Bytes of that scrape.
    pub scrape_bytes: u64,
    /// Slowest full scrape, seconds.
    pub scrape_seconds: f64,
}

/// The whole run: every hub, and what the rig itself used.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// The command line.
    pub command: String,
    /// Simulated nodes, each pushing to every hub.
    pub nodes: usize,
    /// Series per node.
    pub series_per_node: usize,
    /// Push interval, seconds.
    pub interval_seconds: f64,
    /// Length of the run, seconds.
    pub duration_seconds: f64,
    /// Per hub.
    pub hubs: Vec<HubFigures>,
    /// CPU of the rig (all simulated nodes), percent of one core.
    pub rig_cpu_percent: f64,
}

/// Runs the several-hubs workload and prints one row per hub.
pub async fn run(config: &Config, workload: Arc<Workload>, command: String) -> Result<()> {
    let mut started = Vec::new();
    let hubs: Vec<Hub> = match &config.hub_url {
        Some(list) => {
            let token = crate::enroll_token(config)?;
            list.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|url| Hub {
                    url: url.trim_end_matches('/').to_string(),
                    enroll_token: token.clone(),
                    pid: None,
                })
                .collect()
        }
        None => {
            let bin = crate::hub_bin(&config.hub_bin);
            for _ in 0..config.hubs {
                started.push(crate::process::start_hub(&bin).await?);
            }
            started
                .iter()
                .map(|h| Hub {
                    url: h.service.url.clone(),
                    enroll_token: h.enroll_token.clone(),
                    pid: Some(h.service.pid()),
                })
                .collect()
        }
    };
    if hubs.is_empty() {
        bail!("--hub-url lists no hub");
    }
    let nodes = config.nodes;
    let interval = config.interval;
    eprintln!(
        "{nodes} nodes pushing every {interval:?} to each of {} hubs for {:?}",
        hubs.len(),
        config.duration
    );

    // Enroll every node at every hub, as the agent does once per hub.
    let mut tokens = Vec::new();
    for hub in &hubs {
        let clients = vec![HubClient::new(&hub.url, config.push_timeout)?];
        let t = enroll_all(&clients, &hub.enroll_token, nodes).await;
        let enrolled = t.iter().filter(|t| !t.is_empty()).count();
        if enrolled == 0 {
            bail!("no simulated node could enroll at {}", hub.url);
        }
        tokens.push(Arc::new(t));
    }

    let start = Instant::now();
    let end = start + config.duration;
    let logs: Vec<Arc<PushLog>> = hubs.iter().map(|_| Arc::default()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..nodes {
        let (tx, _) = watch::channel::<Option<Arc<Snapshot>>>(None);
        for (h, hub) in hubs.iter().enumerate() {
            // One client per node and hub: a real fleet's connections.
            let client = HubClient::new(&hub.url, config.push_timeout)?;
            tasks.spawn(push_to_hub(
                client,
                tokens[h].clone(),
                idx,
                tx.subscribe(),
                logs[h].clone(),
                workload.series_per_node(),
                config.push == PushKind::Values,
            ));
        }
        let (w, jitter) = (workload.clone(), config.jitter.clamp(0.0, 0.9));
        tasks.spawn(async move {
            let name = node_name(idx);
            let mut next = start + interval.mul_f64(rand::thread_rng().gen_range(0.0..1.0_f64));
            let mut seq = 0;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                seq += 1;
                tx.send_replace(Some(Arc::new(w.snapshot(idx, &name, seq))));
                let factor = 1.0 + jitter * rand::thread_rng().gen_range(-1.0..=1.0);
                next += interval.mul_f64(factor);
            }
            // Dropping the sender ends this node's pushers.
        });
    }

    let scrapers: Vec<_> = hubs
        .iter()
        .map(|h| {
            tokio::spawn(scrape_loop(
                h.url.clone(),
                config.scrape_interval,
                config.scrape_timeout,
                end,
            ))
        })
        .collect();
    let before: Vec<_> = hubs
        .iter()
        .map(|h| h.pid.and_then(|p| procstat::sample(&p.to_string())))
        .collect();
    let rig_before = procstat::sample("self");
    let mut peak = vec![0u64; hubs.len()];
    let mut last_progress = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        )
        .await;
        for (h, hub) in hubs.iter().enumerate() {
            if let Some(s) = hub.pid.and_then(|p| procstat::sample(&p.to_string())) {
                peak[h] = peak[h].max(s.rss_bytes);
            }
        }
        if last_progress.elapsed() >= config.progress {
            let line: Vec<String> = hubs
                .iter()
                .zip(&logs)
                .map(|(hub, log)| {
                    let t = log.tally();
                    format!("{} {} ok {} failed", hub.url, t.ok, t.failed())
                })
                .collect();
            eprintln!("[{}s] {}", start.elapsed().as_secs(), line.join("; "));
            last_progress = Instant::now();
        }
    }
    // Pushes still in flight get their push timeout, then the run ends regardless.
    let _ = tokio::time::timeout(config.push_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let elapsed = start.elapsed().as_secs_f64();
    let rig_after = procstat::sample("self");

    let mut figures = Vec::new();
    for (h, (hub, scraper)) in hubs.iter().zip(scrapers).enumerate() {
        let t = logs[h].tally();
        // The scrapers stop at the end of the run on their own.
        let scrapes = scraper.await.unwrap_or_default();
        let plain: Vec<_> = scrapes.iter().filter(|s| !s.gzip).collect();
        let cpu_percent = match (
            before[h],
            hub.pid.and_then(|p| procstat::sample(&p.to_string())),
        ) {
            (Some(a), Some(b)) => Some(
                100.0 * (b.cpu_seconds - a.cpu_seconds)
                    / b.at.duration_since(a.at).as_secs_f64().max(1e-3),
            ),
            _ => None,
        };
        figures.push(HubFigures {
            hub: hub.url.clone(),
            enrolled: tokens[h].iter().filter(|t| !t.is_empty()).count(),
            pushes: t.ok,
            failures: t.failures.clone(),
            push_p50_ms: quantile_ms(&t.latencies_us, 0.5),
            push_p99_ms: quantile_ms(&t.latencies_us, 0.99),
            ingest_samples_per_sec: t.samples as f64 / elapsed,
            wire_bytes_per_sample: t.body_bytes as f64 / t.samples.max(1) as f64,
            cpu_percent,
            rss_bytes: hub.pid.map(|_| peak[h]),
            scrape_series: plain.last().map(|s| s.series).unwrap_or(0),
            scrape_bytes: plain.last().map(|s| s.bytes).unwrap_or(0),
            scrape_seconds: plain.iter().map(|s| s.seconds).fold(0.0, f64::max),
        });
    }
    let rig_cpu_percent = match (rig_before, rig_after) {
        (Some(a), Some(b)) => 100.0 * (b.cpu_seconds - a.cpu_seconds) / elapsed,
        _ => 0.0,
    };
    let doc = Document {
        command,
        nodes,
        series_per_node: workload.series_per_node(),
        interval_seconds: interval.as_secs_f64(),
        duration_seconds: elapsed,
        hubs: figures,
        rig_cpu_percent,
    };
    println!("{}", table(&doc));
    if let Some(path) = &config.json {
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("figures written to {}", path.display());
    }
    drop(started);
    Ok(())
}

/// One node's pusher for one hub: pushes the latest snapshot whenever a new one arrives.
async fn push_to_hub(
    client: HubClient,
    tokens: Arc<Vec<String>>,
    idx: usize,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    log: Arc<PushLog>,
    samples: usize,
    values: bool,
) {
    let token = &tokens[idx];
    let mut base: Option<PushBase> = None;
    while snapshots.changed().await.is_ok() {
        let Some(snapshot) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        if token.is_empty() {
            log.failed("not_enrolled");
            continue;
        }
        let started = Instant::now();
        let result = if values {
            client
                .push_tracked(token, &snapshot, &mut base)
                .await
                .result
        } else {
            client.push(token, &snapshot).await
        };
        match result {
            Ok(r) => log.ok(started.elapsed(), samples, r.body_bytes),
            Err(e) => log.failed(e.reason()),
        }
    }
}

/// One row per hub.
pub fn table(doc: &Document) -> String {
    let mut out = format!(
        "{} nodes × {} series, every {:.0} s, to {} hubs, {:.0} s; rig CPU {:.0} %\n",
        doc.nodes,
        doc.series_per_node,
        doc.interval_seconds,
        doc.hubs.len(),
        doc.duration_seconds,
        doc.rig_cpu_percent
    );
    out.push_str(&format!(
        "{:<28} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>10} {:>9}  failures\n",
        "hub",
        "pushes",
        "failed",
        "p50 ms",
        "p99 ms",
        "CPU %",
        "RSS MB",
        "B/sample",
        "scraped",
        "scrape s"
    ));
    for h in &doc.hubs {
        let failed: u64 = h.failures.values().sum();
        out.push_str(&format!(
            "{:<28} {:>9} {:>8} {:>8.1} {:>8.1} {:>7} {:>8} {:>9.2} {:>10} {:>9.3}  {:?}\n",
            h.hub,
            h.pushes,
            failed,
            h.push_p50_ms,
            h.push_p99_ms,
            h.cpu_percent.map_or("n/a".into(), |c| format!("{c:.0}")),
            h.rss_bytes
                .map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1e6)),
            h.wire_bytes_per_sample,
            h.scrape_series,
            h.scrape_seconds,
            h.failures
        ));
    }
    out
}
