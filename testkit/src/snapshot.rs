//! Small builders for the snapshots tests push.

use fleetgate_shared::{Family, Label, MetricType, Series, Snapshot, Value};

/// Labels from `(name, value)` pairs, in that order.
pub fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
}

/// A family named `name` with HELP `"<name> help"`.
pub fn family(name: &str, kind: MetricType, series: Vec<Series>) -> Family {
    Family {
        name: name.into(),
        help: format!("{name} help"),
        kind,
        series,
    }
}

/// A scalar series.
pub fn scalar(pairs: &[(&str, &str)], value: f64) -> Series {
    Series {
        labels: labels(pairs),
        value: Value::Scalar(value),
    }
}

/// A snapshot with sequence number `seq` declaring a push interval of `interval_ms`.
pub fn snapshot(seq: u64, interval_ms: u64, families: Vec<Family>) -> Snapshot {
    Snapshot {
        seq,
        interval_ms,
        timestamp_ms: 0,
        families,
    }
}
