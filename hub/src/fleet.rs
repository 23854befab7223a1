//! The fleet as the page at `/` and the `nodes` command see it: each node's state, labels, last
//! push, series, push figures and latest refusal, the summary counts, and one node's families.
//! Built from the registry, the store and the push [`Activity`](crate::activity::Activity).
//!
//! Two audiences: anyone may see what `/metrics` already shows (node names and their
//! enrollment labels, up or stale, last push, series, quarantine counts, families; no removed
//! nodes, since `/metrics` lists none); the admin token adds the enrollment metadata (hostname,
//! IP), removed nodes, push counts by kind, refusal messages and quarantined family names.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::activity::{NodeActivity, Refusal};
use crate::registry::NodeIdentity;
use crate::store::NodeStatus;
use crate::AppState;

/// Who is asking: what the answer may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// No token: only what `/metrics` shows.
    Public,
    /// The admin token: everything.
    Admin,
}

/// A node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// A fresh snapshot is served.
    Up,
    /// Enrolled but silent for longer than its staleness window (or not pushed yet).
    Stale,
    /// Removed: its token is revoked, its series are gone.
    Removed,
}

impl NodeState {
    /// The word used in JSON, tables and `fleetgate_hub_nodes{state}`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Stale => "stale",
            NodeState::Removed => "removed",
        }
    }
}

/// One node as listed. Fields after `quarantined_families` are the admin's only: absent from
/// the JSON for everyone else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node name (the `instance` and `node` labels).
    pub node: String,
    /// Up, stale or removed.
    pub state: NodeState,
    /// Enrollment labels, `node_type` among them.
    pub labels: BTreeMap<String, String>,
    /// Unix seconds of the latest accepted push since the hub started.
    pub last_push: Option<f64>,
    /// Series served now.
    pub series: usize,
    /// Families held back for a TYPE conflict at the latest full push.
    pub quarantined_families: usize,
    /// Hostname given at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// IP given at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Full snapshots accepted since the hub started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_pushes: Option<u64>,
    /// Values pushes accepted since the hub started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_pushes: Option<u64>,
    /// The latest refused push (or quarantined family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rejection: Option<Refusal>,
    /// Names of the quarantined families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<Vec<String>>,
}

impl NodeView {
    /// Values pushes among accepted pushes, when the admin view carries the counts.
    pub fn values_ratio(&self) -> Option<f64> {
        let (full, values) = (self.full_pushes?, self.values_pushes?);
        (full + values > 0).then(|| values as f64 / (full + values) as f64)
    }
}

/// The counts at the top of the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Nodes serving a fresh snapshot.
    pub up: usize,
    /// Enrolled nodes without one.
    pub stale: usize,
    /// Removed nodes.
    pub removed: usize,
    /// Series served, all nodes together.
    pub series: usize,
    /// Accepted pushes per second over the last few seconds.
    pub pushes_per_second: f64,
}

/// The answer of `GET /api/nodes`, in this field order (the route streams it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// The hub's clock, Unix seconds, so a page can show ages without trusting its own clock.
    pub now: f64,
    /// Whether the admin fields are included.
    pub admin: bool,
    /// Counts.
    pub summary: Summary,
    /// Nodes sorted by name.
    pub nodes: Vec<NodeView>,
}

/// One family of a node's served snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyView {
    /// Family name.
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Series of the family.
    pub series: usize,
}

/// The answer of `GET /api/nodes/{node}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    /// The hub's clock, Unix seconds.
    pub now: f64,
    /// Whether the admin fields are included.
    pub admin: bool,
    /// The node as listed.
    #[serde(flatten)]
    pub view: NodeView,
    /// Its served families, sorted by name; empty while it is stale or removed.
    pub families: Vec<FamilyView>,
}

/// Unix seconds now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What one `/api/nodes` answer shows, taken at once; the views are built from it as they are
/// written, so 10,000 nodes never sit in memory twice.
#[derive(Debug)]
pub struct FleetSnapshot {
    /// Who asked.
    pub audience: Audience,
    /// When it was taken.
    pub now: f64,
    /// Identities to list, sorted by name (removed ones only for the admin).
    identities: Vec<Arc<NodeIdentity>>,
    /// The store's state of each node.
    statuses: HashMap<String, NodeStatus>,
    /// Push records (admin only).
    activity: HashMap<String, NodeActivity>,
    /// Counts.
    pub summary: Summary,
}

impl FleetSnapshot {
    /// Takes the registry, the store's statuses and the push records.
    pub fn take(state: &AppState, audience: Audience) -> Self {
        let statuses = state.store.statuses();
        let mut identities = state.registry.list();
        let mut summary = Summary {
            pushes_per_second: state.activity.pushes_per_second(),
            ..Summary::default()
        };
        for id in &identities {
            match node_state(id, statuses.get(&id.node)) {
                NodeState::Up => summary.up += 1,
                NodeState::Stale => summary.stale += 1,
                NodeState::Removed => summary.removed += 1,
            }
            if !id.removed {
                summary.series += statuses.get(&id.node).map_or(0, |s| s.series);
            }
        }
        if audience == Audience::Public {
            identities.retain(|id| !id.removed);
        }
        let activity = match audience {
            Audience::Admin => state.activity.all(),
            Audience::Public => HashMap::new(),
        };
        FleetSnapshot {
            audience,
            now: unix_now(),
            identities,
            statuses,
            activity,
            summary,
        }
    }

    /// The listed nodes, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeView> + '_ {
        self.identities.iter().map(|id| {
            view(
                id,
                self.statuses.get(&id.node),
                self.activity.get(&id.node),
                self.audience,
            )
        })
    }

    /// Writes the [`FleetView`] document in chunks of about `chunk_bytes`, handing each to
    /// `emit`, building each node's view only as it is written; stops early when `emit`
    /// returns `false` (the client went away).
    pub fn write_json(&self, chunk_bytes: usize, mut emit: impl FnMut(Vec<u8>) -> bool) {
        let fresh = || Vec::with_capacity(chunk_bytes.saturating_add(1024).min(1 << 20));
        let mut buf = fresh();
        // Serializing these plain structs into a Vec cannot fail.
        let _ = self.write_head(&mut buf);
        for (i, node) in self.nodes().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            let _ = serde_json::to_writer(&mut buf, &node);
            if buf.len() >= chunk_bytes && !emit(std::mem::replace(&mut buf, fresh())) {
                return;
            }
        }
        buf.extend_from_slice(b"]}\n");
        emit(buf);
    }

    fn write_head(&self, buf: &mut Vec<u8>) -> serde_json::Result<()> {
        buf.extend_from_slice(b"{\"now\":");
        serde_json::to_writer(&mut *buf, &self.now)?;
        buf.extend_from_slice(b",\"admin\":");
        serde_json::to_writer(&mut *buf, &(self.audience == Audience::Admin))?;
        buf.extend_from_slice(b",\"summary\":");
        serde_json::to_writer(&mut *buf, &self.summary)?;
        buf.extend_from_slice(b",\"nodes\":[");
        Ok(())
    }

    /// The whole answer in memory (tests and the route's small cases).
    pub fn into_view(self) -> FleetView {
        FleetView {
            now: self.now,
            admin: self.audience == Audience::Admin,
            summary: self.summary.clone(),
            nodes: self.nodes().collect(),
        }
    }
}

/// One node's detail, or `None` when no such node is listed for `audience`.
pub fn node_detail(state: &AppState, node: &str, audience: Audience) -> Option<NodeDetail> {
    let id = state.registry.get(node)?;
    if id.removed && audience == Audience::Public {
        return None;
    }
    let status = state.store.status(node);
    let activity = state.activity.node(node);
    let families = if id.removed {
        Vec::new()
    } else {
        state.store.node_families(node)
    };
    let families = families
        .into_iter()
        .map(|(name, kind, series)| FamilyView {
            name: name.to_string(),
            kind: kind.as_str().to_string(),
            series,
        })
        .collect();
    Some(NodeDetail {
        now: unix_now(),
        admin: audience == Audience::Admin,
        view: view(&id, Some(&status), Some(&activity), audience),
        families,
    })
}

fn node_state(id: &NodeIdentity, status: Option<&NodeStatus>) -> NodeState {
    if id.removed {
        NodeState::Removed
    } else if status.is_some_and(|s| s.up) {
        NodeState::Up
    } else {
        NodeState::Stale
    }
}

fn view(
    id: &NodeIdentity,
    status: Option<&NodeStatus>,
    activity: Option<&NodeActivity>,
    audience: Audience,
) -> NodeView {
    let state = node_state(id, status);
    let status = status.cloned().unwrap_or_default();
    let mut v = NodeView {
        node: id.node.clone(),
        state,
        labels: id.labels.clone(),
        last_push: status.last_push,
        series: if state == NodeState::Removed {
            0
        } else {
            status.series
        },
        quarantined_families: status.quarantined,
        hostname: None,
        ip: None,
        full_pushes: None,
        values_pushes: None,
        last_rejection: None,
        quarantined: None,
    };
    if audience == Audience::Admin {
        let a = activity.cloned().unwrap_or_default();
        v.hostname = id.hostname.clone();
        v.ip = id.ip.clone();
        v.full_pushes = Some(a.full_pushes);
        v.values_pushes = Some(a.values_pushes);
        v.last_rejection = a.last_refusal;
        v.quarantined = Some(a.quarantined);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::PushKind;
    use crate::registry::Enrollment;

    fn state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config::with_data_dir(dir.path());
        (dir, AppState::open(config).unwrap())
    }

    fn enroll(state: &AppState, node: &str) {
        state
            .registry
            .enroll(
                Enrollment {
                    node: node.into(),
                    hostname: Some(format!("{node}.example")),
                    ip: Some("10.0.0.7".into()),
                    labels: [("node_type".to_string(), "gpu".to_string())].into(),
                },
                false,
            )
            .unwrap();
    }

    #[test]
    fn the_public_view_shows_what_metrics_shows_and_the_admin_view_more() {
        let (_dir, state) = state();
        for n in ["a", "b", "gone"] {
            enroll(&state, n);
        }
        state.registry.remove("gone").unwrap();
        state.activity.accepted("a", PushKind::Full, &[]);
        state
            .activity
            .refused("b", 422, "invalid metric name \"1x\"");

        let public = FleetSnapshot::take(&state, Audience::Public).into_view();
        assert!(!public.admin);
        assert_eq!(
            public
                .nodes
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            (
                public.summary.up,
                public.summary.stale,
                public.summary.removed
            ),
            (0, 2, 1)
        );
        let text = serde_json::to_string(&public).unwrap();
        for secret in ["example", "10.0.0.7", "gone", "invalid metric", "pushes\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("\"node_type\":\"gpu\""), "{text}");

        let admin = FleetSnapshot::take(&state, Audience::Admin).into_view();
        assert!(admin.admin);
        assert_eq!(admin.nodes.len(), 3);
        let a = &admin.nodes[0];
        assert_eq!(a.hostname.as_deref(), Some("a.example"));
        assert_eq!((a.full_pushes, a.values_pushes), (Some(1), Some(0)));
        assert_eq!(a.values_ratio(), Some(0.0));
        assert_eq!(
            admin.nodes[1].last_rejection.as_ref().map(|r| r.status),
            Some(422)
        );
        assert_eq!(admin.nodes[2].state, NodeState::Removed);
        // Round trip: what the command line reads is what the route writes (times to the
        // millisecond: a float read back from JSON may differ in its last bit).
        let ms = |mut v: FleetView| {
            v.now = (v.now * 1e3).round();
            for n in &mut v.nodes {
                n.last_push = n.last_push.map(|t| (t * 1e3).round());
                if let Some(r) = &mut n.last_rejection {
                    r.at = (r.at * 1e3).round();
                }
            }
            v
        };
        let back: FleetView =
            serde_json::from_str(&serde_json::to_string(&admin).unwrap()).unwrap();
        assert_eq!(ms(back), ms(admin.clone()));

        // The streamed document, cut in many chunks, is the same view.
        let mut chunks = Vec::new();
        FleetSnapshot::take(&state, Audience::Admin).write_json(10, |c| {
            chunks.push(c);
            true
        });
        assert!(chunks.len() > 2, "{}", chunks.len());
        let streamed: FleetView = serde_json::from_slice(&chunks.concat()).unwrap();
        assert_eq!(ms(streamed.clone()).nodes, ms(admin).nodes);
        assert_eq!(streamed.summary.removed, 1);
        let mut sent = 0;
        FleetSnapshot::take(&state, Audience::Admin).write_json(10, |_| {
            sent += 1;
            false
        });
        assert_eq!(sent, 1, "stops when the client goes away");

        assert!(node_detail(&state, "gone", Audience::Public).is_none());
        assert!(node_detail(&state, "nope", Audience::Admin).is_none());
        let detail = node_detail(&state, "gone", Audience::Admin).unwrap();
        assert_eq!(detail.view.state, NodeState::Removed);
        assert!(detail.families.is_empty());
    }
}
