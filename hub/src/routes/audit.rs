//! `GET /audit?since=…&limit=…` with the admin token: the audit log's records.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;

use crate::audit::{parse_since, Record};
use crate::error::ApiError;
use crate::AppState;

use super::Source;

/// Records returned when the request does not say.
const DEFAULT_LIMIT: usize = 100;
/// Records returned at most.
const MAX_LIMIT: usize = 10_000;

/// Query of `GET /audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339 time or Unix seconds: records at or after it, oldest first. Without it, the
    /// newest records.
    since: Option<String>,
    /// Records at most (default 100, at most 10,000).
    limit: Option<usize>,
}

/// `GET /audit` with the admin token (itself audited as `read_audit`).
pub async fn read_audit(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<Record>>, ApiError> {
    super::nodes::admin_only(&state, source, &headers, "audit", "read_audit").await?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let since = query
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit={limit} is out of range (1 to {MAX_LIMIT})"
        )));
    }
    let worker = state.clone();
    let records = super::blocking(move || worker.audit.read(since.as_deref(), limit))
        .await?
        .map_err(|e| ApiError::Internal(format!("reading the audit log: {e}")))?;
    Ok(Json(records))
}
