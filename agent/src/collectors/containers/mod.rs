//! Container metrics with cAdvisor's names from the Docker Engine API: lists running
//! containers, fetches one-shot stats for all of them concurrently and inspects each container
//! once; [`cadvisor`] turns the results into `container_*` families.

pub mod cadvisor;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, StatsOptions};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::{stream, StreamExt};

use self::cadvisor::{ContainerSample, ContainerSpec};
use super::{CollectError, CollectFuture, Collector, MetricBuffer};

/// Per-request timeout of the Docker client, in seconds.
const REQUEST_TIMEOUT_SECS: u64 = 5;
/// How long the construction-time ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Containers queried at once; bounds open connections and daemon load.
const CONCURRENCY: usize = 16;
/// An inspect result is refreshed after this long, so `docker update` limits and the start
/// time of a container restarted between two cycles catch up without inspecting every cycle.
const SPEC_TTL: Duration = Duration::from_secs(300);

/// Collects cAdvisor-compatible metrics for every running Docker container.
#[derive(Debug)]
pub struct ContainerCollector {
    /// Client for the engine; cheap to clone (one shared connection pool).
    docker: Docker,
    /// Whether the API version has been negotiated: bollard defaults to a newer API than
    /// older engines (Docker 20.10 speaks 1.41) accept.
    negotiated: bool,
    /// Inspect results by container id; only new or expired ids are inspected each cycle.
    specs: HashMap<String, CachedSpec>,
    /// Block device names (`/dev/sda`) by (major, minor), for the fs `device` label.
    block_devices: HashMap<(u64, u64), String>,
}

/// One container's spec and when it was read.
#[derive(Debug)]
struct CachedSpec {
    spec: Arc<ContainerSpec>,
    read_at: Instant,
}

impl ContainerCollector {
    /// Connects to the engine at `socket_path` (`/var/run/docker.sock` or `unix://...`).
    /// A missing socket or one nobody answers on gives [`CollectError::Unavailable`].
    pub fn new(socket_path: &str) -> Result<Self, CollectError> {
        let path = socket_path.strip_prefix("unix://").unwrap_or(socket_path);
        ping(&PathBuf::from(path)).map_err(|e| {
            CollectError::Unavailable(format!("Docker engine at {path} is not reachable: {e}"))
        })?;
        let docker =
            Docker::connect_with_socket(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
                .map_err(|e| CollectError::Unavailable(format!("Docker client for {path}: {e}")))?;
        Ok(ContainerCollector {
            docker,
            negotiated: false,
            specs: HashMap::new(),
            block_devices: HashMap::new(),
        })
    }

    async fn collect_into(&mut self, out: &mut MetricBuffer) -> Result<(), CollectError> {
        if !self.negotiated {
            self.docker =
                self.docker.clone().negotiate_version().await.map_err(|e| {
                    CollectError::Failed(format!("Docker version negotiation: {e}"))
                })?;
            self.negotiated = true;
        }

        let list = ListContainersOptions {
            all: false,
            ..Default::default()
        };
        let running = self
            .docker
            .list_containers(Some(list))
            .await
            .map_err(|e| CollectError::Failed(format!("listing containers: {e}")))?;
        let ids: Vec<String> = running.into_iter().filter_map(|c| c.id).collect();

        // Owned jobs: futures borrowing from the iterator trip the compiler's `Send` check.
        let jobs: Vec<(Docker, String, bool)> = ids
            .iter()
            .map(|id| {
                let fresh = self
                    .specs
                    .get(id)
                    .is_some_and(|c| c.read_at.elapsed() < SPEC_TTL);
                (self.docker.clone(), id.clone(), !fresh)
            })
            .collect();
        let fetched: Vec<Fetched> = stream::iter(jobs)
            .map(|(docker, id, inspect)| fetch(docker, id, inspect))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

        for f in &fetched {
            if let Some(spec) = &f.spec {
                let cached = CachedSpec {
                    spec: Arc::clone(spec),
                    read_at: Instant::now(),
                };
                self.specs.insert(f.id.clone(), cached);
            }
        }
        // Containers that stopped or were removed drop out of the cache and the snapshot.
        let running: HashSet<&String> = ids.iter().collect();
        self.specs.retain(|id, _| running.contains(id));

        for f in &fetched {
            if let Some(stats) = &f.stats {
                for numbers in cadvisor::block_device_numbers(stats) {
                    self.block_devices
                        .entry(numbers)
                        .or_insert_with(|| block_device_name(numbers));
                }
            }
        }

        let mut samples: Vec<ContainerSample<'_>> = fetched
            .iter()
            .filter_map(|f| {
                let spec = self.specs.get(&f.id)?;
                Some(ContainerSample {
                    spec: &spec.spec,
                    stats: f.stats.as_ref()?,
                })
            })
            .collect();
        samples.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));

        // Whole seconds, as cAdvisor writes `container_last_seen`.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as f64;
        cadvisor::write_families(&samples, now, &self.block_devices, out);
        Ok(())
    }
}

impl Collector for ContainerCollector {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
        Box::pin(self.collect_into(out))
    }
}

/// What one container's requests returned this cycle; a container that vanished between the
/// list and these requests has `None`s and is skipped.
#[derive(Debug)]
struct Fetched {
    id: String,
    stats: Option<ContainerStatsResponse>,
    spec: Option<Arc<ContainerSpec>>,
}

async fn fetch(docker: Docker, id: String, inspect: bool) -> Fetched {
    // `one_shot` skips the engine's wait for a second sample (about a second per container).
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let stats = async {
        match docker.stats(&id, Some(options)).next().await {
            Some(Ok(stats)) => Some(stats),
            Some(Err(e)) => {
                tracing::debug!(container = %id, error = %e, "container stats failed");
                None
            }
            None => None,
        }
    };
    let spec = async {
        if !inspect {
            return None;
        }
        match docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(response) => ContainerSpec::from_inspect(&response).map(Arc::new),
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "container inspect failed");
                None
            }
        }
    };
    let (stats, spec) = futures_util::join!(stats, spec);
    Fetched { id, stats, spec }
}

/// `GET /_ping` over the socket: tells a live engine from a missing socket file or a stale one
/// whose daemon is gone, without needing an async runtime at construction.
fn ping(path: &PathBuf) -> Result<(), String> {
    let mut stream = UnixStream::connect(path).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(PING_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(PING_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&head[..n]);
    if head.starts_with("HTTP/1.") && head.get(9..12) == Some("200") {
        Ok(())
    } else {
        Err(format!("unexpected answer to /_ping: {head:?}"))
    }
}

/// `/dev/<name>` of a block device from `/sys/dev/block/<major>:<minor>/uevent`, as cAdvisor
/// labels it; `major:minor` where sysfs does not know the device.
fn block_device_name((major, minor): (u64, u64)) -> String {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"));
    uevent
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|name| format!("/dev/{name}"))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}
