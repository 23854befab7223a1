//! The listener: accepts connections up to `--max-connections`, terminates TLS (asking for a
//! client certificate when `--tls-client-ca` is set), serves HTTP/1 and HTTP/2 on each with a
//! bounded read buffer and `--header-read-timeout`, and says for every connection closed
//! without being served why, in `fleetgate_hub_refused_connections_total` and once per source
//! in the log. Handlers learn the peer from the [`Peer`] request extension.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::error::StartError;
use crate::guard::Refusal;
use crate::AppState;

/// HTTP/1 read buffer per connection at most. Every agent keeps one connection open between
/// pushes; hyper's default lets each buffer grow to about 400 KB, and a push of 10-20 KB
/// left 20-30 KB per idle connection (60 MB at 2,000 nodes). Bodies still stream through in
/// chunks of this size, so larger pushes are unaffected apart from more, smaller reads. A
/// request head must fit in it: a larger one is answered 431.
pub const MAX_CONNECTION_BUFFER: usize = 8 * 1024;

/// Time a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time in-flight requests get to finish after shutdown was asked for.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// Who is at the other end of a request's connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether it presented a client certificate that chains to `--tls-client-ca` (rustls
    /// refuses the handshake for one that does not, so presence means verified).
    pub client_cert: bool,
}

/// The TLS side of the listener.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Loads the certificate chain and key (PEM), and with `client_ca` the CA certificates
    /// client certificates must chain to. Clients without a certificate may still connect
    /// (Prometheus, the admin): the routes that need one check [`Peer::client_cert`].
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, StartError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(StartError::Tls(format!(
                "{}: no certificate in the file",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| StartError::Tls(format!("{}: {e}", key.display())))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let cas = CertificateDer::pem_file_iter(ca)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
                for c in cas {
                    roots
                        .add(c)
                        .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
                }
                if roots.is_empty() {
                    return Err(StartError::Tls(format!(
                        "{}: no CA certificate in the file",
                        ca.display()
                    )));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| StartError::Tls(format!("{} / {}: {e}", cert.display(), e)))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then gives the requests in flight
/// [`GRACEFUL_SHUTDOWN`] to finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let protection = state.config.protection;
    let slots = Arc::new(Semaphore::new(protection.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(protection.header_read_timeout)
        .max_buf_size(MAX_CONNECTION_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_CONNECTION_BUFFER as u32);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_failures = 0u32;
    loop {
        let (stream, addr) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_failures = 0;
                    a
                }
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a little (longer while it lasts) instead of spinning.
                    accept_failures = accept_failures.saturating_add(1);
                    if accept_failures == 1 {
                        tracing::warn!(error = %e, "accepting a connection failed");
                    }
                    let pause = Duration::from_millis(10u64 << accept_failures.min(6));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            state
                .refusals
                .refuse(addr.ip(), Refusal::MaxConnections, "");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let (state, app, builder, tls) = (state.clone(), app.clone(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            state.metrics.connections.inc();
            serve_connection(&state, stream, addr, app, &builder, tls, watcher).await;
            state.metrics.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(GRACEFUL_SHUTDOWN) => {
            tracing::warn!("requests still running {GRACEFUL_SHUTDOWN:?} after the stop signal were cut off");
        }
    }
    Ok(())
}

async fn serve_connection(
    state: &AppState,
    stream: TcpStream,
    addr: SocketAddr,
    app: Router,
    builder: &Builder<TokioExecutor>,
    tls: Option<Tls>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let Some(tls) = tls else {
        let peer = Peer {
            addr,
            client_cert: false,
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service(app, peer));
        let result = watcher.watch(conn.into_owned()).await;
        note_connection_error(state, addr, result.err());
        return;
    };
    let stream =
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                state
                    .refusals
                    .refuse(addr.ip(), Refusal::Tls, &e.to_string());
                return;
            }
            Err(_) => {
                state
                    .refusals
                    .refuse(addr.ip(), Refusal::Tls, "no complete handshake in time");
                return;
            }
        };
    let peer = Peer {
        addr,
        client_cert: stream
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty()),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service(app, peer));
    let result = watcher.watch(conn.into_owned()).await;
    note_connection_error(state, addr, result.err());
}

/// The router for one connection: each request carries the [`Peer`] and axum's `ConnectInfo`.
fn service(
    app: Router,
    peer: Peer,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone,
> {
    let svc = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer);
        req.extensions_mut().insert(ConnectInfo(peer.addr));
        app.clone().oneshot(req.map(Body::new))
    });
    hyper_util::service::TowerToHyperService::new(svc)
}

/// Counts and logs why a connection ended in error, when it was the client's doing.
fn note_connection_error(
    state: &AppState,
    addr: SocketAddr,
    error: Option<Box<dyn std::error::Error + Send + Sync>>,
) {
    let Some(error) = error else { return };
    let refusal = match error.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_timeout() => Refusal::HeaderTimeout,
        Some(e) if e.is_parse_too_large() => Refusal::HeaderTooLarge,
        Some(e) if e.is_parse() => Refusal::Malformed,
        // The client went away mid-request or the like: nothing the hub refused.
        _ => {
            tracing::debug!(source = %addr, error = %error, "connection ended with an error");
            return;
        }
    };
    state
        .refusals
        .refuse(addr.ip(), refusal, &error.to_string());
}

/// Descriptors the hub needs besides its connections (data files, the listener, logs).
const SPARE_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard limit (systemd and most shells start
/// services at 1,024, which `--max-connections` idle agents would exhaust), and warns when even
/// that is below `max_connections` plus what the hub needs besides.
pub fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let mut raised = limit;
    if limit.current < limit.maximum {
        raised.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open files limit");
            raised = limit;
        }
    }
    let wanted = max_connections as u64 + SPARE_FILES;
    match raised.current {
        Some(n) if n < wanted => tracing::warn!(
            open_files_limit = n,
            max_connections,
            "the open files limit is below --max-connections plus {SPARE_FILES}: connections \
             beyond it fail to be accepted; raise LimitNOFILE / ulimit -n or lower --max-connections"
        ),
        _ => {}
    }
}
