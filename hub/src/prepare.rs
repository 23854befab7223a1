//! A validated push turned into what the store keeps: every family pre-rendered once into
//! exposition lines, so `/metrics` only copies bytes. A line is kept in two parts: its
//! *skeleton* (name, the series' own labels, `le`/`quantile`), which nodes of one kind have in
//! common and the store shares between them, and its value, which is the node's own. The
//! node's labels (instance, node, enrollment labels; ~50 bytes) are kept once per snapshot
//! instead of in every line: a marker byte in the skeleton says where they go, and
//! [`crate::exposition::splice_lines`] puts them in at render time. A values push
//! ([`revalue`]) rewrites only the values.

use std::ops::Range;

use fleetgate_shared::text::{parse_value, write_escaped_label_value, write_value};
use fleetgate_shared::{Family, Label, MetricType, Series, Value, ValuesPush};

use crate::config::Limits;
use crate::labels::NodeLabels;
use crate::validate::{self, Rejection};

/// Where the node labels go in a skeleton line. 0xFF never occurs in UTF-8, so it cannot
/// collide with a name or a label value.
pub const SPLICE: u8 = 0xFF;

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
        families: Vec::with_capacity(families.len()),
        series,
        samples: 0,
        layout: None,
    };
    // Label values and `le`/`quantile` bounds are escaped and formatted here first: the
    // shared writing primitives write into a `String`, which the skeleton (with its 0xFF
    // marker) is not.
    let mut scratch = String::new();
    for (first_sample, family) in families {
        let (text, lines, values) = (out.text.len(), out.samples, out.values.len());
        for s in &family.series {
            write_series_unlabelled(&mut out, &mut scratch, &family.name, s, &extra);
        }
        if u32::try_from(out.text.len() + out.values.len()).is_err() {
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
    Ok(out)
}

/// Appends every sample line of one series without the node labels (`extra`; payload labels
/// of those names are dropped). Mirrors [`fleetgate_shared::text::write_series`]: with the
/// labels spliced in ([`crate::exposition::splice_lines`]) the bytes are the same, which a
/// property test checks.
fn write_series_unlabelled(
    out: &mut Prepared,
    scratch: &mut String,
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
/// `{`, which the splice supplies).
#[allow(clippy::too_many_arguments)]
fn write_line_unlabelled(
    out: &mut Prepared,
    scratch: &mut String,
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
    let mut own = false;
    for l in labels {
        if extra.iter().any(|(n, _)| *n == l.name) {
            continue;
        }
        text.push(if own { b',' } else { b'{' });
        own = true;
        text.extend_from_slice(l.name.as_bytes());
        text.extend_from_slice(b"=\"");
        scratch.clear();
        write_escaped_label_value(scratch, &l.value);
        text.extend_from_slice(scratch.as_bytes());
        text.push(b'"');
    }
    text.push(SPLICE);
    if let Some((n, v)) = special {
        if own {
            text.push(b',');
        }
        text.extend_from_slice(n.as_bytes());
        text.extend_from_slice(b"=\"");
        scratch.clear();
        write_value(scratch, v);
        text.extend_from_slice(scratch.as_bytes());
        text.push(b'"');
    }
    if own || special.is_some() {
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
