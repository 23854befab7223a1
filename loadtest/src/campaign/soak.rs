//! Soak: a simulated fleet plus one real agent push to a real hub for a long time while the hub
//! is SIGKILLed and restarted twice, SIGSTOPped once (a hung hub) and restarted gracefully
//! once. Measures pushes failed and recovered, the time until every node is back on
//! `/metrics` after each event, identities lost, and the hub's and the agent's memory and the
//! hub's open descriptors in the first and the last minute.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::fleet::{self, Fleet};
use super::procs::{self, AgentProc, HubProc};
use super::Report;
use crate::workload::{Shape, Workload};

/// Options of `fleetgate-campaign soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Push interval of every agent.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Length of the soak.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long the hub stays SIGSTOPped.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub stop_for: Duration,
    /// CPUs of each simulated host (15 series each).
    #[arg(long, default_value_t = 4)]
    pub cpus: usize,
    /// Containers of each simulated host (about 40 series each).
    #[arg(long, default_value_t = 1)]
    pub containers: usize,
}

impl Args {
    /// The short version for the test command.
    pub fn quick() -> Args {
        Args {
            nodes: 100,
            interval: Duration::from_secs(2),
            duration: Duration::from_secs(70),
            stop_for: Duration::from_secs(5),
            cpus: 2,
            containers: 1,
        }
    }
}

/// One reading of the processes.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Duration,
    hub_generation: u32,
    hub_rss: Option<u64>,
    hub_fds: Option<usize>,
    agent_rss: Option<u64>,
}

/// Runs the soak; `dir` holds the hub's data and the logs.
pub async fn run(args: Args, bins: &super::Bins, dir: &std::path::Path) -> Result<Report> {
    let mut report = Report::new("soak");
    let load_start = procs::load_average();
    let mut hub = HubProc::start(&bins.hub, dir, "127.0.0.1:0", &[]).await?;
    let enroll = hub.token("enroll.token")?;
    let admin = hub.token("admin.token")?;
    let workload = Arc::new(Workload::new(
        Shape::with(args.cpus, args.containers, 0),
        args.interval.as_secs_f64(),
    ));
    eprintln!(
        "soak: {} simulated agents × {} series + 1 real agent, interval {:?}, {:?}",
        args.nodes,
        workload.series_per_node(),
        args.interval,
        args.duration
    );
    let fleet = Fleet::enroll(
        &hub.url(""),
        &enroll,
        "soak",
        args.nodes,
        workload.clone(),
        Duration::from_secs(10),
    )
    .await?;

    let agent_state = dir.join("agent-state");
    let enroll_file = hub.data_dir.join("enroll.token");
    let mut cmd = Command::new(&bins.agent);
    cmd.args([
        "--hub",
        &hub.url(""),
        "--node",
        "soak-real-agent",
        "--collectors",
        "host",
    ])
    .arg("--interval")
    .arg(humantime::format_duration(args.interval).to_string())
    .arg("--state-dir")
    .arg(&agent_state)
    .arg("--enroll-token-file")
    .arg(&enroll_file);
    let mut agent = AgentProc::start(cmd, "soak-real-agent", &dir.join("agent.log"))?;

    let mut all_nodes = fleet.names.clone();
    all_nodes.push("soak-real-agent".to_string());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = Instant::now();
    let tasks = fleet.start(args.interval);
    let recover_within = args.interval * 8 + Duration::from_secs(30);
    let poll = (args.interval / 8).clamp(Duration::from_millis(250), Duration::from_secs(2));
    let initial = fleet::wait_all_up(
        &http,
        &hub.url("/metrics"),
        &all_nodes,
        recover_within,
        poll,
    )
    .await
    .map_err(|missing| anyhow::anyhow!("nodes never all up at start; missing {missing:?}"))?;
    report.figure("initial_all_up_seconds", json!(initial.as_secs_f64()));

    // Readings every few seconds, of whichever hub process is running.
    let readings: Arc<Mutex<Vec<Reading>>> = Arc::default();
    let hub_pid = Arc::new(Mutex::new((hub.pid(), hub.generation)));
    let sampler = {
        let (readings, hub_pid, agent_pid) = (readings.clone(), hub_pid.clone(), agent.pid());
        let every = (args.duration / 120).clamp(Duration::from_secs(1), Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                let (pid, generation) = *hub_pid.lock().unwrap_or_else(|p| p.into_inner());
                let r = Reading {
                    at: started.elapsed(),
                    hub_generation: generation,
                    hub_rss: pid.and_then(procs::rss),
                    hub_fds: pid.and_then(procs::open_fds),
                    agent_rss: procs::rss(agent_pid),
                };
                readings.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                tokio::time::sleep(every).await;
            }
        })
    };

    // Events at fixed fractions of the run, each followed by the wait for every node.
    let d = args.duration;
    let schedule = [
        (d.mul_f64(0.15), "sigkill_restart"),
        (d.mul_f64(0.35), "sigstop"),
        (d.mul_f64(0.55), "sigkill_restart"),
        (d.mul_f64(0.75), "graceful_restart"),
    ];
    let mut events = Vec::new();
    let mut all_recovered = true;
    for (at, kind) in schedule {
        tokio::time::sleep_until((started + at).into()).await;
        let failed_before = fleet.stats.failed_total();
        let event_started = Instant::now();
        match kind {
            "sigkill_restart" => {
                hub.kill9()?;
                hub.restart().await?;
            }
            "sigstop" => {
                hub.stop()?;
                tokio::time::sleep(args.stop_for).await;
                hub.cont()?;
            }
            _ => {
                let clean = hub.terminate().await?;
                if !clean {
                    report.check(
                        "graceful stop exits 0",
                        false,
                        "non-zero exit on SIGTERM".into(),
                    );
                }
                hub.restart().await?;
            }
        }
        *hub_pid.lock().unwrap_or_else(|p| p.into_inner()) = (hub.pid(), hub.generation);
        let outage = event_started.elapsed();
        let back = fleet::wait_all_up(
            &http,
            &hub.url("/metrics"),
            &all_nodes,
            recover_within,
            poll,
        )
        .await;
        let (ok, back_s, missing) = match &back {
            Ok(t) => (true, Some(t.as_secs_f64()), Vec::new()),
            Err(m) => (false, None, m.clone()),
        };
        all_recovered &= ok;
        eprintln!(
            "soak: {kind} at {:.0}s: hub away {:.1}s, every node back on /metrics {} later",
            at.as_secs_f64(),
            outage.as_secs_f64(),
            back_s.map_or("NOT".to_string(), |s| format!("{s:.1}s")),
        );
        events.push(json!({
            "event": kind,
            "at_seconds": at.as_secs_f64(),
            "hub_unavailable_seconds": outage.as_secs_f64(),
            "all_nodes_back_after_seconds": back_s,
            "missing": missing,
            "pushes_failed_during": fleet.stats.failed_total() - failed_before,
        }));
    }
    tokio::time::sleep_until((started + args.duration).into()).await;
    fleet.stop();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    sampler.abort();

    // Identities: every node still enrolled and not removed, and its token still accepted
    // (no 401 seen) — after two SIGKILLs.
    let nodes: Vec<serde_json::Value> = http
        .get(hub.url("/nodes"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await
        .context("reading /nodes")?;
    let enrolled = nodes
        .iter()
        .filter(|n| n["state"] != "removed" && all_nodes.iter().any(|a| n["node"] == a.as_str()))
        .count();
    let lost =
        fleet.stats.identities_lost.load(Ordering::Relaxed) as usize + (all_nodes.len() - enrolled);
    let agent_running = agent.running();

    let readings = readings.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let minute = Duration::from_secs(60).min(args.duration / 4);
    let window = |first: bool| -> Vec<Reading> {
        readings
            .iter()
            .filter(|r| {
                if first {
                    r.at <= minute
                } else {
                    r.at + minute >= args.duration
                }
            })
            .copied()
            .collect()
    };
    let stats = |rs: &[Reading], f: &dyn Fn(&Reading) -> Option<f64>| {
        let v: Vec<f64> = rs.iter().filter_map(f).collect();
        if v.is_empty() {
            return json!(null);
        }
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        let min = v.iter().cloned().fold(f64::MAX, f64::min);
        json!({"min": min, "max": max, "mean": v.iter().sum::<f64>() / v.len() as f64})
    };
    let mb = |b: Option<u64>| b.map(|b| b as f64 / 1_048_576.0);
    let (first, last) = (window(true), window(false));
    let resources = json!({
        "hub_rss_mb": {"first_minute": stats(&first, &|r| mb(r.hub_rss)), "last_minute": stats(&last, &|r| mb(r.hub_rss))},
        "hub_open_fds": {"first_minute": stats(&first, &|r| r.hub_fds.map(|n| n as f64)), "last_minute": stats(&last, &|r| r.hub_fds.map(|n| n as f64))},
        "agent_rss_mb": {"first_minute": stats(&first, &|r| mb(r.agent_rss)), "last_minute": stats(&last, &|r| mb(r.agent_rss))},
        "hub_generation_in_last_minute": last.last().map(|r| r.hub_generation),
    });
    eprintln!("soak: resources {resources}");

    report.figure("events", json!(events));
    report.figure("resources", resources);
    report.figure("pushes_ok", json!(fleet.stats.ok.load(Ordering::Relaxed)));
    report.figure("pushes_failed", json!(fleet.stats.failed_total()));
    report.figure("pushes_failed_by_reason", fleet.stats.failures_json());
    report.figure(
        "pushes_recovered",
        json!(fleet.stats.recovered.load(Ordering::Relaxed)),
    );
    report.figure("identities_lost", json!(lost));
    report.figure("nodes", json!(all_nodes.len()));
    report.figure("series_per_node", json!(workload.series_per_node()));
    report.figure("interval_seconds", json!(args.interval.as_secs_f64()));
    report.figure("duration_seconds", json!(args.duration.as_secs_f64()));
    report.figure("load_average_start", json!(load_start));
    report.figure("load_average_end", json!(procs::load_average()));
    report.check(
        "no identity lost",
        lost == 0,
        format!("{lost} of {} nodes", all_nodes.len()),
    );
    report.check(
        "every node back on /metrics after every event",
        all_recovered,
        format!("within {recover_within:?} each"),
    );
    report.check(
        "the real agent kept running",
        agent_running,
        procs::tail(&agent.log, 5),
    );
    report.log_tail = Some(hub.log_tail());
    Ok(report)
}
