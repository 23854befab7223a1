//! The labels the hub writes on every series of a node: its identity (`instance`, `node`) and
//! its enrollment labels, which overwrite whatever a payload claims for them.

use fleetgate_shared::text::write_escaped_label_value;

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
