//! Overload: more full-snapshot pushes at once than `--max-pending-pushes` lets wait for
//! ingest. The hub must answer the excess 429 with a `Retry-After` at once, instead of letting
//! requests queue until they time out; the simulated agents and a real agent wait as told and
//! every node's pushes are accepted again.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::fleet::{self, Fleet};
use super::procs::{self, AgentProc, HubProc};
use super::Report;
use crate::workload::{Shape, Workload};

/// Options of `fleetgate-campaign overload`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated agents, each pushing a full snapshot every interval.
    #[arg(long, default_value_t = 400)]
    pub nodes: usize,
    /// Their interval.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// CPUs of each simulated host (15 series each): the size of each push.
    #[arg(long, default_value_t = 64)]
    pub cpus: usize,
    /// The hub's --max-pending-pushes.
    #[arg(long, default_value_t = 4)]
    pub max_pending_pushes: usize,
    /// Length of the overload.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

impl Args {
    /// The short version.
    pub fn quick() -> Args {
        Args {
            nodes: 150,
            interval: Duration::from_secs(1),
            cpus: 64,
            max_pending_pushes: 2,
            duration: Duration::from_secs(15),
        }
    }
}

/// Runs the overload part.
pub async fn run(args: Args, bins: &super::Bins, dir: &std::path::Path) -> Result<Report> {
    let mut report = Report::new("overload");
    let load_start = procs::load_average();
    let pending = args.max_pending_pushes.to_string();
    let hub = HubProc::start(
        &bins.hub,
        dir,
        "127.0.0.1:0",
        &["--max-pending-pushes", &pending],
    )
    .await?;
    let enroll = hub.token("enroll.token")?;
    let workload = Arc::new(Workload::new(
        Shape::with(args.cpus, 4, 2),
        args.interval.as_secs_f64(),
    ));
    let mut fleet = Fleet::enroll(
        &hub.url(""),
        &enroll,
        "overload",
        args.nodes,
        workload.clone(),
        Duration::from_secs(10),
    )
    .await?;
    let mut cmd = Command::new(&bins.agent);
    cmd.args([
        "--hub",
        &hub.url(""),
        "--node",
        "overload-real-agent",
        "--collectors",
        "host",
    ])
    .arg("--interval")
    .arg(humantime::format_duration(args.interval).to_string())
    .arg("--state-dir")
    .arg(dir.join("agent-state"))
    .arg("--enroll-token-file")
    .arg(hub.data_dir.join("enroll.token"));
    let mut agent = AgentProc::start(cmd, "overload-real-agent", &dir.join("agent.log"))?;
    let tasks = fleet.start_pushing(args.interval, true);
    tokio::time::sleep(args.duration).await;
    fleet.stop();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    // After the storm: every node, the real agent included, is accepted again.
    let mut all = fleet.names.clone();
    all.push("overload-real-agent".into());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    // The quiet pushes declare their own, longer interval: snapshots still saying the storm's
    // would leave each node stale for most of the time between two of them.
    fleet.set_workload(Arc::new(Workload::new(
        Shape::with(args.cpus, 4, 2),
        (args.interval * 5).as_secs_f64(),
    )));
    let quiet = fleet.start_pushing(args.interval * 5, false);
    let back = fleet::wait_all_up(
        &http,
        &hub.url("/metrics"),
        &all,
        args.interval * 5 * 4 + Duration::from_secs(30),
        Duration::from_secs(1),
    )
    .await;
    fleet.stop();
    for t in quiet {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    let text = http.get(hub.url("/metrics")).send().await?.text().await?;
    let hub_overload: f64 = text
        .lines()
        .find(|l| l.starts_with("fleetgate_hub_overload_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    let agent_log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    let agent_limited =
        agent_log.matches("rate limiting").count() + agent_log.matches("push failed again").count();
    let agent_recovered = agent_log.contains("pushes are accepted again");
    let limited = fleet.stats.rate_limited.load(Ordering::Relaxed);
    let with_retry_after = fleet.stats.retry_after_given.load(Ordering::Relaxed);
    let failures = fleet
        .stats
        .failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    let timeouts = failures.get("unreachable").copied().unwrap_or(0);

    report.figure("nodes", json!(args.nodes));
    report.figure("series_per_push", json!(workload.series_per_node()));
    report.figure("max_pending_pushes", json!(args.max_pending_pushes));
    report.figure("pushes_ok", json!(fleet.stats.ok.load(Ordering::Relaxed)));
    report.figure("pushes_failed_by_reason", fleet.stats.failures_json());
    report.figure("answered_429", json!(limited));
    report.figure("answered_429_with_retry_after", json!(with_retry_after));
    report.figure("hub_overload_total", json!(hub_overload));
    report.figure(
        "pushes_recovered",
        json!(fleet.stats.recovered.load(Ordering::Relaxed)),
    );
    report.figure("push_p99_ms", json!(fleet.stats.latency_ms(0.99)));
    report.figure("real_agent_429_log_lines", json!(agent_limited));
    report.figure("load_average_start", json!(load_start));
    report.figure("load_average_end", json!(procs::load_average()));
    report.check(
        "the hub answered the excess 429",
        limited > 0,
        format!("{limited} × 429"),
    );
    report.check(
        "every 429 carried Retry-After",
        limited == with_retry_after,
        format!("{with_retry_after} of {limited}"),
    );
    report.check(
        "the hub counted them",
        hub_overload >= limited as f64,
        format!("fleetgate_hub_overload_total {hub_overload}"),
    );
    report.check(
        "no push timed out waiting",
        timeouts == 0,
        format!("{timeouts} unreachable/timeouts"),
    );
    report.check(
        "no identity lost",
        fleet.stats.identities_lost.load(Ordering::Relaxed) == 0,
        String::new(),
    );
    report.check(
        "every node accepted again afterwards, the real agent included",
        back.is_ok() && agent.running(),
        format!("{back:?}; real agent saw 429: {agent_limited} log lines, said accepted again: {agent_recovered}"),
    );
    report.log_tail = Some(hub.log_tail());
    Ok(report)
}
