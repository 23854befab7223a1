//! The Prometheus text exposition format 0.0.4: a lenient parser into [`Family`] values and the
//! writing primitives (escaping, number formatting, series lines) every renderer shares.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::{
    Bucket, Family, Histogram, Label, MetricType, Quantile, Series, Summary, Value, WireError,
};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends a label value or HELP-safe text with `\\`, `\"` and `\n` escaped.
pub fn write_escaped_label_value(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends HELP text with `\\` and `\n` escaped.
pub fn write_escaped_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value the way Prometheus parses it: integers without a fraction,
/// `+Inf`/`-Inf`/`NaN` spelled out, other floats in shortest round-trip form.
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 && v.is_sign_negative() {
        out.push_str("-0");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// Appends the `# HELP` (when non-empty) and `# TYPE` lines of a family.
pub fn write_help_type(out: &mut String, name: &str, help: &str, kind: MetricType) {
    if !help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        write_escaped_help(out, help);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

fn write_line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[Label],
    extra: &[(&str, &str)],
    special: Option<(&str, f64)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut first = true;
    let mut sep = |out: &mut String| {
        out.push(if first { '{' } else { ',' });
        first = false;
    };
    for l in labels {
        if extra.iter().any(|(n, _)| *n == l.name) {
            continue;
        }
        sep(out);
        out.push_str(&l.name);
        out.push_str("=\"");
        write_escaped_label_value(out, &l.value);
        out.push('"');
    }
    for (n, v) in extra {
        sep(out);
        out.push_str(n);
        out.push_str("=\"");
        write_escaped_label_value(out, v);
        out.push('"');
    }
    if let Some((n, v)) = special {
        sep(out);
        out.push_str(n);
        out.push_str("=\"");
        write_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}

/// Appends every sample line of one series. Labels named in `extra` are dropped from the
/// series' own labels and written with the value given in `extra` instead (after the others).
pub fn write_series(out: &mut String, name: &str, series: &Series, extra: &[(&str, &str)]) {
    let labels = &series.labels;
    match &series.value {
        Value::Scalar(v) => write_line(out, name, "", labels, extra, None, *v),
        Value::Histogram(h) => {
            for b in &h.buckets {
                write_line(
                    out,
                    name,
                    "_bucket",
                    labels,
                    extra,
                    Some(("le", b.le)),
                    b.count,
                );
            }
            write_line(
                out,
                name,
                "_bucket",
                labels,
                extra,
                Some(("le", f64::INFINITY)),
                h.count,
            );
            write_line(out, name, "_sum", labels, extra, None, h.sum);
            write_line(out, name, "_count", labels, extra, None, h.count);
        }
        Value::Summary(s) => {
            for q in &s.quantiles {
                write_line(
                    out,
                    name,
                    "",
                    labels,
                    extra,
                    Some(("quantile", q.quantile)),
                    q.value,
                );
            }
            write_line(out, name, "_sum", labels, extra, None, s.sum);
            write_line(out, name, "_count", labels, extra, None, s.count);
        }
    }
}

/// Renders families as a complete exposition, in the order given.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        write_help_type(&mut out, &f.name, &f.help, f.kind);
        for s in &f.series {
            write_series(&mut out, &f.name, s, &[]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Parses a text exposition (format 0.0.4) into families, in order of first appearance.
///
/// Lenient where real exporters are: samples without `# TYPE` become untyped families, sample
/// timestamps are accepted and dropped, a family's lines need not be contiguous. Strict where
/// the data would be wrong: bad names, bad escapes, bad numbers, a histogram bucket without `le`.
pub fn parse(text: &str) -> Result<Vec<Family>, WireError> {
    let mut p = Parser::default();
    for (i, line) in text.split('\n').enumerate() {
        p.line(line)
            .map_err(|msg| WireError::Text { line: i + 1, msg })?;
    }
    Ok(p.finish())
}

/// Parses a body that should be UTF-8 text.
pub fn parse_bytes(body: &[u8]) -> Result<Vec<Family>, WireError> {
    parse(std::str::from_utf8(body).map_err(|_| WireError::NotUtf8)?)
}

#[derive(Default)]
struct Parser {
    families: Vec<Builder>,
    by_name: HashMap<String, usize>,
}

struct Builder {
    name: String,
    help: String,
    kind: MetricType,
    /// Scalar series in order, for counter/gauge/untyped.
    scalars: Vec<Series>,
    /// Histogram/summary series under construction, keyed by their labels (minus le/quantile).
    complex: Vec<(Vec<Label>, Accum)>,
    complex_index: HashMap<Vec<Label>, usize>,
}

#[derive(Default)]
struct Accum {
    points: Vec<(f64, f64)>,
    inf: Option<f64>,
    sum: Option<f64>,
    count: Option<f64>,
}

enum Part {
    Scalar,
    Point,
    Sum,
    Count,
}

impl Parser {
    fn family(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        self.families.push(Builder {
            name: name.to_string(),
            help: String::new(),
            kind: MetricType::Untyped,
            scalars: Vec::new(),
            complex: Vec::new(),
            complex_index: HashMap::new(),
        });
        let i = self.families.len() - 1;
        self.by_name.insert(name.to_string(), i);
        i
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            return Ok(());
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            return self.comment(comment.trim_start());
        }
        self.sample(trimmed)
    }

    fn comment(&mut self, c: &str) -> Result<(), String> {
        let (keyword, rest) = split_word(c);
        match keyword {
            "HELP" => {
                let (name, help) = split_word(rest);
                check_metric_name(name)?;
                self.check_not_a_part(name)?;
                let i = self.family(name);
                self.families[i].help = unescape_help(help);
            }
            "TYPE" => {
                let (name, rest) = split_word(rest);
                check_metric_name(name)?;
                let word = rest.trim();
                let kind = MetricType::from_word(word)
                    .ok_or_else(|| format!("unknown metric type {word:?} for {name}"))?;
                self.check_not_a_part(name)?;
                if let Some(other) = part_names(name, kind)
                    .into_iter()
                    .find(|n| self.by_name.contains_key(n))
                {
                    return Err(format!(
                        "TYPE {name} {word} after a family {other}: the {word}'s {other} series would collide with it"
                    ));
                }
                let i = self.family(name);
                let f = &mut self.families[i];
                if !f.scalars.is_empty() || !f.complex.is_empty() {
                    return Err(format!("TYPE for {name} after its first sample"));
                }
                f.kind = kind;
            }
            _ => {}
        }
        Ok(())
    }

    /// A name that is a series of a histogram or summary declared before (`x_count` of
    /// histogram `x`) cannot start a family of its own: both would write its lines.
    fn check_not_a_part(&self, name: &str) -> Result<(), String> {
        if self.by_name.contains_key(name) {
            return Ok(());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            let Some(&i) = self.by_name.get(base) else {
                continue;
            };
            let kind = self.families[i].kind;
            if part_names(base, kind).iter().any(|n| n == name) {
                return Err(format!(
                    "{name} is a series of the {} {base}, not a family of its own",
                    kind.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Which family and which part of it a sample name belongs to.
    fn resolve(&mut self, name: &str) -> (usize, Part) {
        if let Some(&i) = self.by_name.get(name) {
            return match self.families[i].kind {
                MetricType::Summary => (i, Part::Point),
                // A histogram's own name carries no samples; treat it as a separate family.
                MetricType::Histogram => (self.family_untyped_twin(name), Part::Scalar),
                _ => (i, Part::Scalar),
            };
        }
        for (suffix, part) in [("_bucket", 0u8), ("_sum", 1), ("_count", 2)] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(&i) = self.by_name.get(base) {
                    let kind = self.families[i].kind;
                    let ok = match part {
                        0 => kind == MetricType::Histogram,
                        _ => matches!(kind, MetricType::Histogram | MetricType::Summary),
                    };
                    if ok {
                        let part = match part {
                            0 => Part::Point,
                            1 => Part::Sum,
                            _ => Part::Count,
                        };
                        return (i, part);
                    }
                }
            }
        }
        (self.family(name), Part::Scalar)
    }

    fn family_untyped_twin(&mut self, name: &str) -> usize {
        // Extremely rare malformed input; keep the data rather than fail the whole body.
        let twin = format!("{name}_untyped");
        self.family(&twin)
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let name = &line[..name_end];
        check_metric_name(name)?;
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('{') {
            rest = parse_labels(after, &mut labels)?;
            for (i, l) in labels.iter().enumerate() {
                if labels[..i].iter().any(|m| m.name == l.name) {
                    return Err(format!("sample {name} has the label {} twice", l.name));
                }
            }
        }
        let mut words = rest.split_ascii_whitespace();
        let value_word = words
            .next()
            .ok_or_else(|| format!("sample {name} has no value"))?;
        let value = parse_float(value_word)
            .ok_or_else(|| format!("sample {name} has an invalid value {value_word:?}"))?;
        if let Some(ts) = words.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("sample {name} has an invalid timestamp {ts:?}"))?;
        }
        if let Some(extra) = words.next() {
            return Err(format!("unexpected text {extra:?} after sample {name}"));
        }
        let (i, part) = self.resolve(name);
        let fam = &mut self.families[i];
        match part {
            Part::Scalar => fam.scalars.push(Series {
                labels,
                value: Value::Scalar(value),
            }),
            Part::Point => {
                let key = if fam.kind == MetricType::Histogram {
                    "le"
                } else {
                    "quantile"
                };
                let pos = labels
                    .iter()
                    .position(|l| l.name == key)
                    .ok_or_else(|| format!("sample {name} lacks the {key} label"))?;
                let bound_text = labels.remove(pos).value;
                let bound = parse_float(&bound_text)
                    .ok_or_else(|| format!("sample {name} has an invalid {key} {bound_text:?}"))?;
                let acc = fam.accum(labels);
                if key == "le" && bound == f64::INFINITY {
                    acc.inf = Some(value);
                } else {
                    acc.points.push((bound, value));
                }
            }
            Part::Sum | Part::Count => {
                let (key, carriers) = if fam.kind == MetricType::Histogram {
                    ("le", "_bucket samples")
                } else {
                    ("quantile", "its quantile samples")
                };
                if labels.iter().any(|l| l.name == key) {
                    return Err(format!(
                        "sample {name} has the {key} label, which only {carriers} of {} carry",
                        fam.name
                    ));
                }
                let acc = fam.accum(labels);
                if matches!(part, Part::Sum) {
                    acc.sum = Some(value);
                } else {
                    acc.count = Some(value);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Vec<Family> {
        self.families
            .into_iter()
            .filter(|b| {
                !b.scalars.is_empty()
                    || !b.complex.is_empty()
                    || b.kind != MetricType::Untyped
                    || !b.help.is_empty()
            })
            .map(Builder::finish)
            .filter(|f| !f.series.is_empty())
            .collect()
    }
}

impl Builder {
    fn accum(&mut self, labels: Vec<Label>) -> &mut Accum {
        let i = match self.complex_index.get(&labels) {
            Some(&i) => i,
            None => {
                self.complex.push((labels.clone(), Accum::default()));
                self.complex_index.insert(labels, self.complex.len() - 1);
                self.complex.len() - 1
            }
        };
        &mut self.complex[i].1
    }

    fn finish(self) -> Family {
        let kind = self.kind;
        let mut series = self.scalars;
        for (labels, mut acc) in self.complex {
            acc.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let count = acc.count.or(acc.inf).unwrap_or(0.0);
            let sum = acc.sum.unwrap_or(0.0);
            let value = if kind == MetricType::Histogram {
                Value::Histogram(Histogram {
                    buckets: acc
                        .points
                        .into_iter()
                        .map(|(le, count)| Bucket { le, count })
                        .collect(),
                    sum,
                    count,
                })
            } else {
                Value::Summary(Summary {
                    quantiles: acc
                        .points
                        .into_iter()
                        .map(|(quantile, value)| Quantile { quantile, value })
                        .collect(),
                    sum,
                    count,
                })
            };
            series.push(Series { labels, value });
        }
        Family {
            name: self.name,
            help: self.help,
            kind,
            series,
        }
    }
}

/// The suffixes of the sample names a family of `kind` writes besides its own name: a
/// histogram's `_bucket`, `_sum` and `_count`, a summary's `_sum` and `_count`.
pub fn part_suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Histogram => &["_bucket", "_sum", "_count"],
        MetricType::Summary => &["_sum", "_count"],
        _ => &[],
    }
}

/// The sample names a family of `kind` called `name` writes besides its own name
/// ([`part_suffixes`] appended to it).
pub fn part_names(name: &str, kind: MetricType) -> Vec<String> {
    part_suffixes(kind)
        .iter()
        .map(|s| format!("{name}{s}"))
        .collect()
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn check_metric_name(name: &str) -> Result<(), String> {
    if crate::names::is_valid_metric_name(name) {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

/// Parses a sample value as [`write_value`] writes it (and as Prometheus spells them):
/// `write_value` then `parse_value` gives back the same bits for every value but NaN payloads.
pub fn parse_value(s: &str) -> Option<f64> {
    parse_float(s)
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `name="value",...}` (the opening brace already consumed); returns the rest.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<Label>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let name = s[..eq].trim_end();
        if !crate::names::is_valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        s = s[eq + 1..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("value of label {name} is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, c)) => {
                        return Err(format!("invalid escape \\{c} in value of label {name}"))
                    }
                    None => return Err(format!("unterminated value of label {name}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push(Label {
            name: name.to_string(),
            value,
        });
        s = s[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}"));
        }
    }
}

/// A one-line description of a family for error messages: `name{a="1"}`.
pub fn describe_series(name: &str, labels: &[Label]) -> String {
    let mut out = String::from(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}=\"", l.name);
            write_escaped_label_value(&mut out, &l.value);
            out.push('"');
        }
        out.push('}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE_EXPORTER: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 12345.67
node_cpu_seconds_total{cpu="0",mode="user"} 89.1
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.5
# HELP http_request_duration_seconds A histogram.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/",le="0.1"} 3
http_request_duration_seconds_bucket{handler="/",le="+Inf"} 7
http_request_duration_seconds_bucket{handler="/",le="0.5"} 5
http_request_duration_seconds_sum{handler="/"} 2.75
http_request_duration_seconds_count{handler="/"} 7
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} 0.0001
go_gc_duration_seconds{quantile="1"} 0.002
go_gc_duration_seconds_sum 0.5
go_gc_duration_seconds_count 300
nv_inference_count{model="simple",version="1"} 12 1700000000000
"#;

    #[test]
    fn parses_every_type() {
        let fams = parse(NODE_EXPORTER).unwrap();
        let names: Vec<_> = fams.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("node_cpu_seconds_total", MetricType::Counter),
                ("node_load1", MetricType::Gauge),
                ("http_request_duration_seconds", MetricType::Histogram),
                ("go_gc_duration_seconds", MetricType::Summary),
                ("nv_inference_count", MetricType::Untyped),
            ]
        );
        let Value::Histogram(h) = &fams[2].series[0].value else {
            panic!("not a histogram")
        };
        assert_eq!(
            h.buckets,
            vec![
                Bucket {
                    le: 0.1,
                    count: 3.0
                },
                Bucket {
                    le: 0.5,
                    count: 5.0
                }
            ]
        );
        assert_eq!((h.sum, h.count), (2.75, 7.0));
        assert_eq!(fams[2].series[0].labels, vec![Label::new("handler", "/")]);
        let Value::Summary(s) = &fams[3].series[0].value else {
            panic!("not a summary")
        };
        assert_eq!(s.quantiles.len(), 2);
        assert_eq!(s.count, 300.0);
    }

    #[test]
    fn render_then_parse_is_identity() {
        let fams = parse(NODE_EXPORTER).unwrap();
        let text = render(&fams);
        assert_eq!(parse(&text).unwrap(), fams);
        assert!(
            text.contains("http_request_duration_seconds_bucket{handler=\"/\",le=\"+Inf\"} 7\n")
        );
        assert!(text.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.67\n"));
    }

    #[test]
    fn escapes_round_trip() {
        let text =
            "# HELP x a \\\\ help\\nsecond\n# TYPE x gauge\nx{a=\"q\\\"uote\\\\back\\nnl ü\"} 1\n";
        let fams = parse(text).unwrap();
        assert_eq!(fams[0].help, "a \\ help\nsecond");
        assert_eq!(fams[0].series[0].labels[0].value, "q\"uote\\back\nnl ü");
        assert_eq!(render(&fams), text);
    }

    #[test]
    fn extra_labels_override_payload() {
        let s = Series {
            labels: vec![Label::new("instance", "forged"), Label::new("cpu", "1")],
            value: Value::Scalar(2.0),
        };
        let mut out = String::new();
        write_series(&mut out, "m", &s, &[("instance", "n1"), ("node", "n1")]);
        assert_eq!(out, "m{cpu=\"1\",instance=\"n1\",node=\"n1\"} 2\n");
    }

    #[test]
    fn a_family_clashing_with_a_histograms_series_is_refused() {
        // Found by fuzzing: `lat_count` as a family of its own, then `lat` typed a histogram,
        // whose `lat_count` line went to the first family.
        let err = parse("lat_count 3\n# TYPE lat histogram\nlat_count 3\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("line 2") && text.contains("lat_count") && text.contains("collide"),
            "{text}"
        );
        let err = parse("# TYPE s summary\ns_sum 1\n# HELP s_count other\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("s_count is a series of the summary s"),
            "{err}"
        );
        // Not every suffix is a part: a summary has no buckets, an untyped family no parts.
        let fams = parse("# TYPE s summary\ns_count 1\ns_bucket 2\nu 1\nu_count 2\n").unwrap();
        let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["s", "s_bucket", "u", "u_count"]);
    }

    #[test]
    fn a_label_given_twice_is_refused() {
        // Found by fuzzing: the second `quantile` stayed a label of the summary's series.
        let err =
            parse("# TYPE gc summary\ngc{quantile=\"0\",quantile=\"0\",p=\"a\"} 1\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("sample gc has the label quantile twice"),
            "{err}"
        );
        assert!(parse("m{a=\"1\",b=\"1\",a=\"2\"} 1\n").is_err());
        // Found next: `le` on a histogram's _sum would be written back beside the bucket's.
        let err = parse("# TYPE lat histogram\nlat_sum{le=\"+\"} 3\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "sample lat_sum has the le label, which only _bucket samples of lat carry"
            ),
            "{err}"
        );
        assert!(parse("# TYPE s summary\ns_count{quantile=\"1\"} 3\n").is_err());
    }

    #[test]
    fn errors_name_the_line_and_problem() {
        let err = parse("ok 1\nbad-name 2\n").unwrap_err();
        assert_eq!(
            err,
            WireError::Text {
                line: 2,
                msg: "invalid metric name \"bad-name\"".into()
            }
        );
        let err = parse("x{a=\"1\" 2\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("after label a"),
            "{err}"
        );
        assert!(parse("x abc\n")
            .unwrap_err()
            .to_string()
            .contains("invalid value"));
        assert!(parse("# TYPE h histogram\nh_bucket 1\n")
            .unwrap_err()
            .to_string()
            .contains("lacks the le"));
        assert!(parse("x{a=\"\\q\"} 1\n")
            .unwrap_err()
            .to_string()
            .contains("invalid escape"));
        assert!(parse("# TYPE x foo\n")
            .unwrap_err()
            .to_string()
            .contains("unknown metric type"));
    }

    #[test]
    fn values_format_like_prometheus_reads_them() {
        for (v, s) in [
            (1.0, "1"),
            (-3.0, "-3"),
            (0.25, "0.25"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1e20, "1e20"),
        ] {
            let mut out = String::new();
            write_value(&mut out, v);
            assert_eq!(out, s);
        }
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        /// The hub recovers the base of a values push from its rendered text: that must give
        /// back the very bits that were rendered.
        #[test]
        fn prop_written_values_parse_to_the_same_bits(
            v in prop_oneof![any::<f64>(), (-1i64 << 53..1i64 << 53).prop_map(|i| i as f64)]
        ) {
            let mut out = String::new();
            write_value(&mut out, v);
            let back = parse_value(&out).unwrap();
            if v.is_nan() {
                prop_assert!(back.is_nan());
            } else {
                prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", out);
            }
        }

        #[test]
        fn prop_label_values_round_trip(v in any::<String>(), x in -1e12f64..1e12) {
            let fams = vec![Family {
                name: "m".into(),
                help: v.clone(),
                kind: MetricType::Gauge,
                series: vec![Series { labels: vec![Label::new("l", v.clone())], value: Value::Scalar(x) }],
            }];
            let text = render(&fams);
            let back = parse(&text).unwrap();
            prop_assert_eq!(back, fams);
        }
    }
}
