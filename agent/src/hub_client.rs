//! The agent's HTTP client for the hub: enrollment (`/add_node`), pushes (`/push`) and
//! deregistration (`/remove_node`). The load-test rig drives the hub through this same client.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetgate_shared::Snapshot;
use serde::{Deserialize, Serialize};

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

/// A cheap-to-clone client bound to one hub base URL.
#[derive(Debug, Clone)]
pub struct HubClient {
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:8000`.
    base: String,
    /// Pooled HTTP client; keeps the connection to the hub alive between pushes.
    http: reqwest::Client,
}

impl HubClient {
    /// Builds a client for `base_url` with a per-request timeout.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, HubError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(HubError::Config(format!(
                "hub URL {base_url:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("fleetgate-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubError::Config(e.to_string()))?;
        Ok(HubClient { base, http })
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
