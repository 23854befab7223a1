//! Network faults between real agents and the hub: the agents run in a network namespace the
//! campaign creates (`fgrel-a`, a veth pair to 10.226.0.0/24), the hub on the host side. In
//! turn: 5 % packet loss, 300 ms delay with jitter, a 1 Mbit/s rate limit, and a partition.
//! Each agent must get its pushes through on its own, keep its memory flat, and after the
//! partition every node must be back on `/metrics` within two intervals.
//!
//! With `sch_netem` in the kernel, loss, delay and the partition are netem's; without it (some
//! VM kernels), loss is `iptables -m statistic`, the partition an iptables DROP, the delay a
//! userspace relay ([`super::relay`]); the rate limit is `tc tbf` either way. The report says
//! which was used.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::procs::{self, AgentProc, HubProc};
use super::relay::Relay;
use super::Report;

/// The namespace of the agents.
const NETNS: &str = "fgrel-a";
/// Host side and namespace side of the veth pair.
const VETH_HOST: &str = "fgrel-h";
const VETH_NS: &str = "fgrel-n";
const HOST_IP: &str = "10.226.0.1";
const NS_IP: &str = "10.226.0.2";

/// Options of `fleetgate-campaign faults`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Real agents in the namespace.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Their push interval.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Length of each of the loss, delay and rate phases.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub phase: Duration,
    /// Length of the partition.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub partition: Duration,
}

impl Args {
    /// The short version.
    pub fn quick() -> Args {
        Args {
            agents: 2,
            interval: Duration::from_secs(3),
            phase: Duration::from_secs(12),
            partition: Duration::from_secs(15),
        }
    }
}

fn run_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(args: &[&str]) -> Result<()> {
    let mut full = vec!["ip", "netns", "exec", NETNS];
    full.extend_from_slice(args);
    run_cmd(&full)
}

/// The namespace and veth pair; removed on drop (and any leftover removed at creation).
struct Netns;

impl Netns {
    fn create() -> Result<Netns> {
        Self::remove();
        run_cmd(&["ip", "netns", "add", NETNS]).context(
            "creating a network namespace (needs root and iproute2; run as root or skip this part)",
        )?;
        let ns = Netns;
        run_cmd(&[
            "ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS,
        ])?;
        run_cmd(&["ip", "link", "set", VETH_NS, "netns", NETNS])?;
        run_cmd(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_IP}/24"),
            "dev",
            VETH_HOST,
        ])?;
        run_cmd(&["ip", "link", "set", VETH_HOST, "up"])?;
        in_ns(&["ip", "addr", "add", &format!("{NS_IP}/24"), "dev", VETH_NS])?;
        in_ns(&["ip", "link", "set", VETH_NS, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn remove() {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).output();
        let _ = Command::new("ip").args(["link", "del", VETH_HOST]).output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Self::remove();
    }
}

/// How faults are injected on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injector {
    /// `tc qdisc … netem` on both ends of the veth pair.
    Netem,
    /// iptables for loss and partition, the relay for delay, tbf for rate.
    Fallback,
}

impl Injector {
    fn detect() -> Injector {
        let ok = in_ns(&[
            "tc", "qdisc", "add", "dev", VETH_NS, "root", "netem", "delay", "1ms",
        ])
        .is_ok();
        let _ = in_ns(&["tc", "qdisc", "del", "dev", VETH_NS, "root"]);
        if ok {
            Injector::Netem
        } else {
            Injector::Fallback
        }
    }

    /// Applies `netem` arguments (or their fallback) on both directions.
    fn netem(&self, args: &[&str]) -> Result<()> {
        let mut ns = vec!["tc", "qdisc", "replace", "dev", VETH_NS, "root", "netem"];
        ns.extend_from_slice(args);
        in_ns(&ns)?;
        let mut host = vec!["tc", "qdisc", "replace", "dev", VETH_HOST, "root", "netem"];
        host.extend_from_slice(args);
        run_cmd(&host)
    }

    fn clear(&self) {
        let _ = in_ns(&["tc", "qdisc", "del", "dev", VETH_NS, "root"]);
        let _ = run_cmd(&["tc", "qdisc", "del", "dev", VETH_HOST, "root"]);
        let _ = in_ns(&["iptables", "-F"]);
    }

    fn loss(&self, percent: u32) -> Result<()> {
        match self {
            Injector::Netem => self.netem(&["loss", &format!("{percent}%")]),
            Injector::Fallback => {
                let p = format!("{:.4}", percent as f64 / 100.0);
                for chain in ["INPUT", "OUTPUT"] {
                    in_ns(&[
                        "iptables",
                        "-A",
                        chain,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &p,
                        "-j",
                        "DROP",
                    ])?;
                }
                Ok(())
            }
        }
    }

    fn delay(&self, relay: &Relay, delay: Duration, jitter: Duration) -> Result<()> {
        match self {
            Injector::Netem => {
                // On both ends: each direction is delayed, as with the relay.
                let d = format!("{}ms", delay.as_millis());
                let j = format!("{}ms", jitter.as_millis());
                self.netem(&["delay", &d, &j, "distribution", "normal"])
            }
            Injector::Fallback => {
                relay.set(delay, jitter);
                Ok(())
            }
        }
    }

    fn rate(&self, rate: &str) -> Result<()> {
        in_ns(&[
            "tc", "qdisc", "replace", "dev", VETH_NS, "root", "tbf", "rate", rate, "burst",
            "16kbit", "latency", "400ms",
        ])?;
        run_cmd(&[
            "tc", "qdisc", "replace", "dev", VETH_HOST, "root", "tbf", "rate", rate, "burst",
            "16kbit", "latency", "400ms",
        ])
    }

    fn partition(&self) -> Result<()> {
        match self {
            Injector::Netem => self.netem(&["loss", "100%"]),
            Injector::Fallback => {
                in_ns(&["iptables", "-A", "INPUT", "-j", "DROP"])?;
                in_ns(&["iptables", "-A", "OUTPUT", "-d", HOST_IP, "-j", "DROP"])
            }
        }
    }
}

/// Per node: the hub's `fleetgate_node_last_push_timestamp_seconds`.
fn last_pushes(text: &str) -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("fleetgate_node_last_push_timestamp_seconds{") else {
            continue;
        };
        let (Some(node), Some(v)) = (
            super::fleet::label(rest, "node"),
            line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        out.insert(node.to_string(), v);
    }
    out
}

/// An agent's own counter, as pushed to the hub: the sum over `name{…node="<node>"…}` lines.
fn agent_counter(text: &str, name: &str, node: &str) -> f64 {
    let node_label = format!("node=\"{node}\"");
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(&node_label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs the network-fault part.
pub async fn run(args: Args, bins: &super::Bins, dir: &std::path::Path) -> Result<Report> {
    let mut report = Report::new("faults");
    let load_start = procs::load_average();
    let _netns = Netns::create()?;
    let injector = Injector::detect();
    let hub = HubProc::start(&bins.hub, dir, "127.0.0.1:0", &[]).await?;
    let hub_addr: SocketAddr = hub.addr.parse()?;
    let relay = Relay::start(format!("{HOST_IP}:0").parse()?, hub_addr).await?;
    let hub_url_for_agents = format!("http://{}", relay.addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;

    let mut agents = Vec::new();
    let names: Vec<String> = (0..args.agents).map(|i| format!("fault-{i}")).collect();
    for name in &names {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", NETNS])
            .arg(&bins.agent)
            .args([
                "--hub",
                &hub_url_for_agents,
                "--node",
                name,
                "--collectors",
                "host",
            ])
            .arg("--interval")
            .arg(humantime::format_duration(args.interval).to_string())
            .arg("--state-dir")
            .arg(dir.join(format!("{name}-state")))
            .arg("--enroll-token-file")
            .arg(hub.data_dir.join("enroll.token"));
        agents.push(AgentProc::start(
            cmd,
            name,
            &dir.join(format!("{name}.log")),
        )?);
    }
    let rss_all = |agents: &[AgentProc]| -> Vec<Option<u64>> {
        agents.iter().map(|a| procs::rss(a.pid())).collect()
    };

    // Baseline: every agent pushing, then the memory it settles at.
    let up = super::fleet::wait_all_up(
        &http,
        &hub.url("/metrics"),
        &names,
        args.interval * 6,
        Duration::from_secs(1),
    )
    .await
    .map_err(|missing| {
        anyhow::anyhow!("agents never all up in the namespace; missing {missing:?}")
    })?;
    tokio::time::sleep(args.interval * 2).await;
    let rss_baseline = rss_all(&agents);
    let mut phases = Vec::new();
    let mut every_phase_delivered = true;

    for phase in ["loss_5_percent", "delay_300ms_jitter_100ms", "rate_1mbit"] {
        let started = unix_now();
        match phase {
            "loss_5_percent" => injector.loss(5)?,
            "delay_300ms_jitter_100ms" => injector.delay(
                &relay,
                Duration::from_millis(300),
                Duration::from_millis(100),
            )?,
            _ => injector.rate("1mbit")?,
        }
        tokio::time::sleep(args.phase).await;
        injector.clear();
        relay.set(Duration::ZERO, Duration::ZERO);
        let text = http.get(hub.url("/metrics")).send().await?.text().await?;
        let last = last_pushes(&text);
        // Each agent got at least one push through during the phase.
        let delivered: Vec<(String, bool)> = names
            .iter()
            .map(|n| (n.clone(), last.get(n).is_some_and(|t| *t >= started + 1.0)))
            .collect();
        let all = delivered.iter().all(|(_, ok)| *ok);
        every_phase_delivered &= all;
        eprintln!("faults: {phase}: every agent delivered during it: {all}");
        phases.push(json!({"phase": phase, "seconds": args.phase.as_secs_f64(), "every_agent_delivered": all, "agents": delivered.iter().map(|(n, ok)| json!({"node": n, "delivered": ok})).collect::<Vec<_>>()}));
    }

    // The partition, then the time until every node has pushed again.
    injector.partition()?;
    tokio::time::sleep(args.partition).await;
    injector.clear();
    let healed = unix_now();
    let healed_at = Instant::now();
    let bound = args.interval * 2;
    let mut back_after: Vec<(String, Option<f64>)> =
        names.iter().map(|n| (n.clone(), None)).collect();
    while healed_at.elapsed() < bound + args.interval * 4
        && back_after.iter().any(|(_, t)| t.is_none())
    {
        if let Ok(r) = http.get(hub.url("/metrics")).send().await {
            if let Ok(text) = r.text().await {
                let last = last_pushes(&text);
                for (n, t) in back_after.iter_mut() {
                    if t.is_none() && last.get(n).is_some_and(|p| *p > healed) {
                        *t = Some(healed_at.elapsed().as_secs_f64());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let within = back_after
        .iter()
        .all(|(_, t)| t.is_some_and(|s| s <= bound.as_secs_f64()));
    eprintln!(
        "faults: partition of {:?}: back after {back_after:?} (bound {bound:?})",
        args.partition
    );
    tokio::time::sleep(args.interval * 2).await;
    let rss_end = rss_all(&agents);
    let text = http.get(hub.url("/metrics")).send().await?.text().await?;
    let per_agent: Vec<serde_json::Value> = names
        .iter()
        .zip(rss_baseline.iter().zip(&rss_end))
        .map(|(n, (b, e))| {
            json!({
                "node": n,
                "rss_mb_baseline": b.map(|v| v as f64 / 1_048_576.0),
                "rss_mb_end": e.map(|v| v as f64 / 1_048_576.0),
                "pushes_accepted": agent_counter(&text, "fleetgate_agent_pushes_total", n),
                "push_failures": agent_counter(&text, "fleetgate_agent_push_failures_total", n),
            })
        })
        .collect();
    // Flat: at most a quarter more than the settled baseline, plus 2 MiB of allocator noise.
    let flat = rss_baseline
        .iter()
        .zip(&rss_end)
        .all(|(b, e)| match (b, e) {
            (Some(b), Some(e)) => (*e as f64) <= *b as f64 * 1.25 + 2.0 * 1_048_576.0,
            _ => false,
        });
    let all_running = agents.iter_mut().all(|a| a.running());

    report.figure("injector", json!(format!("{injector:?}")));
    report.figure("agents", json!(args.agents));
    report.figure("interval_seconds", json!(args.interval.as_secs_f64()));
    report.figure("initial_all_up_seconds", json!(up.as_secs_f64()));
    report.figure("phases", json!(phases));
    report.figure("partition_seconds", json!(args.partition.as_secs_f64()));
    report.figure(
        "back_after_partition_seconds",
        json!(back_after
            .iter()
            .map(|(n, t)| json!({"node": n, "seconds": t}))
            .collect::<Vec<_>>()),
    );
    report.figure("per_agent", json!(per_agent));
    report.figure("load_average_start", json!(load_start));
    report.figure("load_average_end", json!(procs::load_average()));
    report.check(
        "every agent got pushes through loss, delay and the rate limit",
        every_phase_delivered,
        String::new(),
    );
    report.check(
        "every node back within two intervals of the partition's end",
        within,
        format!("{back_after:?}, bound {bound:?}"),
    );
    report.check(
        "no agent's memory grew",
        flat,
        format!("baseline {rss_baseline:?}, end {rss_end:?}"),
    );
    report.check("every agent still running", all_running, String::new());
    report.log_tail = Some(hub.log_tail());
    Ok(report)
}
