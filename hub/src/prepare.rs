//! A validated push turned into what the store keeps: every family pre-rendered once into
//! exposition lines, so `/metrics` only copies bytes. The node's labels (instance, node,
//! enrollment labels; ~50 bytes) are kept once per snapshot instead of in every line: each line
//! records where they go, and [`crate::exposition::splice_lines`] puts them in at render time.
//! A values push ([`revalue`]) rewrites only the values of the stored lines.

use std::ops::Range;

use fleetgate_shared::text::{parse_value, write_escaped_label_value, write_value};
use fleetgate_shared::{Family, Label, MetricType, Series, Value, ValuesPush};

use crate::config::Limits;
use crate::labels::NodeLabels;
use crate::validate::{self, Rejection};

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
    /// Its lines within [`Prepared::text`].
    pub range: Range<usize>,
    /// Its lines' splice points within [`Prepared::splices`].
    pub lines: Range<usize>,
    /// Index of its first sample in layout order (the order of the push, see
    /// [`fleetgate_shared::sample_values`]), which values pushes address.
    pub first_sample: u32,
}

/// A validated, pre-rendered push.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// All families' lines without the node labels, back to back, in the order of
    /// `families`.
    pub text: String,
    /// Per line, the offset in `text` where the node labels go (see [`crate::exposition::splice_lines`]).
    pub splices: Vec<u32>,
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
            // The text is under 4 GiB, so its line count fits.
            samples: prepared.splices.len() as u32,
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
        text: String::with_capacity(series * 48),
        splices: Vec::with_capacity(series),
        node_labels: labels.render(),
        families: Vec::with_capacity(families.len()),
        series,
        samples: 0,
        layout: None,
    };
    for (first_sample, family) in families {
        let start = out.text.len();
        let first_line = out.splices.len();
        for s in &family.series {
            out.samples += s.value.sample_count();
            write_series_unlabelled(&mut out, &family.name, s, &extra);
        }
        if u32::try_from(out.text.len()).is_err() {
            return Err(Rejection {
                reason: "too_many_series",
                message: format!("snapshot renders to more than {} bytes", u32::MAX),
                series,
            });
        }
        out.families.push(PreparedFamily {
            range: start..out.text.len(),
            lines: first_line..out.splices.len(),
            series: family.series.len(),
            name: family.name,
            help: family.help,
            kind: family.kind,
            // Below the line count, which the text length check bounds.
            first_sample: first_sample as u32,
        });
    }
    Ok(out)
}

/// Appends every sample line of one series without the node labels (`extra`; payload labels
/// of those names are dropped), recording each line's splice point. Mirrors
/// [`fleetgate_shared::text::write_series`]: with the labels spliced in
/// ([`crate::exposition::splice_lines`]) the bytes are the same, which a property test checks.
fn write_series_unlabelled(
    out: &mut Prepared,
    name: &str,
    series: &Series,
    extra: &[(&str, &str)],
) {
    let labels = &series.labels;
    let mut line = |suffix: &str, special: Option<(&str, f64)>, value: f64| {
        write_line_unlabelled(out, name, suffix, labels, extra, special, value)
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

/// One line without the node labels. The splice point is where they belong: after the
/// series' own labels, before `le`/`quantile`. The byte found there tells [`splice_lines`] the
/// punctuation: `,` or `}` (own labels before it), ` ` (no labels at all), or the first byte
/// of `le`/`quantile` (written here without its `{`, which the splice supplies).
fn write_line_unlabelled(
    out: &mut Prepared,
    name: &str,
    suffix: &str,
    labels: &[Label],
    extra: &[(&str, &str)],
    special: Option<(&str, f64)>,
    value: f64,
) {
    let text = &mut out.text;
    text.push_str(name);
    text.push_str(suffix);
    let mut own = false;
    for l in labels {
        if extra.iter().any(|(n, _)| *n == l.name) {
            continue;
        }
        text.push(if own { ',' } else { '{' });
        own = true;
        text.push_str(&l.name);
        text.push_str("=\"");
        write_escaped_label_value(text, &l.value);
        text.push('"');
    }
    // Checked by the caller once the whole push is rendered: the text stays under 4 GiB.
    out.splices.push(text.len() as u32);
    if let Some((n, v)) = special {
        if own {
            text.push(',');
        }
        text.push_str(n);
        text.push_str("=\"");
        write_value(text, v);
        text.push('"');
    }
    if own || special.is_some() {
        text.push('}');
    }
    text.push(' ');
    write_value(text, value);
    text.push('\n');
}

/// What a values push is applied to: the stored lines of the node's last accepted push.
#[derive(Debug, Clone, Copy)]
pub struct Base<'a> {
    /// Its exposition lines without the node labels.
    pub text: &'a str,
    /// Per line, where the node labels go.
    pub splices: &'a [u32],
    /// Its layout; `None` when it was not a native snapshot.
    pub layout: Option<&'a Layout>,
}

/// A stored snapshot's exposition lines with the values of a values push written in.
#[derive(Debug, Clone)]
pub struct Revalued {
    /// The new lines, in the stored text's order.
    pub text: String,
    /// Per line, where the node labels go, as [`Prepared::splices`].
    pub splices: Vec<u32>,
    /// Where each line starts in `text`, plus the end of the text: line `i` is
    /// `line_starts[i]..line_starts[i + 1]`.
    pub line_starts: Vec<usize>,
    /// Sample lines written.
    pub samples: usize,
}

/// Writes the values of `push` into a copy of `base`'s lines. The base values the deltas apply
/// to are read back from the stored text, which holds every value in a form that parses to the
/// same bits. `Err` says why the push does not fit `base` (the sender should push in full).
pub fn revalue(base: Base<'_>, push: &ValuesPush) -> Result<Revalued, String> {
    let Some(layout) = base.layout else {
        return Err("no base snapshot: the stored push was not a native snapshot".into());
    };
    if layout.hash != push.header.layout {
        return Err("layout differs from the stored snapshot".into());
    }
    let lines = base.splices.len();
    if push.samples != lines || layout.samples as usize != lines {
        return Err(format!(
            "layout differs: {} samples pushed, {lines} stored",
            push.samples
        ));
    }
    let text = base.text;
    let bad_text = || "stored text does not match its layout".to_string();
    // Each line is `<name and labels> <value>\n`; a value holds no space.
    let mut spans = Vec::with_capacity(lines);
    let mut start = 0;
    for _ in 0..lines {
        let line = text.get(start..).ok_or_else(bad_text)?;
        let end = start + line.find('\n').ok_or_else(bad_text)?;
        let value = start + text[start..end].rfind(' ').ok_or_else(bad_text)? + 1;
        spans.push((start, value, end));
        start = end + 1;
    }
    if start != text.len() {
        return Err(bad_text());
    }
    let sample_of = layout.sample_of_lines();
    let mut base_values = vec![0.0; lines];
    for (&(_, value, end), &i) in spans.iter().zip(&sample_of) {
        let v = parse_value(&text[value..end]).ok_or_else(bad_text)?;
        *base_values.get_mut(i as usize).ok_or_else(bad_text)? = v;
    }
    let values = push.apply(&base_values).map_err(|e| e.to_string())?;

    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut starts = Vec::with_capacity(lines + 1);
    let mut splices = Vec::with_capacity(lines);
    for ((&(start, value, _), &i), &splice) in spans.iter().zip(&sample_of).zip(base.splices) {
        let new_start = out.len();
        starts.push(new_start);
        // Checked below with the whole text: it stays under 4 GiB.
        splices.push(
            (splice as usize)
                .saturating_sub(start)
                .saturating_add(new_start) as u32,
        );
        out.push_str(&text[start..value]);
        write_value(&mut out, values[i as usize]);
        out.push('\n');
    }
    starts.push(out.len());
    if u32::try_from(out.len()).is_err() {
        return Err(format!("snapshot renders to more than {} bytes", u32::MAX));
    }
    Ok(Revalued {
        text: out,
        splices,
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
