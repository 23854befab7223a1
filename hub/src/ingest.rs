//! Turning one push into what the store keeps: validation against the limits (the first
//! offender is named) and pre-rendering of every family into exposition lines. The node's
//! labels (instance, node, enrollment labels; ~50 bytes) are kept once per snapshot instead of
//! in every line: each line records where they go, and [`splice_lines`] puts them in while
//! `/metrics` copies the bytes out.

use std::collections::HashSet;
use std::ops::Range;

use fleetgate_shared::names::{is_valid_label_name, is_valid_metric_name};
use fleetgate_shared::text::{
    describe_series, parse_value, write_escaped_label_value, write_value,
};
use fleetgate_shared::{Family, Label, MetricType, Series, Value, ValuesPush};

use crate::config::Limits;
use crate::store::NodeSnapshot;

/// Metric-name prefixes the hub writes itself; a node may not push into them.
pub const RESERVED_PREFIXES: [&str; 2] = ["fleetgate_node_", "fleetgate_hub_"];

/// The labels the hub puts on every series of a node: instance and node (both the node name)
/// then the enrollment labels, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabels(pub Vec<(String, String)>);

impl NodeLabels {
    /// Builds the label set from the configured label names, the node name and its labels.
    pub fn new<'a>(
        instance_label: &str,
        node_label: &str,
        node: &str,
        enrollment: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let mut pairs = vec![(instance_label.to_string(), node.to_string())];
        if node_label != instance_label {
            pairs.push((node_label.to_string(), node.to_string()));
        }
        for (k, v) in enrollment {
            if !pairs.iter().any(|(n, _)| n == k) {
                pairs.push((k.clone(), v.clone()));
            }
        }
        NodeLabels(pairs)
    }

    /// The pairs as the `extra` argument of [`fleetgate_shared::text::write_series`].
    pub fn as_extra(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// The labels, rendered once, that every line of a node's snapshot carries.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(n);
            out.push_str("=\"");
            write_escaped_label_value(&mut out, v);
            out.push('"');
        }
        out
    }
}

/// A push refused as a whole, with the metric reason and a message naming the first offender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// `reason` label of `fleetgate_hub_rejected_series_total`.
    pub reason: &'static str,
    /// What is wrong, naming the family or series.
    pub message: String,
    /// Series in the refused push.
    pub series: usize,
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
    /// Per line, the offset in `text` where the node labels go (see [`splice_lines`]).
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

/// Validates `families` against `limits` and renders them with `labels` injected (a payload
/// label of the same name is overwritten). Families are sorted by name.
pub fn prepare(
    families: Vec<Family>,
    labels: &NodeLabels,
    limits: &Limits,
) -> Result<Prepared, Rejection> {
    let series: usize = families.iter().map(|f| f.series.len()).sum();
    let reject = |reason, message: String| Rejection {
        reason,
        message,
        series,
    };
    if series > limits.max_series_per_node {
        return Err(reject(
            "too_many_series",
            format!(
                "snapshot has {series} series, more than the limit of {} per node",
                limits.max_series_per_node
            ),
        ));
    }
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
    for pair in families.windows(2) {
        if pair[0].1.name == pair[1].1.name {
            return Err(reject(
                "duplicate",
                format!("family {} appears twice", pair[0].1.name),
            ));
        }
    }
    let extra = labels.as_extra();
    let mut out = Prepared {
        text: String::with_capacity(series * 48),
        splices: Vec::with_capacity(series),
        node_labels: labels.render(),
        families: Vec::with_capacity(families.len()),
        series,
        samples: 0,
        layout: None,
    };
    let mut seen: HashSet<Vec<&Label>> = HashSet::new();
    for (_, family) in &families {
        check_family(family, &extra, limits, &mut seen)
            .map_err(|(reason, message)| reject(reason, message))?;
    }
    for (first_sample, family) in families {
        let start = out.text.len();
        let first_line = out.splices.len();
        for s in &family.series {
            out.samples += s.value.sample_count();
            write_series_unlabelled(&mut out, &family.name, s, &extra);
        }
        if u32::try_from(out.text.len()).is_err() {
            return Err(reject(
                "too_many_series",
                format!("snapshot renders to more than {} bytes", u32::MAX),
            ));
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
/// [`fleetgate_shared::text::write_series`]: with the labels spliced in, the bytes are the same.
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

/// Appends the lines `text[start..]` whose splice points are `splices` (absolute offsets in
/// `text`) with `node_labels` put in at each one: the exposition lines as
/// [`fleetgate_shared::text::write_series`] writes them with the node labels as `extra`.
pub fn splice_lines(
    text: &str,
    mut start: usize,
    splices: &[u32],
    node_labels: &str,
    out: &mut Vec<u8>,
) {
    let text = text.as_bytes();
    let labels = node_labels.as_bytes();
    for &at in splices {
        let at = at as usize;
        let (Some(head), Some(tail)) = (text.get(start..at), text.get(at..)) else {
            return;
        };
        let end = tail
            .iter()
            .position(|&b| b == b'\n')
            .map_or(tail.len(), |i| i + 1);
        out.extend_from_slice(head);
        match tail.first() {
            Some(b',' | b'}') => {
                out.push(b',');
                out.extend_from_slice(labels);
            }
            Some(b' ') => {
                out.push(b'{');
                out.extend_from_slice(labels);
                out.push(b'}');
            }
            _ => {
                out.push(b'{');
                out.extend_from_slice(labels);
                out.push(b',');
            }
        }
        out.extend_from_slice(&tail[..end]);
        start = at + end;
    }
}

/// A stored snapshot's exposition lines with the values of a values push written in.
#[derive(Debug, Clone)]
pub struct Revalued {
    /// The new lines, in the stored text's order.
    pub text: String,
    /// Per line, where the node labels go, as [`Prepared::splices`].
    pub splices: Vec<u32>,
    /// Per exposed family of the base ([`NodeSnapshot::families`]), its lines in `text`.
    pub ranges: Vec<Range<usize>>,
    /// Sample lines written.
    pub samples: usize,
}

/// Writes the values of `push` into a copy of `base`'s lines. The base values the deltas apply
/// to are read back from the stored text, which holds every value in a form that parses to the
/// same bits. `Err` says why the push does not fit `base` (the sender should push in full).
pub fn revalue(base: &NodeSnapshot, push: &ValuesPush) -> Result<Revalued, String> {
    let Some(layout) = &base.layout else {
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
    let text = &*base.text;
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
    for ((&(start, value, _), &i), &splice) in spans.iter().zip(&sample_of).zip(&*base.splices) {
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
    let ranges = base
        .families
        .iter()
        .map(|f| {
            let at = |line: usize| starts.get(line).copied().unwrap_or(out.len());
            at(f.lines.start)..at(f.lines.end)
        })
        .collect();
    Ok(Revalued {
        text: out,
        splices,
        ranges,
        samples: lines,
    })
}

fn check_family<'a>(
    family: &'a Family,
    extra: &[(&str, &str)],
    limits: &Limits,
    seen: &mut HashSet<Vec<&'a Label>>,
) -> Result<(), (&'static str, String)> {
    let name = &family.name;
    if !is_valid_metric_name(name) {
        return Err(("invalid_name", format!("invalid metric name {name:?}")));
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err((
            "reserved_name",
            format!("metric name {name} is reserved for the hub"),
        ));
    }
    let point_label = match family.kind {
        MetricType::Histogram => Some("le"),
        MetricType::Summary => Some("quantile"),
        _ => None,
    };
    seen.clear();
    for s in &family.series {
        let describe = || describe_series(name, &s.labels);
        let value_fits = matches!(
            (&s.value, family.kind),
            (
                Value::Scalar(_),
                MetricType::Counter | MetricType::Gauge | MetricType::Untyped
            ) | (Value::Histogram(_), MetricType::Histogram)
                | (Value::Summary(_), MetricType::Summary)
        );
        if !value_fits {
            return Err((
                "value_type",
                format!(
                    "series {} does not match the family type {}",
                    describe(),
                    family.kind.as_str()
                ),
            ));
        }
        if s.labels.len() > limits.max_labels_per_series {
            return Err((
                "too_many_labels",
                format!(
                    "series {} has {} labels, more than the limit of {}",
                    describe(),
                    s.labels.len(),
                    limits.max_labels_per_series
                ),
            ));
        }
        let mut key: Vec<&Label> = Vec::with_capacity(s.labels.len());
        for l in &s.labels {
            if !is_valid_label_name(&l.name)
                || l.name.starts_with("__")
                || Some(l.name.as_str()) == point_label
            {
                return Err((
                    "invalid_name",
                    format!("invalid label name {:?} in series {}", l.name, describe()),
                ));
            }
            if l.value.len() > limits.max_label_value_len {
                return Err((
                    "label_value_too_long",
                    format!(
                        "value of label {} in series {name} is {} bytes, longer than the limit of {}",
                        l.name,
                        l.value.len(),
                        limits.max_label_value_len
                    ),
                ));
            }
            if key.iter().any(|k| k.name == l.name) {
                return Err((
                    "duplicate",
                    format!("label {} appears twice in series {}", l.name, describe()),
                ));
            }
            // Labels the hub overwrites do not tell series apart.
            if !extra.iter().any(|(n, _)| *n == l.name) {
                key.push(l);
            }
        }
        if family.series.len() > 1 {
            key.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            if !seen.insert(key) {
                return Err(("duplicate", format!("duplicate series {}", describe())));
            }
        }
    }
    Ok(())
}

/// The two body formats `/push` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/vnd.fleetgate.snapshot`: the shared crate's encoding.
    Snapshot,
    /// `text/plain`: Prometheus text format 0.0.4.
    Text,
    /// `application/vnd.fleetgate.values`: new values for the stored snapshot's layout
    /// ([`decode_values_body`]).
    Values,
}

/// A push body turned into families.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The families as sent.
    pub families: Vec<Family>,
    /// The sender's sequence number (snapshots only).
    pub seq: Option<u64>,
    /// The sender's push interval (snapshots only; zero means not given).
    pub interval: Option<std::time::Duration>,
    /// [`fleetgate_shared::layout_hash`] of the families (snapshots only).
    pub layout: Option<u64>,
}

/// Decompresses (capped at `max_decompressed` bytes) and decodes a push body.
pub fn decode_body(
    format: BodyFormat,
    encoding: fleetgate_shared::ContentEncoding,
    body: &[u8],
    max_decompressed: usize,
) -> Result<Decoded, fleetgate_shared::WireError> {
    use fleetgate_shared::ContentEncoding;
    let plain;
    let body = if encoding == ContentEncoding::Identity && format == BodyFormat::Snapshot {
        body
    } else {
        plain = fleetgate_shared::decompress_capped(encoding, body, max_decompressed)?;
        plain.as_slice()
    };
    match format {
        BodyFormat::Snapshot => {
            let s = fleetgate_shared::decode(body, max_decompressed)?;
            Ok(Decoded {
                layout: Some(fleetgate_shared::layout_hash(&s.families)),
                families: s.families,
                seq: Some(s.seq),
                interval: (s.interval_ms > 0)
                    .then(|| std::time::Duration::from_millis(s.interval_ms)),
            })
        }
        BodyFormat::Text => Ok(Decoded {
            families: fleetgate_shared::text::parse_bytes(body)?,
            seq: None,
            interval: None,
            layout: None,
        }),
        BodyFormat::Values => Err(fleetgate_shared::WireError::Payload(
            "a values push carries no families".into(),
        )),
    }
}

/// Decompresses (capped at `max_decompressed` bytes) and decodes a values push body.
pub fn decode_values_body(
    encoding: fleetgate_shared::ContentEncoding,
    body: &[u8],
    max_decompressed: usize,
) -> Result<ValuesPush, fleetgate_shared::WireError> {
    if encoding == fleetgate_shared::ContentEncoding::Identity {
        return fleetgate_shared::decode_values(body, max_decompressed);
    }
    let plain = fleetgate_shared::decompress_capped(encoding, body, max_decompressed)?;
    fleetgate_shared::decode_values(&plain, max_decompressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_shared::{Histogram, Series};

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

    /// Family `i` of `p` as `/metrics` shows it.
    fn spliced(p: &Prepared, i: usize) -> String {
        let f = &p.families[i];
        let mut out = Vec::new();
        splice_lines(
            &p.text,
            f.range.start,
            &p.splices[f.lines.clone()],
            &p.node_labels,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    fn err(fams: Vec<Family>, limits: &Limits) -> Rejection {
        prepare(fams, &labels(), limits).unwrap_err()
    }

    #[test]
    fn renders_sorted_with_node_labels_overwriting_the_payload() {
        let fams = vec![
            gauge("z", vec![vec![("instance", "forged"), ("cpu", "0")]]),
            gauge("a", vec![vec![]]),
        ];
        let p = prepare(fams, &labels(), &Limits::default()).unwrap();
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
            own in proptest::collection::vec(("[a-z]{1,3}", "\\PC{0,6}"), 0..4),
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
            fleetgate_shared::text::write_series(
                &mut expected,
                "m",
                &family.series[0],
                &node_labels.as_extra(),
            );
            let p = prepare(vec![family], &node_labels, &Limits::default()).unwrap();
            proptest::prop_assert_eq!(spliced(&p, 0), expected);
        }
    }
}
