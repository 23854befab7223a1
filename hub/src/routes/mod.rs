//! HTTP routes: thin axum handlers over the registry, the store and the exposition.

mod health;
mod metrics;
mod nodes;
mod push;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::AppState;

/// Requests slower than this (a client trickling its body) are cut off.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The hub's routes over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/push", post(push::push))
        .route("/add_node", post(nodes::add_node))
        .route("/remove_node", post(nodes::remove_node))
        .route("/nodes", get(nodes::list_nodes))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// The bearer token of a request, or 401.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::tokens::bearer(value).ok_or(ApiError::Unauthorized(
        "missing bearer token (Authorization: Bearer <token>)",
    ))
}

/// Runs blocking work (fsync, decoding, rendering) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))
}
