//! Rendering `/metrics`: every node's pre-rendered families merged by name (one HELP and TYPE
//! per family, its lines contiguous across nodes), then the per-node synthetic series. The
//! exposition is produced in bounded pieces by [`ExpositionWriter`], so a scrape of millions of
//! series never holds the whole body in memory.

use fleetgate_shared::text::{write_help_type, write_series};
use fleetgate_shared::{MetricType, Series, Value};

use crate::labels::NodeLabels;
use crate::store::{NodeSnapshot, StoredFamily, View};

/// Uncompressed bytes `GET /metrics` renders per chunk: large enough that per-chunk overhead
/// vanishes, small enough that a scrape holds a few MiB at most.
pub const CHUNK_BYTES: usize = 512 * 1024;

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
/// Each node's families are sorted by name and `view.family_names` is a sorted superset of
/// them, so one pass with a cursor per node emits every family exactly once; the cost is
/// copying the stored bytes plus one name comparison per (family name, node). The position
/// (family, node) is kept between calls, so a caller can drain the output in chunks.
#[derive(Debug)]
pub struct ExpositionWriter<'a> {
    /// The snapshots to render, taken once so every chunk belongs to the same exposition.
    view: &'a View,
    /// The synthetic per-node series, written after the families.
    nodes: &'a [NodeLine],
    /// Index into `view.family_names` of the family being written.
    family: usize,
    /// Index into `view.nodes` of the next node to write within that family.
    node: usize,
    /// Per node, its next family not yet written.
    cursors: Vec<usize>,
    /// Whether the HELP/TYPE of the current family is out.
    header_written: bool,
    /// Whether everything, the synthetic series included, is written.
    done: bool,
    /// Scratch for HELP/TYPE lines.
    head: String,
}

impl<'a> ExpositionWriter<'a> {
    /// A writer at the start of the exposition of `view` followed by `nodes`' series.
    pub fn new(view: &'a View, nodes: &'a [NodeLine]) -> Self {
        ExpositionWriter {
            view,
            nodes,
            family: 0,
            node: 0,
            cursors: vec![0; view.nodes.len()],
            header_written: false,
            done: false,
            head: String::with_capacity(256),
        }
    }

    /// Appends the next part of the exposition to `out` until `out` holds at least `target`
    /// bytes (it may overshoot by one node's lines of one family) or the exposition ends.
    /// Returns `false` once the whole exposition has been written.
    pub fn fill(&mut self, out: &mut Vec<u8>, target: usize) -> bool {
        let view = self.view;
        while self.family < view.family_names.len() {
            let name = &view.family_names[self.family];
            while self.node < view.nodes.len() {
                if out.len() >= target {
                    return true;
                }
                let node = &view.nodes[self.node];
                let cursor = &mut self.cursors[self.node];
                self.node += 1;
                let families = &node.families;
                // Defensive: skip anything not in the name list rather than stall the cursor.
                while *cursor < families.len() && *families[*cursor].name < **name {
                    *cursor += 1;
                }
                let Some(f) = families.get(*cursor).filter(|f| *f.name == **name) else {
                    continue;
                };
                if !self.header_written {
                    self.head.clear();
                    write_help_type(&mut self.head, name, &f.help, f.kind);
                    out.extend_from_slice(self.head.as_bytes());
                    self.header_written = true;
                }
                write_family(node, f, out);
                *cursor += 1;
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

/// Appends the exposition lines of one family of `snapshot`, node labels spliced in, to `out`.
pub fn write_family(snapshot: &NodeSnapshot, family: &StoredFamily, out: &mut Vec<u8>) {
    let splices = snapshot.splices.get(family.lines.clone()).unwrap_or(&[]);
    splice_lines(
        &snapshot.text,
        family.range.start,
        splices,
        &snapshot.node_labels,
        out,
    );
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
    use crate::store::Store;
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
}
