//! The latest accepted snapshot of every node, plus the global family index that keeps one
//! TYPE per family name across nodes. A snapshot is the node's layout — its labels and its
//! families as blocks shared with every node that has the same lines ([`blocks`]) — and its
//! own values. A full push replaces both, a values push only the values. Each swap happens
//! under a short lock; its cost is proportional to that node's families, never to the store.

pub mod blocks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetgate_shared::MetricType;

use crate::prepare::{Base, LabelSets, Layout, Prepared, Revalued};
use blocks::{BlockContent, BlockPool, FamilyBlock, Held};

/// Everything of a node's snapshot but its values; shared by the values pushes that follow
/// the full push it came from.
#[derive(Debug)]
pub struct NodeLayout {
    /// Node name.
    pub node: Arc<str>,
    /// The node labels as of the full push, rendered once.
    pub node_labels: Box<str>,
    /// The node's long own-label sets its blocks' lines refer to.
    pub label_sets: LabelSets,
    /// Exposed families sorted by name (quarantined ones left out), as shared blocks.
    families: Held,
    /// Per exposed family, the number of its first line among all the push's lines.
    first_lines: Box<[u32]>,
    /// Whether each exposed family's values start where the one before it ends (no family
    /// was held back), so a render can follow them without looking up where each starts.
    values_follow: bool,
    /// Series exposed.
    pub series: usize,
    /// The layout of the push, when a values push may follow it (native snapshots only).
    pub layout: Option<Layout>,
}

impl NodeLayout {
    /// The exposed families' blocks, sorted by name.
    pub fn families(&self) -> &[Arc<FamilyBlock>] {
        &self.families.blocks
    }

    /// Per exposed family, the number of its first line among all the push's lines.
    pub fn first_lines(&self) -> &[u32] {
        &self.first_lines
    }

    /// Whether each exposed family's values start where the values of the one before it end,
    /// the first family's at the start.
    pub fn values_follow(&self) -> bool {
        self.values_follow
    }
}

/// A node's latest accepted push, immutable once stored.
#[derive(Debug)]
pub struct NodeSnapshot {
    /// Names, labels and families; the same `Arc` across values pushes.
    pub layout: Arc<NodeLayout>,
    /// Every line's value followed by `\n`, in text order; quarantined families' lines too,
    /// since values pushes address every sample of the push.
    pub values: Box<str>,
    /// Per exposed family, where its values start in `values`.
    pub value_starts: Box<[u32]>,
    /// When the push was accepted, for staleness.
    pub received: Instant,
    /// How long this snapshot stays exposed without a newer push.
    pub stale_after: Duration,
}

impl NodeSnapshot {
    /// Whether the snapshot has outlived its staleness window at `now`.
    pub fn is_stale(&self, now: Instant) -> bool {
        self.fresh_until().is_some_and(|t| now > t)
    }

    /// The last instant at which it is still fresh; `None` when its window reaches past what
    /// an `Instant` can hold, so it never goes stale.
    fn fresh_until(&self) -> Option<Instant> {
        self.received.checked_add(self.stale_after)
    }

    /// Node name.
    pub fn node(&self) -> &str {
        &self.layout.node
    }

    /// What a values push of this node is applied to.
    pub fn base(&self) -> Base<'_> {
        Base {
            values: &self.values,
            layout: self.layout.layout.as_ref(),
        }
    }

    /// The values of exposed family `i` and of everything after it.
    pub fn values_from(&self, i: usize) -> &[u8] {
        let start = self.value_starts.get(i).map_or(usize::MAX, |&s| s as usize);
        self.values.as_bytes().get(start..).unwrap_or_default()
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
    /// No stored snapshot goes stale before this instant (`None`: none stored since the last
    /// sweep), so [`Store::evict_stale`] looks at the nodes only once one may have.
    fresh_until: Option<Instant>,
}

impl Inner {
    /// Notes a snapshot just stored, which may go stale before every other one.
    fn note_fresh_until(&mut self, at: Option<Instant>) {
        self.fresh_until = earliest(self.fresh_until, at);
    }
}

/// The earlier of two ends of freshness (`None`: never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Releases a snapshot's claim on its family names.
fn unindex(index: &mut BTreeMap<Arc<str>, IndexEntry>, snapshot: &NodeSnapshot) {
    for b in snapshot.layout.families() {
        let name: &str = b.name();
        if let Some(e) = index.get_mut(name) {
            e.nodes = e.nodes.saturating_sub(1);
            if e.nodes == 0 {
                index.remove(name);
            }
        }
    }
}

/// A family name as `/metrics` shows it: one HELP and one TYPE for every node exposing it.
#[derive(Debug, Clone)]
pub struct ViewFamily {
    /// Family name.
    pub name: Arc<str>,
    /// HELP of the first node that exposed it.
    pub help: Arc<str>,
    /// The TYPE all exposing nodes agree on.
    pub kind: MetricType,
}

/// What a render needs, taken in one short critical section so it is consistent.
#[derive(Debug, Default)]
pub struct View {
    /// Fresh snapshots, sorted by node name.
    pub nodes: Vec<Arc<NodeSnapshot>>,
    /// Every family any of them exposes (a superset), sorted by name.
    pub families: Vec<ViewFamily>,
}

impl View {
    /// Keeps only the nodes whose name `keep` accepts (the family list stays a superset).
    pub fn retain_nodes(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.nodes.retain(|n| keep(n.node()));
    }
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

/// One family of a snapshot about to be stored.
#[derive(Debug, Clone)]
pub struct IncomingFamily<'a> {
    /// Family name.
    pub name: &'a str,
    /// HELP text, unescaped.
    pub help: &'a str,
    /// TYPE.
    pub kind: MetricType,
    /// Series in the family.
    pub series: usize,
    /// Its skeleton lines (see [`Prepared::text`]).
    pub text: &'a [u8],
    /// Its line numbers among all lines of the snapshot.
    pub lines: Range<usize>,
    /// Where its values start in [`Incoming::values`].
    pub values_start: usize,
}

/// A snapshot about to be stored: a full push, or one saved at shutdown and loaded at start.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// Its families, sorted by name.
    pub families: Vec<IncomingFamily<'a>>,
    /// Every line's value followed by `\n`.
    pub values: String,
    /// The node labels, rendered.
    pub node_labels: String,
    /// The long own-label sets the families' lines refer to.
    pub label_sets: LabelSets,
    /// What a values push must match, when one may follow.
    pub layout: Option<Layout>,
}

impl<'a> Incoming<'a> {
    /// The families of `prepared`, whose values are moved out of it.
    pub fn from_prepared(prepared: &'a mut Prepared) -> Self {
        let layout = prepared.layout.map(|hash| Layout::new(hash, prepared));
        let text = &prepared.text;
        let families = prepared
            .families
            .iter()
            .map(|f| IncomingFamily {
                name: &f.name,
                help: &f.help,
                kind: f.kind,
                series: f.series,
                text: text.get(f.text.clone()).unwrap_or_default(),
                lines: f.lines.clone(),
                values_start: f.values.start,
            })
            .collect();
        Incoming {
            families,
            values: std::mem::take(&mut prepared.values),
            node_labels: std::mem::take(&mut prepared.node_labels),
            label_sets: std::mem::take(&mut prepared.label_sets),
            layout,
        }
    }
}

/// One node as saved at shutdown ([`Store::export`]).
#[derive(Debug, Clone)]
pub struct SavedNode {
    /// Node name.
    pub node: String,
    /// Enrollment epoch of its latest push.
    pub epoch: u64,
    /// Sequence number of its stored push.
    pub seq: Option<u64>,
    /// Unix seconds of its latest accepted push.
    pub last_push: Option<f64>,
    /// Families quarantined at its latest full push.
    pub quarantined: usize,
    /// Its exposed snapshot, when fresh.
    pub snapshot: Option<Arc<NodeSnapshot>>,
}

/// The store; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
    /// Families quarantined per node at its latest push (kept apart so reading it is cheap).
    quarantined: Mutex<HashMap<String, usize>>,
    /// The family blocks every stored layout uses.
    pool: Arc<BlockPool>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
        mut prepared: Prepared,
        stale_after: Duration,
    ) -> Outcome {
        let incoming = Incoming::from_prepared(&mut prepared);
        self.insert(
            node,
            epoch,
            seq,
            incoming,
            Instant::now(),
            unix_now(),
            stale_after,
        )
    }

    /// Stores a snapshot saved by an earlier run of the hub, received `age` ago at Unix time
    /// `last_push`, as [`Store::apply`] would have (quarantine included).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &self,
        node: &str,
        epoch: u64,
        seq: Option<u64>,
        incoming: Incoming<'_>,
        age: Duration,
        last_push: f64,
        stale_after: Duration,
    ) -> Outcome {
        let now = Instant::now();
        let received = now.checked_sub(age).unwrap_or(now);
        self.insert(node, epoch, seq, incoming, received, last_push, stale_after)
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        node: &str,
        epoch: u64,
        seq: Option<u64>,
        incoming: Incoming<'_>,
        received: Instant,
        last_push: f64,
        stale_after: Duration,
    ) -> Outcome {
        // Hashed and interned before the store lock is taken: a full push holds that lock
        // only to update the index and swap its snapshot.
        let contents: Vec<BlockContent<'_>> = incoming
            .families
            .iter()
            .map(|f| BlockContent {
                name: f.name,
                text: f.text,
                // Both bounded by the rendered length, under 4 GiB.
                lines: f.lines.len() as u32,
                series: f.series as u32,
            })
            .collect();
        let hashes: Vec<u64> = contents.iter().map(|c| self.pool.hash(c)).collect();
        let held = Held::intern(&self.pool, &contents, &hashes);
        let values = incoming.values.into_boxed_str();
        let node_labels = incoming.node_labels.into_boxed_str();

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
        let mut exposed = Vec::with_capacity(incoming.families.len());
        let mut quarantined = Vec::new();
        let mut series = 0;
        for (f, block) in incoming.families.iter().zip(held.blocks.iter()) {
            match inner.index.get_mut(f.name) {
                Some(e) if e.kind != f.kind => {
                    exposed.push(false);
                    quarantined.push(Quarantined {
                        message: format!(
                            "family {} is {} here but {} on other nodes; quarantined",
                            f.name,
                            f.kind.as_str(),
                            e.kind.as_str()
                        ),
                        name: f.name.to_string(),
                        series: f.series,
                    });
                }
                Some(e) => {
                    exposed.push(true);
                    e.nodes += 1;
                    series += f.series;
                }
                None => {
                    exposed.push(true);
                    // The blocks' name: a render matches blocks to index entries by address.
                    let name = Arc::clone(block.name());
                    inner.index.insert(
                        Arc::clone(&name),
                        IndexEntry {
                            name,
                            kind: f.kind,
                            help: f.help.into(),
                            nodes: 1,
                        },
                    );
                    series += f.series;
                }
            }
        }
        let (families, held_back) = held.split(&exposed);
        let shown = || incoming.families.iter().zip(&exposed).filter(|(_, &e)| e);
        // Line numbers and value offsets stay under 4 GiB (`prepare` checks the length).
        let first_lines = shown().map(|(f, _)| f.lines.start as u32).collect();
        let value_starts = shown().map(|(f, _)| f.values_start as u32).collect();
        // The values are in the text's order, which is the families' (sorted by name).
        let values_follow = exposed.iter().all(|&e| e);
        let layout = NodeLayout {
            node: node.into(),
            node_labels,
            label_sets: incoming.label_sets,
            families,
            first_lines,
            values_follow,
            series,
            layout: incoming.layout,
        };
        let snapshot = Arc::new(NodeSnapshot {
            layout: Arc::new(layout),
            values,
            value_starts,
            received,
            stale_after,
        });
        inner.note_fresh_until(snapshot.fresh_until());
        let slot = inner.slots.entry(node.to_string()).or_default();
        slot.snapshot = Some(snapshot);
        slot.last_push = Some(last_push);
        if let Some(q) = quarantined.first() {
            slot.last_rejection = Some(q.message.clone());
        }
        // The replaced snapshot and the quarantined blocks are given back outside the lock.
        drop(guard);
        drop(old);
        drop(held_back);
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

    /// Replaces `node`'s snapshot `base` (from [`Store::base`]) by the same layout with the
    /// values of `revalued`, as push `seq`. Neither the family index nor the blocks change:
    /// the families are the same. A conflict when another push replaced `base` meanwhile.
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
        let unix_now = unix_now();
        let starts = &revalued.line_starts;
        let end = revalued.values.len() as u32;
        let value_starts = base
            .layout
            .first_lines()
            .iter()
            .map(|&l| starts.get(l as usize).copied().unwrap_or(end))
            .collect();
        let snapshot = Arc::new(NodeSnapshot {
            layout: Arc::clone(&base.layout),
            values: revalued.values.into_boxed_str(),
            value_starts,
            received: now,
            stale_after,
        });
        let series = base.layout.series;
        let fresh_until = snapshot.fresh_until();
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
        guard.note_fresh_until(fresh_until);
        drop(guard);
        drop(old);
        Outcome::Accepted {
            series,
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
    /// claim on family TYPEs. Returns how many were evicted. Called twice a second, it looks
    /// at the nodes only when one of them may have gone stale: while the fleet pushes, every
    /// push moves its node's end of freshness later, and a scan of 10,000 nodes under the
    /// store's lock is done about once per staleness window instead of at every call.
    pub fn evict_stale(&self) -> usize {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            if inner.fresh_until.is_none_or(|t| now <= t) {
                return 0;
            }
            let mut fresh_until: Option<Instant> = None;
            for slot in inner.slots.values_mut() {
                if let Some(s) = &slot.snapshot {
                    if s.is_stale(now) {
                        evicted.extend(slot.snapshot.take());
                    } else {
                        fresh_until = earliest(fresh_until, s.fresh_until());
                    }
                }
            }
            inner.fresh_until = fresh_until;
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
        let families = inner
            .index
            .values()
            .map(|e| ViewFamily {
                name: Arc::clone(&e.name),
                help: Arc::clone(&e.help),
                kind: e.kind,
            })
            .collect();
        drop(inner);
        nodes.sort_unstable_by(|a, b| a.node().cmp(b.node()));
        View { nodes, families }
    }

    /// Every node the store knows with what a restart needs to carry on, and the family
    /// index (HELP and TYPE per name), consistent with each other.
    pub fn export(&self) -> (Vec<SavedNode>, View) {
        let now = Instant::now();
        let view = self.view();
        let quarantined = self
            .quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let inner = self.lock();
        let nodes = inner
            .slots
            .iter()
            .filter(|(_, s)| !s.removed && s.last_push.is_some())
            .map(|(node, s)| SavedNode {
                node: node.clone(),
                epoch: s.epoch,
                seq: s.seq,
                last_push: s.last_push,
                quarantined: quarantined.get(node).copied().unwrap_or(0),
                snapshot: s.snapshot.clone().filter(|s| !s.is_stale(now)),
            })
            .collect();
        (nodes, view)
    }

    /// Records a node's quarantine count and latest push without a snapshot (a node saved at
    /// shutdown whose snapshot was already stale).
    pub fn restore_status(&self, node: &str, epoch: u64, last_push: f64, quarantined: usize) {
        let mut inner = self.lock();
        let slot = inner.slots.entry(node.to_string()).or_default();
        if slot.epoch <= epoch {
            slot.epoch = epoch;
            slot.last_push = slot.last_push.or(Some(last_push));
        }
        drop(inner);
        self.quarantined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), quarantined);
    }

    /// The families of `node`'s exposed snapshot, while it is fresh, sorted by name: name,
    /// TYPE and series (the fleet page's per-node detail).
    pub fn node_families(&self, node: &str) -> Vec<(Arc<str>, MetricType, usize)> {
        let now = Instant::now();
        let inner = self.lock();
        let Some(snapshot) = inner
            .slots
            .get(node)
            .and_then(|s| s.snapshot.as_ref())
            .filter(|s| !s.is_stale(now))
        else {
            return Vec::new();
        };
        snapshot
            .layout
            .families()
            .iter()
            .filter_map(|b| {
                let kind = inner.index.get(&**b.name())?.kind;
                Some((Arc::clone(b.name()), kind, b.series()))
            })
            .collect()
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
            series: fresh.map_or(0, |s| s.layout.series),
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

    /// Distinct family blocks held, for the benchmarks and the memory figures.
    pub fn blocks(&self) -> usize {
        self.pool.stats().0
    }

    /// Bytes held by stored snapshots (values, layouts, shared blocks, the family index), for
    /// the memory estimate of the benchmarks.
    pub fn stored_bytes(&self) -> usize {
        let inner = self.lock();
        let mut layouts = HashSet::new();
        let mut bytes = 0;
        for s in inner.slots.values().filter_map(|s| s.snapshot.as_ref()) {
            bytes += std::mem::size_of::<NodeSnapshot>()
                + s.values.len()
                + std::mem::size_of_val(&*s.value_starts);
            if layouts.insert(Arc::as_ptr(&s.layout)) {
                let l = &s.layout;
                bytes += std::mem::size_of::<NodeLayout>()
                    + l.node.len()
                    + l.node_labels.len()
                    + l.label_sets.bytes()
                    + std::mem::size_of_val(l.families())
                    + std::mem::size_of_val(&*l.first_lines)
                    + l.layout
                        .as_ref()
                        .map_or(0, |l| l.order.len() * std::mem::size_of::<u32>());
            }
        }
        let index: usize = inner
            .index
            .values()
            .map(|e| e.name.len() + e.help.len() + std::mem::size_of::<IndexEntry>() + 32)
            .sum();
        drop(inner);
        bytes + index + self.pool.stats().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::labels::NodeLabels;
    use crate::prepare::prepare;
    use fleetgate_shared::{Family, Label, Series, Value};

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

    fn names(v: &View) -> Vec<&str> {
        v.families.iter().map(|f| &*f.name).collect()
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
        assert_eq!(names(&v), ["x", "y"]);
        assert_eq!(v.nodes[1].layout.families().len(), 1);
        // Once a's family changes type, b may expose x as a counter.
        push(&s, "a", 1, 2, &[("x", MetricType::Counter)]);
        let Outcome::Accepted { quarantined, .. } =
            push(&s, "b", 1, 2, &[("x", MetricType::Counter)])
        else {
            panic!()
        };
        assert!(quarantined.is_empty());
        // HELP: first wins.
        assert_eq!(&*s.view().families[0].help, "help from a");
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
        assert!(s.view().families.is_empty());
        assert_eq!(push(&s, "a", 2, 10, &[]), Outcome::Revoked);
        assert!(matches!(push(&s, "a", 3, 1, &[]), Outcome::Accepted { .. }));
    }

    /// A push of `node` whose series carry `cpu` labels 0..`cpus`, and one `nodename` label
    /// unique to the node in `uname`.
    fn host(node: &str, cpus: usize, x: f64) -> Prepared {
        let gauge = |name: &str, series: Vec<Series>| Family {
            name: name.into(),
            help: "h".into(),
            kind: MetricType::Gauge,
            series,
        };
        let fams = vec![
            gauge(
                "cpu",
                (0..cpus)
                    .map(|c| Series {
                        labels: vec![Label::new("cpu", c.to_string())],
                        value: Value::Scalar(x + c as f64),
                    })
                    .collect(),
            ),
            gauge(
                "uname",
                vec![Series {
                    labels: vec![Label::new("nodename", node)],
                    value: Value::Scalar(1.0),
                }],
            ),
        ];
        crate::test_support::prepared(node, fams)
    }

    #[test]
    fn nodes_share_equal_family_blocks_until_the_last_one_changes_or_leaves() {
        let s = Store::new();
        let ttl = Duration::from_secs(60);
        for (i, node) in ["a", "b", "c"].into_iter().enumerate() {
            s.apply(node, 1, Some(1), host(node, 4, i as f64), ttl);
        }
        // One shared `cpu` block, one `uname` block per node.
        assert_eq!(s.blocks(), 4);
        let v = s.view();
        assert!(Arc::ptr_eq(
            &v.nodes[0].layout.families()[0],
            &v.nodes[2].layout.families()[0]
        ));
        drop(v);
        // A layout change moves `c` to a block of its own; the shared one stays for a and b.
        s.apply("c", 1, Some(2), host("c", 8, 0.0), ttl);
        assert_eq!(s.blocks(), 5);
        s.remove("a", 1);
        assert_eq!(
            s.blocks(),
            4,
            "a's uname block left with it; cpu×4 still used by b"
        );
        // A render still holding b's snapshot holds its blocks until it is done.
        let view = s.view();
        s.remove("b", 1);
        assert_eq!(s.blocks(), 4);
        assert_eq!(view.nodes.len(), 2);
        drop(view);
        assert_eq!(s.blocks(), 2);
        // Staleness evicts like removal.
        s.apply("d", 1, Some(1), host("d", 8, 0.0), Duration::ZERO);
        assert_eq!(s.blocks(), 3);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.evict_stale(), 1);
        assert_eq!(s.blocks(), 2);
        s.remove("c", 1);
        assert_eq!(s.blocks(), 0);
    }

    #[test]
    fn refused_pushes_hold_no_blocks() {
        let s = Store::new();
        let ttl = Duration::from_secs(60);
        s.apply("a", 1, Some(5), host("a", 2, 0.0), ttl);
        assert_eq!(s.blocks(), 2);
        assert_eq!(
            s.apply("a", 1, Some(4), host("a", 3, 0.0), ttl),
            Outcome::OutOfOrder
        );
        assert_eq!(
            s.apply("a", 0, Some(9), host("a", 3, 0.0), ttl),
            Outcome::Revoked
        );
        assert_eq!(s.blocks(), 2);
    }

    #[test]
    fn node_families_names_kinds_and_series_of_a_fresh_snapshot() {
        use crate::test_support::{families, prepared};
        let names: Vec<String> = ["b", "a", "c"].iter().map(|s| s.to_string()).collect();
        let s = Store::new();
        s.apply(
            "n",
            1,
            Some(1),
            prepared("n", families(&names, &[1.0])),
            Duration::from_secs(60),
        );
        let got: Vec<(String, MetricType, usize)> = s
            .node_families("n")
            .into_iter()
            .map(|(name, kind, series)| (name.to_string(), kind, series))
            .collect();
        let a = ("a".to_string(), MetricType::Histogram, 1);
        let c = ("c".to_string(), MetricType::Summary, 2);
        assert!(got.contains(&a) && got.contains(&c), "{got:?}");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
        assert!(s.node_families("other").is_empty());
        s.apply(
            "stale",
            1,
            Some(1),
            prepared("stale", families(&names, &[1.0])),
            Duration::ZERO,
        );
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.node_families("stale").is_empty());
    }

    mod values {
        use super::*;
        use crate::prepare::revalue;
        use crate::test_support::{arb_value, families, prepared, values_push};
        use proptest::prelude::*;

        proptest! {
            /// A values push from A to B leaves the store holding what a full push of B holds:
            /// the same values byte for byte, the same value offsets, and A's layout (the same
            /// blocks, untouched).
            #[test]
            fn prop_values_push_stores_what_a_full_push_would(
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
                store.apply("a", 1, Some(7), prepared("a", a.clone()), Duration::from_secs(60));
                let base = store.base("a", 1, 7).unwrap();
                let revalued = revalue(base.base(), &values_push(&a, &b, 7)).unwrap();
                let full = Store::new();
                full.apply("a", 1, Some(8), prepared("a", b), Duration::from_secs(60));
                let out = store.apply_values("a", 1, 8, &base, revalued, Duration::from_secs(60));
                prop_assert!(matches!(out, Outcome::Accepted { .. }), "{:?}", out);
                let (shown, expected) = (store.view(), full.view());
                let (shown, expected) = (&shown.nodes[0], &expected.nodes[0]);
                prop_assert!(Arc::ptr_eq(&shown.layout, &base.layout));
                prop_assert_eq!(&shown.values, &expected.values);
                prop_assert_eq!(&shown.value_starts, &expected.value_starts);
                prop_assert_eq!(shown.layout.first_lines(), expected.layout.first_lines());
                let texts = |s: &NodeSnapshot| -> Vec<Vec<u8>> {
                    s.layout.families().iter().map(|b| b.text().to_vec()).collect()
                };
                prop_assert_eq!(texts(shown), texts(expected));
            }
        }

        #[test]
        fn a_values_push_that_goes_stale_sooner_is_swept() {
            let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
            let (a, b) = (families(&names, &[1.0]), families(&names, &[2.0]));
            let s = Store::new();
            s.apply(
                "a",
                1,
                Some(7),
                prepared("a", a.clone()),
                Duration::from_secs(60),
            );
            assert_eq!(s.evict_stale(), 0);
            let base = s.base("a", 1, 7).unwrap();
            let revalued = revalue(base.base(), &values_push(&a, &b, 7)).unwrap();
            let out = s.apply_values("a", 1, 8, &base, revalued, Duration::ZERO);
            assert!(matches!(out, Outcome::Accepted { .. }), "{out:?}");
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(s.evict_stale(), 1);
            assert!(s.view().nodes.is_empty());
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
                prepared("a", a.clone()),
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
                prepared("a", a.clone()),
                Duration::from_secs(60),
            );
            assert_eq!(
                s.apply_values("a", 1, 8, &base, revalued.clone(), Duration::from_secs(60)),
                Outcome::OutOfOrder
            );
            s.remove("a", 1);
            assert_eq!(s.base("a", 1, 9).unwrap_err(), Outcome::Revoked);
            s.apply("a", 2, Some(1), prepared("a", a.clone()), Duration::ZERO);
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

    #[test]
    fn the_sweep_evicts_every_stale_snapshot_and_only_those() {
        let s = Store::new();
        let long = Duration::from_secs(3600);
        s.apply("a", 1, Some(1), host("a", 2, 0.0), long);
        assert_eq!(s.evict_stale(), 0);
        // Stored after a sweep that found nothing stale, with a shorter window than a's.
        s.apply("b", 1, Some(1), host("b", 2, 0.0), Duration::ZERO);
        s.apply("c", 1, Some(1), host("c", 2, 0.0), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(s.evict_stale(), 2);
        assert_eq!(s.evict_stale(), 0);
        let up: Vec<String> = s.view().nodes.iter().map(|n| n.node().into()).collect();
        assert_eq!(up, ["a"]);
        // A node pushing again after its eviction is swept again when it stops.
        s.apply("b", 1, Some(2), host("b", 2, 1.0), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.evict_stale(), 1);
        assert!(s.status("a").up);
    }

    #[test]
    fn a_window_past_what_an_instant_holds_never_goes_stale_and_hides_no_other() {
        let s = Store::new();
        s.apply(
            "forever",
            1,
            Some(1),
            host("forever", 2, 0.0),
            Duration::MAX,
        );
        s.apply("brief", 1, Some(1), host("brief", 2, 0.0), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.evict_stale(), 1);
        let up: Vec<String> = s.view().nodes.iter().map(|n| n.node().into()).collect();
        assert_eq!(up, ["forever"]);
        assert_eq!(s.evict_stale(), 0);
        assert!(s.status("forever").up);
    }
}
