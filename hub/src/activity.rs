//! What each node's pushes did since the hub started, for the fleet page and the `nodes`
//! command: accepted pushes by kind (full snapshot or values only), the latest refusal with its
//! time and status, the families quarantined at the latest full push, and the fleet's accepted
//! pushes per second. Fed by the push route after the store has decided; read by `/api/nodes`.
//! It holds one small entry per enrolled node and one short lock per push.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Seconds over which [`Activity::pushes_per_second`] averages.
pub const RATE_WINDOW_SECS: u64 = 10;

/// One-second buckets kept: the window plus the second being filled.
const BUCKETS: usize = RATE_WINDOW_SECS as usize + 2;

/// Which kind of push was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// A whole snapshot (native or text).
    Full,
    /// Only the values, against the stored snapshot.
    Values,
}

/// A push the hub refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// Unix seconds when it was refused.
    pub at: f64,
    /// The HTTP status answered (400, 413, 415, 422), or 200 for a push accepted with a family
    /// quarantined.
    pub status: u16,
    /// What the node was told.
    pub message: String,
}

/// One node's push record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeActivity {
    /// Full snapshots accepted.
    pub full_pushes: u64,
    /// Values pushes accepted.
    pub values_pushes: u64,
    /// The latest refusal (or quarantine), if any.
    pub last_refusal: Option<Refusal>,
    /// Families held back at the latest full push for a TYPE conflict with other nodes.
    pub quarantined: Vec<String>,
}

impl NodeActivity {
    /// The share of accepted pushes that carried only values, `None` before the first push.
    pub fn values_ratio(&self) -> Option<f64> {
        let all = self.full_pushes + self.values_pushes;
        (all > 0).then(|| self.values_pushes as f64 / all as f64)
    }
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<String, NodeActivity>,
    /// Accepted pushes per Unix second, as `(second, count)` in a ring indexed by second.
    buckets: [(u64, u64); BUCKETS],
}

/// Every node's push record; share it behind the hub's state.
#[derive(Debug, Default)]
pub struct Activity {
    inner: Mutex<Inner>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Activity {
    /// An empty record.
    pub fn new() -> Self {
        Activity::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an accepted push of `node`. For a full push, `quarantined` replaces the node's
    /// quarantined families (a values push keeps those of its base); a quarantine is also
    /// the node's latest refusal, since part of what it pushed is not served.
    pub fn accepted(&self, node: &str, kind: PushKind, quarantined: &[(String, String)]) {
        self.accepted_at(node, kind, quarantined, unix_now());
    }

    fn accepted_at(&self, node: &str, kind: PushKind, quarantined: &[(String, String)], at: f64) {
        let mut inner = self.lock();
        let second = at as u64;
        let bucket = &mut inner.buckets[(second % BUCKETS as u64) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += 1;
        let entry = entry(&mut inner.nodes, node);
        match kind {
            PushKind::Full => {
                entry.full_pushes += 1;
                entry.quarantined = quarantined.iter().map(|(name, _)| name.clone()).collect();
                if let Some((_, message)) = quarantined.first() {
                    entry.last_refusal = Some(Refusal {
                        at,
                        status: 200,
                        message: message.clone(),
                    });
                }
            }
            PushKind::Values => entry.values_pushes += 1,
        }
    }

    /// Records that a push of `node` was refused with `status` and `message`.
    pub fn refused(&self, node: &str, status: u16, message: &str) {
        let mut inner = self.lock();
        entry(&mut inner.nodes, node).last_refusal = Some(Refusal {
            at: unix_now(),
            status,
            message: message.to_string(),
        });
    }

    /// One node's record (empty when it never pushed since the hub started).
    pub fn node(&self, node: &str) -> NodeActivity {
        self.lock().nodes.get(node).cloned().unwrap_or_default()
    }

    /// Every node's record.
    pub fn all(&self) -> HashMap<String, NodeActivity> {
        self.lock().nodes.clone()
    }

    /// Accepted pushes per second over the last [`RATE_WINDOW_SECS`] complete seconds.
    pub fn pushes_per_second(&self) -> f64 {
        self.pushes_per_second_at(unix_now())
    }

    fn pushes_per_second_at(&self, now: f64) -> f64 {
        let current = now as u64;
        let first = current.saturating_sub(RATE_WINDOW_SECS);
        let pushes: u64 = self
            .lock()
            .buckets
            .iter()
            .filter(|(second, _)| *second >= first && *second < current)
            .map(|(_, count)| count)
            .sum();
        pushes as f64 / RATE_WINDOW_SECS as f64
    }
}

fn entry<'a>(nodes: &'a mut HashMap<String, NodeActivity>, node: &str) -> &'a mut NodeActivity {
    if !nodes.contains_key(node) {
        nodes.insert(node.to_string(), NodeActivity::default());
    }
    nodes.get_mut(node).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_kinds_and_keeps_the_quarantine_of_the_latest_full_push() {
        let a = Activity::new();
        assert_eq!(a.node("n").values_ratio(), None);
        let q = [("f".to_string(), "family f is gauge here".to_string())];
        a.accepted("n", PushKind::Full, &q);
        a.accepted("n", PushKind::Values, &[]);
        a.accepted("n", PushKind::Values, &[]);
        a.accepted("n", PushKind::Values, &[]);
        let n = a.node("n");
        assert_eq!((n.full_pushes, n.values_pushes), (1, 3));
        assert_eq!(n.values_ratio(), Some(0.75));
        assert_eq!(n.quarantined, vec!["f"]);
        assert_eq!(n.last_refusal.as_ref().map(|r| r.status), Some(200));
        a.accepted("n", PushKind::Full, &[]);
        assert!(a.node("n").quarantined.is_empty());

        a.refused("n", 422, "invalid metric name \"1x\"");
        let r = a.node("n").last_refusal.unwrap();
        assert_eq!(
            (r.status, r.message.as_str()),
            (422, "invalid metric name \"1x\"")
        );
        assert!(r.at > 1.0e9);
        assert_eq!(a.all().len(), 1);
    }

    #[test]
    fn rate_counts_complete_seconds_of_the_window_only() {
        let a = Activity::new();
        let t0 = 1_000_000.0;
        // 10 pushes in each of 12 seconds, and some in the current second.
        for s in 0..12 {
            for _ in 0..10 {
                a.accepted_at("n", PushKind::Values, &[], t0 + s as f64 + 0.5);
            }
        }
        for _ in 0..50 {
            a.accepted_at("n", PushKind::Values, &[], t0 + 12.2);
        }
        assert_eq!(a.pushes_per_second_at(t0 + 12.5), 10.0);
        // Twenty seconds later nothing is left in the window.
        assert_eq!(a.pushes_per_second_at(t0 + 40.0), 0.0);
        // Buckets are reused, not added to, when their second comes round again.
        a.accepted_at("n", PushKind::Values, &[], t0 + 40.1);
        assert_eq!(a.pushes_per_second_at(t0 + 41.0), 0.1);
    }
}
