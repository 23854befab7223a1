//! The snapshot data model: one node's complete set of metric families at one moment.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One node's complete set of metric families at one moment; a push replaces the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Per-node sequence number, increasing with every push, so the hub can drop a push that
    /// arrives after a newer one.
    pub seq: u64,
    /// The agent's push interval in milliseconds; the hub derives staleness from it.
    pub interval_ms: u64,
    /// When the agent collected the snapshot (unix milliseconds), for diagnostics only.
    pub timestamp_ms: i64,
    /// The metric families, each name at most once.
    pub families: Vec<Family>,
}

/// A metric family: every series sharing one name, HELP and TYPE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// Metric name as exposed (for histograms and summaries, the base name without suffixes).
    pub name: String,
    /// HELP text, unescaped.
    pub help: String,
    /// TYPE of the family.
    pub kind: MetricType,
    /// The series of this family.
    pub series: Vec<Series>,
}

/// Prometheus metric types of the text format 0.0.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricType {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// No declared type.
    Untyped,
    /// Cumulative buckets, sum and count.
    Histogram,
    /// Quantiles, sum and count.
    Summary,
}

impl MetricType {
    /// The word used on a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Untyped => "untyped",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
        }
    }

    /// Parses the word of a `# TYPE` line.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "untyped" => MetricType::Untyped,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            _ => return None,
        })
    }
}

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value, unescaped, any UTF-8.
    pub value: String,
}

impl Label {
    /// Builds a label from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One series of a family: its labels and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Label pairs in the order they are exposed.
    pub labels: Vec<Label>,
    /// The sample value(s).
    pub value: Value,
}

/// The value of a series; the variant matches the family's [`MetricType`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Counter, gauge or untyped sample.
    Scalar(#[serde(with = "compact_f64")] f64),
    /// Histogram sample.
    Histogram(Histogram),
    /// Summary sample.
    Summary(Summary),
}

impl Value {
    /// Number of exposition lines (samples) this value produces.
    pub fn sample_count(&self) -> usize {
        match self {
            Value::Scalar(_) => 1,
            Value::Histogram(h) => h.buckets.len() + 3,
            Value::Summary(s) => s.quantiles.len() + 2,
        }
    }
}

/// A histogram: cumulative buckets by ascending upper bound, without the `+Inf` bucket, which is
/// always `count`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Histogram {
    /// Finite buckets, ascending by `le`.
    pub buckets: Vec<Bucket>,
    /// Sum of observations.
    #[serde(with = "compact_f64")]
    pub sum: f64,
    /// Count of observations, also the `+Inf` bucket.
    #[serde(with = "compact_f64")]
    pub count: f64,
}

/// One cumulative histogram bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound (`le`).
    pub le: f64,
    /// Cumulative count of observations at or below `le`.
    #[serde(with = "compact_f64")]
    pub count: f64,
}

/// A summary: quantiles plus sum and count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Quantiles, ascending by `quantile`.
    pub quantiles: Vec<Quantile>,
    /// Sum of observations.
    #[serde(with = "compact_f64")]
    pub sum: f64,
    /// Count of observations.
    #[serde(with = "compact_f64")]
    pub count: f64,
}

/// One summary quantile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    /// The quantile (0..=1).
    pub quantile: f64,
    /// Its value.
    #[serde(with = "compact_f64")]
    pub value: f64,
}

/// Most metric values are whole numbers (bytes, packets, counts). On the wire those go as a
/// zigzag varint (1-9 bytes, usually 1-5) instead of a fixed 8-byte float, which roughly halves
/// a snapshot after compression. Floats that are not exactly integral keep all their bits.
mod compact_f64 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    enum Repr {
        Int(i64),
        Float(f64),
    }

    /// Largest magnitude at which every integer is exactly representable in an f64.
    const EXACT: f64 = 9_007_199_254_740_992.0;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        let v = *v;
        // -0.0 must keep its sign bit, so it stays a float.
        if v.fract() == 0.0 && v.abs() <= EXACT && !(v == 0.0 && v.is_sign_negative()) {
            Repr::Int(v as i64).serialize(s)
        } else {
            Repr::Float(v).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Int(i) => i as f64,
            Repr::Float(f) => f,
        })
    }
}
