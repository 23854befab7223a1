//! HTTP routes: thin axum handlers over the registry, the store, the exposition and the fleet
//! page, and the checks every authenticated route shares ([`authenticate`]: the source's
//! budget of failed authentications first, then the token).

mod audit;
mod fleet;
#[cfg(test)]
mod guard_tests;
mod health;
mod metrics;
mod nodes;
mod push;
mod render;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::guard::Refusal;
use crate::server::Peer;
use crate::AppState;

/// The hub's routes over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/push", post(push::push))
        .route("/add_node", post(nodes::add_node))
        .route("/remove_node", post(nodes::remove_node))
        .route("/readmit_node", post(nodes::readmit_node))
        .route("/nodes", get(nodes::list_nodes))
        .route("/audit", get(audit::read_audit))
        .route("/", get(fleet::page))
        .route("/fleet.js", get(fleet::script))
        .route("/fleet.css", get(fleet::style))
        .route("/api/nodes", get(fleet::list))
        .route("/api/nodes/{node}", get(fleet::detail))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline,
        ))
        .with_state(state)
}

/// Answers 408 to a request not done within `--request-timeout` (a body trickled in, usually)
/// and closes its connection.
async fn deadline(
    State(state): State<AppState>,
    source: Source,
    req: Request,
    next: Next,
) -> Response {
    let limit = state.config.protection.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            state
                .refusals
                .refuse(source.ip, Refusal::RequestTimeout, "");
            let mut resp = (
                StatusCode::REQUEST_TIMEOUT,
                format!("request not completed within {limit:?}\n"),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

/// Where a request came from, from the [`Peer`] the listener attached; a request handed to the
/// router directly (tests) comes from 0.0.0.0 without a client certificate.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The client's IP address.
    pub ip: IpAddr,
    /// Whether it presented a verified client certificate.
    pub client_cert: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<Peer>() {
            Some(p) => Source {
                ip: p.addr.ip(),
                client_cert: p.client_cert,
            },
            None => Source {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                client_cert: false,
            },
        })
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::tokens::bearer(value)
}

/// Authenticates a request on `route`: a source over its budget of failed authentications is
/// answered 429 before its token is looked at; otherwise `check` maps the token to who it
/// belongs to. A missing token, or one `check` refuses (answered 401 with `refused`), counts
/// against the source.
fn authenticate<T>(
    state: &AppState,
    source: Source,
    route: &'static str,
    token: Option<&str>,
    refused: &'static str,
    check: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ApiError> {
    let now = Instant::now();
    if let Err(retry_after) = state.auth_limiter.check(source.ip, now) {
        state
            .metrics
            .auth_rate_limited
            .with_label_values(&[route])
            .inc();
        state
            .refusals
            .refuse(source.ip, Refusal::AuthRateLimited, route);
        return Err(ApiError::TooManyRequests {
            message: format!(
                "too many failed authentications from {}; retry in {} s",
                source.ip,
                retry_after.as_secs()
            ),
            retry_after,
        });
    }
    let Some(token) = token else {
        auth_failed(state, source, route, now);
        return Err(ApiError::Unauthorized(
            "missing bearer token (Authorization: Bearer <token>)",
        ));
    };
    check(token).ok_or_else(|| {
        auth_failed(state, source, route, now);
        ApiError::Unauthorized(refused)
    })
}

/// Counts a failed authentication of `source` on `route`.
fn auth_failed(state: &AppState, source: Source, route: &'static str, now: Instant) {
    state.auth_limiter.failed(source.ip, now);
    state
        .metrics
        .auth_failures
        .with_label_values(&[route])
        .inc();
    state.refusals.refuse(source.ip, Refusal::AuthFailed, route);
}

/// With `--tls-client-ca`, what nodes do (push, enroll, remove themselves) needs a verified
/// client certificate on the connection; its absence counts as a failed authentication.
fn require_client_cert(
    state: &AppState,
    source: Source,
    route: &'static str,
) -> Result<(), ApiError> {
    if state.config.tls_client_ca.is_none() || source.client_cert {
        return Ok(());
    }
    auth_failed(state, source, route, Instant::now());
    Err(ApiError::Unauthorized(
        "this hub requires a client certificate (mutual TLS) for pushes, enrollment and a node's own removal",
    ))
}

/// Runs blocking work (fsync, decoding) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn enroll_push_and_scrape_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::with_data_dir(dir.path());
        config.enroll_token = crate::config::TokenSource::Given(fleetgate_daemon::Secret::new(
            "enroll-token-0123456789",
        ));
        let app = router(AppState::open(config).unwrap());

        let (status, body) =
            call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        let req = Request::post("/add_node")
            .header("authorization", "Bearer enroll-token-0123456789")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"node":"n1","labels":{"node_type":"cpu"}}"#))
            .unwrap();
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let req = Request::post("/push")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "text/plain")
            .body(Body::from("up{instance=\"forged\"} 1\n"))
            .unwrap();
        assert_eq!(call(&app, req).await.0, StatusCode::OK);
        let (status, text) =
            call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("up{instance=\"n1\",node=\"n1\",node_type=\"cpu\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("forged"));
    }
    /// The node part of an exposition (everything before the hub's own metrics, whose
    /// values move between two scrapes).
    fn node_part(text: &str) -> &str {
        &text[..text.find("# HELP fleetgate_hub_").unwrap()]
    }

    #[tokio::test]
    async fn metrics_stream_in_many_chunks_plain_and_gzip() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::with_data_dir(dir.path());
        config.enroll_token = crate::config::TokenSource::Given(fleetgate_daemon::Secret::new(
            "enroll-token-0123456789",
        ));
        let state = AppState::open(config).unwrap();
        let app = router(state.clone());
        // Lines per node: the most a node may push.
        let lines = crate::config::Limits::default().max_series_per_node;
        for n in 0..3 {
            let req = Request::post("/add_node")
                .header("authorization", "Bearer enroll-token-0123456789")
                .header("content-type", "application/json")
                .body(Body::from(format!(r#"{{"node":"n{n}"}}"#)))
                .unwrap();
            let (_, body) = call(&app, req).await;
            let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
                .as_str()
                .unwrap()
                .to_string();
            // Each node alone is more than a chunk, so the body spans many.
            let text: String = (0..lines)
                .map(|i| format!("m{}{{k=\"v{i}\"}} {i}\n", i % 7))
                .collect();
            let req = Request::post("/push")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "text/plain")
                .body(Body::from(text))
                .unwrap();
            assert_eq!(call(&app, req).await.0, StatusCode::OK);
        }
        let whole = String::from_utf8(state.render_metrics(None)).unwrap();
        assert!(
            whole.len() > 3 * crate::exposition::CHUNK_BYTES,
            "{}",
            whole.len()
        );

        let (status, plain) =
            call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(node_part(&plain), node_part(&whole));
        let parsed = fleetgate_shared::text::parse(&plain).unwrap();
        let m0 = parsed.iter().find(|f| f.name == "m0").unwrap();
        assert_eq!(m0.series.len(), 3 * lines.div_ceil(7));

        let resp = app
            .clone()
            .oneshot(
                Request::get("/metrics")
                    .header("accept-encoding", "gzip")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut unzipped)
            .unwrap();
        assert_eq!(node_part(&unzipped), node_part(&whole));
        assert!(unzipped.contains("fleetgate_hub_render_duration_seconds_count"));
    }

    #[tokio::test]
    async fn refused_pushes_are_counted_per_node_until_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::with_data_dir(dir.path());
        config.enroll_token = crate::config::TokenSource::Given(fleetgate_daemon::Secret::new(
            "enroll-token-0123456789",
        ));
        config.admin_token = crate::config::TokenSource::Given(fleetgate_daemon::Secret::new(
            "admin-token-0123456789",
        ));
        let app = router(AppState::open(config).unwrap());
        let mut tokens = Vec::new();
        for node in ["bad", "good"] {
            let req = Request::post("/add_node")
                .header("authorization", "Bearer enroll-token-0123456789")
                .header("content-type", "application/json")
                .body(Body::from(format!(r#"{{"node":"{node}"}}"#)))
                .unwrap();
            let (_, body) = call(&app, req).await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            tokens.push(v["token"].as_str().unwrap().to_string());
        }
        let push = |token: &str, content_type: &str, body: &'static str| {
            Request::post("/push")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", content_type)
                .body(Body::from(body))
                .unwrap()
        };
        let refused = [
            (
                "text/plain",
                "fleetgate_node_up 1\n",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("text/plain", "m{ 1\n", StatusCode::BAD_REQUEST),
            ("text/plain", "m 1\nm 2\n", StatusCode::UNPROCESSABLE_ENTITY),
            ("image/png", "m 1\n", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ];
        for (content_type, body, want) in refused {
            let (status, text) = call(&app, push(&tokens[0], content_type, body)).await;
            assert_eq!(status, want, "{content_type} {body:?}: {text}");
        }
        let (status, _) = call(&app, push(&tokens[1], "text/plain", "m 1\n")).await;
        assert_eq!(status, StatusCode::OK);

        let scrape = || Request::get("/metrics").body(Body::empty()).unwrap();
        let (_, text) = call(&app, scrape()).await;
        let counted = |text: &str, reason: &str| {
            let prefix = format!(
                "fleetgate_hub_node_refused_pushes_total{{node=\"bad\",reason=\"{reason}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|v| v.parse::<u64>().unwrap())
        };
        assert_eq!(counted(&text, "invalid"), Some(2), "{text}");
        assert_eq!(counted(&text, "malformed"), Some(1), "{text}");
        assert_eq!(counted(&text, "unsupported"), Some(1), "{text}");
        assert!(
            !text.contains("fleetgate_hub_node_refused_pushes_total{node=\"good\""),
            "{text}"
        );

        let req = Request::post("/remove_node")
            .header("authorization", "Bearer admin-token-0123456789")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"node":"bad"}"#))
            .unwrap();
        assert_eq!(call(&app, req).await.0, StatusCode::OK);
        let (_, text) = call(&app, scrape()).await;
        assert!(
            !text.contains("fleetgate_hub_node_refused_pushes_total{node=\"bad\""),
            "{text}"
        );
    }
}
