//! Container metrics with cAdvisor's names from the Docker Engine API: lists running
//! containers, fetches one-shot stats for all of them concurrently and inspects each container
//! when it is new, when it restarted, and every few minutes; reads each container's OOM kill
//! count from the host's cgroups ([`cgroup`]); [`cadvisor`] turns the results into
//! `container_*` families.

pub mod cadvisor;
pub mod cgroup;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerStatsResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptions, StatsOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::{stream, StreamExt};

use self::cadvisor::{ContainerSample, ContainerSpec};
use self::cgroup::{CgroupFs, MemoryCgroup, OomCount};
use super::{CollectError, CollectFuture, Collector, MetricBuffer};

/// Per-request timeout of the Docker client, in seconds.
const REQUEST_TIMEOUT_SECS: u64 = 5;
/// How long the construction-time ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Containers queried at once; bounds open connections and daemon load.
const CONCURRENCY: usize = 16;
/// An inspect result is refreshed after this long, so `docker update` limits catch up without
/// inspecting every cycle. Restarts do not wait for it: they are noticed from the cgroup.
const SPEC_TTL: Duration = Duration::from_secs(300);
/// The host's cgroup mount when the agent runs on the host itself.
const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Most OOM events read back for one restart, and how long that may take.
const MAX_MISSED_EVENTS: usize = 1000;
const EVENTS_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS);

/// Collects cAdvisor-compatible metrics for every running Docker container.
#[derive(Debug)]
pub struct ContainerCollector {
    /// Client for the engine; cheap to clone (one shared connection pool).
    docker: Docker,
    /// Whether the API version has been negotiated: bollard defaults to a newer API than
    /// older engines (Docker 20.10 speaks 1.41) accept.
    negotiated: bool,
    /// What is known about each running container, by id.
    tracked: HashMap<String, Tracked>,
    /// The host's cgroups: OOM kill counts and each run's identity.
    cgroups: CgroupFs,
    /// Set once it was logged that a container's cgroup could not be found, so it logs once.
    cgroup_missing_logged: bool,
    /// Block device names (`/dev/sda`) by (major, minor), for the fs `device` label.
    block_devices: HashMap<(u64, u64), String>,
}

/// What the collector remembers about one running container between cycles.
#[derive(Debug)]
struct Tracked {
    /// Labels, limits and start time from the last inspect.
    spec: Arc<ContainerSpec>,
    /// When that inspect was made.
    inspected_at: Instant,
    /// Its memory cgroup, where it was found; `None` if the host's cgroups are not visible.
    cgroup: Option<MemoryCgroup>,
    /// The cgroup's inode when its count was last read: a different one is a new run.
    identity: Option<u64>,
    /// `container_oom_events_total`.
    oom: OomCount,
    /// When the OOM count was last read: kills after it and before a restart were not seen.
    oom_read_at: Option<SystemTime>,
    /// Cumulative CPU time at the last stats, nanoseconds: a new run starts again from 0.
    cpu_ns: Option<u64>,
    /// The engine listed it as restarting: its next run has not been inspected yet.
    restarting: bool,
}

impl Tracked {
    fn new(spec: Arc<ContainerSpec>, cgroup: Option<MemoryCgroup>) -> Tracked {
        Tracked {
            spec,
            inspected_at: Instant::now(),
            cgroup,
            identity: None,
            oom: OomCount::default(),
            oom_read_at: None,
            cpu_ns: None,
            restarting: false,
        }
    }

    /// Whether to inspect it this cycle: its spec expired, or it runs again after the engine
    /// listed it as restarting, or its cgroup is a new one (it restarted between two cycles).
    fn needs_inspect(&mut self, cgroups: &CgroupFs, listed_restarting: bool) -> bool {
        if listed_restarting {
            self.restarting = true;
            return false;
        }
        let new_run = match (&self.cgroup, self.identity) {
            (Some(cgroup), Some(known)) => cgroups.identity(cgroup).is_some_and(|now| now != known),
            _ => false,
        };
        self.restarting || new_run || self.inspected_at.elapsed() >= SPEC_TTL
    }
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
            tracked: HashMap::new(),
            cgroups: CgroupFs::new(PathBuf::from(DEFAULT_CGROUP_ROOT)),
            cgroup_missing_logged: false,
            block_devices: HashMap::new(),
        })
    }

    /// Reads the containers' cgroups under `root` (the host's `/sys/fs/cgroup` as the agent
    /// sees it, `<--sys-path>/fs/cgroup`) instead of `/sys/fs/cgroup`.
    pub fn with_cgroup_root(mut self, root: PathBuf) -> Self {
        self.cgroups = CgroupFs::new(root);
        self
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
        let listed: Vec<(String, bool)> = running
            .into_iter()
            .filter_map(|c| {
                let restarting = c.state == Some(ContainerSummaryStateEnum::RESTARTING);
                Some((c.id?, restarting))
            })
            .collect();

        // Owned jobs: futures borrowing from the iterator trip the compiler's `Send` check.
        let jobs: Vec<(Docker, String, bool)> = listed
            .iter()
            .map(|(id, restarting)| {
                let inspect = self
                    .tracked
                    .get_mut(id)
                    .is_none_or(|t| t.needs_inspect(&self.cgroups, *restarting));
                (self.docker.clone(), id.clone(), inspect)
            })
            .collect();
        let mut fetched: Vec<Fetched> = stream::iter(jobs)
            .map(|(docker, id, inspect)| fetch(docker, id, inspect))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        self.inspect_cpu_resets(&mut fetched).await;

        // Containers that stopped or were removed drop out of the cache and the snapshot.
        let running: HashSet<&String> = listed.iter().map(|(id, _)| id).collect();
        self.tracked.retain(|id, _| running.contains(id));
        for f in &mut fetched {
            if let Some(spec) = f.spec.take() {
                self.apply_inspect(&f.id, spec).await;
            }
        }
        self.read_cgroups(&fetched);

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
                let tracked = self.tracked.get(&f.id)?;
                Some(ContainerSample {
                    spec: &tracked.spec,
                    stats: f.stats.as_ref()?,
                    oom_events: tracked.oom.value(),
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

    /// A container whose CPU time went down since the last cycle runs anew (each run starts
    /// from 0): inspect it now, so a restart shows even where its cgroup is not visible.
    async fn inspect_cpu_resets(&mut self, fetched: &mut [Fetched]) {
        let mut reset = Vec::new();
        for (i, f) in fetched.iter().enumerate() {
            let now = f.stats.as_ref().and_then(cpu_ns);
            let Some(tracked) = self.tracked.get_mut(&f.id) else {
                continue;
            };
            let before = std::mem::replace(&mut tracked.cpu_ns, now);
            if f.spec.is_none() && cpu_went_back(before, now) {
                reset.push(i);
            }
        }
        let inspected: Vec<(usize, Option<Arc<ContainerSpec>>)> = stream::iter(reset)
            .map(|i| {
                let (docker, id) = (self.docker.clone(), fetched[i].id.clone());
                async move { (i, inspect(&docker, &id).await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (i, spec) in inspected {
            fetched[i].spec = spec;
        }
    }

    /// Takes a fresh inspect result. A start time that changed is a restart: the OOM kills
    /// of the run that ended are carried over, including those after the last read of its
    /// cgroup (the engine's `oom` events up to the new start).
    async fn apply_inspect(&mut self, id: &str, spec: Arc<ContainerSpec>) {
        let located = self.cgroups.locate(id, &spec.cgroup_parent);
        if located.is_none() && !self.cgroup_missing_logged {
            self.cgroup_missing_logged = true;
            tracing::info!(
                container = %id,
                cgroup_root = %self.cgroups.root().display(),
                "container cgroup not found, its OOM kills are not counted until it is; \
                 in a container the agent needs the host's /sys mounted and --sys-path"
            );
        }
        let Some(tracked) = self.tracked.get_mut(id) else {
            self.tracked
                .insert(id.to_string(), Tracked::new(spec, located));
            return;
        };
        let restarted = match (tracked.spec.start_time_seconds, spec.start_time_seconds) {
            (Some(before), Some(now)) => now != before,
            _ => false,
        };
        if restarted && tracked.oom.is_known() {
            let missed = match (tracked.oom_read_at, spec.start_time_seconds) {
                (Some(since), Some(until)) => oom_events(&self.docker, id, since, until).await,
                _ => 0,
            };
            tracked.oom.restarted(missed);
        }
        tracked.spec = spec;
        tracked.inspected_at = Instant::now();
        tracked.restarting = false;
        // Between two runs the cgroup is gone; the next run's is in the same place.
        if located.is_some() {
            tracked.cgroup = located;
        }
        // The next read takes whatever run is current as the known one.
        tracked.identity = None;
    }

    /// Reads the OOM kill count and identity of every fetched container's cgroup. A cgroup
    /// that changed since the check before the requests belongs to a run not inspected yet:
    /// it is left for the next cycle, which inspects it first.
    fn read_cgroups(&mut self, fetched: &[Fetched]) {
        for f in fetched {
            let Some(tracked) = self.tracked.get_mut(&f.id) else {
                continue;
            };
            let Some(cgroup) = &tracked.cgroup else {
                continue;
            };
            let Some(identity) = self.cgroups.identity(cgroup) else {
                continue;
            };
            if tracked.identity.is_some_and(|known| known != identity) {
                continue;
            }
            if let Some(kills) = self.cgroups.oom_kills(cgroup) {
                tracked.oom.observe(kills);
                tracked.identity = Some(identity);
                tracked.oom_read_at = Some(SystemTime::now());
            }
        }
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

/// Whether cumulative CPU time went down between two readings: only a new run does that.
fn cpu_went_back(before: Option<u64>, now: Option<u64>) -> bool {
    matches!((before, now), (Some(before), Some(now)) if now < before)
}

/// Cumulative CPU time of a stats response, nanoseconds.
fn cpu_ns(stats: &ContainerStatsResponse) -> Option<u64> {
    stats.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage
}

/// The engine's `oom` events of container `id` after `since` and up to `until` (unix seconds):
/// kills in a run that ended before the agent read its cgroup again. The engine keeps its
/// last few hundred events, so this is exact for a restart noticed within a cycle or two;
/// 0 when the engine cannot answer (logged at debug).
async fn oom_events(docker: &Docker, id: &str, since: SystemTime, until: f64) -> u64 {
    let since = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if until <= since {
        return 0;
    }
    let options = EventsOptions {
        since: Some(format!("{since:.9}")),
        until: Some(format!("{until:.9}")),
        filters: Some(HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![id.to_string()]),
            ("event".to_string(), vec!["oom".to_string()]),
        ])),
    };
    let events = docker
        .events(Some(options))
        .take(MAX_MISSED_EVENTS)
        .collect::<Vec<_>>();
    match tokio::time::timeout(EVENTS_TIMEOUT, events).await {
        Ok(events) => {
            let mut count = 0;
            for event in events {
                match event {
                    Ok(e) if e.action.as_deref() == Some("oom") => count += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "reading oom events failed");
                    }
                }
            }
            count
        }
        Err(_) => {
            tracing::debug!(container = %id, "reading oom events timed out");
            0
        }
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
        self::inspect(&docker, &id).await
    };
    let (stats, spec) = futures_util::join!(stats, spec);
    Fetched { id, stats, spec }
}

/// The spec of container `id`; `None` when the engine cannot say (it was removed meanwhile).
async fn inspect(docker: &Docker, id: &str) -> Option<Arc<ContainerSpec>> {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(response) => ContainerSpec::from_inspect(&response).map(Arc::new),
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "container inspect failed");
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cpu_time_going_down_is_a_new_run() {
        assert!(cpu_went_back(Some(2_000_000), Some(150_000)));
        assert!(!cpu_went_back(Some(2_000_000), Some(2_000_000)));
        assert!(!cpu_went_back(Some(2_000_000), Some(2_500_000)));
        // Unknown on either side (first cycle, stats without CPU figures) says nothing.
        assert!(!cpu_went_back(None, Some(1)));
        assert!(!cpu_went_back(Some(1), None));
    }
}
