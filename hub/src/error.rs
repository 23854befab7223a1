//! Errors: [`ApiError`] is what an HTTP handler answers (status plus a message naming the
//! problem); [`StartError`] is why the hub could not start.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to a client. The message names what is wrong with the request; internal
/// details (paths, OS errors) are logged, not sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body could not be parsed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or not one that is valid here.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: a valid token without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such node.
    #[error("{0}")]
    NotFound(String),
    /// 409: a values push that does not fit the stored snapshot (push in full), or an action
    /// that does not fit the node's state (re-admitting a node that is not removed).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body or its decompressed form is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a `Content-Type` or `Content-Encoding` the hub does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: parsed, but the data breaks a rule; names the first offender.
    #[error("{0}")]
    Unprocessable(String),
    /// 429: come back after `retry_after` (ingest saturated, or too many failed
    /// authentications from this source).
    #[error("{message}")]
    TooManyRequests {
        /// What the client is told.
        message: String,
        /// Sent as `Retry-After` (whole seconds, at least 1).
        retry_after: std::time::Duration,
    },
    /// 503: the hub cannot do this now (its data directory cannot be written); names why.
    #[error("{0}")]
    Unavailable(String),
    /// 500: the hub failed; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<fleetgate_shared::WireError> for ApiError {
    fn from(e: fleetgate_shared::WireError) -> Self {
        match e {
            fleetgate_shared::WireError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            // A newer agent: 415 tells it to fall back to a format this hub reads.
            fleetgate_shared::WireError::UnsupportedVersion { .. } => {
                ApiError::UnsupportedMediaType(format!(
                    "{e}; push text/plain or an older version of this format"
                ))
            }
            e => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            other => tracing::debug!(status = status.as_u16(), error = %other, "request refused"),
        }
        let mut resp = (status, format!("{self}\n")).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Why a write to the data directory failed, in words a client may see (the OS error and the
/// path go to the log): the two causes an operator can fix get their name.
pub fn storage_problem(e: &std::io::Error) -> Option<&'static str> {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            Some("the hub's data directory is full")
        }
        std::io::ErrorKind::ReadOnlyFilesystem => Some("the hub's data directory is read-only"),
        std::io::ErrorKind::PermissionDenied => {
            Some("the hub may not write its data directory (permission denied)")
        }
        _ => None,
    }
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    Config(#[from] fleetgate_daemon::ConfigError),
    /// The data directory, the registry or a token file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
}

impl StartError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let what = what.into();
        move |source| StartError::Io { what, source }
    }
}
