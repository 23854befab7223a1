//! Snapshot builders shared by the unit tests of the store and the exposition.

use fleetgate_shared::{
    encode_values, layout_hash, sample_values, Bucket, Family, Histogram, Label, MetricType,
    Quantile, Series, Summary, Value, ValuesHeader, ValuesPush,
};
use proptest::prelude::*;

use crate::config::Limits;
use crate::labels::NodeLabels;
use crate::prepare::{prepare, Prepared};

/// A gauge family `name` with one series per label list, each of value 1.
pub fn gauge(name: &str, series: Vec<Vec<(&str, &str)>>) -> Family {
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

/// Families named from `names` (unsorted, so push order and text order differ) with kinds by
/// index (counter, histogram, summary, gauge), 0–2 series each, and values from `x`.
pub fn families(names: &[String], x: &[f64]) -> Vec<Family> {
    let mut x = x.iter().copied().cycle();
    let mut next = || x.next().unwrap_or(0.0);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (kind, value) = match i % 4 {
                0 => (MetricType::Counter, Value::Scalar(next())),
                1 => (
                    MetricType::Histogram,
                    Value::Histogram(Histogram {
                        buckets: vec![
                            Bucket {
                                le: 0.25,
                                count: next(),
                            },
                            Bucket {
                                le: 1e3,
                                count: next(),
                            },
                        ],
                        sum: next(),
                        count: next(),
                    }),
                ),
                2 => (
                    MetricType::Summary,
                    Value::Summary(Summary {
                        quantiles: vec![Quantile {
                            quantile: 0.99,
                            value: next(),
                        }],
                        sum: next(),
                        count: next(),
                    }),
                ),
                _ => (MetricType::Gauge, Value::Scalar(next())),
            };
            // The second series has labels long enough to be kept in the node's label sets.
            let series = (0..i % 3)
                .map(|j| Series {
                    labels: match j {
                        0 => vec![Label::new("j", "0")],
                        _ => vec![
                            Label::new("id", format!("/docker/{:0>40}", j)),
                            Label::new("j", j.to_string()),
                        ],
                    },
                    value: value.clone(),
                })
                .collect();
            Family {
                name: name.clone(),
                help: "h".into(),
                kind,
                series,
            }
        })
        .collect()
}

/// The labels of node `node` with a `node_type` enrollment label.
pub fn labels(node: &str) -> NodeLabels {
    let enrollment = [("node_type".to_string(), "gpu".to_string())];
    NodeLabels::new(
        "instance",
        "node",
        node,
        enrollment.iter().map(|(k, v)| (k, v)),
    )
}

/// `fams` prepared for `node` as a native snapshot (so values pushes may follow).
pub fn prepared(node: &str, fams: Vec<Family>) -> Prepared {
    let layout = layout_hash(&fams);
    let mut p = prepare(fams, &labels(node), &Limits::default()).unwrap_or_default();
    p.layout = Some(layout);
    p
}

/// The values push that turns the values of `a` into those of `b`, against push `base_seq`.
pub fn values_push(a: &[Family], b: &[Family], base_seq: u64) -> ValuesPush {
    let header = ValuesHeader {
        seq: base_seq + 1,
        interval_ms: 1000,
        timestamp_ms: 0,
        base_seq,
        layout: layout_hash(b),
    };
    let bytes = encode_values(&header, &sample_values(a), &sample_values(b));
    match fleetgate_shared::decode_values(&bytes, 1 << 20) {
        Ok(push) => push,
        Err(e) => panic!("a values push just encoded does not decode: {e}"),
    }
}

/// Sample values, the awkward ones (NaN, -0, infinities, huge, fractional) included.
pub fn arb_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (0i64..1 << 40).prop_map(|i| i as f64),
        (0i64..1 << 30).prop_map(|i| i as f64 / 100.0),
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::NEG_INFINITY),
    ]
}
