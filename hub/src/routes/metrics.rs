//! `GET /metrics`: the federated exposition, streamed in bounded chunks (gzip-compressed when
//! the scraper asks for it) by a render thread ([`super::render`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use flate2::Compression;

use crate::error::ApiError;
use crate::exposition::CHUNK_BYTES;
use crate::gzip::ParallelGzip;
use crate::shard::Shard;
use crate::AppState;

/// A client that takes no chunk for this long is abandoned, releasing the snapshots its
/// response holds.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Renders every fresh node's families, the synthetic node series and the self-metrics; with
/// `?shard=I&of=N` only the nodes of that shard (the self-metrics in shard 0 only). With
/// `--metrics-token`, only for a scrape that presents it (bearer, or as the basic-auth password).
pub async fn metrics(
    State(state): State<AppState>,
    source: super::Source,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(expected) = state.metrics_token() {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let presented = crate::tokens::bearer(value)
            .map(str::to_string)
            .or_else(|| crate::tokens::basic_password(value));
        let checked = super::authenticate(
            &state,
            source,
            "metrics",
            presented.as_deref(),
            "this hub's /metrics needs its token (Authorization: Bearer <token>, or basic auth with the token as password)",
            |t| crate::tokens::digests_equal(&crate::tokens::hash(t), expected).then_some(()),
        );
        if let Err(e) = checked {
            let mut resp = e.into_response();
            if resp.status() == axum::http::StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"fleetgate-hub\", Basic realm=\"fleetgate-hub\"",
                    ),
                );
            }
            return resp;
        }
    }
    let shard = match Shard::from_query(query.as_deref()) {
        Ok(shard) => shard,
        Err(message) => return ApiError::BadRequest(message).into_response(),
    };
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let refused = it.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            coding.eq_ignore_ascii_case("gzip") && !refused
        });
    let worker = state.clone();
    let body = super::render::streamed(&state, source, "metrics", SEND_TIMEOUT, move |sink| {
        // Taken once: every chunk below belongs to this one consistent exposition.
        let snapshot = worker.metrics_snapshot(shard);
        if !gzip {
            worker.write_metrics(&snapshot, CHUNK_BYTES, |chunk| {
                sink.send(Ok(Bytes::from(std::mem::take(chunk))))
            });
            return;
        }
        // Compressed on several threads, in order; an error aborts the response, so the
        // scraper sees a broken body, not a short one.
        let mut out = |piece: Vec<u8>| sink.send(Ok(Bytes::from(piece)));
        let gzipped = std::thread::scope(|scope| {
            let threads = crate::gzip::threads(worker.render_gate.running());
            let mut gz = ParallelGzip::start(scope, threads, Compression::fast());
            let mut failed = None;
            let complete = worker.write_metrics(&snapshot, CHUNK_BYTES, |chunk| {
                match gz.push(std::mem::take(chunk), &mut out) {
                    Ok(more) => more,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            });
            match failed {
                Some(e) => Err(e),
                None if complete => gz.finish(&mut out),
                None => Ok(false),
            }
        });
        if let Err(e) = gzipped {
            tracing::warn!(error = %e, "gzip of /metrics failed");
            sink.send(Err(e));
        }
    });
    let body = match body {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fleetgate_shared::text::CONTENT_TYPE),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}
