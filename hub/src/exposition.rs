//! Rendering `/metrics`: every node's pre-rendered families merged by name (one HELP and TYPE
//! per family, its lines contiguous across nodes), then the per-node synthetic series. The
//! exposition is produced in bounded pieces by [`ExpositionWriter`], so a scrape of millions of
//! series never holds the whole body in memory.

use fleetgate_shared::text::{write_help_type, write_series};
use fleetgate_shared::{MetricType, Series, Value};

use crate::ingest::NodeLabels;
use crate::store::View;

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
                node.write_family(f, out);
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
    use crate::ingest::prepare;
    use crate::store::Store;
    use fleetgate_shared::{Family, Label};
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
}
