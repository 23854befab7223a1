//! Node administration: `/add_node`, `/remove_node`, `/readmit_node`, `/nodes`.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::registry::{Enrollment, RegistryError};
use crate::AppState;

/// Answer to `/add_node`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Enrolled {
    /// The node name.
    pub node: String,
    /// Its new push token; any previous one is revoked.
    pub token: String,
}

/// Body of `/remove_node` and `/readmit_node`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The node.
    pub node: String,
}

/// One entry of `/nodes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// Enrollment labels.
    pub labels: BTreeMap<String, String>,
    /// Hostname given at enrollment.
    pub hostname: Option<String>,
    /// IP given at enrollment.
    pub ip: Option<String>,
    /// `up`, `stale` or `removed`.
    pub state: String,
    /// Unix seconds of the latest accepted push since the hub started.
    pub last_push: Option<f64>,
    /// Series exposed now.
    pub series: usize,
    /// Latest reason a push or family of the node was refused.
    pub last_rejection: Option<String>,
    /// Families quarantined at the latest push.
    pub quarantined_families: usize,
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::RemovedNeedsAdmin(_) => ApiError::Forbidden(e.to_string()),
        RegistryError::UnknownNode(_) => ApiError::NotFound(e.to_string()),
        RegistryError::NotRemoved(_) => ApiError::Conflict(e.to_string()),
        RegistryError::Io(io) => ApiError::Internal(io.to_string()),
    }
}

/// `POST /add_node` with the enrollment or admin token.
pub async fn add_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Enrollment>, JsonRejection>,
) -> Result<Json<Enrolled>, ApiError> {
    let token = super::bearer(&headers)?;
    let admin = state.is_admin(token);
    if !admin && !state.is_enroll(token) {
        return Err(ApiError::Unauthorized("not the enrollment or admin token"));
    }
    let enrollment = json_body(body)?;
    let c = &state.config;
    enrollment
        .validate(
            &[&c.instance_label, &c.node_label],
            c.limits.max_label_value_len,
        )
        .map_err(ApiError::Unprocessable)?;
    let worker = state.clone();
    let (token, id) = super::blocking(move || worker.registry.enroll(enrollment, admin))
        .await?
        .map_err(registry_error)?;
    tracing::info!(node = %id.node, epoch = id.epoch, "node enrolled");
    Ok(Json(Enrolled {
        node: id.node.clone(),
        token,
    }))
}

/// `POST /remove_node` with the admin token or the node's own push token.
pub async fn remove_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = super::bearer(&headers)?;
    let admin = state.is_admin(token);
    let own = if admin {
        None
    } else {
        state.registry.authenticate(token)
    };
    if !admin && own.is_none() {
        return Err(ApiError::Unauthorized(
            "not the admin token or a valid push token",
        ));
    }
    let req = json_body(body)?;
    if let Some(own) = own {
        if own.node != req.node {
            return Err(ApiError::Forbidden(format!(
                "a push token may only remove its own node ({:?}), not {:?}",
                own.node, req.node
            )));
        }
    }
    let worker = state.clone();
    let node = req.node.clone();
    let removed = super::blocking(move || worker.registry.remove(&node))
        .await?
        .map_err(registry_error)?;
    state.store.remove(&removed.node, removed.epoch);
    state.metrics.forget_node(&removed.node);
    tracing::info!(node = %removed.node, "node removed");
    Ok(Json(
        serde_json::json!({ "node": req.node, "removed": true }),
    ))
}

/// `POST /readmit_node` with the admin token: a removed node may enroll again with the
/// enrollment token (its agent does when restarted); its old push token stays revoked.
pub async fn readmit_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.is_admin(super::bearer(&headers)?) {
        return Err(ApiError::Unauthorized("not the admin token"));
    }
    let req = json_body(body)?;
    let worker = state.clone();
    let node = req.node.clone();
    let id = super::blocking(move || worker.registry.readmit(&node))
        .await?
        .map_err(registry_error)?;
    tracing::info!(node = %id.node, "removed node re-admitted; it may enroll again");
    Ok(Json(
        serde_json::json!({ "node": id.node, "readmitted": true }),
    ))
}

/// `GET /nodes` with the admin token.
pub async fn list_nodes(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    if !state.is_admin(super::bearer(&headers)?) {
        return Err(ApiError::Unauthorized("not the admin token"));
    }
    let statuses = state.store.statuses();
    let list = state
        .registry
        .list()
        .into_iter()
        .map(|id| {
            let s = statuses.get(&id.node).cloned().unwrap_or_default();
            let node_state = if id.removed {
                "removed"
            } else if s.up {
                "up"
            } else {
                "stale"
            };
            NodeInfo {
                node: id.node.clone(),
                labels: id.labels.clone(),
                hostname: id.hostname.clone(),
                ip: id.ip.clone(),
                state: node_state.to_string(),
                last_push: s.last_push,
                series: s.series,
                last_rejection: s.last_rejection,
                quarantined_families: s.quarantined,
            }
        })
        .collect();
    Ok(Json(list))
}
