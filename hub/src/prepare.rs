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
/// refer to them). Each set is written as in a line: `{a="x",b="y"`, without the closing brace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSets {
    /// The sets back to back.
    text: Box<str>,
    /// Where each set ends in `text`.
    ends: Box<[u32]>,
}

impl LabelSets {
    /// Sets from their text and ends, as [`LabelSets::parts`] gives them; `None` when the ends
    /// do not cut `text` into sets in order.
    pub fn from_parts(text: String, ends: Vec<u32>) -> Option<Self> {
        let mut start = 0usize;
        for &e in &ends {
            let e = e as usize;
            if e < start || !text.is_char_boundary(e) || e > text.len() {
                return None;
            }
            start = e;
        }
        (start == text.len()).then(|| LabelSets {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        })
    }

    /// The text of every set and where each ends.
    pub fn parts(&self) -> (&str, &[u32]) {
        (&self.text, &self.ends)
    }

    /// Set `i`, as written in a line.
    pub fn get(&self, i: u32) -> Option<&[u8]> {
        let i = i as usize;
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.as_bytes().get(start..end)
    }

    /// Number of sets.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.text.len() + std::mem::size_of_val(&*self.ends)
    }
}

/// [`LabelSets`] being collected by [`prepare`].
#[derive(Debug, Default)]
struct SetBuilder {
    text: String,
    ends: Vec<u32>,
    numbers: HashMap<Box<str>, u32>,
}

impl SetBuilder {
    /// The number of set `own`, added if new; `None` when the node has too many.
    fn number(&mut self, own: &str) -> Option<u32> {
        if let Some(&n) = self.numbers.get(own) {
            return Some(n);
        }
        if self.ends.len() >= MAX_LABEL_SETS {
            return None;
        }
        let n = self.ends.len() as u32;
        self.text.push_str(own);
        // Bounded with the rest of the text below 4 GiB by `prepare`'s check.
        self.ends.push(self.text.len() as u32);
        self.numbers.insert(own.into(), n);
        Some(n)
    }

    fn finish(self) -> LabelSets {
        LabelSets {
            text: self.text.into_boxed_str(),
            ends: self.ends.into_boxed_slice(),
        }
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
    let mut stored = base.values.split_terminator('\n');
    for &i in &sample_of {
        let v = stored.next().and_then(parse_value).ok_or_else(bad_text)?;
        *base_values.get_mut(i as usize).ok_or_else(bad_text)? = v;
    }
    if stored.next().is_some() {
        return Err(bad_text());
    }
    let values = push.apply(&base_values).map_err(|e| e.to_string())?;

    let mut out = String::with_capacity(base.values.len() + base.values.len() / 8);
    let mut starts = Vec::with_capacity(lines + 1);
    for &i in &sample_of {
        // Checked below with the whole text: it stays under 4 GiB.
        starts.push(out.len() as u32);
        write_value(&mut out, values[i as usize]);
        out.push('\n');
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

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_shared::Histogram;

    fn labels() -> NodeLabels {
        let enrollment = [("node_type".to_string(), "gpu".to_string())];
        NodeLabels::new(
            "instance",
            "node",
            "n1",
            enrollment.iter().map(|(k, v)| (k, v)),
        )
    }

    fn gauge(name: &str, series: Vec<Vec<(&str, &str)>>) -> Family {
        Family {
            name: name.into(),
            help: "h".into(),
            kind: MetricType::Gauge,
            series: series
                .into_iter()
                .map(|ls| Series {
                    labels: ls.into_iter().map(|(n, v)| Label::new(n, v)).collect(),
                    value: Value::Scalar(1.0),
                })
                .collect(),
        }
    }

    fn err(fams: Vec<Family>, limits: &Limits) -> Rejection {
        prepare(fams, &labels(), limits).unwrap_err()
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
        assert!(prepare(vec![gauge("lat_total", vec![vec![]]), lat], &labels(), &l).is_ok());
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
