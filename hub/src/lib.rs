//! Fleetgate hub: enrolled agents push compressed snapshots; Prometheus scrapes one federated
//! `/metrics` where every series carries the identity of the node that pushed it.
//!
//! `main.rs` only parses the configuration, binds and calls [`run`]; everything else lives here
//! so tests drive the hub through [`router`] or a real listener.

pub mod activity;
pub mod audit;
pub mod cli;
pub mod config;
pub mod decode;
pub mod error;
pub mod exposition;
pub mod fleet;
pub mod guard;
pub mod gzip;
pub mod labels;
pub mod metrics;
pub mod prepare;
pub mod registry;
pub mod routes;
pub mod server;
pub mod shard;
pub mod snapshots;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod tokens;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Args, Config};
pub use error::{ApiError, StartError};
pub use exposition::render_exposition;
pub use registry::Registry;
pub use routes::router;
pub use store::Store;

/// Everything the handlers share; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

/// The hub's shared state behind [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// Validated configuration.
    pub config: Config,
    /// Node identities (persisted).
    pub registry: Registry,
    /// Latest snapshot per node.
    pub store: Store,
    /// Self-metrics.
    pub metrics: metrics::HubMetrics,
    /// `DATA_DIR/audit.log`: identity changes and admin access.
    pub audit: audit::AuditLog,
    /// Failed authentications per source address.
    pub auth_limiter: guard::AuthLimiter,
    /// The bound on pushes waiting for ingest.
    pub push_gate: guard::PushGate,
    /// The bound on renders running at once.
    pub render_gate: guard::RenderGate,
    /// Counts refused connections and requests and logs them once per source.
    pub refusals: guard::Refusals,
    /// What each node's pushes did, for the fleet page.
    pub activity: activity::Activity,
    /// Digest of the admin token.
    admin_token: tokens::TokenHash,
    /// Digest of the enrollment token.
    enroll_token: tokens::TokenHash,
    /// Digest of the token scrapes of `/metrics` must present, when one is set.
    metrics_token: Option<tokens::TokenHash>,
}

impl AppState {
    /// Loads the tokens and the registry from the configured data directory.
    pub fn open(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(StartError::io(format!("creating {}", dir.display())))?;
        let admin_token = tokens::load(&config.admin_token, dir, "admin.token")
            .map_err(StartError::io("admin token"))?;
        let enroll_token = tokens::load(&config.enroll_token, dir, "enroll.token")
            .map_err(StartError::io("enrollment token"))?;
        let registry = Registry::open(dir).map_err(StartError::io("loading the node registry"))?;
        let store = Store::new();
        let path = dir.join(snapshots::FILE);
        let known = |node: &str, epoch: u64| {
            registry
                .get(node)
                .is_some_and(|id| !id.removed && id.epoch == epoch)
        };
        match snapshots::load(&store, label_names(&config), &path, known) {
            Ok(None) => {}
            Ok(Some(l)) => tracing::info!(
                snapshots = l.snapshots,
                stale = l.stale,
                unknown = l.unknown,
                "loaded the snapshots saved at the last shutdown"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "snapshots file skipped; nodes reappear with their next push"
            ),
        }
        let audit = audit::AuditLog::open(dir, audit::DEFAULT_MAX_BYTES)
            .map_err(StartError::io("opening the audit log"))?;
        let metrics = metrics::HubMetrics::new();
        let p = config.protection;
        Ok(AppState {
            inner: Arc::new(Shared {
                registry,
                store,
                audit,
                auth_limiter: guard::AuthLimiter::new(p.auth_failure_burst, p.auth_failure_rate),
                push_gate: guard::PushGate::new(p.max_pending_pushes),
                render_gate: guard::RenderGate::new(guard::MAX_RENDERS),
                refusals: guard::Refusals::new(metrics.refused_connections.clone()),
                metrics,
                activity: activity::Activity::new(),
                admin_token,
                enroll_token,
                metrics_token: config
                    .metrics_token
                    .as_ref()
                    .map(|t| tokens::hash(t.expose())),
                config,
            }),
        })
    }

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        tokens::digests_equal(&tokens::hash(token), &self.inner.admin_token)
    }

    /// Whether `token` is the enrollment token.
    pub fn is_enroll(&self, token: &str) -> bool {
        tokens::digests_equal(&tokens::hash(token), &self.inner.enroll_token)
    }

    /// The digest of the `/metrics` token, when scrapes must present one.
    pub fn metrics_token(&self) -> Option<&tokens::TokenHash> {
        self.inner.metrics_token.as_ref()
    }

    /// Appends `record` to the audit log on a blocking thread; a record that cannot be written
    /// is logged instead (with everything it held: none of it is secret) and counted.
    pub async fn audit(&self, record: audit::Record) {
        let state = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = state.audit.append(&record);
            (result, record)
        })
        .await;
        match written {
            Ok((Ok(()), _)) => {}
            Ok((Err(e), record)) => {
                self.metrics.audit_failures.inc();
                tracing::error!(error = %e, ?record, "could not append to the audit log");
            }
            Err(e) => {
                self.metrics.audit_failures.inc();
                tracing::error!(error = %e, "audit task failed");
            }
        }
    }
}

impl AppState {
    /// The labels the hub puts on every series of `id`'s node.
    pub fn node_labels(&self, id: &registry::NodeIdentity) -> labels::NodeLabels {
        let c = &self.config;
        labels::NodeLabels::new(&c.instance_label, &c.node_label, &id.node, &id.labels)
    }

    /// Takes what one `/metrics` response shows (the store's view, each node's state), for
    /// the whole fleet or one `shard` of it, in a few short critical sections, so every chunk
    /// rendered from it belongs to one consistent exposition. Also updates
    /// `fleetgate_hub_nodes`.
    pub fn metrics_snapshot(&self, shard: Option<shard::Shard>) -> MetricsSnapshot {
        let mut view = self.store.view();
        let statuses = self.store.statuses();
        let (mut up, mut stale, mut removed) = (0, 0, 0);
        let mut lines = Vec::new();
        for id in self.registry.list() {
            if id.removed {
                removed += 1;
                continue;
            }
            let s = statuses.get(&id.node).cloned().unwrap_or_default();
            if s.up {
                up += 1;
            } else {
                stale += 1;
            }
            if shard.is_some_and(|shard| !shard.contains(&id.node)) {
                continue;
            }
            lines.push(exposition::NodeLine {
                labels: self.node_labels(&id),
                up: s.up,
                last_push: s.last_push,
                series: s.series,
            });
        }
        for (state, n) in [("up", up), ("stale", stale), ("removed", removed)] {
            self.metrics.nodes.with_label_values(&[state]).set(n);
        }
        if let Some(shard) = shard {
            view.retain_nodes(|node| shard.contains(node));
        }
        MetricsSnapshot {
            view,
            lines,
            hub_metrics: shard.is_none_or(|s| s.carries_hub_metrics()),
        }
    }

    /// Writes the `/metrics` body of `snapshot` (nodes' families, the synthetic node series,
    /// then the self-metrics) in chunks of about `chunk_bytes`, handing each to `emit`, which
    /// may take the bytes. Stops early, returning `false`, when `emit` returns `false` (the
    /// client went away). The render duration observed counts rendering only, not the time
    /// `emit` waits for the client.
    pub fn write_metrics(
        &self,
        snapshot: &MetricsSnapshot,
        chunk_bytes: usize,
        mut emit: impl FnMut(&mut Vec<u8>) -> bool,
    ) -> bool {
        let mut writer = exposition::ExpositionWriter::new(&snapshot.view, &snapshot.lines);
        let mut rendering = std::time::Duration::ZERO;
        let mut buf = Vec::new();
        loop {
            if buf.capacity() == 0 && chunk_bytes < usize::MAX / 2 {
                buf.reserve(chunk_bytes + chunk_bytes / 4);
            }
            let started = std::time::Instant::now();
            let more = writer.fill(&mut buf, chunk_bytes);
            rendering += started.elapsed();
            if !more {
                break;
            }
            if !emit(&mut buf) {
                return false;
            }
            buf.clear();
        }
        self.metrics
            .render_duration
            .observe(rendering.as_secs_f64());
        if snapshot.hub_metrics {
            self.metrics.encode(&mut buf);
        }
        emit(&mut buf)
    }

    /// The complete `/metrics` body (of one `shard`, or all), uncompressed, in one buffer
    /// (tests and benchmarks; the route streams [`AppState::write_metrics`] instead).
    pub fn render_metrics(&self, shard: Option<shard::Shard>) -> Vec<u8> {
        let snapshot = self.metrics_snapshot(shard);
        let mut out = Vec::new();
        self.write_metrics(&snapshot, usize::MAX, |chunk| {
            out.append(chunk);
            true
        });
        out
    }
}

impl AppState {
    /// Writes every node's latest snapshot to `DATA_DIR/snapshots.bin` for the next start
    /// (graceful shutdown only), logging the outcome; a failure costs the next start its
    /// snapshots, nothing else.
    pub fn save_snapshots(&self) {
        let path = self.config.data_dir.join(snapshots::FILE);
        let started = std::time::Instant::now();
        match snapshots::save(&self.store, label_names(&self.config), &path) {
            Ok(saved) => tracing::info!(
                path = %path.display(),
                nodes = saved.nodes,
                snapshots = saved.snapshots,
                bytes = saved.bytes,
                took_ms = started.elapsed().as_millis() as u64,
                "saved the snapshots for the next start"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot save the snapshots; the next start begins without them"
            ),
        }
    }
}

/// The label names the hub writes on every series, which saved snapshots must have been
/// rendered for.
fn label_names(config: &Config) -> snapshots::LabelNames<'_> {
    snapshots::LabelNames {
        instance: &config.instance_label,
        node: &config.node_label,
    }
}

/// What one `/metrics` response shows, taken at once by [`AppState::metrics_snapshot`].
#[derive(Debug)]
pub struct MetricsSnapshot {
    /// Fresh snapshots and family names; holding it keeps those snapshots alive until the
    /// response is written, however many pushes replace them meanwhile.
    pub view: store::View,
    /// Every enrolled node's synthetic series.
    pub lines: Vec<exposition::NodeLine>,
    /// Whether the hub's own `fleetgate_hub_*` metrics follow (unsharded, or shard 0).
    pub hub_metrics: bool,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

/// Runs the hub on an already bound `listener` until `shutdown` completes: loads identities,
/// writes the bound address to `DATA_DIR/listen.addr`, serves HTTP (or HTTPS with
/// `config.tls`), and evicts stale snapshots in the background.
pub async fn run(
    config: Config,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = AppState::open(config)?;
    let addr = listener
        .local_addr()
        .map_err(StartError::io("reading the bound address"))?;
    listener
        .set_nonblocking(true)
        .map_err(StartError::io("configuring the listener"))?;
    let app = router(state.clone());

    let sweeper = tokio::spawn({
        let state = state.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                state.store.evict_stale();
            }
        }
    });

    let tls = match &state.config.tls {
        None => None,
        Some((cert, key)) => Some(server::Tls::load(
            cert,
            key,
            state.config.tls_client_ca.as_deref(),
        )?),
    };
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(StartError::io("configuring the listener"))?;
    server::raise_open_files_limit(state.config.protection.max_connections);
    let addr_file = state.config.data_dir.join("listen.addr");
    fleetgate_daemon::write_atomic(&addr_file, addr.to_string().as_bytes(), 0o644)
        .map_err(StartError::io(format!("writing {}", addr_file.display())))?;
    let scheme = match (&tls, &state.config.tls_client_ca) {
        (None, _) => "http",
        (Some(_), None) => "https",
        (Some(_), Some(_)) => "https, client certificates",
    };
    tracing::info!(%addr, scheme, "fleetgate-hub listening");
    let served = server::serve(state.clone(), listener, app, tls, shutdown)
        .await
        .map_err(StartError::io("serving"));
    sweeper.abort();
    served?;
    // No push is in flight any more: what is saved is the last state every agent was told.
    let saver = state.clone();
    tokio::task::spawn_blocking(move || saver.save_snapshots())
        .await
        .map_err(|e| StartError::io("saving snapshots")(std::io::Error::other(e)))?;
    Ok(())
}
