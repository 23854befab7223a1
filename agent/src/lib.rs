//! Fleetgate agent library: configuration, collectors, the push loop and the hub client;
//! `main.rs` is a thin wrapper around [`run`].

pub mod collection;
pub mod collectors;
pub mod config;
pub mod deregister;
pub mod enroll;
pub mod hub_client;
pub mod push;

use std::future::Future;
use std::io::Write;

use collection::{Collection, DEFAULT_COLLECTOR_TIMEOUT};
use collectors::agent_self::PushStats;
use collectors::containers::ContainerCollector;
use collectors::gpu::GpuCollector;
use collectors::host::{HostCollector, HostPaths};
use collectors::scrape::ScrapeCollector;
use collectors::textfile::TextfileCollector;
use config::{CollectorKind, Config, Mode};
use hub_client::HubError;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state directory could not be read or written.
    #[error(transparent)]
    State(#[from] enroll::StateError),
    /// The hub client could not be built.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// No enrollment token while one is needed.
    #[error("node {node} has no valid stored push token for {hub} and no enrollment token is configured: set FLEETGATE_ENROLL_TOKEN or FLEETGATE_ENROLL_TOKEN_FILE (or the hub's enroll_token_file)")]
    NoEnrollToken {
        /// The node that needs to enroll.
        node: String,
        /// The hub it needs to enroll at.
        hub: String,
    },
    /// The hub refused the enrollment.
    #[error("enrolling node {node} at {hub} was refused: {source} (a removed node name can only be enrolled again with the admin token)")]
    Enroll {
        /// The node.
        node: String,
        /// The hub.
        hub: String,
        /// The hub's answer.
        source: HubError,
    },
    /// `deregister` failed at one hub or more.
    #[error("deregistered from {removed} of {hubs} hubs; failed at: {failed}")]
    Deregister {
        /// The hubs that failed, each with its error.
        failed: String,
        /// How many hubs removed the node (or had already).
        removed: usize,
        /// How many hubs the node held a token for.
        hubs: usize,
    },
    /// Printing the `--once` output failed.
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
}

/// Runs the agent in `mode` until done or until `shutdown` resolves.
pub async fn run(
    mode: Mode,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    match mode {
        Mode::Deregister => deregister::deregister(&config).await,
        Mode::Once => {
            // The push metrics of every configured hub, as a push would carry them.
            let stats = PushStats::new();
            for hub in &config.hubs {
                stats.hub(&hub.url);
            }
            let (mut collection, _) = build_collection(&config, stats);
            let families = collection.collect().await;
            let text = fleetgate_shared::text::render(&families);
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(AgentError::Stdout)
        }
        Mode::Run => {
            let stats = PushStats::new();
            let (collection, gpu_devices) = build_collection(&config, stats.clone());
            let enrollment = enroll::enrollment(&config, gpu_devices);
            let hubs: Vec<&str> = config.hubs.iter().map(|h| h.url.as_str()).collect();
            tracing::info!(node = %config.node, ?hubs, interval = ?config.interval,
                collectors = ?collection.names(), outbound = %config.outbound(), "fleetgate-agent starting");
            if config.interval >= config.keep_alive {
                tracing::info!(interval = ?config.interval, keep_alive = ?config.keep_alive,
                    "each push opens a new connection to the hub (with https, a TLS handshake each), as the interval is not shorter than --keep-alive; raise the hub's --header-read-timeout and --keep-alive above the interval to keep one");
            }
            push::PushLoop::new(config, collection, stats, enrollment)?
                .run(shutdown)
                .await
        }
    }
}

/// Builds the enabled collectors, in the order their families appear, and returns them with
/// the number of GPUs found (0 without the GPU collector or NVML).
pub fn build_collection(config: &Config, stats: PushStats) -> (Collection, u32) {
    let mut c = Collection::new(stats, DEFAULT_COLLECTOR_TIMEOUT);
    let mut gpu_devices = 0;
    for kind in &config.collectors {
        match kind {
            CollectorKind::Host => add_host(&mut c, config),
            CollectorKind::Gpu => gpu_devices = add_gpu(&mut c),
            CollectorKind::Containers => add_containers(&mut c, config),
            CollectorKind::Triton => c.add(
                "triton",
                ScrapeCollector::triton(config.triton_url.clone(), config.scrape_timeout),
            ),
        }
    }
    if !config.scrape_urls.is_empty() {
        c.add(
            "scrape",
            ScrapeCollector::new(config.scrape_urls.clone(), config.scrape_timeout),
        );
    }
    if let Some(dir) = &config.textfile_dir {
        c.add("textfile", Ok(TextfileCollector::new(dir.clone())));
    }
    (c, gpu_devices)
}

fn add_host(c: &mut Collection, config: &Config) {
    let paths = HostPaths {
        proc: config.host.proc.clone(),
        sys: config.host.sys.clone(),
        rootfs: config.host.rootfs.clone(),
    };
    c.add("host", HostCollector::new(paths));
}

/// Adds the GPU collector and returns how many GPUs NVML reports (0 without a driver).
fn add_gpu(c: &mut Collection) -> u32 {
    let gpu = GpuCollector::new();
    let devices = gpu.as_ref().map_or(0, GpuCollector::device_count);
    c.add("gpu", gpu);
    devices
}

fn add_containers(c: &mut Collection, config: &Config) {
    c.add(
        "containers",
        ContainerCollector::new(&config.docker_socket.to_string_lossy())
            .map(|c| c.with_cgroup_root(config.host.sys.join("fs/cgroup"))),
    );
}
