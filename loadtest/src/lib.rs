//! Fleetgate's load-test rig: simulated agents pushing realistic snapshots through the agent's
//! own client to a hub it starts, the same workload against Prometheus Pushgateway, and the
//! figures side by side (table, JSON, sweep chart).

pub mod campaign;
pub mod chart;
pub mod clients;
pub mod config;
pub mod latency;
pub mod process;
pub mod procstat;
pub mod replicas;
pub mod report;
pub mod run;
pub mod shards;
pub mod thresholds;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use config::Config;
use report::{Comparison, Document};
use run::{Params, Target};
use workload::{Shape, Workload};

/// Runs everything the command line asks for and prints the tables.
pub async fn run_all(config: Config, command: String) -> Result<()> {
    let config = config.effective();
    let counts = if config.sweep.is_empty() {
        vec![config.nodes]
    } else {
        config.sweep.clone()
    };
    let shape = Shape::with(config.cpus, config.containers, config.gpus);
    let workload = Arc::new(Workload::new(shape, config.interval.as_secs_f64()));
    eprintln!(
        "workload: {} series per node ({} CPUs, {} containers, {} GPUs), interval {:?}, {:?} per run",
        workload.series_per_node(),
        shape.cpus,
        shape.containers,
        shape.gpus,
        config.interval,
        config.duration
    );
    for s in &config.systems {
        if s != "fleetgate" && s != "pushgateway" {
            bail!("unknown system {s:?} in --systems (fleetgate, pushgateway)");
        }
    }
    let thresholds = config.thresholds();
    thresholds.validate(&config.systems)?;
    if let Some(urls) = &config.hub_url {
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let host = url
                .trim_start_matches("http://")
                .split(['/', ':'])
                .next()
                .unwrap_or("");
            if !(host == "127.0.0.1" || host == "localhost" || host == "[::1]") {
                bail!("--hub-url must be on loopback (127.0.0.1), got {url}");
            }
        }
    }
    if config.hubs == 0 {
        bail!("--hubs must be at least 1");
    }
    if replicas::wanted(&config) {
        return replicas::run(&config, workload, command).await;
    }
    let mut sweep = Vec::new();
    for &nodes in &counts {
        let params = Params {
            nodes,
            interval: config.interval,
            jitter: config.jitter.clamp(0.0, 0.9),
            duration: config.duration,
            scrape_interval: config.scrape_interval,
            push_timeout: config.push_timeout,
            scrape_timeout: config.scrape_timeout,
            saturate: config.saturate,
            saturate_concurrency: config.saturate_concurrency,
            clients: config.clients,
            progress: config.progress,
            push: config.push,
            scrape_shards: config.scrape_shards,
            ramp: config.ramp,
        };
        let mut cmp = Comparison {
            fleetgate: None,
            pushgateway: None,
        };
        if config.systems.iter().any(|s| s == "fleetgate") {
            cmp.fleetgate = Some(fleetgate(&config, &params, workload.clone()).await?);
        }
        if config.systems.iter().any(|s| s == "pushgateway") {
            let pgw = process::start_pushgateway(&config.pushgateway_bin).await?;
            let target = Target::Pushgateway {
                url: pgw.url.clone(),
                pid: Some(pgw.pid()),
            };
            cmp.pushgateway = Some(run::run(&target, &params, workload.clone()).await?);
        }
        println!("{}", report::table(&cmp));
        sweep.push(cmp);
    }
    if counts.len() > 1 {
        if config.systems.iter().any(|s| s == "pushgateway") {
            chart::draw(&config.chart, &sweep)?;
        } else {
            chart::draw_scale(&config.chart, &sweep)?;
        }
        eprintln!("chart written to {}", config.chart.display());
    }
    let missed: Vec<String> = sweep.iter().flat_map(|c| thresholds.missed(c)).collect();
    if let Some(path) = &config.json {
        let last = sweep.last().cloned();
        let doc = Document {
            command,
            fleetgate: last.as_ref().and_then(|c| c.fleetgate.clone()),
            pushgateway: last.as_ref().and_then(|c| c.pushgateway.clone()),
            ratios: last.as_ref().map(report::ratios).unwrap_or_default(),
            missed_thresholds: missed.clone(),
            sweep,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("figures written to {}", path.display());
    }
    if !missed.is_empty() {
        for m in &missed {
            eprintln!("threshold missed: {m}");
        }
        bail!(
            "{} threshold(s) missed: {}",
            missed.len(),
            missed.join("; ")
        );
    }
    Ok(())
}

async fn fleetgate(
    config: &Config,
    params: &Params,
    workload: Arc<Workload>,
) -> Result<report::Figures> {
    if let Some(url) = &config.hub_url {
        let token = enroll_token(config)?;
        let target = Target::Fleetgate {
            url: url.trim_end_matches('/').to_string(),
            enroll_token: token,
            pid: config.hub_pid,
        };
        return run::run(&target, params, workload).await;
    }
    let bin = hub_bin(&config.hub_bin);
    let hub = process::start_hub(&bin).await?;
    let target = Target::Fleetgate {
        url: hub.service.url.clone(),
        enroll_token: hub.enroll_token.clone(),
        pid: Some(hub.service.pid()),
    };
    let figures = run::run(&target, params, workload).await;
    if figures.is_err() {
        eprintln!("hub log tail:\n{}", hub.service.log_tail());
    }
    figures
}

/// The enrollment token for `--hub-url`.
fn enroll_token(config: &Config) -> Result<String> {
    Ok(match (&config.enroll_token, &config.enroll_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("--hub-url needs --enroll-token or --enroll-token-file"),
    })
}

/// `--hub-bin` as given, or the same relative path under `CARGO_TARGET_DIR` when only that exists.
fn hub_bin(given: &std::path::Path) -> PathBuf {
    if given.is_file() || given.is_absolute() {
        return given.to_path_buf();
    }
    if let (Ok(dir), Ok(rest)) = (
        std::env::var("CARGO_TARGET_DIR"),
        given.strip_prefix("target"),
    ) {
        let alt = PathBuf::from(dir).join(rest);
        if alt.is_file() {
            return alt;
        }
    }
    given.to_path_buf()
}
