//! Fleetgate hub: enrolled agents push compressed snapshots; Prometheus scrapes one federated
//! `/metrics` where every series carries the identity of the node that pushed it.
//!
//! `main.rs` only parses the configuration, binds and calls [`run`]; everything else lives here
//! so tests drive the hub through [`router`] or a real listener.

pub mod activity;
pub mod cli;
pub mod config;
pub mod decode;
pub mod error;
pub mod exposition;
pub mod fleet;
pub mod labels;
pub mod metrics;
pub mod prepare;
pub mod registry;
pub mod routes;
pub mod store;
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
    /// What each node's pushes did, for the fleet page.
    pub activity: activity::Activity,
    /// Digest of the admin token.
    admin_token: tokens::TokenHash,
    /// Digest of the enrollment token.
    enroll_token: tokens::TokenHash,
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
        Ok(AppState {
            inner: Arc::new(Shared {
                config,
                registry,
                store: Store::new(),
                metrics: metrics::HubMetrics::new(),
                activity: activity::Activity::new(),
                admin_token,
                enroll_token,
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
}

impl AppState {
    /// The labels the hub puts on every series of `id`'s node.
    pub fn node_labels(&self, id: &registry::NodeIdentity) -> labels::NodeLabels {
        let c = &self.config;
        labels::NodeLabels::new(&c.instance_label, &c.node_label, &id.node, &id.labels)
    }

    /// Takes what one `/metrics` response shows (the store's view, each node's state) in a
    /// few short critical sections, so every chunk rendered from it belongs to one consistent
    /// exposition. Also updates `fleetgate_hub_nodes`.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let view = self.store.view();
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
        MetricsSnapshot { view, lines }
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
        self.metrics.encode(&mut buf);
        emit(&mut buf)
    }

    /// The complete `/metrics` body, uncompressed, in one buffer (tests and benchmarks; the
    /// route streams [`AppState::write_metrics`] instead).
    pub fn render_metrics(&self) -> Vec<u8> {
        let snapshot = self.metrics_snapshot();
        let mut out = Vec::new();
        self.write_metrics(&snapshot, usize::MAX, |chunk| {
            out.append(chunk);
            true
        });
        out
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
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

/// HTTP/1 read buffer per connection at most. Every agent keeps one connection open between
/// pushes; hyper's default lets each buffer grow to about 400 KB, and a push of 10-20 KB
/// left 20-30 KB per idle connection (60 MB at 2,000 nodes). Bodies still stream through in
/// chunks of this size, so larger pushes are unaffected apart from more, smaller reads.
const MAX_CONNECTION_BUFFER: usize = 8 * 1024;

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

    let addr_file = state.config.data_dir.join("listen.addr");
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        }
    });
    let served = match state.config.tls.clone() {
        None => {
            let mut server = axum_server::from_tcp(listener).handle(handle);
            server
                .http_builder()
                .http1()
                .max_buf_size(MAX_CONNECTION_BUFFER);
            fleetgate_daemon::write_atomic(&addr_file, addr.to_string().as_bytes(), 0o644)
                .map_err(StartError::io(format!("writing {}", addr_file.display())))?;
            tracing::info!(%addr, "fleetgate-hub listening (http)");
            server
                .serve(app.into_make_service())
                .await
                .map_err(StartError::io("serving"))
        }
        Some((cert, key)) => {
            // Several hubs in one process (tests) may race to install it; either way one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| {
                    StartError::Tls(format!("{} / {}: {e}", cert.display(), key.display()))
                })?;
            let mut server = axum_server::from_tcp_rustls(listener, tls).handle(handle);
            server
                .http_builder()
                .http1()
                .max_buf_size(MAX_CONNECTION_BUFFER);
            fleetgate_daemon::write_atomic(&addr_file, addr.to_string().as_bytes(), 0o644)
                .map_err(StartError::io(format!("writing {}", addr_file.display())))?;
            tracing::info!(%addr, "fleetgate-hub listening (https)");
            server
                .serve(app.into_make_service())
                .await
                .map_err(StartError::io("serving"))
        }
    };
    sweeper.abort();
    served
}
