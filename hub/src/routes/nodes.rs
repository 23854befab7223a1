//! Node administration: `/add_node`, `/remove_node`, `/readmit_node`, `/nodes`. Each answer
//! is audited (`DATA_DIR/audit.log`), refused attempts included.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, Record};
use crate::error::ApiError;
use crate::registry::{Enrollment, RegistryError};
use crate::AppState;

use super::Source;

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
        RegistryError::Io(io) => match crate::error::storage_problem(&io) {
            Some(problem) => {
                tracing::error!(error = %io, "cannot write the node registry");
                ApiError::Unavailable(format!(
                    "{problem}: the change was not made and nodes.json is unchanged; \
                     enrolled nodes keep pushing. Retry once the data directory is writable"
                ))
            }
            None => ApiError::Internal(io.to_string()),
        },
    }
}

/// The `result` of an audit record for an answer.
fn audit_result(r: &Result<impl Sized, ApiError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(ApiError::Unauthorized(_)) => "refused",
        Err(ApiError::Forbidden(_)) => "forbidden",
        Err(ApiError::NotFound(_)) => "not_found",
        Err(ApiError::BadRequest(_) | ApiError::Unprocessable(_)) => "invalid",
        Err(ApiError::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    }
}

/// Audits the answer to an identity change or admin request, unless it was turned away by the
/// failed-authentication limit (those are counted and logged, not audited: a flood of them
/// must not turn into a flood of fsyncs).
async fn audit<T>(
    state: &AppState,
    action: &str,
    node: Option<&str>,
    actor: Actor,
    source: Source,
    answer: &Result<T, ApiError>,
) {
    if let Err(ApiError::TooManyRequests { .. }) = answer {
        return;
    }
    let mut record = Record::now(action, node, actor, source.ip, audit_result(answer));
    if let Err(e) = answer {
        record = record.with_detail(e.to_string());
    }
    state.audit(record).await;
}

/// Checks the admin token of a request on `route` (budget of failures first): who the caller
/// is for the audit log, and the answer.
fn admin_token(
    state: &AppState,
    source: Source,
    headers: &HeaderMap,
    route: &'static str,
) -> (Actor, Result<(), ApiError>) {
    let answer = super::authenticate(
        state,
        source,
        route,
        super::bearer(headers),
        "not the admin token",
        |t| state.is_admin(t).then_some(()),
    );
    let actor = if answer.is_ok() {
        Actor::Admin
    } else {
        Actor::None
    };
    (actor, answer)
}

/// [`admin_token`], auditing the attempt as `action` whatever its outcome.
pub(super) async fn admin_only(
    state: &AppState,
    source: Source,
    headers: &HeaderMap,
    route: &'static str,
    action: &str,
) -> Result<(), ApiError> {
    let (actor, answer) = admin_token(state, source, headers, route);
    audit(state, action, None, actor, source, &answer).await;
    answer
}

/// `POST /add_node` with the enrollment or admin token.
pub async fn add_node(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Result<Json<Enrollment>, JsonRejection>,
) -> Result<Json<Enrolled>, ApiError> {
    let node = body.as_ref().ok().map(|Json(e)| e.node.clone());
    let action = match node.as_deref().and_then(|n| state.registry.get(n)) {
        Some(_) => "reenroll",
        None => "add_node",
    };
    let actor = super::authenticate(
        &state,
        source,
        "add_node",
        super::bearer(&headers),
        "not the enrollment or admin token",
        |t| {
            if state.is_admin(t) {
                Some(Actor::Admin)
            } else if state.is_enroll(t) {
                Some(Actor::Enrollment)
            } else {
                None
            }
        },
    );
    let actor = match actor {
        Ok(Actor::Enrollment) => {
            super::require_client_cert(&state, source, "add_node").map(|()| Actor::Enrollment)
        }
        other => other,
    };
    let (who, answer) = match actor {
        Ok(actor) => (actor, enroll(&state, actor, body).await),
        Err(e) => (Actor::None, Err(e)),
    };
    audit(&state, action, node.as_deref(), who, source, &answer).await;
    answer
}

async fn enroll(
    state: &AppState,
    actor: Actor,
    body: Result<Json<Enrollment>, JsonRejection>,
) -> Result<Json<Enrolled>, ApiError> {
    let enrollment = json_body(body)?;
    let c = &state.config;
    enrollment
        .validate(
            &[&c.instance_label, &c.node_label],
            c.limits.max_label_value_len,
        )
        .map_err(ApiError::Unprocessable)?;
    let worker = state.clone();
    let admin = actor == Actor::Admin;
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
    source: Source,
    headers: HeaderMap,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let node = body.as_ref().ok().map(|Json(r)| r.node.clone());
    let caller = super::authenticate(
        &state,
        source,
        "remove_node",
        super::bearer(&headers),
        "not the admin token or a valid push token",
        |t| {
            if state.is_admin(t) {
                Some(None)
            } else {
                state.registry.authenticate(t).map(Some)
            }
        },
    );
    let caller = match caller {
        Ok(Some(own)) => {
            super::require_client_cert(&state, source, "remove_node").map(|()| Some(own))
        }
        other => other,
    };
    let (who, answer) = match caller {
        Ok(None) => (Actor::Admin, remove(&state, None, body).await),
        Ok(Some(own)) => (Actor::Node, remove(&state, Some(own), body).await),
        Err(e) => (Actor::None, Err(e)),
    };
    audit(&state, "remove_node", node.as_deref(), who, source, &answer).await;
    answer
}

async fn remove(
    state: &AppState,
    own: Option<std::sync::Arc<crate::registry::NodeIdentity>>,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    source: Source,
    headers: HeaderMap,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let node = body.as_ref().ok().map(|Json(r)| r.node.clone());
    let (actor, caller) = admin_token(&state, source, &headers, "readmit_node");
    let answer = match caller {
        Ok(()) => readmit(&state, body).await,
        Err(e) => Err(e),
    };
    audit(
        &state,
        "readmit_node",
        node.as_deref(),
        actor,
        source,
        &answer,
    )
    .await;
    answer
}

/// Re-admits the node of `body`, once the caller is known to be the admin.
async fn readmit(
    state: &AppState,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    source: Source,
    headers: HeaderMap,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    admin_only(&state, source, &headers, "nodes", "list_nodes").await?;
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
