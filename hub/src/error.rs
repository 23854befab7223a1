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
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<fleetgate_shared::WireError> for ApiError {
    fn from(e: fleetgate_shared::WireError) -> Self {
        match e {
            fleetgate_shared::WireError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
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
        (status, format!("{self}\n")).into_response()
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
