//! Rendering `/metrics`: every node's pre-rendered families merged by name (one HELP and TYPE
//! per family, its lines contiguous across nodes), then the per-node synthetic series. The
//! exposition is produced in bounded pieces by [`ExpositionWriter`], so a scrape of millions of
//! series never holds the whole body in memory.

use fleetgate_shared::text::{write_help_type, write_series};
use fleetgate_shared::{MetricType, Series, Value};
use memchr::memchr;

use crate::labels::NodeLabels;
use crate::prepare::{decode_set, LabelSets, LABEL_SET, LABEL_SET_REF, SPLICE};
use crate::store::blocks::FamilyBlock;
use crate::store::{NodeSnapshot, View};
use std::collections::hash_map::{Entry, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// Uncompressed bytes `GET /metrics` renders per chunk: large enough that per-chunk overhead
/// (a hand-over to the connection, a write to the socket) vanishes, small enough that a
/// scrape holds a few MiB at most (with the render's queue of two, `QUEUED_CHUNKS`, about four
/// chunks). A 10,000-node scrape costs the hub about a tenth less CPU than with 512 KiB
/// chunks and a queue of four (docs/PERFORMANCE.md).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// One enrolled (not removed) node's synthetic series.
#[derive(Debug, Clone)]
pub struct NodeLine {
    /// The node's labels (instance, node, enrollment labels).
    pub labels: NodeLabels,
    /// Whether a fresh snapshot is exposed.
    pub up: bool,
    /// Unix seconds of its latest push, if any since the hub started.
    pub last_push: Option<f64>,
    /// Series exposed.
    pub series: usize,
}

/// Writes the exposition of one consistent [`View`] piece by piece.
///
/// Each node's families are sorted by name and `view.families` is a sorted superset of
/// them, so one pass with a cursor per node emits every family exactly once; the cost is
/// copying the stored bytes plus, per (family name, node), a comparison of the name's address
/// with the one the node's cursor holds (blocks and the family index share one allocation per
/// name). The position (family, node) is kept between calls, so a caller can drain the output
/// in chunks.
#[derive(Debug)]
pub struct ExpositionWriter<'a> {
    /// The families to render, taken once so every chunk belongs to the same exposition.
    view: &'a View,
    /// The synthetic per-node series, written after the families.
    nodes: &'a [NodeLine],
    /// Index into `view.families` of the family being written.
    family: usize,
    /// Index into `cursors` of the next node to write within that family.
    node: usize,
    /// Per node, in node order, what rendering it needs, kept side by side so that walking the
    /// nodes for each family touches one small array rather than every node's snapshot.
    cursors: Vec<Cursor<'a>>,
    /// Every node's labels, one after the other in node order: each (family, node) puts them
    /// in, and read from here they are next to the previous node's instead of in its memory.
    labels: Vec<u8>,
    /// Whether the HELP/TYPE of the current family is out.
    header_written: bool,
    /// Whether everything, the synthetic series included, is written.
    done: bool,
    /// Scratch for HELP/TYPE lines.
    head: String,
    /// Where the lines of the block rendered last are split, kept while the next nodes share
    /// that block: nodes of one kind share most blocks, so each is scanned about once per
    /// render instead of once per node.
    lines: LineOffsets,
}

/// One node's place in the render. What the next family needs (its block, where its values
/// start) is read from the node's arrays when the cursor advances, right after the lines next
/// to it were read: a later visit then finds it here, in the writer's one array of cursors,
/// instead of in the node's memory, which the passes over the other nodes have long evicted
/// from the cache by then.
#[derive(Debug)]
struct Cursor<'a> {
    /// Its exposed families' blocks, sorted by name.
    families: &'a [Arc<FamilyBlock>],
    /// Per family, where its values start in `values`.
    value_starts: &'a [u32],
    /// Its values.
    values: &'a [u8],
    /// Its labels, in [`ExpositionWriter::labels`].
    labels: Range<usize>,
    /// Its long own-label sets, which lines refer to.
    sets: &'a LabelSets,
    /// Its next family not yet written.
    next: usize,
    /// That family's block, or `None` when every family is written.
    block: Option<&'a Arc<FamilyBlock>>,
    /// That family's name (the address the block and the family index share).
    name: Option<&'a str>,
    /// Where that family's values start in `values`.
    value_start: Option<u32>,
    /// Whether each family's values start where the one before it ends
    /// ([`crate::store::NodeLayout::values_follow`]): then the cursor follows them instead of
    /// reading where each starts.
    follow: bool,
}

impl<'a> Cursor<'a> {
    /// The cursor of `node`, whose block list is `families` (the node's own, or an equal
    /// one of another node).
    fn new(node: &'a NodeSnapshot, families: &'a [Arc<FamilyBlock>], labels: Range<usize>) -> Self {
        let mut cursor = Cursor {
            families,
            value_starts: &node.value_starts,
            values: node.values.as_bytes(),
            labels,
            sets: &node.layout.label_sets,
            next: 0,
            block: None,
            name: None,
            value_start: node.value_starts.first().copied(),
            follow: node.layout.values_follow(),
        };
        cursor.load();
        cursor
    }

    fn load(&mut self) {
        self.block = self.families.get(self.next);
        self.name = self.block.map(|b| &**b.name());
    }

    /// Moves on to the next family, after `written` bytes of this one's values when all its
    /// lines were written.
    fn advance(&mut self, written: Option<usize>) {
        self.next += 1;
        self.load();
        let followed = match (self.follow, written, self.value_start) {
            (true, Some(n), Some(start)) => {
                u32::try_from(n).ok().and_then(|n| start.checked_add(n))
            }
            _ => None,
        };
        self.value_start = followed.or_else(|| self.value_starts.get(self.next).copied());
        debug_assert!(
            followed.is_none()
                || self.next >= self.value_starts.len()
                || followed == self.value_starts.get(self.next).copied(),
            "values followed to {followed:?}, stored at {:?}",
            self.value_starts.get(self.next)
        );
    }

    /// The values of its next family and of everything after it.
    fn values(&self) -> &'a [u8] {
        self.value_start
            .and_then(|s| self.values.get(s as usize..))
            .unwrap_or_default()
    }

    /// Whether its next family is `name`, skipping (defensively) any it has that the name
    /// list lacks.
    fn is_at(&mut self, name: &str) -> bool {
        loop {
            let Some(next) = self.name else {
                return false;
            };
            if std::ptr::eq(next, name) {
                return true;
            }
            match next.cmp(name) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Greater => return false,
                std::cmp::Ordering::Less => self.advance(None),
            }
        }
    }
}

/// Where one skeleton line's parts are in its block's text.
#[derive(Debug, Clone, Copy)]
struct LineAt {
    /// Its [`LABEL_SET`] reference, or [`NO_SET`].
    set_at: u32,
    /// The number of the label set it refers to.
    set: u32,
    /// Its [`SPLICE`] byte.
    marker: u32,
    /// Its `\n`.
    end: u32,
}

/// [`LineAt::set_at`] of a line that keeps its own labels in place.
const NO_SET: u32 = u32::MAX;

/// Per line of one block: where its parts are in the block's text.
#[derive(Debug, Default)]
struct LineOffsets {
    /// The block they belong to (its address: the view keeps every block alive while it is
    /// rendered, so no other block can take that address meanwhile).
    block: usize,
    /// Per line.
    at: Vec<LineAt>,
    /// The label set its first line with a reference refers to, if any line has one.
    first_set: Option<u32>,
}

impl LineOffsets {
    /// Scans `text`'s lines; `false` when a line has no marker or no end, or a malformed
    /// label-set reference (never, for text `prepare` wrote).
    fn scan(&mut self, block: usize, text: &[u8]) -> bool {
        self.block = block;
        self.at.clear();
        self.first_set = None;
        let mut start = 0;
        while start < text.len() {
            let line = &text[start..];
            let (Some(marker), Some(end)) = (memchr(SPLICE, line), memchr(b'\n', line)) else {
                self.block = 0;
                return false;
            };
            if marker > end {
                self.block = 0;
                return false;
            }
            let (set_at, set) = match memchr(LABEL_SET, &line[..marker]) {
                None => (NO_SET, 0),
                Some(at) => match line.get(at + 1..at + LABEL_SET_REF).and_then(decode_set) {
                    Some(set) if at + LABEL_SET_REF <= marker => ((start + at) as u32, set),
                    _ => {
                        self.block = 0;
                        return false;
                    }
                },
            };
            if set_at != NO_SET && self.first_set.is_none() {
                self.first_set = Some(set);
            }
            // A text under 4 GiB (`prepare` checks), so its offsets fit.
            self.at.push(LineAt {
                set_at,
                set,
                marker: (start + marker) as u32,
                end: (start + end) as u32,
            });
            start += end + 1;
        }
        true
    }
}

impl<'a> ExpositionWriter<'a> {
    /// A writer at the start of the exposition of `view` followed by `nodes`' series.
    pub fn new(view: &'a View, nodes: &'a [NodeLine]) -> Self {
        let size = view.nodes.iter().map(|n| n.layout.node_labels.len()).sum();
        let mut labels = Vec::with_capacity(size);
        let mut lists = HashMap::new();
        let cursors = view
            .nodes
            .iter()
            .map(|n| {
                let start = labels.len();
                labels.extend_from_slice(n.layout.node_labels.as_bytes());
                let families = one_list(&mut lists, n.layout.families());
                Cursor::new(n, families, start..labels.len())
            })
            .collect();
        ExpositionWriter {
            view,
            nodes,
            family: 0,
            node: 0,
            cursors,
            labels,
            header_written: false,
            done: false,
            head: String::with_capacity(256),
            lines: LineOffsets::default(),
        }
    }

    /// Appends the next part of the exposition to `out` until `out` holds at least `target`
    /// bytes (it may overshoot by one node's lines of one family) or the exposition ends.
    /// Returns `false` once the whole exposition has been written.
    pub fn fill(&mut self, out: &mut Vec<u8>, target: usize) -> bool {
        let view = self.view;
        while let Some(family) = view.families.get(self.family) {
            while self.node < self.cursors.len() {
                if out.len() >= target {
                    return true;
                }
                if let Some(far) = self.cursors.get(self.node + 2 * LOOK_AHEAD) {
                    prefetch_all(far);
                }
                if let Some(ahead) = self.cursors.get(self.node + LOOK_AHEAD) {
                    prefetch(ahead.values());
                    // Where its label sets are, when its block is the one scanned last (nodes
                    // of one kind share it) and refers to some.
                    let same =
                        ahead.block.map(|b| Arc::as_ptr(b) as usize) == Some(self.lines.block);
                    if let (true, Some(set)) = (same, self.lines.first_set) {
                        prefetch(ahead.sets.place(set));
                    }
                }
                let Some(cursor) = self.cursors.get_mut(self.node) else {
                    break;
                };
                self.node += 1;
                if !cursor.is_at(&family.name) {
                    continue;
                }
                if !self.header_written {
                    self.head.clear();
                    write_help_type(&mut self.head, &family.name, &family.help, family.kind);
                    out.extend_from_slice(self.head.as_bytes());
                    self.header_written = true;
                }
                let mut written = None;
                if let Some(block) = cursor.block {
                    let key = Arc::as_ptr(block) as usize;
                    if self.lines.block == key || self.lines.scan(key, block.text()) {
                        let node = Node {
                            labels: self.labels.get(cursor.labels.clone()).unwrap_or_default(),
                            sets: cursor.sets,
                        };
                        written =
                            write_lines(block.text(), &self.lines.at, cursor.values(), node, out);
                    }
                }
                cursor.advance(written);
            }
            self.family += 1;
            self.node = 0;
            self.header_written = false;
        }
        if !self.done {
            render_node_lines(self.nodes, out);
            self.done = true;
        }
        false
    }
}

/// `list`, or an equal block list met before (the same blocks in the same order), keyed in
/// `lists` by a hash of the blocks' addresses. Nodes of one kind have equal lists; the render
/// then reads each family's block from one list that stays in the cache, not from every
/// node's own.
fn one_list<'a>(
    lists: &mut HashMap<u64, &'a [Arc<FamilyBlock>]>,
    list: &'a [Arc<FamilyBlock>],
) -> &'a [Arc<FamilyBlock>] {
    let key = list.iter().fold(list.len() as u64, |h, b| {
        (h.rotate_left(5) ^ Arc::as_ptr(b) as usize as u64).wrapping_mul(0x517c_c1b7_2722_0a95)
    });
    let same = |other: &[Arc<FamilyBlock>]| {
        other.len() == list.len() && other.iter().zip(list).all(|(a, b)| Arc::ptr_eq(a, b))
    };
    match lists.entry(key) {
        Entry::Occupied(seen) if same(seen.get()) => seen.get(),
        Entry::Occupied(_) => list,
        Entry::Vacant(new) => new.insert(list),
    }
}

/// How many nodes ahead of the one being written the render asks for the values (the cursor
/// itself twice as far ahead). Eight rather than four: the 10,000-node shard round took
/// 0.78-0.81 s against 0.80-0.84 s in two A/B pairs on one VM, the same within noise on
/// another; criterion unchanged (docs/PERFORMANCE.md `### Looking 8 nodes ahead`).
const LOOK_AHEAD: usize = 8;

/// Asks the CPU to bring the first bytes of `values` into the cache. Each (family, node) the
/// render writes starts with the first read of that node's next values (and, for lines with
/// label sets, of its sets' index), far from the last ones read (the other nodes were written
/// meanwhile); asked for a few nodes ahead, they are there when needed.
#[inline]
fn prefetch<T>(values: &[T]) {
    prefetch_at(values.as_ptr().cast());
}

/// Asks the CPU to bring the first and the last cache line of `item` into the cache (all of
/// it when it spans two lines; a cursor that starts late in a line spans three, and its middle
/// line is left to the hardware's own prefetch).
#[inline]
fn prefetch_all<T>(item: &T) {
    let start = (item as *const T).cast::<u8>();
    prefetch_at(start);
    prefetch_at(start.wrapping_add(std::mem::size_of::<T>().saturating_sub(1)));
}

/// Asks the CPU to bring the cache line of `at` into the cache.
#[inline]
#[allow(unsafe_code)]
fn prefetch_at(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and reads
    // nothing the program sees; SSE, the target feature it is declared with, is part of every
    // x86-64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// What a node puts into the skeleton lines of its blocks.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// Its labels, rendered once.
    pub labels: &'a [u8],
    /// Its long own-label sets.
    pub sets: &'a LabelSets,
}

/// Appends every line of the skeleton `text` (see [`crate::prepare::Prepared::text`]) with
/// `node`'s labels put in at its [`SPLICE`] byte, its label sets at their references, and the
/// next value of `values` (each ending in `\n`) after it: the exposition lines as
/// [`fleetgate_shared::text::write_series`] writes them with the node labels as `extra`.
pub fn splice_lines(text: &[u8], values: &[u8], node: Node<'_>, out: &mut Vec<u8>) {
    let mut lines = LineOffsets::default();
    if lines.scan(1, text) {
        write_lines(text, &lines.at, values, node, out);
    }
}

/// [`splice_lines`] with the lines' offsets already known; returns how many bytes of
/// `values` the lines took. Stops at a line it cannot write (a label set the node lacks,
/// values running out; never for what the store holds), and then returns `None`.
fn write_lines(
    text: &[u8],
    lines: &[LineAt],
    mut values: &[u8],
    node: Node<'_>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let given = values.len();
    let node_labels = node.labels;
    // Values average under 12 bytes; a longer one just grows `out` once more.
    out.reserve(text.len() + lines.len() * (node_labels.len() + 2 + 12));
    let mut start = 0;
    for at in lines {
        let (marker, end) = (at.marker as usize, at.end as usize);
        let (head, tail) = (text.get(start..marker)?, text.get(marker + 1..end)?);
        // Values are a few bytes: a plain loop beats a vectorised search here.
        let value_end = values.iter().position(|&b| b == b'\n')?;
        if at.set_at == NO_SET {
            out.extend_from_slice(head);
        } else {
            let set_at = at.set_at as usize - start;
            let (parent, set) = node.sets.get(at.set)?;
            out.extend_from_slice(&head[..set_at]);
            out.extend_from_slice(parent);
            out.extend_from_slice(set);
            out.extend_from_slice(&head[set_at + LABEL_SET_REF..]);
        }
        match tail.first() {
            Some(b',' | b'}') => {
                out.push(b',');
                out.extend_from_slice(node_labels);
            }
            None => {
                out.push(b'{');
                out.extend_from_slice(node_labels);
                out.push(b'}');
            }
            _ => {
                out.push(b'{');
                out.extend_from_slice(node_labels);
                out.push(b',');
            }
        }
        out.extend_from_slice(tail);
        out.push(b' ');
        out.extend_from_slice(&values[..=value_end]);
        values = &values[value_end + 1..];
        start = end + 1;
    }
    Some(given - values.len())
}

/// Appends the whole exposition of `view` and the synthetic `fleetgate_node_*` families to
/// `out`.
pub fn render_exposition(view: &View, nodes: &[NodeLine], out: &mut Vec<u8>) {
    let mut writer = ExpositionWriter::new(view, nodes);
    while writer.fill(out, usize::MAX) {}
}

fn render_node_lines(nodes: &[NodeLine], out: &mut Vec<u8>) {
    type Pick = fn(&NodeLine) -> Option<f64>;
    let families: [(&str, &str, Pick); 3] = [
        (
            "fleetgate_node_up",
            "1 if the node's latest snapshot is fresh and exposed, 0 if it is stale.",
            |n| Some(if n.up { 1.0 } else { 0.0 }),
        ),
        (
            "fleetgate_node_last_push_timestamp_seconds",
            "Unix time of the node's latest accepted push.",
            |n| n.last_push,
        ),
        (
            "fleetgate_node_series",
            "Series the node currently exposes.",
            |n| Some(n.series as f64),
        ),
    ];
    let mut text = String::new();
    for (name, help, pick) in families {
        write_help_type(&mut text, name, help, MetricType::Gauge);
        for n in nodes {
            if let Some(v) = pick(n) {
                let series = Series {
                    labels: Vec::new(),
                    value: Value::Scalar(v),
                };
                write_series(&mut text, name, &series, &n.labels.as_extra());
            }
        }
    }
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::prepare::{prepare, Prepared};
    use crate::store::{Outcome, Store};
    use crate::test_support::{gauge, labels};
    use fleetgate_shared::{Family, Histogram, Label};
    use std::time::Duration;

    fn family(name: &str, kind: MetricType, values: &[(&str, f64)]) -> Family {
        Family {
            name: name.into(),
            help: format!("{name} help"),
            kind,
            series: values
                .iter()
                .map(|(cpu, v)| Series {
                    labels: vec![Label::new("cpu", *cpu)],
                    value: Value::Scalar(*v),
                })
                .collect(),
        }
    }

    #[test]
    fn families_are_merged_once_and_contiguous() {
        let store = Store::new();
        for node in ["b", "a", "c"] {
            let mut fams = vec![family(
                "m_total",
                MetricType::Counter,
                &[("0", 1.0), ("1", 2.0)],
            )];
            if node != "c" {
                fams.push(family("g", MetricType::Gauge, &[("0", 0.5)]));
            }
            let labels = NodeLabels::new("instance", "node", node, []);
            let p = prepare(fams, &labels, &Limits::default()).unwrap();
            store.apply(node, 1, Some(1), p, Duration::from_secs(60));
        }
        let lines = vec![NodeLine {
            labels: NodeLabels::new("instance", "node", "a", []),
            up: true,
            last_push: Some(1.5),
            series: 3,
        }];
        let mut out = Vec::new();
        render_exposition(&store.view(), &lines, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("# TYPE m_total counter").count(), 1);
        assert_eq!(text.matches("# TYPE g gauge").count(), 1);
        let parsed = fleetgate_shared::text::parse(&text).unwrap();
        let names: Vec<_> = parsed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "g",
                "m_total",
                "fleetgate_node_up",
                "fleetgate_node_last_push_timestamp_seconds",
                "fleetgate_node_series"
            ]
        );
        assert_eq!(parsed[1].series.len(), 6);
        assert!(text.contains("g{cpu=\"0\",instance=\"a\",node=\"a\"} 0.5\ng{cpu=\"0\",instance=\"b\",node=\"b\"} 0.5\n# HELP m_total"));
        assert!(text.contains("fleetgate_node_up{instance=\"a\",node=\"a\"} 1\n"));
        assert!(text.contains(
            "fleetgate_node_last_push_timestamp_seconds{instance=\"a\",node=\"a\"} 1.5\n"
        ));
    }

    /// The render follows a node's values from family to family; a family held back for a
    /// type conflict leaves its values between the others', and nodes of one kind share their
    /// block list in the render but not their values.
    #[test]
    fn each_node_shows_its_own_values_past_a_held_back_family() {
        let store = Store::new();
        let push = |node: &str, fams: Vec<Family>| {
            let labels = NodeLabels::new("instance", "node", node, []);
            let p = prepare(fams, &labels, &Limits::default()).unwrap();
            store.apply(node, 1, Some(1), p, Duration::from_secs(60))
        };
        push("a", vec![family("b_x", MetricType::Gauge, &[("0", 9.0)])]);
        let kind = |v: f64| {
            vec![
                family("a_f", MetricType::Gauge, &[("0", v), ("1", v + 1.0)]),
                family("b_x", MetricType::Counter, &[("0", v + 2.0)]),
                family("c_f", MetricType::Gauge, &[("0", v + 3.0), ("1", v + 4.0)]),
            ]
        };
        for (node, v) in [("y", 10.0), ("z", 20.0)] {
            let out = push(node, kind(v));
            assert!(
                matches!(&out, Outcome::Accepted { quarantined, .. } if quarantined.len() == 1),
                "{out:?}"
            );
        }
        let view = store.view();
        assert!(!view.nodes[1].layout.values_follow());
        let mut out = Vec::new();
        render_exposition(&view, &[], &mut out);
        let text = String::from_utf8(out).unwrap();
        for (node, v) in [("y", 10), ("z", 20)] {
            let labels = format!("instance=\"{node}\",node=\"{node}\"");
            for (family, cpu, x) in [
                ("a_f", 0, v),
                ("a_f", 1, v + 1),
                ("c_f", 0, v + 3),
                ("c_f", 1, v + 4),
            ] {
                let line = format!("{family}{{cpu=\"{cpu}\",{labels}}} {x}\n");
                assert!(text.contains(&line), "{line} missing from\n{text}");
            }
        }
        assert!(text.contains("b_x{cpu=\"0\",instance=\"a\",node=\"a\"} 9\n"));
        assert!(!text.contains("b_x{cpu=\"0\",instance=\"y\""));
    }

    /// The scan of a block notes the first label set its lines refer to, which the render
    /// asks the cache for a few nodes ahead; a block without references has none.
    #[test]
    fn a_scan_notes_the_first_label_set_its_block_refers_to() {
        let gpu = |uuid: &'static str| vec![("UUID", uuid), ("gpu", "0")];
        let fams = vec![
            gauge("a_plain", vec![vec![("cpu", "0")]]),
            gauge(
                "b_gpu",
                vec![
                    vec![("gpu", "9")],
                    gpu("GPU-0a1b2c3d-0000-1111-2222-333344445555"),
                    gpu("GPU-0a1b2c3d-0000-1111-2222-666677778888"),
                ],
            ),
            gauge(
                "c_gpu",
                vec![gpu("GPU-0a1b2c3d-0000-1111-2222-666677778888")],
            ),
        ];
        let p = prepare(fams, &labels("n1"), &Limits::default()).unwrap();
        assert_eq!(p.label_sets.len(), 2, "{:?}", p.label_sets);
        let first_set = |i: usize| {
            let mut lines = LineOffsets::default();
            assert!(lines.scan(1, &p.text[p.families[i].text.clone()]));
            lines.first_set
        };
        assert_eq!(first_set(0), None);
        assert_eq!(first_set(1), Some(0));
        assert_eq!(first_set(2), Some(1));
    }

    /// Family `i` of `p` as `/metrics` shows it.
    fn spliced(p: &Prepared, i: usize) -> String {
        let f = &p.families[i];
        let mut out = Vec::new();
        splice_lines(
            &p.text[f.text.clone()],
            &p.values.as_bytes()[f.values.clone()],
            Node {
                labels: p.node_labels.as_bytes(),
                sets: &p.label_sets,
            },
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_sorted_with_node_labels_overwriting_the_payload() {
        let fams = vec![
            gauge("z", vec![vec![("instance", "forged"), ("cpu", "0")]]),
            gauge("a", vec![vec![]]),
        ];
        let p = prepare(fams, &labels("n1"), &Limits::default()).unwrap();
        assert_eq!(p.families[0].name, "a");
        assert_eq!(
            spliced(&p, 0),
            "a{instance=\"n1\",node=\"n1\",node_type=\"gpu\"} 1\n"
        );
        assert_eq!(
            spliced(&p, 1),
            "z{cpu=\"0\",instance=\"n1\",node=\"n1\",node_type=\"gpu\"} 1\n"
        );
        assert_eq!((p.series, p.samples), (2, 2));
    }

    fn value(kind: u8, x: f64) -> Value {
        use fleetgate_shared::{Bucket, Quantile, Summary};
        match kind % 3 {
            0 => Value::Scalar(x),
            1 => Value::Histogram(Histogram {
                buckets: vec![
                    Bucket {
                        le: 0.5,
                        count: 1.0,
                    },
                    Bucket { le: 2.0, count: x },
                ],
                sum: x * 1.5,
                count: x + 1.0,
            }),
            _ => Value::Summary(Summary {
                quantiles: vec![Quantile {
                    quantile: 0.99,
                    value: x,
                }],
                sum: x,
                count: 3.0,
            }),
        }
    }

    proptest::proptest! {
        /// Lines stored without the node labels and spliced at render time are byte for byte
        /// what the shared writer produces with the node labels as `extra`.
        #[test]
        fn prop_spliced_lines_equal_the_shared_writer(
            own in proptest::collection::vec(("[a-z]{1,3}", "\\PC{0,16}"), 0..4),
            forged_instance in proptest::option::of("\\PC{0,4}"),
            node in "[a-z0-9.-]{1,8}",
            enrollment in proptest::option::of("\\PC{0,6}"),
            kind in 0u8..3,
            x in -1e9f64..1e9,
        ) {
            let mut labels: Vec<Label> = Vec::new();
            for (n, v) in own {
                if !labels.iter().any(|l| l.name == n) && !matches!(n.as_str(), "le" | "node") {
                    labels.push(Label::new(n, v));
                }
            }
            if let Some(v) = forged_instance {
                labels.push(Label::new("instance", v));
            }
            let series = Series { labels, value: value(kind, x) };
            let enrollment: Vec<(String, String)> =
                enrollment.into_iter().map(|v| ("node_type".to_string(), v)).collect();
            let node_labels = NodeLabels::new(
                "instance",
                "node",
                &node,
                enrollment.iter().map(|(k, v)| (k, v)),
            );
            let kind = match &series.value {
                Value::Scalar(_) => MetricType::Gauge,
                Value::Histogram(_) => MetricType::Histogram,
                Value::Summary(_) => MetricType::Summary,
            };
            let family = Family { name: "m".into(), help: String::new(), kind, series: vec![series] };
            let mut expected = String::new();
            write_series(
                &mut expected,
                "m",
                &family.series[0],
                &node_labels.as_extra(),
            );
            let p = prepare(vec![family], &node_labels, &Limits::default()).unwrap();
            proptest::prop_assert_eq!(spliced(&p, 0), expected);
        }
    }

    mod whole {
        use super::*;
        use crate::prepare::revalue;
        use crate::shard::{shard_of, Shard};
        use crate::store::Outcome;
        use crate::test_support::{arb_value, families, prepared, values_push};
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        fn render(view: &View) -> String {
            let mut out = Vec::new();
            render_exposition(view, &[], &mut out);
            String::from_utf8(out).unwrap()
        }

        /// The sample lines of an exposition (HELP/TYPE left out).
        fn samples(text: &str) -> Vec<&str> {
            text.lines().filter(|l| !l.starts_with('#')).collect()
        }

        /// Nodes of one kind whose series differ only in long labels (container ids, GPU
        /// UUIDs) share every block; each node's lines still carry its own labels.
        #[test]
        fn long_own_labels_stay_per_node_and_blocks_are_shared() {
            let fams = |id: &str| {
                let series = |v: f64| Series {
                    labels: vec![
                        Label::new("id", format!("/docker/{id}")),
                        Label::new("name", "web"),
                    ],
                    value: Value::Scalar(v),
                };
                let mut cpu = gauge("container_cpu", vec![]);
                cpu.series = vec![series(1.0)];
                let mut mem = gauge("container_mem", vec![vec![("cpu", "0")]]);
                mem.series.push(series(2.0));
                vec![cpu, mem]
            };
            let (ida, idb) = ("a".repeat(64), "b".repeat(64));
            let store = Store::new();
            let ttl = Duration::from_secs(60);
            store.apply("a", 1, Some(1), prepared("a", fams(&ida)), ttl);
            assert_eq!(store.blocks(), 2);
            store.apply("b", 1, Some(1), prepared("b", fams(&idb)), ttl);
            assert_eq!(store.blocks(), 2, "the second node adds no block");
            let view = store.view();
            assert_eq!(view.nodes[0].layout.label_sets.len(), 1);
            let text = render(&view);
            let tail = ",name=\"web\",instance=\"a\",node=\"a\",node_type=\"gpu\"} 1\n";
            assert!(
                text.contains(&format!("container_cpu{{id=\"/docker/{ida}\"{tail}")),
                "{text}"
            );
            let tail = ",name=\"web\",instance=\"b\",node=\"b\",node_type=\"gpu\"} 2\n";
            assert!(
                text.contains(&format!("container_mem{{id=\"/docker/{idb}\"{tail}")),
                "{text}"
            );
            assert!(text.contains(
                "container_mem{cpu=\"0\",instance=\"b\",node=\"b\",node_type=\"gpu\"} 1\n"
            ));
            assert_eq!(samples(&text).len(), 6);
            assert!(fleetgate_shared::text::parse(&text).is_ok());
        }

        proptest! {
            /// Nodes sharing blocks: after a values push from A to B, `/metrics` is byte for
            /// byte what it is when B was pushed in full.
            #[test]
            fn prop_values_push_renders_as_the_full_push(
                names in prop::collection::btree_set("[a-z]{1,6}", 0..8),
                shuffle in any::<u64>(),
                xa in prop::collection::vec(arb_value(), 1..40),
                xb in prop::collection::vec(arb_value(), 1..40),
                xc in prop::collection::vec(arb_value(), 1..40),
            ) {
                let mut names: Vec<String> = names.into_iter().collect();
                let n = names.len().max(1);
                names.rotate_left((shuffle as usize) % n);
                let (a, b, c) = (families(&names, &xa), families(&names, &xb), families(&names, &xc));
                let ttl = Duration::from_secs(60);
                let (values, full) = (Store::new(), Store::new());
                for store in [&values, &full] {
                    // A neighbour with the same layout shares every block with node a.
                    store.apply("b", 1, Some(1), prepared("b", c.clone()), ttl);
                }
                values.apply("a", 1, Some(7), prepared("a", a.clone()), ttl);
                let base = values.base("a", 1, 7).unwrap();
                let revalued = revalue(base.base(), &values_push(&a, &b, 7)).unwrap();
                let out = values.apply_values("a", 1, 8, &base, revalued, ttl);
                prop_assert!(matches!(out, Outcome::Accepted { .. }), "{:?}", out);
                full.apply("a", 1, Some(8), prepared("a", b), ttl);
                prop_assert_eq!(render(&values.view()), render(&full.view()));
            }

            /// However the fleet is split, every shard is a valid exposition with one HELP and
            /// TYPE per family, every node is wholly in exactly one shard, and the shards
            /// together are the unsharded exposition, series for series.
            #[test]
            fn prop_sharded_union_equals_unsharded(
                fleet in prop::collection::btree_map(
                    "[a-z0-9-]{1,10}",
                    prop::collection::btree_set("[a-z]{1,4}", 0..6),
                    0..24,
                ),
                x in prop::collection::vec(arb_value(), 1..20),
                of in 1u32..12,
            ) {
                let store = Store::new();
                for (node, names) in &fleet {
                    let names: Vec<String> = names.iter().cloned().collect();
                    store.apply(node, 1, Some(1), prepared(node, families(&names, &x)), Duration::from_secs(60));
                }
                let whole = render(&store.view());
                let mut union: Vec<String> = Vec::new();
                let mut home: BTreeMap<String, u32> = BTreeMap::new();
                for index in 0..of {
                    let shard = Shard { index, of };
                    let mut view = store.view();
                    view.retain_nodes(|n| shard.contains(n));
                    let text = render(&view);
                    let parsed = fleetgate_shared::text::parse(&text);
                    prop_assert!(parsed.is_ok(), "shard {} of {}: {:?}", index, of, parsed.err());
                    let mut types = BTreeMap::new();
                    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
                        *types.entry(line.split(' ').nth(2).unwrap_or("")).or_insert(0) += 1;
                    }
                    prop_assert!(types.values().all(|&n| n == 1), "{:?}", types);
                    for line in samples(&text) {
                        let node = line.split("node=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
                        prop_assert_eq!(shard_of(node, of), index, "{}", line);
                        if let Some(other) = home.insert(node.to_string(), index) {
                            prop_assert_eq!(other, index);
                        }
                        union.push(line.to_string());
                    }
                }
                let mut expected: Vec<String> = samples(&whole).into_iter().map(String::from).collect();
                expected.sort();
                union.sort();
                prop_assert_eq!(union, expected);
            }
        }
    }
}
