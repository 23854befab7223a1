//! The agent's HTTP client for the hub: enrollment (`/add_node`), pushes (`/push`) and
//! deregistration (`/remove_node`), over HTTP or HTTPS (optionally with a client certificate).
//! The load-test rig drives the hub through this same client.
//!
//! A hub older than the agent may not read what the agent sends: it answers 415 (or, before
//! 415 was its answer, 400 naming the unsupported version). The client then falls back — values
//! push to full snapshot, full snapshot to the Prometheus text format — in the same push, and
//! tries the better format again after [`FORMAT_RETRY`], so an upgraded hub gets it back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetgate_shared::Snapshot;
use serde::{Deserialize, Serialize};

/// A full snapshot at least every this many pushes, so that HELP texts and anything else
/// the hub keeps from the last full push never lag far behind.
pub const FULL_PUSH_EVERY: u32 = 20;

/// What the hub holds of a node's last accepted push: the base of its next values push
/// ([`HubClient::push_tracked`]).
#[derive(Debug, Clone)]
pub struct PushBase {
    /// Sequence number of the accepted push.
    seq: u64,
    /// [`fleetgate_shared::layout_hash`] of its families.
    layout: u64,
    /// Its samples in layout order ([`fleetgate_shared::sample_values`]).
    values: Vec<f64>,
    /// Values pushes accepted since the last full one.
    values_pushes: u32,
}

impl PushBase {
    /// Samples of the accepted push.
    pub fn samples(&self) -> usize {
        self.values.len()
    }
}

/// After a hub refused a format as one it does not read, the client uses the fallback for this
/// long before it tries the format again.
pub const FORMAT_RETRY: Duration = Duration::from_secs(3600);

/// Which kind of push went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// The whole snapshot.
    Full,
    /// Only the values, against a [`PushBase`].
    Values,
    /// The whole snapshot in the Prometheus text format, for a hub that does not read the
    /// snapshot encoding this agent writes.
    Text,
}

impl PushKind {
    /// The `kind` label of `fleetgate_agent_pushes_total`.
    pub fn label(self) -> &'static str {
        match self {
            PushKind::Full => "full",
            PushKind::Values => "values",
            PushKind::Text => "text",
        }
    }
}

/// TLS settings of the client beyond the defaults (the hub's certificate checked against the
/// built-in web roots, no client certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Client certificate chain and private key (PEM) presented to a hub that asks for one
    /// (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// CA certificate(s) (PEM) the hub's certificate must chain to, instead of the built-in
    /// web roots.
    pub ca: Option<PathBuf>,
}

/// When the hub last turned down each format as one it does not read.
#[derive(Debug, Default)]
struct Refused {
    /// The values push (`application/vnd.fleetgate.values`).
    values: Mutex<Option<Instant>>,
    /// The snapshot encoding (`application/vnd.fleetgate.snapshot`).
    snapshot: Mutex<Option<Instant>>,
}

impl Refused {
    /// Whether `slot`'s format was refused less than [`FORMAT_RETRY`] ago.
    fn recently(slot: &Mutex<Option<Instant>>) -> bool {
        slot.lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < FORMAT_RETRY)
    }

    fn mark(slot: &Mutex<Option<Instant>>) {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
}

/// What [`HubClient::push_tracked`] did.
#[derive(Debug)]
pub struct PushOutcome {
    /// The hub's answer to the last request sent.
    pub result: Result<PushReport, HubError>,
    /// Which kind that request was.
    pub kind: PushKind,
    /// Whether a values push was answered with 409 first (and the full snapshot followed).
    pub conflict: bool,
}

/// What the agent tells the hub about itself when it enrolls.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Enrollment {
    /// Node identity; becomes the `instance` and `node` labels of every series.
    pub node: String,
    /// The machine's hostname, for operators (never put into series labels by the hub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The machine's primary IP address, for operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Labels the hub attaches to every series of this node (e.g. `node_type`).
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct EnrollResponse {
    token: String,
}

/// Why a call to the hub failed, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// 401: the token is unknown or revoked (for a push: the node was removed).
    #[error("hub refused the token (401): {0}")]
    Unauthorized(String),
    /// 429: the hub asks to slow down.
    #[error("hub is rate limiting (429), retry after {retry_after:?}")]
    RateLimited {
        /// The hub's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// 409: a values push that does not fit what the hub holds (no base, another base seq,
    /// another layout); a full snapshot will.
    #[error("hub has no matching base for the values push (409): {0}")]
    Conflict(String),
    /// Any other non-success status; retrying the same body will not help for 4xx.
    #[error("hub answered {status}: {message}")]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// The hub's error message.
        message: String,
    },
    /// Connection refused, timeout, TLS failure: the hub was not reached.
    #[error("hub unreachable: {0}")]
    Transport(String),
    /// The client could not be built (bad URL, TLS setup).
    #[error("invalid hub client configuration: {0}")]
    Config(String),
}

impl HubError {
    /// Whether the hub said it does not read the format sent: 415, or 400 naming an unsupported
    /// version (what hubs answered before they answered 415).
    pub fn is_unsupported_format(&self) -> bool {
        match self {
            HubError::Rejected { status: 415, .. } => true,
            HubError::Rejected {
                status: 400,
                message,
            } => message.starts_with("unsupported snapshot version"),
            _ => false,
        }
    }

    /// A short stable reason for the `reason` label of failure counters.
    pub fn reason(&self) -> &'static str {
        match self {
            HubError::Unauthorized(_) => "unauthorized",
            HubError::RateLimited { .. } => "rate_limited",
            HubError::Conflict(_) => "conflict",
            HubError::Rejected { status, .. } if *status >= 500 => "server_error",
            HubError::Rejected { .. } => "rejected",
            HubError::Transport(_) => "unreachable",
            HubError::Config(_) => "config",
        }
    }
}

/// Result of a successful push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushReport {
    /// Bytes of request body sent (the encoded, compressed snapshot).
    pub body_bytes: usize,
}

/// A proxy for requests to the hub, as given: `http://[user:password@]host:port` (or
/// `https://`). Its `Debug` form leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(String);

impl ProxyUrl {
    /// Checks `url`: http or https, with a host.
    pub fn parse(url: &str) -> Result<ProxyUrl, String> {
        let url = url.trim();
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("invalid proxy URL {:?}: {e}", redact(url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "proxy URL {:?} must start with http:// or https://",
                redact(url)
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("proxy URL {:?} has no host", redact(url)));
        }
        Ok(ProxyUrl(url.to_string()))
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        reqwest::Url::parse(&self.0).is_ok_and(|u| u.password().is_some())
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyUrl({:?})", self.redacted())
    }
}

fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// How long an idle connection to the hub is kept for the next request unless the agent's
/// `--keep-alive` says otherwise: below the hub's default `--header-read-timeout` (30 s),
/// after which the hub closes it.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// A cheap-to-clone client bound to one hub base URL.
#[derive(Debug, Clone)]
pub struct HubClient {
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:8000`.
    base: String,
    /// Pooled HTTP client; keeps the connection to the hub alive between pushes.
    http: reqwest::Client,
    /// Formats this hub turned down, shared by the clones (they talk to the same hub).
    refused: Arc<Refused>,
}

impl HubClient {
    /// Builds a client for `base_url` with a per-request timeout. Requests go through the
    /// proxy the environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, except for
    /// hosts in `NO_PROXY`), if any.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, HubError> {
        Self::with_options(base_url, timeout, &ClientTls::default(), None)
    }

    /// Like [`HubClient::new`], but through `proxy` when given (hosts in `NO_PROXY` still
    /// go direct), instead of the proxy the environment names.
    pub fn with_proxy(
        base_url: &str,
        timeout: Duration,
        proxy: Option<&ProxyUrl>,
    ) -> Result<Self, HubError> {
        Self::with_options(base_url, timeout, &ClientTls::default(), proxy)
    }

    /// Builds a client for `base_url` with a per-request timeout, the TLS settings `tls`
    /// and, when given, `proxy` (see [`HubClient::with_proxy`]).
    pub fn with_options(
        base_url: &str,
        timeout: Duration,
        tls: &ClientTls,
        proxy: Option<&ProxyUrl>,
    ) -> Result<Self, HubError> {
        Self::build(base_url, Self::http_builder(timeout), tls, proxy)
    }

    /// The agent's client for `base_url`: its push timeout, `--keep-alive`, TLS and proxy.
    pub fn for_agent(base_url: &str, config: &crate::config::Config) -> Result<Self, HubError> {
        let http = Self::http_builder(config.push_timeout).pool_idle_timeout(config.keep_alive);
        Self::build(base_url, http, &config.tls, config.proxy.as_ref())
    }

    fn build(
        base_url: &str,
        mut builder: reqwest::ClientBuilder,
        tls: &ClientTls,
        proxy: Option<&ProxyUrl>,
    ) -> Result<Self, HubError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(HubError::Config(format!(
                "hub URL {base_url:?} must start with http:// or https://"
            )));
        }
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .map_err(|e| HubError::Config(format!("{what} {}: {e}", path.display())))
        };
        if let Some((cert, key)) = &tls.identity {
            let mut pem = read(cert, "client certificate")?;
            pem.push(b'\n');
            pem.extend(read(key, "client key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                HubError::Config(format!(
                    "client certificate {} / key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        if let Some(ca) = &tls.ca {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca, "CA file")?)
                .map_err(|e| HubError::Config(format!("CA file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(HubError::Config(format!(
                    "CA file {}: no certificate in it",
                    ca.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if let Some(proxy) = proxy {
            let proxy = reqwest::Proxy::all(proxy.0.as_str())
                .map_err(|e| HubError::Config(format!("proxy {}: {e}", proxy.redacted())))?
                .no_proxy(reqwest::NoProxy::from_env());
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| HubError::Config(e.to_string()))?;
        Ok(HubClient {
            base,
            http,
            refused: Arc::default(),
        })
    }

    /// The HTTP client settings every [`HubClient`] starts from: the per-request and connect
    /// timeouts, [`DEFAULT_KEEP_ALIVE`] and the agent's user agent.
    pub fn http_builder(timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // The hub closes a keep-alive connection idle for its `--header-read-timeout`
            // (30 s by default); a client keeping one longer may send a push on it just as the
            // hub closes it, and that push fails. Pushes every 15 s keep theirs.
            .pool_idle_timeout(DEFAULT_KEEP_ALIVE)
            .user_agent(concat!("fleetgate-agent/", env!("CARGO_PKG_VERSION")))
    }

    /// A client for `base_url` over an HTTP client built by the caller from
    /// [`HubClient::http_builder`]. The load-test rig builds thousands this way, sharing one
    /// TLS configuration instead of loading the root certificates into each.
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Result<Self, HubError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(HubError::Config(format!(
                "hub URL {base_url:?} must start with http:// or https://"
            )));
        }
        Ok(HubClient {
            base,
            http,
            refused: Arc::default(),
        })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /add_node` with the enrollment (or admin) token; returns the node's push token.
    pub async fn enroll(&self, token: &str, enrollment: &Enrollment) -> Result<String, HubError> {
        let resp = self
            .http
            .post(format!("{}/add_node", self.base))
            .bearer_auth(token)
            .json(enrollment)
            .send()
            .await
            .map_err(transport)?;
        let resp = check(resp).await?;
        let body: EnrollResponse = resp
            .json()
            .await
            .map_err(|e| HubError::Transport(format!("bad /add_node response: {e}")))?;
        Ok(body.token)
    }

    /// Encodes `snapshot` with the shared wire format and pushes it.
    pub async fn push(&self, token: &str, snapshot: &Snapshot) -> Result<PushReport, HubError> {
        self.push_encoded(token, fleetgate_shared::encode(snapshot))
            .await
    }

    /// Pushes an already encoded snapshot (see [`fleetgate_shared::encode`]).
    pub async fn push_encoded(&self, token: &str, body: Vec<u8>) -> Result<PushReport, HubError> {
        self.post_push(token, fleetgate_shared::CONTENT_TYPE, body)
            .await
    }

    /// Pushes an encoded values push (see [`fleetgate_shared::encode_values`]);
    /// [`HubError::Conflict`] when the hub does not hold its base.
    pub async fn push_values(&self, token: &str, body: Vec<u8>) -> Result<PushReport, HubError> {
        self.post_push(token, fleetgate_shared::VALUES_CONTENT_TYPE, body)
            .await
    }

    /// Pushes `snapshot` in the Prometheus text format (what every hub reads).
    pub async fn push_text(
        &self,
        token: &str,
        snapshot: &Snapshot,
    ) -> Result<PushReport, HubError> {
        let body = fleetgate_shared::text::render(&snapshot.families).into_bytes();
        self.post_push(token, fleetgate_shared::text::CONTENT_TYPE, body)
            .await
    }

    /// Pushes `snapshot` the way the agent does: only its values against `base` while `base`
    /// has the same layout, an older sequence number and fewer than [`FULL_PUSH_EVERY`] - 1
    /// values pushes behind it; in full otherwise, and at once when the hub answers a values
    /// push with 409. On success `base` becomes this push; on any failure it is cleared, since
    /// the hub may or may not have applied the push. A format the hub does not read is
    /// replaced by the next one (values → full → text) in the same call.
    pub async fn push_tracked(
        &self,
        token: &str,
        snapshot: &Snapshot,
        base: &mut Option<PushBase>,
    ) -> PushOutcome {
        let layout = fleetgate_shared::layout_hash(&snapshot.families);
        let values = fleetgate_shared::sample_values(&snapshot.families);
        let prior = base.take();
        let values_refused = Refused::recently(&self.refused.values);
        let usable = prior.as_ref().filter(|b| {
            b.layout == layout
                && b.seq < snapshot.seq
                && b.values_pushes + 1 < FULL_PUSH_EVERY
                && !values_refused
        });
        let mut conflict = false;
        let mut sent = None;
        if let Some(b) = usable {
            let header = fleetgate_shared::ValuesHeader {
                seq: snapshot.seq,
                interval_ms: snapshot.interval_ms,
                timestamp_ms: snapshot.timestamp_ms,
                base_seq: b.seq,
                layout,
            };
            let body = fleetgate_shared::encode_values(&header, &b.values, &values);
            match self.push_values(token, body).await {
                Err(HubError::Conflict(message)) => {
                    conflict = true;
                    tracing::debug!(hub_says = %message, "the hub holds no base for a values push; pushing the full snapshot");
                }
                Err(e) if e.is_unsupported_format() => {
                    Refused::mark(&self.refused.values);
                    tracing::warn!(hub = %self.base, hub_says = %e, retry_in = ?FORMAT_RETRY,
                        "the hub does not read values pushes (an older hub?); pushing full snapshots instead");
                }
                result => sent = Some((result, PushKind::Values)),
            }
        } else if let Some(b) = prior.as_ref().filter(|b| b.layout != layout) {
            tracing::debug!(
                samples_before = b.values.len(),
                samples_now = values.len(),
                "the snapshot layout changed; pushing the full snapshot"
            );
        }
        let (result, kind) = match sent {
            Some(sent) => sent,
            None => self.push_full_or_text(token, snapshot).await,
        };
        if result.is_ok() && kind != PushKind::Text {
            let values_pushes = match (kind, &prior) {
                (PushKind::Values, Some(b)) => b.values_pushes + 1,
                _ => 0,
            };
            *base = Some(PushBase {
                seq: snapshot.seq,
                layout,
                values,
                values_pushes,
            });
        }
        PushOutcome {
            result,
            kind,
            conflict,
        }
    }

    /// The full snapshot, or its text when the hub does not read this agent's encoding.
    async fn push_full_or_text(
        &self,
        token: &str,
        snapshot: &Snapshot,
    ) -> (Result<PushReport, HubError>, PushKind) {
        if !Refused::recently(&self.refused.snapshot) {
            match self.push(token, snapshot).await {
                Err(e) if e.is_unsupported_format() => {
                    Refused::mark(&self.refused.snapshot);
                    tracing::warn!(hub = %self.base, hub_says = %e, retry_in = ?FORMAT_RETRY,
                        "the hub does not read this agent's snapshot encoding (an older hub?); pushing the text format instead");
                }
                result => return (result, PushKind::Full),
            }
        }
        (self.push_text(token, snapshot).await, PushKind::Text)
    }

    async fn post_push(
        &self,
        token: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<PushReport, HubError> {
        let body_bytes = body.len();
        let resp = self
            .http
            .post(format!("{}/push", self.base))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        check(resp).await?;
        Ok(PushReport { body_bytes })
    }

    /// `POST /remove_node` for `node`, authenticated with its own push token (or the admin token).
    pub async fn remove(&self, token: &str, node: &str) -> Result<(), HubError> {
        let resp = self
            .http
            .post(format!("{}/remove_node", self.base))
            .bearer_auth(token)
            .json(&serde_json::json!({ "node": node }))
            .send()
            .await
            .map_err(transport)?;
        check(resp).await.map(|_| ())
    }
}

fn transport(e: reqwest::Error) -> HubError {
    HubError::Transport(e.to_string())
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, HubError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if let Some(why) = proxy_refusal(&resp) {
        // Not the hub's answer: nothing about the node is known, so it is retried like an
        // unreachable hub, and never taken for a removal.
        return Err(HubError::Transport(why));
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let message = resp.text().await.unwrap_or_default();
    let message = message.trim().chars().take(512).collect::<String>();
    Err(match status.as_u16() {
        401 => HubError::Unauthorized(message),
        409 => HubError::Conflict(message),
        429 => HubError::RateLimited { retry_after },
        code => HubError::Rejected {
            status: code,
            message,
        },
    })
}

/// Why a proxy between the agent and the hub refused the request, when it did: a 407, or a 401
/// with a `Basic` challenge (tinyproxy's answer to wrong credentials), which the hub, whose
/// tokens are bearer tokens, never sends.
fn proxy_refusal(resp: &reqwest::Response) -> Option<String> {
    let basic_challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("basic"));
    match resp.status().as_u16() {
        407 => Some(
            "the proxy asks for credentials (407): give them in the proxy URL, \
             http://user:password@host:port"
                .into(),
        ),
        401 if basic_challenge => Some(
            "the proxy refused the credentials in the proxy URL (401 with a Basic challenge, \
             which the hub never sends)"
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked_and_never_show_their_password() {
        let p = ProxyUrl::parse("http://user:s3cret@proxy.corp:3128").unwrap();
        assert!(p.has_password());
        assert_eq!(p.redacted(), "http://user:***@proxy.corp:3128/");
        assert!(!format!("{p:?}").contains("s3cret"));
        assert!(!ProxyUrl::parse("http://proxy.corp:3128")
            .unwrap()
            .has_password());
        assert!(ProxyUrl::parse("socks5://proxy:1080")
            .unwrap_err()
            .contains("http://"));
        let e = ProxyUrl::parse("http://u:s3cret@[bad").unwrap_err();
        assert!(
            e.contains("invalid proxy URL") && !e.contains("s3cret"),
            "{e}"
        );
        assert!(
            HubClient::with_proxy("http://127.0.0.1:1", Duration::from_secs(1), Some(&p)).is_ok()
        );
    }
}
