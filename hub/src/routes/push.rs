//! `POST /push`: authenticate, read the body under the size limit, take a place among the
//! pending pushes (429 when there is none), decode, validate, pre-render and store — in that
//! order, so a bad token never costs a body read and a saturated hub answers at once.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use fleetgate_shared::ContentEncoding;
use serde::Serialize;

use crate::activity::PushKind;
use crate::decode::{self, BodyFormat};
use crate::error::ApiError;
use crate::guard::Refusal;
use crate::prepare;
use crate::store::Outcome;
use crate::AppState;

use super::Source;

/// Answer to an accepted push.
#[derive(Debug, Serialize)]
pub struct PushResponse {
    /// `ok` or `out_of_order` (a newer push is already stored; this one was ignored).
    pub result: &'static str,
    /// Series now exposed for the node.
    pub series: usize,
    /// Families held back because their TYPE conflicts with other nodes.
    pub quarantined: Vec<String>,
}

/// `POST /push` with the node's push token.
pub async fn push(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PushResponse>, ApiError> {
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let identity = super::require_client_cert(&state, source, "push").and_then(|()| {
        super::authenticate(
            &state,
            source,
            "push",
            super::bearer(&headers),
            "unknown or revoked push token",
            |t| state.registry.authenticate(t),
        )
    });
    let identity = match identity {
        Ok(id) => id,
        Err(e) => {
            let result = match e {
                ApiError::TooManyRequests { .. } => "rate_limited",
                _ => "unauthorized",
            };
            state.metrics.push(result, declared_len);
            return Err(e);
        }
    };
    let node = identity.node.clone();
    let (format, encoding) = match body_kind(&headers) {
        Ok(kind) => kind,
        Err(e) => {
            state.metrics.push("unsupported", declared_len);
            state.metrics.node_refused(&node, "unsupported");
            state
                .activity
                .refused(&node, e.status().as_u16(), &e.to_string());
            return Err(e);
        }
    };
    let limits = state.config.limits;
    let bytes = match axum::body::to_bytes(body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(%node, error = %e, "push body not read");
            state.metrics.push("too_large", declared_len);
            state.metrics.node_refused(&node, "too_large");
            let e = ApiError::TooLarge(format!(
                "request body exceeds the limit of {} bytes",
                limits.max_body_bytes
            ));
            state
                .activity
                .refused(&node, e.status().as_u16(), &e.to_string());
            return Err(e);
        }
    };
    let body_len = bytes.len();
    let permit = match state.push_gate.enter() {
        Ok(p) => p,
        Err(retry_after) => {
            state.metrics.push("overload", body_len);
            state.metrics.overload.inc();
            state.refusals.refuse(source.ip, Refusal::Overload, &node);
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "the hub is saturated ({} pushes waiting for ingest); retry in {} s",
                    state.config.protection.max_pending_pushes,
                    retry_after.as_secs()
                ),
                retry_after,
            });
        }
    };

    let worker = state.clone();
    let values_push = format == BodyFormat::Values;
    let outcome = super::blocking(move || {
        let _permit = permit;
        if format == BodyFormat::Values {
            return apply_values(&worker, &identity, encoding, &bytes);
        }
        let decoded = decode::decode_body(format, encoding, &bytes, limits.max_decompressed_bytes)
            .map_err(|e| ("malformed", ApiError::from(e)))?;
        let labels = worker.node_labels(&identity);
        let mut prepared = prepare::prepare(decoded.families, &labels, &limits).map_err(|r| {
            worker
                .metrics
                .rejected_series
                .with_label_values(&[r.reason])
                .inc_by(r.series as u64);
            worker.store.note_rejection(&identity.node, &r.message);
            ("invalid", ApiError::Unprocessable(r.message))
        })?;
        prepared.layout = decoded.layout;
        let samples = prepared.samples;
        let interval = decoded.interval.unwrap_or(crate::config::DEFAULT_INTERVAL);
        let stale_after = worker.config.stale_after_for(interval);
        let outcome = worker.store.apply(
            &identity.node,
            identity.epoch,
            decoded.seq,
            prepared,
            stale_after,
        );
        Ok((outcome, samples))
    })
    .await?;

    let (outcome, samples) = match outcome {
        Ok(o) => o,
        Err((result, e)) => {
            let result = match e {
                ApiError::TooLarge(_) => "too_large",
                // A message version this hub does not read.
                ApiError::UnsupportedMediaType(_) => "unsupported",
                _ => result,
            };
            state.metrics.push(result, body_len);
            state.metrics.node_refused(&node, result);
            tracing::info!(%node, error = %e, "push refused");
            state
                .activity
                .refused(&node, e.status().as_u16(), &e.to_string());
            return Err(e);
        }
    };
    match outcome {
        Outcome::Accepted {
            series,
            quarantined,
        } => {
            state.metrics.push("ok", body_len);
            state.metrics.ingested_samples.inc_by(samples as u64);
            let q_series: usize = quarantined.iter().map(|q| q.series).sum();
            if q_series > 0 {
                state
                    .metrics
                    .rejected_series
                    .with_label_values(&["type_conflict"])
                    .inc_by(q_series as u64);
            }
            let kind = if values_push {
                PushKind::Values
            } else {
                PushKind::Full
            };
            let named: Vec<(String, String)> = quarantined
                .iter()
                .map(|q| (q.name.clone(), q.message.clone()))
                .collect();
            state.activity.accepted(&node, kind, &named);
            // A values push keeps the families, and so the quarantine, of its base.
            if !values_push {
                state
                    .metrics
                    .quarantined_families
                    .with_label_values(&[&node])
                    .set(quarantined.len() as i64);
            }
            Ok(Json(PushResponse {
                result: "ok",
                series,
                quarantined: quarantined.into_iter().map(|q| q.name).collect(),
            }))
        }
        Outcome::OutOfOrder => {
            state.metrics.push("out_of_order", body_len);
            Ok(Json(PushResponse {
                result: "out_of_order",
                series: state.store.status(&node).series,
                quarantined: Vec::new(),
            }))
        }
        Outcome::Revoked => {
            state.metrics.push("unauthorized", body_len);
            Err(ApiError::Unauthorized("unknown or revoked push token"))
        }
        Outcome::Conflict(message) => {
            state.metrics.push("conflict", body_len);
            tracing::debug!(%node, %message, "values push does not fit the stored snapshot");
            Err(ApiError::Conflict(message))
        }
    }
}

/// A values push: the new values written into a copy of the stored snapshot's lines. Every
/// mismatch with what is stored is a [`Outcome::Conflict`], which tells the agent to push in
/// full; nothing changes then.
fn apply_values(
    state: &AppState,
    identity: &crate::registry::NodeIdentity,
    encoding: ContentEncoding,
    body: &[u8],
) -> Result<(Outcome, usize), (&'static str, ApiError)> {
    let limits = state.config.limits;
    let push = decode::decode_values_body(encoding, body, limits.max_decompressed_bytes)
        .map_err(|e| ("malformed", ApiError::from(e)))?;
    let header = push.header;
    if header.seq <= header.base_seq {
        return Err((
            "malformed",
            ApiError::BadRequest(format!(
                "values push seq {} is not after its base seq {}",
                header.seq, header.base_seq
            )),
        ));
    }
    let base = match state
        .store
        .base(&identity.node, identity.epoch, header.base_seq)
    {
        Ok(base) => base,
        Err(outcome) => return Ok((outcome, 0)),
    };
    let revalued = match prepare::revalue(base.base(), &push) {
        Ok(r) => r,
        Err(message) => return Ok((Outcome::Conflict(message), 0)),
    };
    let samples = revalued.samples;
    let interval = match header.interval_ms {
        0 => crate::config::DEFAULT_INTERVAL,
        ms => std::time::Duration::from_millis(ms),
    };
    let stale_after = state.config.stale_after_for(interval);
    let outcome = state.store.apply_values(
        &identity.node,
        identity.epoch,
        header.seq,
        &base,
        revalued,
        stale_after,
    );
    Ok((outcome, samples))
}

/// The body format from `Content-Type` and its compression from `Content-Encoding`.
fn body_kind(headers: &HeaderMap) -> Result<(BodyFormat, ContentEncoding), ApiError> {
    let encoding_header = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
        .unwrap_or("");
    let encoding = ContentEncoding::from_header(encoding_header).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {encoding_header:?} (use zstd, gzip or none)"
        ))
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"))
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match mime.as_str() {
        m if m == fleetgate_shared::CONTENT_TYPE => BodyFormat::Snapshot,
        m if m == fleetgate_shared::VALUES_CONTENT_TYPE => BodyFormat::Values,
        // curl --data-binary sends form-urlencoded unless told otherwise: treat it as text.
        "text/plain" | "" | "application/x-www-form-urlencoded" => BodyFormat::Text,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Type {content_type:?} (use {}, {} or text/plain)",
                fleetgate_shared::CONTENT_TYPE,
                fleetgate_shared::VALUES_CONTENT_TYPE
            )))
        }
    };
    Ok((format, encoding))
}
