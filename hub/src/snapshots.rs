//! Every node's latest snapshot, saved at a graceful shutdown and loaded at the next start, so
//! a planned restart or upgrade leaves no gap in `/metrics` and no node shows stale. The file
//! (`DATA_DIR/snapshots.bin`) is written atomically once the server has stopped taking
//! pushes, and removed as soon as it has been read: after a crash (`kill -9`) the hub starts
//! without snapshots, never with old ones. A file that is corrupt, from another format
//! version or written under other label settings is skipped with one log line.
//!
//! Layout: `FGHS`, a version byte, the body, then the CRC-32 of everything before it. The body
//! holds the label settings, the save time, the family index (HELP and TYPE by name), every
//! distinct block once, and per node its epoch, seq, last push, quarantine count and, when
//! fresh, its snapshot: age, staleness window, values-push layout, node labels, long label
//! sets, values and references to its blocks. Integers are LEB128 varints, strings length-prefixed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetgate_shared::text::parse_value;
use fleetgate_shared::MetricType;

use crate::prepare::{decode_set, LabelSets, Layout, LABEL_SET, LABEL_SET_REF, NO_PARENT, SPLICE};
use crate::store::blocks::FamilyBlock;
use crate::store::{Incoming, IncomingFamily, Outcome, Store};

/// The file's name in the data directory.
pub const FILE: &str = "snapshots.bin";
const MAGIC: [u8; 4] = *b"FGHS";
/// Bumped whenever what is saved, or what it means, changes.
const VERSION: u8 = 2;

/// The label names every stored line was rendered for; a file written under others is not
/// loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelNames<'a> {
    /// `--instance-label`.
    pub instance: &'a str,
    /// `--node-label`.
    pub node: &'a str,
}

/// What [`save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Nodes with a last push.
    pub nodes: usize,
    /// Of them, nodes with a fresh snapshot.
    pub snapshots: usize,
    /// Size of the file.
    pub bytes: usize,
}

/// What [`load`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Snapshots stored again.
    pub snapshots: usize,
    /// Snapshots dropped because they had outlived their staleness window.
    pub stale: usize,
    /// Nodes dropped because their identity was removed or re-enrolled since.
    pub unknown: usize,
}

/// Why a file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading it failed.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    /// Not a snapshots file, truncated, or its checksum does not match.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// Written by a hub with another format version.
    #[error("format version {0}, this hub reads version {VERSION}")]
    Version(u8),
    /// Written for other `--instance-label` / `--node-label` settings.
    #[error("written for instance label {0:?} and node label {1:?}, not this configuration's")]
    Labels(String, String),
}

/// Writes every node's latest snapshot and last-push time in `store` to `path`, atomically.
pub fn save(store: &Store, labels: LabelNames<'_>, path: &Path) -> std::io::Result<Saved> {
    let (bytes, nodes, snapshots) = encode(store, labels, unix_ms());
    fleetgate_daemon::write_atomic(path, &bytes, 0o600)?;
    Ok(Saved {
        nodes,
        snapshots,
        bytes: bytes.len(),
    })
}

/// Loads the snapshots saved at `path` into `store`, keeping those of nodes `accept` (name,
/// epoch) still knows and that have not outlived their staleness window, then removes the
/// file. `Ok(None)` when there is no file.
pub fn load(
    store: &Store,
    labels: LabelNames<'_>,
    path: &Path,
    accept: impl Fn(&str, u64) -> bool,
) -> Result<Option<Loaded>, LoadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Read once: whatever becomes of it, a later crash must not bring these snapshots back.
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the snapshots file");
    }
    decode(store, labels, &bytes, unix_ms(), accept).map(Some)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn kind_code(kind: MetricType) -> u8 {
    match kind {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Histogram => 2,
        MetricType::Summary => 3,
        MetricType::Untyped => 4,
    }
}

fn kind_from(code: u8) -> Option<MetricType> {
    Some(match code {
        0 => MetricType::Counter,
        1 => MetricType::Gauge,
        2 => MetricType::Histogram,
        3 => MetricType::Summary,
        4 => MetricType::Untyped,
        _ => return None,
    })
}

/// The file's bytes at Unix time `now_ms`, with the number of nodes and of snapshots in it.
pub fn encode(store: &Store, labels: LabelNames<'_>, now_ms: u64) -> (Vec<u8>, usize, usize) {
    let (nodes, view) = store.export();
    let now = std::time::Instant::now();
    let mut w = Writer(Vec::with_capacity(1 << 16));
    w.0.extend_from_slice(&MAGIC);
    w.0.push(VERSION);
    w.str(labels.instance);
    w.str(labels.node);
    w.uint(now_ms);
    w.uint(view.families.len() as u64);
    for f in &view.families {
        w.str(&f.name);
        w.str(&f.help);
        w.0.push(kind_code(f.kind));
    }
    // Every block once, numbered in order of first use.
    let mut numbers: HashMap<*const FamilyBlock, u64> = HashMap::new();
    let mut blocks: Vec<&Arc<FamilyBlock>> = Vec::new();
    for s in nodes.iter().filter_map(|n| n.snapshot.as_ref()) {
        for b in s.layout.families() {
            numbers.entry(Arc::as_ptr(b)).or_insert_with(|| {
                blocks.push(b);
                blocks.len() as u64 - 1
            });
        }
    }
    w.uint(blocks.len() as u64);
    for b in &blocks {
        w.str(b.name());
        w.uint(b.lines() as u64);
        w.uint(b.series() as u64);
        w.bytes(b.text());
    }
    w.uint(nodes.len() as u64);
    let mut snapshots = 0;
    for n in &nodes {
        w.str(&n.node);
        w.uint(n.epoch);
        w.opt(n.seq);
        w.0.extend_from_slice(&n.last_push.unwrap_or(0.0).to_bits().to_le_bytes());
        w.uint(n.quarantined as u64);
        let Some(s) = &n.snapshot else {
            w.0.push(0);
            continue;
        };
        snapshots += 1;
        w.0.push(1);
        w.uint(now.saturating_duration_since(s.received).as_millis() as u64);
        w.uint(s.stale_after.as_millis() as u64);
        match &s.layout.layout {
            None => w.0.push(0),
            Some(l) => {
                w.0.push(1);
                w.0.extend_from_slice(&l.hash.to_le_bytes());
                w.uint(u64::from(l.samples));
                w.uint(l.order.len() as u64);
                for &o in l.order.iter() {
                    w.uint(u64::from(o));
                }
            }
        }
        w.str(&s.layout.node_labels);
        let (sets, ends, parents) = s.layout.label_sets.parts();
        w.str(sets);
        w.uint(ends.len() as u64);
        for (&e, &p) in ends.iter().zip(&parents) {
            w.uint(u64::from(e));
            // Parents are earlier sets, so `NO_PARENT` (u32::MAX) is never one: written as 0,
            // a parent as its number plus one.
            w.uint(if p == NO_PARENT { 0 } else { u64::from(p) + 1 });
        }
        w.str(&s.values);
        let families = s.layout.families();
        w.uint(families.len() as u64);
        for ((b, &first), &start) in families
            .iter()
            .zip(s.layout.first_lines())
            .zip(s.value_starts.iter())
        {
            w.uint(numbers.get(&Arc::as_ptr(b)).copied().unwrap_or(0));
            w.uint(u64::from(first));
            w.uint(u64::from(start));
        }
    }
    let crc = crc32fast::hash(&w.0);
    w.0.extend_from_slice(&crc.to_le_bytes());
    (w.0, nodes.len(), snapshots)
}

/// Loads the file's `bytes`, read at Unix time `now_ms`, into `store`.
pub fn decode(
    store: &Store,
    labels: LabelNames<'_>,
    bytes: &[u8],
    now_ms: u64,
    accept: impl Fn(&str, u64) -> bool,
) -> Result<Loaded, LoadError> {
    if bytes.len() < MAGIC.len() + 1 + 4 || bytes[..4] != MAGIC {
        return Err(LoadError::Corrupt("not a Fleetgate snapshots file".into()));
    }
    if bytes[4] != VERSION {
        return Err(LoadError::Version(bytes[4]));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().unwrap_or_default());
    if crc32fast::hash(body) != crc {
        return Err(LoadError::Corrupt("checksum mismatch".into()));
    }
    let mut r = Reader { bytes: body, at: 5 };
    let (instance, node) = (r.str("instance label")?, r.str("node label")?);
    if instance != labels.instance || node != labels.node {
        return Err(LoadError::Labels(instance.into(), node.into()));
    }
    let saved_at = r.uint("save time")?;
    let since_save = Duration::from_millis(now_ms.saturating_sub(saved_at));

    let mut index: HashMap<&str, (&str, MetricType)> = HashMap::new();
    for _ in 0..r.count("families")? {
        let name = r.str("family name")?;
        let help = r.str("HELP")?;
        let kind = kind_from(r.byte("TYPE")?).ok_or_else(|| corrupt("unknown TYPE"))?;
        index.insert(name, (help, kind));
    }
    let mut blocks = Vec::new();
    for _ in 0..r.count("blocks")? {
        let name = r.str("block name")?;
        let lines = r.uint("block lines")? as usize;
        let series = r.uint("block series")? as usize;
        let text = r.bytes("block text")?;
        let sets = check_block(text, lines)?;
        let &(help, kind) = index
            .get(name)
            .ok_or_else(|| corrupt(&format!("block of {name} has no HELP/TYPE")))?;
        blocks.push((name, help, kind, lines, series, text, sets));
    }

    let mut loaded = Loaded::default();
    for _ in 0..r.count("nodes")? {
        let node = r.str("node name")?;
        let epoch = r.uint("epoch")?;
        let seq = r.opt("seq")?;
        let last_push = f64::from_bits(r.u64("last push")?);
        let quarantined = r.uint("quarantine count")? as usize;
        let known = accept(node, epoch);
        if r.byte("snapshot flag")? == 0 {
            if known {
                store.restore_status(node, epoch, last_push, quarantined);
            } else {
                loaded.unknown += 1;
            }
            continue;
        }
        let age = Duration::from_millis(r.uint("age")?) + since_save;
        let stale_after = Duration::from_millis(r.uint("staleness window")?);
        let layout = match r.byte("layout flag")? {
            0 => None,
            _ => {
                let hash = r.u64("layout hash")?;
                let samples = u32::try_from(r.uint("samples")?)
                    .map_err(|_| corrupt("sample count over 4 G"))?;
                let mut order = Vec::new();
                for _ in 0..r.count("layout order")? {
                    order.push(r.uint("layout order")? as u32);
                }
                Some(Layout {
                    hash,
                    samples,
                    order: order.into_boxed_slice(),
                })
            }
        };
        let node_labels = r.str("node labels")?;
        let sets = r.str("label sets")?;
        let (mut ends, mut parents) = (Vec::new(), Vec::new());
        for _ in 0..r.count("label sets")? {
            let end = u32::try_from(r.uint("label set end")?)
                .map_err(|_| corrupt("label set end over 4 G"))?;
            ends.push(end);
            let parent = match r.uint("label set parent")? {
                0 => NO_PARENT,
                p => u32::try_from(p - 1).map_err(|_| corrupt("label set parent over 4 G"))?,
            };
            parents.push(parent);
        }
        let label_sets = LabelSets::from_parts(sets.to_string(), ends, parents)
            .ok_or_else(|| corrupt(&format!("{node}: label sets out of range")))?;
        let values = r.str("values")?;
        let lines = check_values(values)?;
        if layout.as_ref().is_some_and(|l| l.samples as usize != lines) {
            return Err(corrupt(&format!("{node}: values do not match the layout")));
        }
        let mut families = Vec::new();
        for _ in 0..r.count("node families")? {
            let block = r.uint("block number")? as usize;
            let first_line = r.uint("first line")? as usize;
            let values_start = r.uint("values start")? as usize;
            let &(name, help, kind, n, series, text, needs) = blocks
                .get(block)
                .ok_or_else(|| corrupt(&format!("{node}: no block {block}")))?;
            let fits = first_line + n <= lines
                && needs as usize <= label_sets.len()
                && (values_start == 0 || values.as_bytes().get(values_start - 1) == Some(&b'\n'))
                && values
                    .get(values_start..)
                    .is_some_and(|v| v.split_terminator('\n').count() >= n);
            if !fits {
                return Err(corrupt(&format!("{node}: family {name} out of range")));
            }
            families.push(IncomingFamily {
                name,
                help,
                kind,
                series,
                text,
                lines: first_line..first_line + n,
                values_start,
            });
        }
        if !known {
            loaded.unknown += 1;
            continue;
        }
        if age > stale_after {
            loaded.stale += 1;
            store.restore_status(node, epoch, last_push, quarantined);
            continue;
        }
        let incoming = Incoming {
            families,
            values: values.to_string(),
            node_labels: node_labels.to_string(),
            label_sets,
            layout,
        };
        let out = store.restore(node, epoch, seq, incoming, age, last_push, stale_after);
        if matches!(out, Outcome::Accepted { .. }) {
            store.restore_status(node, epoch, last_push, quarantined);
            loaded.snapshots += 1;
        }
    }
    if r.at != body.len() {
        return Err(corrupt("bytes after the last node"));
    }
    Ok(loaded)
}

fn corrupt(what: &str) -> LoadError {
    LoadError::Corrupt(what.to_string())
}

/// A block's text must be `lines` lines of UTF-8, each with exactly one splice marker and at
/// most one label-set reference before it. Returns how many label sets its lines need (the
/// highest number referred to, plus one).
fn check_block(text: &[u8], lines: usize) -> Result<u32, LoadError> {
    let mut n = 0;
    let mut needs = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let Some((&b'\n', line)) = line.split_last() else {
            return Err(corrupt("block text does not end in a newline"));
        };
        let mut parts = line.split(|&b| b == SPLICE);
        let (Some(mut head), Some(tail), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(corrupt("block line without exactly one splice point"));
        };
        if let Some(at) = head.iter().position(|&b| b == LABEL_SET) {
            let set = head
                .get(at + 1..at + LABEL_SET_REF)
                .and_then(decode_set)
                .ok_or_else(|| corrupt("block line with a malformed label-set reference"))?;
            needs = needs.max(set + 1);
            if std::str::from_utf8(&head[..at]).is_err() {
                return Err(corrupt("block line that is not UTF-8"));
            }
            head = &head[at + LABEL_SET_REF..];
        }
        if std::str::from_utf8(head).is_err() || std::str::from_utf8(tail).is_err() {
            return Err(corrupt("block line that is not UTF-8"));
        }
        n += 1;
    }
    if n != lines {
        return Err(corrupt("block line count"));
    }
    Ok(needs)
}

/// Values are one number per line; returns how many.
fn check_values(values: &str) -> Result<usize, LoadError> {
    if !values.is_empty() && !values.ends_with('\n') {
        return Err(corrupt("values do not end in a newline"));
    }
    let mut n = 0;
    for v in values.split_terminator('\n') {
        if parse_value(v).is_none() {
            return Err(corrupt("a value that is not a number"));
        }
        n += 1;
    }
    Ok(n)
}

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn opt(&mut self, v: Option<u64>) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.uint(v);
            }
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Bounds-checked reading; every error says what was being read.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self, what: &str) -> LoadError {
        corrupt(&format!("truncated at byte {} reading {what}", self.at))
    }

    fn byte(&mut self, what: &str) -> Result<u8, LoadError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.truncated(what))?;
        self.at += 1;
        Ok(b)
    }

    fn u64(&mut self, what: &str) -> Result<u64, LoadError> {
        let b = self
            .bytes
            .get(self.at..self.at + 8)
            .ok_or_else(|| self.truncated(what))?;
        self.at += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn uint(&mut self, what: &str) -> Result<u64, LoadError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt(&format!("overlong number reading {what}")))
    }

    /// A count of items that each take at least one byte: never more than the bytes left.
    fn count(&mut self, what: &str) -> Result<usize, LoadError> {
        let n = self.uint(what)?;
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(corrupt(&format!("{what}: count {n} beyond the file")));
        }
        Ok(n as usize)
    }

    fn opt(&mut self, what: &str) -> Result<Option<u64>, LoadError> {
        match self.byte(what)? {
            0 => Ok(None),
            _ => self.uint(what).map(Some),
        }
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], LoadError> {
        let n = self.uint(what)? as usize;
        let b = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| self.truncated(what))?;
        self.at += n;
        Ok(b)
    }

    fn str(&mut self, what: &str) -> Result<&'a str, LoadError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| corrupt(&format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::render_exposition;
    use crate::prepare::revalue;
    use crate::test_support::{families, prepared, values_push};

    const LABELS: LabelNames<'static> = LabelNames {
        instance: "instance",
        node: "node",
    };

    fn render(store: &Store) -> String {
        let mut out = Vec::new();
        render_exposition(&store.view(), &[], &mut out);
        String::from_utf8(out).unwrap()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// Two nodes sharing their blocks, one with a values push behind it; one text push (no
    /// layout); one node already stale when saved (its last push is kept, not its snapshot).
    fn fleet() -> Store {
        let s = Store::new();
        let ttl = Duration::from_secs(600);
        let fams = names(&["b", "a", "c", "d"]);
        let a = families(&fams, &[1.0, 2.5, 7.0]);
        s.apply("n1", 3, Some(7), prepared("n1", a.clone()), ttl);
        s.apply("n2", 1, Some(1), prepared("n2", a.clone()), ttl);
        let base = s.base("n1", 3, 7).unwrap();
        let b = families(&fams, &[4.0, 0.25, -1.0]);
        let revalued = revalue(base.base(), &values_push(&a, &b, 7)).unwrap();
        s.apply_values("n1", 3, 8, &base, revalued, ttl);
        let mut text = prepared("n3", families(&names(&["b", "x"]), &[9.0]));
        text.layout = None;
        s.apply("n3", 1, None, text, ttl);
        s.apply("gone", 1, Some(1), prepared("gone", a), Duration::ZERO);
        s
    }

    #[test]
    fn a_saved_store_loads_as_it_was_and_values_pushes_carry_on() {
        let before = fleet();
        std::thread::sleep(Duration::from_millis(2));
        let (bytes, nodes, snapshots) = encode(&before, LABELS, 1_000);
        assert_eq!((nodes, snapshots), (4, 3));
        let after = Store::new();
        let loaded = decode(&after, LABELS, &bytes, 1_500, |_, _| true).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                snapshots: 3,
                stale: 0,
                unknown: 0
            }
        );
        assert_eq!(render(&after), render(&before));
        assert_eq!(after.blocks(), before.blocks());
        for node in ["n1", "n2", "n3", "gone"] {
            assert_eq!(after.status(node), before.status(node), "{node}");
        }
        // The values push base survived: seq 8 and its layout.
        let fams = names(&["b", "a", "c", "d"]);
        let (b, c) = (
            families(&fams, &[4.0, 0.25, -1.0]),
            families(&fams, &[5.0, 0.5, -2.0]),
        );
        let base = after.base("n1", 3, 8).unwrap();
        let revalued = revalue(base.base(), &values_push(&b, &c, 8)).unwrap();
        let out = after.apply_values("n1", 3, 9, &base, revalued, Duration::from_secs(60));
        assert!(matches!(out, Outcome::Accepted { .. }), "{out:?}");
    }

    #[test]
    fn old_unknown_and_bad_files_are_refused_by_name() {
        let before = fleet();
        let (bytes, ..) = encode(&before, LABELS, 1_000);
        // Ten minutes after the save every snapshot has outlived its window.
        let late = Store::new();
        let loaded = decode(&late, LABELS, &bytes, 1_000 + 601_000, |_, _| true).unwrap();
        assert_eq!((loaded.snapshots, loaded.stale), (0, 3));
        assert!(late.view().nodes.is_empty());
        assert!(late.status("n1").last_push.is_some());
        // Removed or re-enrolled nodes are dropped.
        let some = Store::new();
        let loaded = decode(&some, LABELS, &bytes, 1_000, |n, e| n == "n1" && e == 3).unwrap();
        assert_eq!((loaded.snapshots, loaded.unknown), (1, 3));

        let err = |b: &[u8], labels| {
            decode(&Store::new(), labels, b, 1_000, |_, _| true)
                .unwrap_err()
                .to_string()
        };
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert_eq!(err(&flipped, LABELS), "corrupt: checksum mismatch");
        assert!(err(&bytes[..bytes.len() - 9], LABELS).starts_with("corrupt"));
        assert_eq!(
            err(b"{\"nodes\": []}", LABELS),
            "corrupt: not a Fleetgate snapshots file"
        );
        let mut newer = bytes.clone();
        newer[4] = VERSION + 1;
        assert_eq!(
            err(&newer, LABELS),
            format!(
                "format version {}, this hub reads version {VERSION}",
                VERSION + 1
            )
        );
        let other = LabelNames {
            instance: "host",
            node: "node",
        };
        assert!(err(&bytes, other).starts_with("written for instance label \"instance\""));
        // Every truncation is refused cleanly, never a panic.
        for cut in 0..bytes.len() {
            assert!(decode(&Store::new(), LABELS, &bytes[..cut], 1_000, |_, _| true).is_err());
        }
    }

    #[test]
    fn a_structurally_bad_file_with_a_good_checksum_is_refused() {
        let s = Store::new();
        s.apply(
            "n1",
            1,
            Some(1),
            prepared("n1", families(&names(&["a", "b"]), &[1.0])),
            Duration::from_secs(60),
        );
        let (bytes, ..) = encode(&s, LABELS, 1_000);
        let body = &bytes[..bytes.len() - 4];
        // Remove the splice marker from the block: the checksum is made to fit again.
        let at = body.iter().position(|&b| b == SPLICE).unwrap();
        let mut bad = body.to_vec();
        bad[at] = b'x';
        bad.extend_from_slice(&crc32fast::hash(&bad).to_le_bytes());
        let e = decode(&Store::new(), LABELS, &bad, 1_000, |_, _| true).unwrap_err();
        assert!(e.to_string().contains("splice point"), "{e}");
    }

    #[test]
    fn label_set_references_load_only_when_well_formed_and_present() {
        let s = Store::new();
        // Series `j` = 1 of `c` (a summary) has long labels: its lines refer to the node's
        // label set 0.
        s.apply(
            "n1",
            1,
            Some(1),
            prepared("n1", families(&names(&["a", "b", "c"]), &[1.0])),
            Duration::from_secs(60),
        );
        let (bytes, ..) = encode(&s, LABELS, 1_000);
        let after = Store::new();
        decode(&after, LABELS, &bytes, 1_000, |_, _| true).unwrap();
        assert_eq!(render(&after), render(&s));
        assert!(render(&s).contains("id=\"/docker/"));
        let body = &bytes[..bytes.len() - 4];
        // The reference in the skeleton line `c_sum…`, found by its context rather than as the
        // first 0xFE byte (which a number elsewhere in the file could be).
        let mut line = b"c_sum".to_vec();
        line.push(LABEL_SET);
        line.extend_from_slice(&crate::prepare::encode_set(0));
        let at = memchr::memmem::find(body, &line).unwrap() + b"c_sum".len();
        assert_eq!(body[at], LABEL_SET);
        let refuse = |at: usize, to: u8, why: &str| {
            let mut bad = body.to_vec();
            bad[at] = to;
            bad.extend_from_slice(&crc32fast::hash(&bad).to_le_bytes());
            let e = decode(&Store::new(), LABELS, &bad, 1_000, |_, _| true).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        };
        // A number byte that is not one, and a set the node does not have.
        refuse(at + 1, b'x', "malformed label-set reference");
        refuse(at + 3, 0x81, "out of range");
    }

    #[test]
    fn load_removes_the_file_and_a_missing_file_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(load(&Store::new(), LABELS, &path, |_, _| true)
            .unwrap()
            .is_none());
        let saved = save(&fleet(), LABELS, &path).unwrap();
        assert_eq!((saved.nodes, saved.snapshots), (4, 3));
        assert!(saved.bytes > 100);
        let loaded = load(&Store::new(), LABELS, &path, |_, _| true).unwrap();
        assert_eq!(loaded.map(|l| l.snapshots), Some(3));
        assert!(!path.exists());
        // A bad file is removed too.
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load(&Store::new(), LABELS, &path, |_, _| true).is_err());
        assert!(!path.exists());
    }
}
