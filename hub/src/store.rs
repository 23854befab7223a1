//! The latest accepted snapshot of every node, pre-rendered, plus the global family index that
//! keeps one TYPE per family name across nodes. A push replaces one node's entry atomically
//! under a short lock; its cost is proportional to that node's families, never to the store.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetgate_shared::MetricType;

use crate::prepare::{Base, Layout, Prepared, Revalued};

/// One family of a stored snapshot.
#[derive(Debug, Clone)]
pub struct StoredFamily {
    /// Family name, shared with the family index.
    pub name: Arc<str>,
    /// HELP text (the first one the hub saw for this name while it was exposed).
    pub help: Arc<str>,
    /// TYPE, equal for every node exposing the name.
    pub kind: MetricType,
    /// Series in the family.
    pub series: usize,
    /// Its exposition lines within [`NodeSnapshot::text`].
    pub range: Range<usize>,
    /// Its lines' splice points within [`NodeSnapshot::splices`].
    pub lines: Range<usize>,
}

/// A node's latest accepted push, immutable once stored.
#[derive(Debug)]
pub struct NodeSnapshot {
    /// Node name.
    pub node: Arc<str>,
    /// Exposition lines of every family, without the node labels.
    pub text: Box<str>,
    /// Per line, where in `text` the node labels go (4 bytes instead of ~50 per line).
    pub splices: Box<[u32]>,
    /// The node labels as of this push, rendered once.
    pub node_labels: Box<str>,
    /// Exposed families sorted by name (quarantined ones left out).
    pub families: Vec<StoredFamily>,
    /// Series exposed.
    pub series: usize,
    /// When the push was accepted, for staleness.
    pub received: Instant,
    /// How long this snapshot stays exposed without a newer push.
    pub stale_after: Duration,
    /// The layout of the push, when a values push may follow it (native snapshots only).
    pub layout: Option<Layout>,
}

impl NodeSnapshot {
    /// Whether the snapshot has outlived its staleness window at `now`.
    pub fn is_stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.received) > self.stale_after
    }

    /// What a values push of this node is applied to.
    pub fn base(&self) -> Base<'_> {
        Base {
            text: &self.text,
            splices: &self.splices,
            layout: self.layout.as_ref(),
        }
    }
}

/// A family of a push that was not exposed because another node exposes it with another TYPE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Family name.
    pub name: String,
    /// Its series count.
    pub series: usize,
    /// Why, for `/nodes`.
    pub message: String,
}

/// What became of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored; the listed families were quarantined.
    Accepted {
        /// Series now exposed for the node.
        series: usize,
        /// Families held back for a type conflict.
        quarantined: Vec<Quarantined>,
    },
    /// A newer push of the same enrollment is already stored; this one was ignored.
    OutOfOrder,
    /// The identity the push authenticated as was revoked while the push was in flight.
    Revoked,
    /// A values push that does not fit the stored snapshot; says why.
    Conflict(String),
}

/// Per-node bookkeeping that outlives snapshots (staleness evicts the snapshot, not this).
#[derive(Debug, Default)]
struct Slot {
    /// Enrollment epoch of the latest push or removal.
    epoch: u64,
    /// Removed at `epoch`; pushes of that epoch or older are refused.
    removed: bool,
    /// Sequence number of the stored push, when it had one.
    seq: Option<u64>,
    /// The exposed snapshot; `None` once evicted (stale or removed).
    snapshot: Option<Arc<NodeSnapshot>>,
    /// Unix seconds of the latest accepted push.
    last_push: Option<f64>,
    /// Accepted-push instant and staleness window, kept after eviction for the node's state.
    fresh_until: Option<Instant>,
    /// Latest reason a push or family of this node was refused.
    last_rejection: Option<String>,
}

#[derive(Debug)]
struct IndexEntry {
    /// Interned name.
    name: Arc<str>,
    /// The TYPE every exposing node agrees on.
    kind: MetricType,
    /// HELP of the first node that exposed the name.
    help: Arc<str>,
    /// Number of stored snapshots exposing the name.
    nodes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    index: BTreeMap<Arc<str>, IndexEntry>,
}

/// Releases a snapshot's claim on its family names.
fn unindex(index: &mut BTreeMap<Arc<str>, IndexEntry>, snapshot: &NodeSnapshot) {
    for f in &snapshot.families {
        if let Some(e) = index.get_mut(&*f.name) {
            e.nodes = e.nodes.saturating_sub(1);
            if e.nodes == 0 {
                index.remove(&*f.name);
            }
        }
    }
}

/// What a render needs, taken in one short critical section so it is consistent.
#[derive(Debug, Default)]
pub struct View {
    /// Fresh snapshots, sorted by node name.
    pub nodes: Vec<Arc<NodeSnapshot>>,
    /// Every family name any of them exposes (a superset), sorted.
    pub family_names: Vec<Arc<str>>,
}

/// A node's state as the store knows it, for `/nodes` and the synthetic series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    /// A fresh snapshot is exposed.
    pub up: bool,
    /// Unix seconds of the latest accepted push since the hub started.
    pub last_push: Option<f64>,
    /// Series exposed (0 when not up).
    pub series: usize,
    /// Latest rejection reason.
    pub last_rejection: Option<String>,
    /// Families currently quarantined.
    pub quarantined: usize,
}

/// The store; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
    /// Families quarantined per node at its latest push (kept apart so reading it is cheap).
    quarantined: Mutex<HashMap<String, usize>>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `prepared` as `node`'s snapshot, unless the push is out of order or its
    /// enrollment was revoked. Families whose TYPE conflicts with the same family of another
    /// node are quarantined; the rest is exposed.
    pub fn apply(
        &self,
        node: &str,
        epoch: u64,
        seq: Option<u64>,
        prepared: Prepared,
        stale_after: Duration,
    ) -> Outcome {
        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let layout = prepared.layout.map(|hash| Layout::new(hash, &prepared));
        let Prepared {
            text,
            families,
            splices,
            node_labels,
            ..
        } = prepared;
        // Shrunk before the lock is taken: it may copy.
        let text = text.into_boxed_str();
        let splices = splices.into_boxed_slice();
        let node_labels = node_labels.into_boxed_str();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let slot = inner.slots.entry(node.to_string()).or_default();
        if slot.epoch > epoch || (slot.removed && slot.epoch >= epoch) {
            return Outcome::Revoked;
        }
        if slot.epoch == epoch {
            if let (Some(new), Some(old)) = (seq, slot.seq) {
                if new < old && slot.last_push.is_some() {
                    return Outcome::OutOfOrder;
                }
            }
        }
        slot.epoch = epoch;
        slot.removed = false;
        slot.seq = seq;
        let old = slot.snapshot.take();
        if let Some(old) = &old {
            unindex(&mut inner.index, old);
        }
        let mut stored = Vec::with_capacity(families.len());
        let mut quarantined = Vec::new();
        let mut series = 0;
        for f in families {
            match inner.index.get_mut(f.name.as_str()) {
                Some(e) if e.kind != f.kind => quarantined.push(Quarantined {
                    message: format!(
                        "family {} is {} here but {} on other nodes; quarantined",
                        f.name,
                        f.kind.as_str(),
                        e.kind.as_str()
                    ),
                    name: f.name,
                    series: f.series,
                }),
                Some(e) => {
                    e.nodes += 1;
                    series += f.series;
                    stored.push(StoredFamily {
                        name: Arc::clone(&e.name),
                        help: Arc::clone(&e.help),
                        kind: f.kind,
                        series: f.series,
                        range: f.range,
                        lines: f.lines,
                    });
                }
                None => {
                    let name: Arc<str> = f.name.into();
                    let help: Arc<str> = f.help.into();
                    inner.index.insert(
                        Arc::clone(&name),
                        IndexEntry {
                            name: Arc::clone(&name),
                            kind: f.kind,
                            help: Arc::clone(&help),
                            nodes: 1,
                        },
                    );
                    series += f.series;
                    stored.push(StoredFamily {
                        name,
                        help,
                        kind: f.kind,
                        series: f.series,
                        range: f.range,
                        lines: f.lines,
                    });
                }
            }
        }
        slot.snapshot = Some(Arc::new(NodeSnapshot {
            node: node.into(),
            text,
            splices,
            node_labels,
            families: stored,
            series,
            received: now,
            stale_after,
            layout,
        }));
        slot.last_push = Some(unix_now);
        slot.fresh_until = now.checked_add(stale_after);
        if let Some(q) = quarantined.first() {
            slot.last_rejection = Some(q.message.clone());
        }
        // The replaced snapshot is freed outside the lock.
        drop(guard);
        drop(old);
        self.quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), quarantined.len());
        Outcome::Accepted {
            series,
            quarantined,
        }
    }

    /// The snapshot a values push of `node` (enrollment `epoch`) against `base_seq` applies
    /// to: the exposed one, when its push had that sequence number.
    pub fn base(
        &self,
        node: &str,
        epoch: u64,
        base_seq: u64,
    ) -> Result<Arc<NodeSnapshot>, Outcome> {
        let now = Instant::now();
        let inner = self.lock();
        let Some(slot) = inner.slots.get(node) else {
            return Err(Outcome::Conflict("no base snapshot".into()));
        };
        if slot.epoch > epoch || (slot.removed && slot.epoch >= epoch) {
            return Err(Outcome::Revoked);
        }
        let snapshot = match &slot.snapshot {
            Some(s) if slot.epoch == epoch && !s.is_stale(now) => s,
            _ => return Err(Outcome::Conflict("no base snapshot".into())),
        };
        match slot.seq {
            Some(seq) if seq == base_seq => Ok(Arc::clone(snapshot)),
            Some(seq) => Err(Outcome::Conflict(format!(
                "base seq {base_seq} is not the stored seq {seq}"
            ))),
            None => Err(Outcome::Conflict("no base snapshot".into())),
        }
    }

    /// Replaces `node`'s snapshot `base` (from [`Store::base`]) by the same families with the
    /// lines of `revalued`, as push `seq`. The family index is untouched: the families are the
    /// same. A conflict when another push replaced `base` meanwhile.
    pub fn apply_values(
        &self,
        node: &str,
        epoch: u64,
        seq: u64,
        base: &Arc<NodeSnapshot>,
        revalued: Revalued,
        stale_after: Duration,
    ) -> Outcome {
        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let starts = &revalued.line_starts;
        let at = |line: usize| starts.get(line).copied().unwrap_or(revalued.text.len());
        let families = base
            .families
            .iter()
            .map(|f| StoredFamily {
                range: at(f.lines.start)..at(f.lines.end),
                ..f.clone()
            })
            .collect();
        let snapshot = Arc::new(NodeSnapshot {
            node: Arc::clone(&base.node),
            text: revalued.text.into_boxed_str(),
            splices: revalued.splices.into_boxed_slice(),
            node_labels: base.node_labels.clone(),
            families,
            series: base.series,
            received: now,
            stale_after,
            layout: base.layout.clone(),
        });
        let mut guard = self.lock();
        let Some(slot) = guard.slots.get_mut(node) else {
            return Outcome::Conflict("no base snapshot".into());
        };
        if slot.epoch > epoch || (slot.removed && slot.epoch >= epoch) {
            return Outcome::Revoked;
        }
        if !slot.snapshot.as_ref().is_some_and(|s| Arc::ptr_eq(s, base)) {
            return match slot.seq {
                Some(stored) if stored > seq => Outcome::OutOfOrder,
                _ => Outcome::Conflict("the stored snapshot changed meanwhile".into()),
            };
        }
        let old = slot.snapshot.replace(snapshot);
        slot.seq = Some(seq);
        slot.last_push = Some(unix_now);
        slot.fresh_until = now.checked_add(stale_after);
        drop(guard);
        drop(old);
        Outcome::Accepted {
            series: base.series,
            quarantined: Vec::new(),
        }
    }

    /// Records why a push of `node` was refused, for `/nodes`.
    pub fn note_rejection(&self, node: &str, message: &str) {
        self.lock()
            .slots
            .entry(node.to_string())
            .or_default()
            .last_rejection = Some(message.to_string());
    }

    /// Evicts `node`'s series at once and refuses pushes of enrollment `epoch` or older.
    pub fn remove(&self, node: &str, epoch: u64) {
        let old = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let slot = inner.slots.entry(node.to_string()).or_default();
            slot.epoch = slot.epoch.max(epoch);
            slot.removed = true;
            slot.fresh_until = None;
            let old = slot.snapshot.take();
            if let Some(old) = &old {
                unindex(&mut inner.index, old);
            }
            old
        };
        drop(old);
        self.quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
    }

    /// Drops the snapshots of nodes that stopped pushing, freeing their memory and their
    /// claim on family TYPEs. Returns how many were evicted.
    pub fn evict_stale(&self) -> usize {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            for slot in inner.slots.values_mut() {
                if slot.snapshot.as_ref().is_some_and(|s| s.is_stale(now)) {
                    evicted.extend(slot.snapshot.take());
                }
            }
            for s in &evicted {
                unindex(&mut inner.index, s);
            }
        }
        evicted.len()
    }

    /// The fresh snapshots and family names, consistent with each other.
    pub fn view(&self) -> View {
        let now = Instant::now();
        let inner = self.lock();
        let mut nodes: Vec<Arc<NodeSnapshot>> = inner
            .slots
            .values()
            .filter_map(|s| s.snapshot.as_ref())
            .filter(|s| !s.is_stale(now))
            .cloned()
            .collect();
        let family_names = inner.index.keys().cloned().collect();
        drop(inner);
        nodes.sort_unstable_by(|a, b| a.node.cmp(&b.node));
        View {
            nodes,
            family_names,
        }
    }

    /// `node`'s exposed snapshot, while it is fresh (the fleet page's per-node detail).
    pub fn snapshot(&self, node: &str) -> Option<Arc<NodeSnapshot>> {
        let now = Instant::now();
        self.lock()
            .slots
            .get(node)?
            .snapshot
            .as_ref()
            .filter(|s| !s.is_stale(now))
            .cloned()
    }

    /// The state of one node.
    pub fn status(&self, node: &str) -> NodeStatus {
        let now = Instant::now();
        let inner = self.lock();
        let Some(slot) = inner.slots.get(node) else {
            return NodeStatus::default();
        };
        let fresh = slot.snapshot.as_ref().filter(|s| !s.is_stale(now));
        let quarantined = self
            .quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
            .unwrap_or(0);
        NodeStatus {
            up: fresh.is_some(),
            last_push: slot.last_push,
            series: fresh.map_or(0, |s| s.series),
            last_rejection: slot.last_rejection.clone(),
            quarantined,
        }
    }

    /// The state of every node the store has seen.
    pub fn statuses(&self) -> HashMap<String, NodeStatus> {
        let names: Vec<String> = self.lock().slots.keys().cloned().collect();
        names
            .into_iter()
            .map(|n| {
                let s = self.status(&n);
                (n, s)
            })
            .collect()
    }

    /// Bytes held by stored snapshots (exposition text, splice points, per-family entries), for the
    /// memory estimate of the benchmarks.
    pub fn stored_bytes(&self) -> usize {
        let inner = self.lock();
        let snapshots: usize = inner
            .slots
            .values()
            .filter_map(|s| s.snapshot.as_ref())
            .map(|s| {
                s.text.len()
                    + s.splices.len() * std::mem::size_of::<u32>()
                    + s.node_labels.len()
                    + s.families.capacity() * std::mem::size_of::<StoredFamily>()
                    + s.layout
                        .as_ref()
                        .map_or(0, |l| l.order.len() * std::mem::size_of::<u32>())
                    + std::mem::size_of::<NodeSnapshot>()
                    + s.node.len()
            })
            .sum();
        let index: usize = inner
            .index
            .values()
            .map(|e| e.name.len() + e.help.len() + std::mem::size_of::<IndexEntry>() + 32)
            .sum();
        snapshots + index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::labels::NodeLabels;
    use crate::prepare::prepare;
    use fleetgate_shared::{Family, Series, Value};

    fn push(
        store: &Store,
        node: &str,
        epoch: u64,
        seq: u64,
        fams: &[(&str, MetricType)],
    ) -> Outcome {
        let fams = fams
            .iter()
            .map(|(name, kind)| Family {
                name: name.to_string(),
                help: format!("help from {node}"),
                kind: *kind,
                series: vec![Series {
                    labels: vec![],
                    value: Value::Scalar(1.0),
                }],
            })
            .collect();
        let labels = NodeLabels::new("instance", "node", node, []);
        let p = prepare(fams, &labels, &Limits::default()).unwrap();
        store.apply(node, epoch, Some(seq), p, Duration::from_secs(60))
    }

    #[test]
    fn type_conflict_quarantines_only_that_family() {
        let s = Store::new();
        push(&s, "a", 1, 1, &[("x", MetricType::Gauge)]);
        let out = push(
            &s,
            "b",
            1,
            1,
            &[("x", MetricType::Counter), ("y", MetricType::Gauge)],
        );
        let Outcome::Accepted {
            series,
            quarantined,
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(series, 1);
        assert_eq!(quarantined[0].name, "x");
        let status = s.status("b");
        assert!(status
            .last_rejection
            .unwrap()
            .contains("family x is counter"));
        assert_eq!(status.quarantined, 1);
        let v = s.view();
        assert_eq!(
            v.family_names.iter().map(|n| &**n).collect::<Vec<_>>(),
            ["x", "y"]
        );
        assert_eq!(v.nodes[1].families.len(), 1);
        // Once a's family changes type, b may expose x as a counter.
        push(&s, "a", 1, 2, &[("x", MetricType::Counter)]);
        let Outcome::Accepted { quarantined, .. } =
            push(&s, "b", 1, 2, &[("x", MetricType::Counter)])
        else {
            panic!()
        };
        assert!(quarantined.is_empty());
        // HELP: first wins.
        assert_eq!(&*s.view().nodes[1].families[0].help, "help from a");
    }

    #[test]
    fn seq_order_epochs_and_removal() {
        let s = Store::new();
        assert!(matches!(
            push(&s, "a", 1, 5, &[("x", MetricType::Gauge)]),
            Outcome::Accepted { .. }
        ));
        assert_eq!(push(&s, "a", 1, 4, &[]), Outcome::OutOfOrder);
        assert!(
            matches!(push(&s, "a", 2, 1, &[]), Outcome::Accepted { .. }),
            "re-enrolled restarts seq"
        );
        assert_eq!(
            push(&s, "a", 1, 9, &[]),
            Outcome::Revoked,
            "older enrollment"
        );
        s.remove("a", 2);
        assert!(s.view().nodes.is_empty());
        assert!(s.view().family_names.is_empty());
        assert_eq!(push(&s, "a", 2, 10, &[]), Outcome::Revoked);
        assert!(matches!(push(&s, "a", 3, 1, &[]), Outcome::Accepted { .. }));
    }

    mod values {
        use super::*;
        use crate::prepare::revalue;
        use fleetgate_shared::{
            encode_values, layout_hash, sample_values, Bucket, Histogram, Label, Quantile, Summary,
            ValuesHeader,
        };
        use proptest::prelude::*;

        /// Families named from `names` (unsorted, so push order and text order differ) with
        /// kinds by index and values from `x`.
        fn families(names: &[String], x: &[f64]) -> Vec<Family> {
            let mut x = x.iter().copied().cycle();
            let mut next = || x.next().unwrap_or(0.0);
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let (kind, value) = match i % 4 {
                        0 => (MetricType::Counter, Value::Scalar(next())),
                        1 => (
                            MetricType::Histogram,
                            Value::Histogram(Histogram {
                                buckets: vec![
                                    Bucket {
                                        le: 0.25,
                                        count: next(),
                                    },
                                    Bucket {
                                        le: 1e3,
                                        count: next(),
                                    },
                                ],
                                sum: next(),
                                count: next(),
                            }),
                        ),
                        2 => (
                            MetricType::Summary,
                            Value::Summary(Summary {
                                quantiles: vec![Quantile {
                                    quantile: 0.99,
                                    value: next(),
                                }],
                                sum: next(),
                                count: next(),
                            }),
                        ),
                        _ => (MetricType::Gauge, Value::Scalar(next())),
                    };
                    let series = (0..i % 3)
                        .map(|j| Series {
                            labels: vec![Label::new("j", j.to_string())],
                            value: value.clone(),
                        })
                        .collect();
                    Family {
                        name: name.clone(),
                        help: "h".into(),
                        kind,
                        series,
                    }
                })
                .collect()
        }

        fn prepared(fams: Vec<Family>) -> Prepared {
            let labels = NodeLabels::new("instance", "node", "a", []);
            let layout = layout_hash(&fams);
            let mut p = prepare(fams, &labels, &Limits::default()).unwrap();
            p.layout = Some(layout);
            p
        }

        fn values_push(a: &[Family], b: &[Family], base_seq: u64) -> fleetgate_shared::ValuesPush {
            let header = ValuesHeader {
                seq: base_seq + 1,
                interval_ms: 1000,
                timestamp_ms: 0,
                base_seq,
                layout: layout_hash(b),
            };
            let bytes = encode_values(&header, &sample_values(a), &sample_values(b));
            fleetgate_shared::decode_values(&bytes, 1 << 20).unwrap()
        }

        fn arb_value() -> impl Strategy<Value = f64> {
            prop_oneof![
                any::<f64>(),
                (0i64..1 << 40).prop_map(|i| i as f64),
                (0i64..1 << 30).prop_map(|i| i as f64 / 100.0),
                Just(f64::NAN),
                Just(-0.0),
                Just(f64::NEG_INFINITY),
            ]
        }

        proptest! {
            /// Rebuilding the stored lines of A with the values of B gives byte for byte what a
            /// full push of B renders.
            #[test]
            fn prop_revalued_equals_a_full_render(
                names in prop::collection::btree_set("[a-z]{1,6}", 0..8),
                shuffle in any::<u64>(),
                xa in prop::collection::vec(arb_value(), 1..40),
                xb in prop::collection::vec(arb_value(), 1..40),
            ) {
                let mut names: Vec<String> = names.into_iter().collect();
                let n = names.len().max(1);
                names.rotate_left((shuffle as usize) % n);
                let (a, b) = (families(&names, &xa), families(&names, &xb));
                let store = Store::new();
                store.apply("a", 1, Some(7), prepared(a.clone()), Duration::from_secs(60));
                let base = store.base("a", 1, 7).unwrap();
                let revalued = revalue(base.base(), &values_push(&a, &b, 7)).unwrap();
                let full = prepared(b);
                prop_assert_eq!(&revalued.text, &full.text);
                prop_assert_eq!(&revalued.splices, &full.splices);
                let out = store.apply_values("a", 1, 8, &base, revalued, Duration::from_secs(60));
                prop_assert!(matches!(out, Outcome::Accepted { .. }), "{:?}", out);
                // What /metrics renders is a function of the text, the splice points, the node
                // labels and each family's range and lines: all equal to the full push's.
                let view = store.view();
                let stored = &view.nodes[0];
                prop_assert_eq!(&*stored.text, full.text.as_str());
                prop_assert_eq!(&*stored.splices, full.splices.as_slice());
                prop_assert_eq!(&*stored.node_labels, full.node_labels.as_str());
                let spans = |r: &Range<usize>, l: &Range<usize>| (r.clone(), l.clone());
                let shown: Vec<_> = stored.families.iter().map(|f| spans(&f.range, &f.lines)).collect();
                let expected: Vec<_> = full.families.iter().map(|f| spans(&f.range, &f.lines)).collect();
                prop_assert_eq!(shown, expected);
            }
        }

        #[test]
        fn conflicts_name_the_reason_and_change_nothing() {
            let names: Vec<String> = ["b", "a", "c"].iter().map(|s| s.to_string()).collect();
            let a = families(&names, &[1.0, 2.5]);
            let b = families(&names, &[3.0, 4.5]);
            let s = Store::new();
            let conflict = |r: Result<Arc<NodeSnapshot>, Outcome>| match r {
                Err(Outcome::Conflict(m)) => m,
                other => panic!("{other:?}"),
            };
            assert_eq!(conflict(s.base("a", 1, 7)), "no base snapshot");
            s.apply(
                "a",
                1,
                Some(7),
                prepared(a.clone()),
                Duration::from_secs(60),
            );
            assert_eq!(
                conflict(s.base("a", 1, 6)),
                "base seq 6 is not the stored seq 7"
            );
            let base = s.base("a", 1, 7).unwrap();
            let mut other = names.clone();
            other[0] = "d".into();
            let err =
                revalue(base.base(), &values_push(&a, &families(&other, &[3.0]), 7)).unwrap_err();
            assert!(err.contains("layout differs"), "{err}");
            // A base other than the stored one fails the checksum.
            let wrong = families(&names, &[1.0, 2.0]);
            let err = revalue(base.base(), &values_push(&wrong, &b, 7)).unwrap_err();
            assert!(err.contains("checksum"), "{err}");
            // Replaced meanwhile: the revalued lines of the old base are not stored.
            let revalued = revalue(base.base(), &values_push(&a, &b, 7)).unwrap();
            s.apply(
                "a",
                1,
                Some(9),
                prepared(a.clone()),
                Duration::from_secs(60),
            );
            assert_eq!(
                s.apply_values("a", 1, 8, &base, revalued.clone(), Duration::from_secs(60)),
                Outcome::OutOfOrder
            );
            s.remove("a", 1);
            assert_eq!(s.base("a", 1, 9).unwrap_err(), Outcome::Revoked);
            s.apply("a", 2, Some(1), prepared(a.clone()), Duration::ZERO);
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(conflict(s.base("a", 2, 1)), "no base snapshot", "stale");
            // Text pushes have no layout.
            let labels = NodeLabels::new("instance", "node", "a", []);
            let p = prepare(a.clone(), &labels, &Limits::default()).unwrap();
            s.apply("a", 2, None, p, Duration::from_secs(60));
            assert_eq!(conflict(s.base("a", 2, 1)), "no base snapshot");
        }
    }

    #[test]
    fn stale_snapshots_leave_the_view_and_are_evicted() {
        let s = Store::new();
        let labels = NodeLabels::new("instance", "node", "a", []);
        let p = prepare(vec![], &labels, &Limits::default()).unwrap();
        s.apply("a", 1, None, p, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.view().nodes.is_empty());
        assert!(!s.status("a").up);
        assert!(s.status("a").last_push.is_some());
        assert_eq!(s.evict_stale(), 1);
    }
}
