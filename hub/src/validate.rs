//! What a push may contain: metric and label names, the hub's reserved namespace, value types
//! matching the family type, and the configured limits. The first offender is named; a push is
//! refused as a whole, so a node's exposition is never half old, half new.

use std::collections::HashSet;

use fleetgate_shared::names::{is_valid_label_name, is_valid_metric_name};
use fleetgate_shared::text::describe_series;
use fleetgate_shared::{Family, Label, MetricType, Value};

use crate::config::Limits;

/// Metric-name prefixes the hub writes itself; a node may not push into them.
pub const RESERVED_PREFIXES: [&str; 2] = ["fleetgate_node_", "fleetgate_hub_"];

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

impl Rejection {
    fn new(reason: &'static str, message: String, series: usize) -> Self {
        Rejection {
            reason,
            message,
            series,
        }
    }
}

/// Refuses a push of more series than a node may have, before any other work.
pub fn check_size(series: usize, limits: &Limits) -> Result<(), Rejection> {
    if series > limits.max_series_per_node {
        return Err(Rejection::new(
            "too_many_series",
            format!(
                "snapshot has {series} series, more than the limit of {} per node",
                limits.max_series_per_node
            ),
            series,
        ));
    }
    Ok(())
}

/// Checks every family of a push, `sorted` by name, against `limits`; `extra` are the node
/// labels the hub will write (a payload label of the same name is overwritten, not an error).
pub fn check_families(
    sorted: &[&Family],
    extra: &[(&str, &str)],
    limits: &Limits,
) -> Result<(), Rejection> {
    let series: usize = sorted.iter().map(|f| f.series.len()).sum();
    for pair in sorted.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(Rejection::new(
                "duplicate",
                format!("family {} appears twice", pair[0].name),
                series,
            ));
        }
    }
    // A histogram or summary writes `x_sum`/`x_count` (and `x_bucket`) lines: a family of one
    // of those names would write the same series again. Compared in place: no name is built.
    for family in sorted {
        for &suffix in fleetgate_shared::text::part_suffixes(family.kind) {
            let found = sorted
                .binary_search_by(|f| cmp_joined(&f.name, &family.name, suffix))
                .is_ok();
            if found {
                return Err(Rejection::new(
                    "duplicate",
                    format!(
                        "family {name}{suffix} clashes with the {} {name}, which writes \
                         {name}{suffix} series",
                        family.kind.as_str(),
                        name = family.name
                    ),
                    series,
                ));
            }
        }
    }
    let mut seen: HashSet<Vec<&Label>> = HashSet::new();
    for family in sorted {
        check_family(family, extra, limits, &mut seen)
            .map_err(|(reason, message)| Rejection::new(reason, message, series))?;
    }
    Ok(())
}

/// How `s` compares with `a` followed by `b`.
fn cmp_joined(s: &str, a: &str, b: &str) -> std::cmp::Ordering {
    let (s, a, b) = (s.as_bytes(), a.as_bytes(), b.as_bytes());
    let n = s.len().min(a.len());
    s[..n].cmp(&a[..n]).then_with(|| match s.get(a.len()..) {
        None => std::cmp::Ordering::Less,
        Some(rest) => rest.cmp(b),
    })
}

/// Checks one family: name, reserved namespace, value types, label names and counts, label
/// value lengths and duplicate series (labels the hub overwrites do not tell series apart).
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

#[cfg(test)]
mod tests {
    use super::cmp_joined;

    proptest::proptest! {
        /// The in-place comparison orders as comparing with the joined string would.
        #[test]
        fn prop_cmp_joined_is_the_joined_comparison(
            s in "[a-c_]{0,6}",
            a in "[a-c_]{0,4}",
            b in "[a-c_]{0,4}",
        ) {
            proptest::prop_assert_eq!(cmp_joined(&s, &a, &b), s.cmp(&format!("{a}{b}")));
        }
    }
}
