//! A validated push turned into what the store keeps: every family pre-rendered once into
//! exposition lines, so `/metrics` only copies bytes. A line is kept in two parts: its
//! *skeleton* (name, the series' own labels, `le`/`quantile`), which nodes of one kind have in
//! common and the store shares between them, and its value, which is the node's own. The
//! node's labels (instance, node, enrollment labels; ~50 bytes) are kept once per snapshot
//! instead of in every line: a marker byte in the skeleton says where they go, and
//! [`crate::exposition::splice_lines`] puts them in at render time. A series' own labels are
//! kept in the node's [`LabelSets`] instead of in the line when they are long (container ids,
//! GPU UUIDs, hostnames: the labels that differ from node to node and repeat across that
//! node's families), so the skeletons of servers of one kind stay equal and shared. A values
//! push ([`revalue`]) rewrites only the values.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

use fleetgate_shared::text::{parse_value, write_escaped_label_value, write_value};
use fleetgate_shared::{Family, Label, MetricType, Series, Value, ValuesPush};

use crate::config::Limits;
use crate::labels::NodeLabels;
use crate::validate::{self, Rejection};

/// Where the node labels go in a skeleton line. 0xFF never occurs in UTF-8, so it cannot
/// collide with a name or a label value.
pub const SPLICE: u8 = 0xFF;

/// Where a series' own labels, kept in the node's [`LabelSets`], go in a skeleton line; the
/// [`LABEL_SET_REF`] bytes after it are the set's number ([`encode_set`]). 0xFE never occurs
/// in UTF-8 either, and the number's bytes are never 0xFE, 0xFF or `\n`.
pub const LABEL_SET: u8 = 0xFE;

/// Bytes of a label-set reference: the [`LABEL_SET`] byte and three of number.
pub const LABEL_SET_REF: usize = 4;

/// Own labels at least this long (as written: `{a="x",b="y"`) are kept in the node's
/// [`LabelSets`]; shorter ones, such as `{cpu="3",mode="idle"}`, which servers of one kind
/// have in common, stay in the shared line.
pub const LABEL_SET_MIN: usize = 32;

/// Label sets one node may keep apart (what three bytes of six bits number); further ones
/// stay in the lines.
pub const MAX_LABEL_SETS: usize = 1 << 18;

/// The three bytes numbering label set `i` (< [`MAX_LABEL_SETS`]): six bits each, high bit set.
pub fn encode_set(i: u32) -> [u8; 3] {
    [
        0x80 | ((i >> 12) & 0x3F) as u8,
        0x80 | ((i >> 6) & 0x3F) as u8,
        0x80 | (i & 0x3F) as u8,
    ]
}

/// The number [`encode_set`] wrote in `b`, if it is such a number.
pub fn decode_set(b: &[u8]) -> Option<u32> {
    match b {
        [a, b, c] if (a & 0xC0, b & 0xC0, c & 0xC0) == (0x80, 0x80, 0x80) => {
            Some((u32::from(a & 0x3F) << 12) | (u32::from(b & 0x3F) << 6) | u32::from(c & 0x3F))
        }
        _ => None,
    }
}

/// One node's long own-label sets, each kept once however many of its lines carry it, in
/// order of first use (so nodes of one kind number theirs alike and share the lines that
/// refer to them). Each set is written as in a line: `{a="x",b="y"`, without the closing
/// brace. A set may continue another: the variants of one container's labels
/// (`{id="…",name="…"` and `{id="…",name="…",failure_type="pgfault"`) keep their common part
/// once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSets {
    /// Each set's own text back to back.
    text: Box<str>,
    /// Per set, where its own text ends in `text` and the set whose whole text comes before
    /// its own, or [`NO_PARENT`] (a parent never has a parent itself): side by side, so that a
    /// render finds a set's place in one read rather than in two arrays.
    index: Box<[[u32; 2]]>,
}

/// [`LabelSets`] parent of a set that continues none.
pub const NO_PARENT: u32 = u32::MAX;

impl LabelSets {
    /// Sets from their parts, as [`LabelSets::parts`] gives them; `None` when the ends do not
    /// cut `text` into sets in order or a parent is not an earlier set without a parent.
    pub fn from_parts(text: String, ends: Vec<u32>, parents: Vec<u32>) -> Option<Self> {
        if ends.len() != parents.len() {
            return None;
        }
        let mut start = 0usize;
        for (i, (&e, &p)) in ends.iter().zip(&parents).enumerate() {
            let e = e as usize;
            if e < start || e > text.len() || !text.is_char_boundary(e) {
                return None;
            }
            if p != NO_PARENT && (p as usize >= i || parents[p as usize] != NO_PARENT) {
                return None;
            }
            start = e;
        }
        (start == text.len()).then(|| LabelSets::new(text, &ends, &parents))
    }

    /// Sets whose `ends` and `parents` are known to be in order.
    fn new(text: String, ends: &[u32], parents: &[u32]) -> Self {
        LabelSets {
            text: text.into_boxed_str(),
            index: ends.iter().zip(parents).map(|(&e, &p)| [e, p]).collect(),
        }
    }

    /// The own text of every set, where each ends, and each one's parent.
    pub fn parts(&self) -> (&str, Vec<u32>, Vec<u32>) {
        let (ends, parents) = self.index.iter().map(|&[e, p]| (e, p)).unzip();
        (&self.text, ends, parents)
    }

    /// The own text of set `i`.
    fn own(&self, i: usize) -> Option<&[u8]> {
        own_text(&self.text, |j| self.index.get(j).map(|&[end, _]| end), i)
    }

    /// Set `i`, as written in a line: its parent's text (empty without one), then its own.
    pub fn get(&self, i: u32) -> Option<(&[u8], &[u8])> {
        let own = self.own(i as usize)?;
        match self.index.get(i as usize)?[1] {
            NO_PARENT => Some((&[], own)),
            p => Some((self.own(p as usize)?, own)),
        }
    }

    /// The entries of the index that [`LabelSets::get`] reads first for set `i` (none when
    /// there is no such set), for a render to ask the cache for ahead of time.
    pub fn place(&self, i: u32) -> &[[u32; 2]] {
        let i = i as usize;
        self.index.get(i.saturating_sub(1)..=i).unwrap_or_default()
    }

    /// Number of sets.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.text.len() + std::mem::size_of_val(&*self.index)
    }
}

/// Of a new label set, the parts ending before its last this many commas are looked up as the
/// common part of earlier sets (a container's variants add one or two labels at the end);
/// bounded so that a push of sets with many labels costs a few times its size, not its square.
const PREFIX_CUTS: usize = 4;

/// The own text of set `i` of sets kept back to back in `text`, set `j` ending at `end(j)`:
/// from the end of the set before it (or the start) to its own end.
fn own_text(text: &str, end: impl Fn(usize) -> Option<u32>, i: usize) -> Option<&[u8]> {
    let start = match i {
        0 => 0,
        i => end(i - 1)? as usize,
    };
    text.as_bytes().get(start..end(i)? as usize)
}

/// [`LabelSets`] being collected by [`prepare`].
#[derive(Debug, Default)]
struct SetBuilder {
    text: String,
    ends: Vec<u32>,
    parents: Vec<u32>,
    /// Every set's whole text, and its number.
    numbers: HashMap<Box<str>, u32>,
    /// The hash of every part of a set's text ending before one of its last [`PREFIX_CUTS`]
    /// commas, [`LABEL_SET_MIN`] bytes or longer, and the first set that starts with it
    /// (checked byte for byte when found).
    prefixes: HashMap<u64, u32>,
    /// Hashes those parts.
    hasher: RandomState,
}

impl SetBuilder {
    /// The number of set `own`, added if new; `None` when the node has too many.
    fn number(&mut self, own: &str) -> Option<u32> {
        if let Some(&n) = self.numbers.get(own) {
            return Some(n);
        }
        // Room for this set and a common part it may split off.
        if self.ends.len() + 2 > MAX_LABEL_SETS {
            return None;
        }
        // Longest first.
        let cuts: Vec<usize> = own
            .rmatch_indices(',')
            .map(|(i, _)| i)
            .filter(|&i| i >= LABEL_SET_MIN)
            .take(PREFIX_CUTS)
            .collect();
        let hashes: Vec<u64> = cuts
            .iter()
            .map(|&cut| self.hasher.hash_one(&own[..cut]))
            .collect();
        // The longest of those parts that a set is, or another set starts with.
        let mut parent = None;
        for (&cut, &hash) in cuts.iter().zip(&hashes) {
            let part = &own[..cut];
            if let Some(&n) = self.numbers.get(part) {
                parent = Some(match self.parents[n as usize] {
                    NO_PARENT => n,
                    p => p,
                });
                break;
            }
            if let Some(&other) = self.prefixes.get(&hash) {
                if self.starts_with(other, part) {
                    let n = self.push(part, NO_PARENT);
                    self.numbers.insert(part.into(), n);
                    parent = Some(n);
                    break;
                }
            }
        }
        let n = match parent {
            Some(p) => {
                let skip = self.own(p as usize).len();
                self.push(&own[skip..], p)
            }
            None => self.push(own, NO_PARENT),
        };
        for hash in hashes {
            self.prefixes.entry(hash).or_insert(n);
        }
        self.numbers.insert(own.into(), n);
        Some(n)
    }

    /// Own text of set `i` (one this builder numbered).
    fn own(&self, i: usize) -> &[u8] {
        own_text(&self.text, |j| self.ends.get(j).copied(), i).unwrap_or_default()
    }

    /// Whether set `i`'s whole text (its parent's, then its own) starts with `part`.
    fn starts_with(&self, i: u32, part: &str) -> bool {
        let i = i as usize;
        let (head, tail) = match self.parents[i] {
            NO_PARENT => (&[][..], self.own(i)),
            p => (self.own(p as usize), self.own(i)),
        };
        let part = part.as_bytes();
        match part.split_at_checked(head.len()) {
            Some((a, b)) => a == head && tail.starts_with(b),
            None => head.starts_with(part),
        }
    }

    fn push(&mut self, own: &str, parent: u32) -> u32 {
        let n = self.ends.len() as u32;
        self.text.push_str(own);
        // Bounded with the rest of the text below 4 GiB by `prepare`'s check.
        self.ends.push(self.text.len() as u32);
        self.parents.push(parent);
        n
    }

    fn finish(self) -> LabelSets {
        LabelSets::new(self.text, &self.ends, &self.parents)
    }
}

/// One family rendered to exposition lines (without HELP/TYPE).
#[derive(Debug, Clone)]
pub struct PreparedFamily {
    /// Family name.
    pub name: String,
    /// HELP text, unescaped.
    pub help: String,
    /// TYPE.
    pub kind: MetricType,
    /// Series in the family.
    pub series: usize,
    /// Its skeleton lines within [`Prepared::text`].
    pub text: Range<usize>,
    /// Its line numbers (text order): line `i` has the `i`-th value of [`Prepared::values`].
    pub lines: Range<usize>,
    /// Its values within [`Prepared::values`].
    pub values: Range<usize>,
    /// Index of its first sample in layout order (the order of the push, see
    /// [`fleetgate_shared::sample_values`]), which values pushes address.
    pub first_sample: u32,
}

/// A validated, pre-rendered push.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Every family's skeleton lines, back to back in the order of `families`: per line the
    /// name and labels without the node labels, one [`SPLICE`] byte where those go, and `\n`
    /// (no value, no space before it).
    pub text: Vec<u8>,
    /// Every line's value followed by `\n`, in the same order.
    pub values: String,
    /// The node labels, rendered once ([`NodeLabels::render`]).
    pub node_labels: String,
    /// The long own-label sets the lines of `text` refer to.
    pub label_sets: LabelSets,
    /// The families, sorted by name.
    pub families: Vec<PreparedFamily>,
    /// Series in the push.
    pub series: usize,
    /// Sample lines in the push.
    pub samples: usize,
    /// [`fleetgate_shared::layout_hash`] of the push, set for native snapshots: values pushes
    /// may follow only those.
    pub layout: Option<u64>,
}

/// What a values push must match, and how its samples map to the stored lines. About four
/// bytes per family at most: nothing per sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// [`fleetgate_shared::layout_hash`] of the full push.
    pub hash: u64,
    /// Samples in the push, which are the lines of the text.
    pub samples: u32,
    /// For each family of the text with at least one line, in text order, the index of its
    /// first sample in push order; empty when both orders are the same (a push sorted by name).
    pub order: Box<[u32]>,
}

impl Layout {
    /// The layout of `prepared` with hash `hash`.
    pub fn new(hash: u64, prepared: &Prepared) -> Self {
        let order: Vec<u32> = prepared
            .families
            .iter()
            .filter(|f| !f.lines.is_empty())
            .map(|f| f.first_sample)
            .collect();
        let sorted = order.windows(2).all(|w| w[0] < w[1]);
        Layout {
            hash,
            // Bounded by the text length, which `prepare` keeps under 4 GiB.
            samples: prepared.samples as u32,
            order: if sorted {
                Box::default()
            } else {
                order.into_boxed_slice()
            },
        }
    }

    /// For every line of the text, in text order, its sample index in push order.
    pub fn sample_of_lines(&self) -> Vec<u32> {
        if self.order.is_empty() {
            return (0..self.samples).collect();
        }
        let mut sorted = self.order.to_vec();
        sorted.sort_unstable();
        let mut out = Vec::with_capacity(self.samples as usize);
        for &first in self.order.iter() {
            let at = sorted.partition_point(|&s| s <= first);
            let end = sorted.get(at).copied().unwrap_or(self.samples);
            out.extend(first..end.max(first));
        }
        out
    }
}

/// Validates `families` against `limits` and renders them with `labels` injected (a payload
/// label of the same name is overwritten). Families are sorted by name.
pub fn prepare(
    families: Vec<Family>,
    labels: &NodeLabels,
    limits: &Limits,
) -> Result<Prepared, Rejection> {
    let series: usize = families.iter().map(|f| f.series.len()).sum();
    validate::check_size(series, limits)?;
    // Each family's first sample in push order, kept through the sort by name.
    let mut next_sample = 0usize;
    let mut families: Vec<(usize, Family)> = families
        .into_iter()
        .map(|f| {
            let first = next_sample;
            next_sample += f
                .series
                .iter()
                .map(|s| s.value.sample_count())
                .sum::<usize>();
            (first, f)
        })
        .collect();
    families.sort_unstable_by(|a, b| a.1.name.cmp(&b.1.name));
    let extra = labels.as_extra();
    let sorted: Vec<&Family> = families.iter().map(|(_, f)| f).collect();
    validate::check_families(&sorted, &extra, limits)?;
    let mut out = Prepared {
        text: Vec::with_capacity(series * 40),
        values: String::with_capacity(series * 10),
        node_labels: labels.render(),
        label_sets: LabelSets::default(),
        families: Vec::with_capacity(families.len()),
        series,
        samples: 0,
        layout: None,
    };
    // Label values and `le`/`quantile` bounds are escaped and formatted here first: the
    // shared writing primitives write into a `String`, which the skeleton (with its 0xFF
    // marker) is not.
    let mut scratch = Scratch::default();
    for (first_sample, family) in families {
        let (text, lines, values) = (out.text.len(), out.samples, out.values.len());
        for s in &family.series {
            write_series_unlabelled(&mut out, &mut scratch, &family.name, s, &extra);
        }
        if u32::try_from(out.text.len() + out.values.len() + scratch.sets.text.len()).is_err() {
            return Err(Rejection {
                reason: "too_many_series",
                message: format!("snapshot renders to more than {} bytes", u32::MAX),
                series,
            });
        }
        out.families.push(PreparedFamily {
            text: text..out.text.len(),
            lines: lines..out.samples,
            values: values..out.values.len(),
            series: family.series.len(),
            name: family.name,
            help: family.help,
            kind: family.kind,
            // Below the line count, which the length check above bounds.
            first_sample: first_sample as u32,
        });
    }
    out.label_sets = scratch.sets.finish();
    Ok(out)
}

/// What [`prepare`] writes lines with.
#[derive(Debug, Default)]
struct Scratch {
    /// One label value or bound, escaped or formatted.
    value: String,
    /// The series' own labels as written in a line.
    own: String,
    /// The node's long label sets so far.
    sets: SetBuilder,
}

/// Appends every sample line of one series without the node labels (`extra`; payload labels
/// of those names are dropped). Mirrors [`fleetgate_shared::text::write_series`]: with the
/// labels spliced in ([`crate::exposition::splice_lines`]) the bytes are the same, which a
/// property test checks.
fn write_series_unlabelled(
    out: &mut Prepared,
    scratch: &mut Scratch,
    name: &str,
    series: &Series,
    extra: &[(&str, &str)],
) {
    let labels = &series.labels;
    let mut line = |suffix: &str, special: Option<(&str, f64)>, value: f64| {
        write_line_unlabelled(out, scratch, name, suffix, labels, extra, special, value)
    };
    match &series.value {
        Value::Scalar(v) => line("", None, *v),
        Value::Histogram(h) => {
            for b in &h.buckets {
                line("_bucket", Some(("le", b.le)), b.count);
            }
            line("_bucket", Some(("le", f64::INFINITY)), h.count);
            line("_sum", None, h.sum);
            line("_count", None, h.count);
        }
        Value::Summary(s) => {
            for q in &s.quantiles {
                line("", Some(("quantile", q.quantile)), q.value);
            }
            line("_sum", None, s.sum);
            line("_count", None, s.count);
        }
    }
}

/// One skeleton line and its value. The [`SPLICE`] byte marks where the node labels belong:
/// after the series' own labels, before `le`/`quantile`. The byte after it tells
/// [`crate::exposition::splice_lines`] the punctuation: `,` or `}` (own labels before it),
/// `\n` (no labels at all), or the first byte of `le`/`quantile` (written here without its
/// `{`, which the splice supplies). Own labels of [`LABEL_SET_MIN`] bytes or more are put in
/// the node's label sets and referred to ([`LABEL_SET`]).
#[allow(clippy::too_many_arguments)]
fn write_line_unlabelled(
    out: &mut Prepared,
    scratch: &mut Scratch,
    name: &str,
    suffix: &str,
    labels: &[Label],
    extra: &[(&str, &str)],
    special: Option<(&str, f64)>,
    value: f64,
) {
    let text = &mut out.text;
    text.extend_from_slice(name.as_bytes());
    text.extend_from_slice(suffix.as_bytes());
    let own = &mut scratch.own;
    own.clear();
    for l in labels {
        if extra.iter().any(|(n, _)| *n == l.name) {
            continue;
        }
        own.push(if own.is_empty() { '{' } else { ',' });
        own.push_str(&l.name);
        own.push_str("=\"");
        write_escaped_label_value(own, &l.value);
        own.push('"');
    }
    let number = if own.len() >= LABEL_SET_MIN {
        scratch.sets.number(own)
    } else {
        None
    };
    match number {
        Some(n) => {
            text.push(LABEL_SET);
            text.extend_from_slice(&encode_set(n));
        }
        None => text.extend_from_slice(own.as_bytes()),
    }
    let has_own = !own.is_empty();
    text.push(SPLICE);
    if let Some((n, v)) = special {
        if has_own {
            text.push(b',');
        }
        text.extend_from_slice(n.as_bytes());
        text.extend_from_slice(b"=\"");
        scratch.value.clear();
        write_value(&mut scratch.value, v);
        text.extend_from_slice(scratch.value.as_bytes());
        text.push(b'"');
    }
    if has_own || special.is_some() {
        text.push(b'}');
    }
    text.push(b'\n');
    write_value(&mut out.values, value);
    out.values.push('\n');
    out.samples += 1;
}

/// What a values push is applied to: the values of the node's last accepted push.
#[derive(Debug, Clone, Copy)]
pub struct Base<'a> {
    /// Every line's value followed by `\n`, in text order.
    pub values: &'a str,
    /// Its layout; `None` when it was not a native snapshot.
    pub layout: Option<&'a Layout>,
}

/// The values of a values push, written as the stored values are.
#[derive(Debug, Clone)]
pub struct Revalued {
    /// Every line's new value followed by `\n`, in the stored text's order.
    pub values: String,
    /// Where each line's value starts in `values`, plus the end: line `i` is
    /// `line_starts[i]..line_starts[i + 1]`.
    pub line_starts: Vec<u32>,
    /// Sample lines written.
    pub samples: usize,
}

/// Writes the values of `push` in place of `base`'s. The base values the deltas apply to are
/// read back from the stored text, which holds every value in a form that parses to the same
/// bits. `Err` says why the push does not fit `base` (the sender should push in full).
pub fn revalue(base: Base<'_>, push: &ValuesPush) -> Result<Revalued, String> {
    let Some(layout) = base.layout else {
        return Err("no base snapshot: the stored push was not a native snapshot".into());
    };
    if layout.hash != push.header.layout {
        return Err("layout differs from the stored snapshot".into());
    }
    let lines = layout.samples as usize;
    if push.samples != lines {
        return Err(format!(
            "layout differs: {} samples pushed, {lines} stored",
            push.samples
        ));
    }
    let bad_text = || "stored values do not match their layout".to_string();
    let sample_of = layout.sample_of_lines();
    if sample_of.len() != lines {
        return Err(bad_text());
    }
    let mut base_values = vec![0.0; lines];
    // Where each stored line ends, in text order, to copy those whose value stays.
    let mut ends = Vec::with_capacity(lines);
    let text = base.values.as_bytes();
    let mut start = 0;
    for &i in &sample_of {
        let rest = text.get(start..).unwrap_or_default();
        let end = start + memchr::memchr(b'\n', rest).ok_or_else(bad_text)?;
        let v = base
            .values
            .get(start..end)
            .and_then(parse_stored)
            .ok_or_else(bad_text)?;
        *base_values.get_mut(i as usize).ok_or_else(bad_text)? = v;
        ends.push(end);
        start = end + 1;
    }
    if start != text.len() {
        return Err(bad_text());
    }
    let values = push.apply(&base_values).map_err(|e| e.to_string())?;

    let mut out = String::with_capacity(base.values.len() + base.values.len() / 8);
    let mut starts = Vec::with_capacity(lines + 1);
    let mut start = 0;
    for (&i, &end) in sample_of.iter().zip(&ends) {
        // Checked below with the whole text: it stays under 4 GiB.
        starts.push(out.len() as u32);
        let (new, old) = (values[i as usize], base_values[i as usize]);
        // An unchanged value keeps its stored text, which reads back as the same bits.
        match base.values.get(start..end) {
            Some(stored) if new.to_bits() == old.to_bits() => out.push_str(stored),
            _ => write_value(&mut out, new),
        }
        out.push('\n');
        start = end + 1;
    }
    if u32::try_from(out.len()).is_err() {
        return Err(format!("snapshot renders to more than {} bytes", u32::MAX));
    }
    starts.push(out.len() as u32);
    Ok(Revalued {
        values: out,
        line_starts: starts,
        samples: lines,
    })
}

/// A stored value as [`parse_value`] reads it. Most are integers, which `write_value` writes
/// as digits: those are read here without the general float parser (an integer of at most
/// 15 digits is exact in an `f64`, so the bits are the same; `-0` gives -0.0 as there).
fn parse_stored(text: &str) -> Option<f64> {
    let (negative, digits) = match text.as_bytes().split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text.as_bytes()),
    };
    if (1..=15).contains(&digits.len()) {
        let mut n = 0u64;
        for &d in digits {
            let d = d.wrapping_sub(b'0');
            if d > 9 {
                return parse_value(text);
            }
            n = n * 10 + u64::from(d);
        }
        let v = n as f64;
        return Some(if negative { -v } else { v });
    }
    parse_value(text)
}

#[cfg(test)]
mod stored_values {
    use super::*;
    use proptest::prelude::*;

    fn same(text: &str) -> bool {
        let (fast, slow) = (parse_stored(text), parse_value(text));
        fast.map(f64::to_bits) == slow.map(f64::to_bits)
    }

    #[test]
    fn integers_read_as_the_float_parser_reads_them() {
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "123456789012345",
            "-999999999999999",
            "1234567890123456",
            "9007199254740993",
            "",
            "-",
            "+5",
            "1e3",
            "1.5",
            "NaN",
            "+Inf",
            "-Inf",
            "12a",
            "--1",
            " 1",
        ] {
            assert!(same(text), "{text:?}");
        }
        assert_eq!(
            parse_stored("-0").map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        assert_eq!(
            parse_stored("1234567890123456"),
            Some(1_234_567_890_123_456.0)
        );
    }

    proptest! {
        #[test]
        fn prop_stored_values_read_back_as_written(v in any::<f64>(), n in any::<i64>()) {
            for v in [v, n as f64, (n % 1_000_000_000_000_000) as f64] {
                let mut text = String::new();
                write_value(&mut text, v);
                prop_assert!(same(&text), "{text:?}");
                let back = parse_stored(&text).unwrap();
                prop_assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()));
            }
        }

        #[test]
        fn prop_any_text_reads_as_the_float_parser_reads_it(text in "[-+0-9.eEIinfNa]{0,20}") {
            prop_assert!(same(&text), "{text:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{gauge, labels};
    use fleetgate_shared::Histogram;

    fn err(fams: Vec<Family>, limits: &Limits) -> Rejection {
        prepare(fams, &labels("n1"), limits).unwrap_err()
    }

    #[test]
    fn variants_of_a_long_label_set_keep_their_common_part_once() {
        let base = [
            ("id", "/docker/0123456789abcdef0123456789abcdef"),
            ("name", "web-1"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut ls = base.to_vec();
            ls.extend_from_slice(extra);
            ls
        };
        // Sorted by name: the variants with an extra label come before the plain set.
        let fams = vec![
            gauge(
                "a_faults",
                vec![
                    with(&[("failure_type", "pgfault")]),
                    with(&[("failure_type", "pgmajfault")]),
                ],
            ),
            gauge("b_usage", vec![with(&[])]),
            gauge("c_rx", vec![with(&[("interface", "eth0")])]),
            gauge("d_short", vec![vec![("cpu", "0")]]),
        ];
        let p = prepare(fams, &labels("n1"), &Limits::default()).unwrap();
        let sets = &p.label_sets;
        // The first variant whole, the common part split off when the second came (which is
        // also the plain set), then the second and the third variant as continuations of it;
        // the short set inline.
        assert_eq!(sets.len(), 4, "{sets:?}");
        let whole = |i| {
            let (a, b) = sets.get(i).unwrap();
            String::from_utf8([a, b].concat()).unwrap()
        };
        let common = "{id=\"/docker/0123456789abcdef0123456789abcdef\",name=\"web-1\"";
        assert_eq!(whole(1), common);
        assert_eq!(whole(2), format!("{common},failure_type=\"pgmajfault\""));
        assert_eq!(sets.get(2).unwrap().1, b",failure_type=\"pgmajfault\"");
        assert_eq!(whole(3), format!("{common},interface=\"eth0\""));
        assert!(
            sets.bytes() < 2 * common.len() + 100 + 4 * 8,
            "{}",
            sets.bytes()
        );
        let spliced = |i: usize| {
            let f = &p.families[i];
            let mut out = Vec::new();
            crate::exposition::splice_lines(
                &p.text[f.text.clone()],
                &p.values.as_bytes()[f.values.clone()],
                crate::exposition::Node {
                    labels: p.node_labels.as_bytes(),
                    sets,
                },
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        let node = "instance=\"n1\",node=\"n1\",node_type=\"gpu\"";
        assert_eq!(
            spliced(0),
            format!(
                "a_faults{common},failure_type=\"pgfault\",{node}}} 1\n\
                 a_faults{common},failure_type=\"pgmajfault\",{node}}} 1\n"
            )
        );
        assert_eq!(spliced(1), format!("b_usage{common},{node}}} 1\n"));
        let text = String::from_utf8_lossy(&p.text);
        assert!(text.contains("d_short{cpu=\"0\"\u{FFFD}}"), "{text}");
        // What a render prefetches for set `i`: the index entries `get(i)` reads first.
        let (_, ends, _) = sets.parts();
        assert_eq!(
            sets.place(0).iter().map(|e| e[0]).collect::<Vec<_>>(),
            ends[..1]
        );
        assert_eq!(
            sets.place(2).iter().map(|e| e[0]).collect::<Vec<_>>(),
            ends[1..3]
        );
        assert!(sets.place(4).is_empty());
        assert_eq!(
            LabelSets::from_parts("ab".into(), vec![1, 2], vec![NO_PARENT, 0]).map(|s| s.len()),
            Some(2)
        );
        assert!(LabelSets::from_parts("ab".into(), vec![1, 2], vec![1, NO_PARENT]).is_none());
        assert!(
            LabelSets::from_parts("ab".into(), vec![2, 1], vec![NO_PARENT, NO_PARENT]).is_none()
        );
    }

    #[test]
    fn a_set_of_many_labels_costs_a_few_lookups_not_one_per_label() {
        let mut b = SetBuilder::default();
        let own: String = (0..60)
            .map(|i| {
                format!(
                    "{}l{i}=\"{}\"",
                    if i == 0 { '{' } else { ',' },
                    "v".repeat(40)
                )
            })
            .collect();
        assert_eq!(b.number(&own), Some(0));
        assert_eq!(b.prefixes.len(), PREFIX_CUTS);
        // A variant with one more label continues it; one that shares only the first 58
        // labels with it splits that part off.
        assert_eq!(b.number(&format!("{own},x=\"1\"")), Some(1));
        let cut = own.match_indices(',').nth(57).unwrap().0;
        assert_eq!(b.number(&format!("{},y=\"2\"", &own[..cut])), Some(3));
        assert_eq!(b.parents, vec![NO_PARENT, 0, NO_PARENT, 2]);
        assert!(b.starts_with(1, &own) && b.starts_with(1, &own[..10]));
        assert!(!b.starts_with(0, &format!("{own},x")));
    }

    #[test]
    fn each_bad_input_is_named() {
        let l = Limits::default();
        let e = err(vec![gauge("bad-name", vec![vec![]])], &l);
        assert_eq!(e.reason, "invalid_name");
        assert!(e.message.contains("bad-name"));
        let e = err(vec![gauge("m", vec![vec![("a-b", "1")]])], &l);
        assert!(
            e.message.contains("a-b") && e.reason == "invalid_name",
            "{e}"
        );
        let e = err(
            vec![gauge("m", vec![vec![("a", "1")], vec![("a", "1")]])],
            &l,
        );
        assert_eq!(e.reason, "duplicate");
        assert!(e.message.contains("m{a=\"1\"}"), "{e}");
        // Differing only in a label the hub overwrites is still a duplicate.
        let e = err(
            vec![gauge(
                "m",
                vec![vec![("instance", "x")], vec![("instance", "y")]],
            )],
            &l,
        );
        assert_eq!(e.reason, "duplicate");
        let e = err(vec![gauge("m", vec![vec![]]), gauge("m", vec![vec![]])], &l);
        assert_eq!(e.reason, "duplicate");
        // A histogram's `_count` series and a family of that name: the same lines twice.
        let mut lat = gauge("lat", vec![vec![]]);
        lat.kind = MetricType::Histogram;
        lat.series[0].value = Value::Histogram(Histogram {
            buckets: vec![],
            sum: 1.0,
            count: 3.0,
        });
        let e = err(vec![gauge("lat_count", vec![vec![]]), lat.clone()], &l);
        assert_eq!(e.reason, "duplicate");
        assert!(
            e.message
                .contains("family lat_count clashes with the histogram lat"),
            "{e}"
        );
        assert!(prepare(
            vec![gauge("lat_total", vec![vec![]]), lat],
            &labels("n1"),
            &l
        )
        .is_ok());
        let small = Limits {
            max_series_per_node: 1,
            max_labels_per_series: 1,
            max_label_value_len: 3,
            ..l
        };
        let e = err(
            vec![gauge("m", vec![vec![("a", "1")], vec![("a", "2")]])],
            &small,
        );
        assert_eq!(e.reason, "too_many_series");
        assert!(e.message.contains("2 series"), "{e}");
        let e = err(vec![gauge("m", vec![vec![("a", "1"), ("b", "2")]])], &small);
        assert_eq!(e.reason, "too_many_labels");
        let e = err(vec![gauge("m", vec![vec![("a", "long")]])], &small);
        assert_eq!(e.reason, "label_value_too_long");
        assert!(e.message.contains("label a"), "{e}");
        let e = err(vec![gauge("fleetgate_node_up", vec![vec![]])], &l);
        assert_eq!(e.reason, "reserved_name");
        let mut f = gauge("m", vec![vec![]]);
        f.series[0].value = Value::Histogram(Histogram::default());
        assert_eq!(err(vec![f], &l).reason, "value_type");
    }
}
