//! Rendering `/metrics`: every node's pre-rendered families merged by name (one HELP and TYPE
//! per family, its lines contiguous across nodes), then the per-node synthetic series.

use fleetgate_shared::text::{write_help_type, write_series};
use fleetgate_shared::{MetricType, Series, Value};

use crate::ingest::NodeLabels;
use crate::store::View;

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

/// Appends the exposition of `view` and the synthetic `fleetgate_node_*` families to `out`.
///
/// Each node's families are sorted by name and `view.family_names` is a sorted superset of
/// them, so one pass with a cursor per node emits every family exactly once; the cost is
/// copying the stored bytes plus one name comparison per (family name, node).
pub fn render_exposition(view: &View, nodes: &[NodeLine], out: &mut Vec<u8>) {
    let total: usize = view.nodes.iter().map(|n| n.text.len()).sum();
    out.reserve(total + view.family_names.len() * 128 + nodes.len() * 300);
    let mut cursors = vec![0usize; view.nodes.len()];
    let mut head = String::with_capacity(256);
    for name in &view.family_names {
        let mut header_written = false;
        for (node, cursor) in view.nodes.iter().zip(cursors.iter_mut()) {
            let families = &node.families;
            // Defensive: skip anything not in the name list rather than stall the cursor.
            while *cursor < families.len() && *families[*cursor].name < **name {
                *cursor += 1;
            }
            let Some(f) = families.get(*cursor).filter(|f| *f.name == **name) else {
                continue;
            };
            if !header_written {
                head.clear();
                write_help_type(&mut head, name, &f.help, f.kind);
                out.extend_from_slice(head.as_bytes());
                header_written = true;
            }
            out.extend_from_slice(node.lines(f).as_bytes());
            *cursor += 1;
        }
    }
    render_node_lines(nodes, out);
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
