//! Turning one push into what the store keeps: validation against the limits (the first
//! offender is named) and pre-rendering of every family into exposition lines that already carry
//! the node's labels, so `/metrics` only copies bytes.

use std::collections::HashSet;
use std::ops::Range;

use fleetgate_shared::names::{is_valid_label_name, is_valid_metric_name};
use fleetgate_shared::text::{describe_series, write_series};
use fleetgate_shared::{Family, Label, MetricType, Value};

use crate::config::Limits;

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

    /// The pairs as the `extra` argument of [`write_series`].
    pub fn as_extra(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
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
}

/// A validated, pre-rendered push.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// All families' lines, back to back, in the order of `families`.
    pub text: String,
    /// The families, sorted by name.
    pub families: Vec<PreparedFamily>,
    /// Series in the push.
    pub series: usize,
    /// Sample lines in the push.
    pub samples: usize,
}

/// Validates `families` against `limits` and renders them with `labels` injected (a payload
/// label of the same name is overwritten). Families are sorted by name.
pub fn prepare(
    mut families: Vec<Family>,
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
    families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for pair in families.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(reject(
                "duplicate",
                format!("family {} appears twice", pair[0].name),
            ));
        }
    }
    let extra = labels.as_extra();
    let mut out = Prepared {
        text: String::with_capacity(series * 96),
        families: Vec::with_capacity(families.len()),
        series,
        samples: 0,
    };
    let mut seen: HashSet<Vec<&Label>> = HashSet::new();
    for family in &families {
        check_family(family, &extra, limits, &mut seen)
            .map_err(|(reason, message)| reject(reason, message))?;
    }
    for family in families {
        let start = out.text.len();
        for s in &family.series {
            out.samples += s.value.sample_count();
            write_series(&mut out.text, &family.name, s, &extra);
        }
        out.families.push(PreparedFamily {
            range: start..out.text.len(),
            series: family.series.len(),
            name: family.name,
            help: family.help,
            kind: family.kind,
        });
    }
    Ok(out)
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
        }),
    }
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
            &p.text[p.families[0].range.clone()],
            "a{instance=\"n1\",node=\"n1\",node_type=\"gpu\"} 1\n"
        );
        assert_eq!(
            &p.text[p.families[1].range.clone()],
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
}
