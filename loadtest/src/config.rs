//! Command line of the rig; `--quick` swaps in a small workload for CI and reviewers.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// What a simulated agent sends to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushKind {
    /// A full snapshot every push.
    Full,
    /// Values pushes against the last accepted push, as the agent sends them.
    Values,
}

/// Load-test a Fleetgate hub with simulated agents, side by side with Prometheus Pushgateway.
#[derive(Debug, Clone, Parser)]
#[command(name = "fleetgate-loadtest", version)]
pub struct Config {
    /// Simulated nodes (agents).
    #[arg(long, env = "FLEETGATE_LOADTEST_NODES", default_value_t = 2000)]
    pub nodes: usize,
    /// CPUs of each simulated host (15 node_exporter series per CPU).
    #[arg(long, env = "FLEETGATE_LOADTEST_CPUS", default_value_t = 16)]
    pub cpus: usize,
    /// Containers per node (about 40 cAdvisor series each).
    #[arg(long, env = "FLEETGATE_LOADTEST_CONTAINERS", default_value_t = 4)]
    pub containers: usize,
    /// GPUs per node (one series of each of the agent's 28 DCGM families per GPU).
    #[arg(long, env = "FLEETGATE_LOADTEST_GPUS", default_value_t = 2)]
    pub gpus: usize,
    /// Push interval of every node.
    #[arg(long, env = "FLEETGATE_LOADTEST_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Jitter as a fraction of the interval (0.1 = ±10 %).
    #[arg(long, env = "FLEETGATE_LOADTEST_JITTER", default_value_t = 0.1)]
    pub jitter: f64,
    /// Length of the steady phase of each run.
    #[arg(long, env = "FLEETGATE_LOADTEST_DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How often the scraper pulls /metrics (plain, then asking for gzip), like Prometheus.
    #[arg(long, env = "FLEETGATE_LOADTEST_SCRAPE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub scrape_interval: Duration,
    /// Per-request timeout of pushes (the agent's default is 10 s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub push_timeout: Duration,
    /// Per-request timeout of scrapes.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub scrape_timeout: Duration,
    /// Closed-loop saturation phase after the steady one, to measure maximum ingest; 0s skips it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub saturate: Duration,
    /// Concurrent pushers during saturation.
    #[arg(long, default_value_t = 8)]
    pub saturate_concurrency: usize,
    /// Distinct HTTP clients (connections pools) shared by the nodes; 0 = one per node, like a
    /// real fleet.
    #[arg(long, default_value_t = 0)]
    pub clients: usize,
    /// What the simulated agents push to the hub: `full` snapshots every time, or `values`
    /// pushes between full ones as the agent does (a full snapshot first, every 20th push and
    /// after a 409).
    #[arg(long, value_enum, default_value_t = PushKind::Full)]
    pub push: PushKind,
    /// Also scrape the hub in this many shards (`/metrics?shard=I&of=N`), as a sharded
    /// Prometheus job does: each scrape interval takes its turn of an unsharded plain scrape, a
    /// plain round of the shards at once, a gzip round, and the shards one after another;
    /// 0 = unsharded scrapes only.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub scrape_shards: u32,
    /// Spread the nodes' first pushes (all full snapshots) over this time instead of one
    /// interval; the steady phase (--duration) starts after it.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub ramp: Duration,
    /// Hub binary the rig starts (`--listen 127.0.0.1:0 --data-dir <tmp>`).
    #[arg(
        long,
        env = "FLEETGATE_LOADTEST_HUB_BIN",
        default_value = "target/release/fleetgate-hub"
    )]
    pub hub_bin: PathBuf,
    /// Target an already running hub instead of starting one (loopback only); several
    /// separated by commas: every node pushes to each, as with --hubs.
    #[arg(long, env = "FLEETGATE_LOADTEST_HUB_URL")]
    pub hub_url: Option<String>,
    /// Hubs the rig starts; every simulated node pushes each snapshot to every one of them, as
    /// an agent with several hubs does, and the figures are reported per hub.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(usize))]
    pub hubs: usize,
    /// Enrollment token for --hub-url.
    #[arg(long, env = "FLEETGATE_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// File holding the enrollment token for --hub-url.
    #[arg(long, env = "FLEETGATE_ENROLL_TOKEN_FILE")]
    pub enroll_token_file: Option<PathBuf>,
    /// Pid of the hub behind --hub-url, for RSS and CPU from /proc.
    #[arg(long)]
    pub hub_pid: Option<u32>,
    /// Pushgateway binary the rig starts.
    #[arg(
        long,
        env = "FLEETGATE_LOADTEST_PUSHGATEWAY_BIN",
        default_value = "/usr/bin/prometheus-pushgateway"
    )]
    pub pushgateway_bin: PathBuf,
    /// Systems to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "fleetgate,pushgateway")]
    pub systems: Vec<String>,
    /// Run several node counts, e.g. 100,500,1000,2000, and draw --chart.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<usize>,
    /// PNG written by --sweep.
    #[arg(long, default_value = "loadtest-sweep.png")]
    pub chart: PathBuf,
    /// Write every figure of both systems as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds between progress lines.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress: Duration,
    /// Small and short (20 nodes, 2 s interval, 8 s per system): a smoke test under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Fail (exit 1) when Fleetgate fails more than N pushes in the steady phase of any run.
    #[arg(long, value_name = "N")]
    pub max_failed: Option<u64>,
    /// Fail when Fleetgate's push p99 in the steady phase of any run is above this (`50ms`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,
    /// Fail when Fleetgate's steady-state ingest is below R times Pushgateway's in the same run
    /// (needs both systems).
    #[arg(long, value_name = "R")]
    pub min_ingest_ratio: Option<f64>,
}

impl Config {
    /// The pass/fail limits given.
    pub fn thresholds(&self) -> crate::thresholds::Thresholds {
        crate::thresholds::Thresholds {
            max_failed: self.max_failed,
            max_p99: self.max_p99,
            min_ingest_ratio: self.min_ingest_ratio,
        }
    }

    /// Applies `--quick` over the defaults.
    pub fn effective(mut self) -> Self {
        if self.quick {
            self.nodes = self.nodes.min(20);
            self.interval = Duration::from_secs(2);
            self.duration = Duration::from_secs(8);
            self.scrape_interval = Duration::from_secs(2);
            self.saturate = Duration::from_secs(2);
            self.saturate_concurrency = self.saturate_concurrency.min(4);
            self.progress = Duration::from_secs(2);
            if self.sweep.len() > 2 {
                self.sweep.truncate(2);
            }
        }
        self
    }
}
