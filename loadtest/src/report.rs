//! The figures of one run, the side-by-side table with ratios, and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Every figure one run produces for one system.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Figures {
    /// `fleetgate` or `pushgateway`.
    pub system: String,
    /// Simulated nodes.
    pub nodes: usize,
    /// Series (= samples, all scalar) in each node's snapshot.
    pub series_per_node: usize,
    /// Wall time of the steady phase including the last in-flight pushes.
    pub duration_seconds: f64,
    /// Push interval of every node.
    pub interval_seconds: f64,
    /// nodes × series / interval: what the fleet offers.
    pub offered_samples_per_sec: f64,
    /// Samples of successful pushes per second during the steady phase.
    pub ingest_samples_per_sec: f64,
    /// Samples per second when pushing closed-loop as fast as the system answers.
    pub max_ingest_samples_per_sec: Option<f64>,
    /// Push p99 during the saturation phase.
    pub saturation_push_p99_ms: Option<f64>,
    /// Failed pushes during the saturation phase.
    pub saturation_failed_pushes: u64,
    /// Successful pushes in the steady phase.
    pub pushes: u64,
    /// Failed pushes in the steady phase.
    pub failed_pushes: u64,
    /// Failed pushes by reason.
    pub failure_reasons: BTreeMap<String, u64>,
    /// Push slots skipped because the node's previous push was still running.
    pub skipped_intervals: u64,
    /// Push latency percentiles (request sent to response received).
    pub push_p50_ms: f64,
    /// 99th percentile push latency.
    pub push_p99_ms: f64,
    /// Slowest push.
    pub push_max_ms: f64,
    /// Plain scrapes done.
    pub scrapes: u64,
    /// Slowest plain scrape of the full fleet.
    pub scrape_seconds: f64,
    /// Median plain scrape of the full fleet.
    pub scrape_p50_seconds: f64,
    /// Body size of the last plain scrape.
    pub scrape_bytes: u64,
    /// Sample lines in the last plain scrape.
    pub scrape_series: u64,
    /// Slowest scrape asking for gzip.
    pub scrape_gzip_seconds: f64,
    /// Body bytes of the last scrape asking for gzip (compressed when served gzip).
    pub scrape_gzip_bytes: u64,
    /// Whether the server answered gzip when asked.
    pub scrape_gzip_served: bool,
    /// Peak resident memory during the steady phase.
    pub rss_bytes: Option<u64>,
    /// Resident memory before the first enrollment or push.
    pub rss_idle_bytes: Option<u64>,
    /// (peak − idle) RSS per series on the last full scrape (per series offered when none).
    pub rss_bytes_per_series: Option<f64>,
    /// CPU seconds the system used during the steady phase.
    pub cpu_seconds: Option<f64>,
    /// The same as a percentage of one core.
    pub cpu_percent: Option<f64>,
    /// Push body bytes per sample.
    pub wire_bytes_per_sample: f64,
    /// Time to enroll every node (Fleetgate only).
    pub enroll_seconds: Option<f64>,
    /// Seconds from a new node's enrollment to its series on `/metrics`.
    pub appear_seconds: Option<f64>,
    /// Seconds from a node's removal to its series leaving `/metrics`.
    pub disappear_seconds: Option<f64>,
    /// CPU seconds the rig itself used during the steady phase (it shares the machine).
    pub rig_cpu_seconds: f64,
    /// The same as a percentage of one core.
    pub rig_cpu_percent: f64,
    /// Peak resident memory of the rig.
    pub rig_rss_bytes: u64,
    /// Seconds over which the nodes' first pushes were spread, before the steady phase.
    pub ramp_seconds: f64,
    /// Sharded scrapes (`--scrape-shards`), when asked for.
    pub shard_scrapes: Option<crate::shards::ShardFigures>,
}

/// Both systems on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Fleetgate's figures.
    pub fleetgate: Option<Figures>,
    /// Pushgateway's figures.
    pub pushgateway: Option<Figures>,
}

/// The JSON document `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// The command line that produced it.
    pub command: String,
    /// Fleetgate at the largest node count.
    pub fleetgate: Option<Figures>,
    /// Pushgateway at the largest node count.
    pub pushgateway: Option<Figures>,
    /// fleetgate / pushgateway for the headline figures.
    pub ratios: BTreeMap<String, f64>,
    /// Every `--max-failed`, `--max-p99` or `--min-ingest-ratio` limit a run missed.
    pub missed_thresholds: Vec<String>,
    /// Every node count of a sweep, in order.
    pub sweep: Vec<Comparison>,
}

/// fleetgate ÷ pushgateway of the headline figures, where both exist and the divisor is not 0.
pub fn ratios(c: &Comparison) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let (Some(f), Some(p)) = (&c.fleetgate, &c.pushgateway) else {
        return out;
    };
    let mut put = |k: &str, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            if b != 0.0 && a.is_finite() && b.is_finite() {
                out.insert(k.to_string(), a / b);
            }
        }
    };
    put(
        "ingest_samples_per_sec",
        Some(f.ingest_samples_per_sec),
        Some(p.ingest_samples_per_sec),
    );
    put(
        "max_ingest_samples_per_sec",
        f.max_ingest_samples_per_sec,
        p.max_ingest_samples_per_sec,
    );
    put("push_p50_ms", Some(f.push_p50_ms), Some(p.push_p50_ms));
    put("push_p99_ms", Some(f.push_p99_ms), Some(p.push_p99_ms));
    put(
        "scrape_seconds",
        Some(f.scrape_seconds),
        Some(p.scrape_seconds),
    );
    put(
        "scrape_bytes",
        Some(f.scrape_bytes as f64),
        Some(p.scrape_bytes as f64),
    );
    put(
        "rss_bytes",
        f.rss_bytes.map(|v| v as f64),
        p.rss_bytes.map(|v| v as f64),
    );
    put(
        "rss_bytes_per_series",
        f.rss_bytes_per_series,
        p.rss_bytes_per_series,
    );
    put("cpu_seconds", f.cpu_seconds, p.cpu_seconds);
    put(
        "wire_bytes_per_sample",
        Some(f.wire_bytes_per_sample),
        Some(p.wire_bytes_per_sample),
    );
    out
}

/// The side-by-side table of one comparison.
pub fn table(c: &Comparison) -> String {
    let (f, p) = (c.fleetgate.as_ref(), c.pushgateway.as_ref());
    let any = f.or(p);
    let mut out = String::new();
    if let Some(a) = any {
        let _ = writeln!(
            out,
            "\n{} nodes x {} series, interval {:.0} s, {:.0} s measured",
            a.nodes, a.series_per_node, a.interval_seconds, a.duration_seconds
        );
    }
    let _ = writeln!(
        out,
        "{:<34} {:>16} {:>16} {:>10}",
        "", "fleetgate", "pushgateway", "ratio"
    );
    let num = |v: Option<f64>, unit: &str| match v {
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}{unit}"),
        Some(v) => format!("{v:.3}{unit}"),
        None => "n/a".to_string(),
    };
    let mut row = |name: &str, get: &dyn Fn(&Figures) -> Option<f64>, unit: &str| {
        let (a, b) = (f.and_then(get), p.and_then(get));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{name:<34} {:>16} {:>16} {ratio:>10}",
            num(a, unit),
            num(b, unit)
        );
    };
    row(
        "offered samples/s",
        &|x| Some(x.offered_samples_per_sec),
        "",
    );
    row("ingest samples/s", &|x| Some(x.ingest_samples_per_sec), "");
    row(
        "max ingest samples/s (saturated)",
        &|x| x.max_ingest_samples_per_sec,
        "",
    );
    row("pushes ok", &|x| Some(x.pushes as f64), "");
    row("failed pushes", &|x| Some(x.failed_pushes as f64), "");
    row(
        "skipped intervals",
        &|x| Some(x.skipped_intervals as f64),
        "",
    );
    row("push p50 ms", &|x| Some(x.push_p50_ms), "");
    row("push p99 ms", &|x| Some(x.push_p99_ms), "");
    row("push max ms", &|x| Some(x.push_max_ms), "");
    row("scrape s (max, plain)", &|x| Some(x.scrape_seconds), "");
    row("scrape s (p50, plain)", &|x| Some(x.scrape_p50_seconds), "");
    row(
        "scrape MB (plain)",
        &|x| Some(x.scrape_bytes as f64 / 1e6),
        "",
    );
    row("scrape series", &|x| Some(x.scrape_series as f64), "");
    row(
        "scrape s (max, gzip asked)",
        // With --scrape-shards, gzip is asked of the shards only (rows below).
        &|x| (x.scrape_gzip_bytes > 0).then_some(x.scrape_gzip_seconds),
        "",
    );
    row(
        "scrape MB (gzip asked)",
        &|x| (x.scrape_gzip_bytes > 0).then_some(x.scrape_gzip_bytes as f64 / 1e6),
        "",
    );
    // A kind of round that never completed shows n/a, not 0.
    let shards = |x: &Figures| x.shard_scrapes.clone().filter(|s| s.rounds > 0);
    let gzip_shards = |x: &Figures| x.shard_scrapes.clone().filter(|s| s.gzip_round_bytes > 0);
    if any.is_some_and(|x| x.shard_scrapes.is_some()) {
        let of = any
            .and_then(|x| x.shard_scrapes.clone())
            .map_or(0, |s| s.shards);
        row(
            &format!("shard scrape s (max of {of}, plain)"),
            &|x| shards(x).map(|s| s.shard_seconds),
            "",
        );
        row(
            "shard round s (all at once, plain)",
            &|x| shards(x).map(|s| s.round_seconds),
            "",
        );
        row(
            "shard scrape s (max, one at a time, plain)",
            &|x| {
                x.shard_scrapes
                    .as_ref()
                    .filter(|s| s.sequential_rounds > 0)
                    .map(|s| s.sequential_shard_seconds)
            },
            "",
        );
        row(
            "shard scrape s (max, gzip)",
            &|x| gzip_shards(x).map(|s| s.gzip_shard_seconds),
            "",
        );
        row(
            "shard round s (all at once, gzip)",
            &|x| gzip_shards(x).map(|s| s.gzip_round_seconds),
            "",
        );
        row(
            "shard round MB (gzip)",
            &|x| gzip_shards(x).map(|s| s.gzip_round_bytes as f64 / 1e6),
            "",
        );
        row(
            "hub CPU s per unsharded scrape",
            &|x| x.shard_scrapes.as_ref().and_then(|s| s.hub_cpu_unsharded),
            "",
        );
        row(
            "hub CPU s per shard round (plain)",
            &|x| x.shard_scrapes.as_ref().and_then(|s| s.hub_cpu_plain_round),
            "",
        );
        row(
            "hub CPU s per shard round (gzip)",
            &|x| x.shard_scrapes.as_ref().and_then(|s| s.hub_cpu_gzip_round),
            "",
        );
    }
    row(
        "RSS MB (peak)",
        &|x| x.rss_bytes.map(|v| v as f64 / 1e6),
        "",
    );
    row(
        "RSS MB (idle)",
        &|x| x.rss_idle_bytes.map(|v| v as f64 / 1e6),
        "",
    );
    row("RSS bytes/series", &|x| x.rss_bytes_per_series, "");
    row("CPU seconds", &|x| x.cpu_seconds, "");
    row("CPU % of one core", &|x| x.cpu_percent, "");
    row("wire bytes/sample", &|x| Some(x.wire_bytes_per_sample), "");
    row("new node visible after s", &|x| x.appear_seconds, "");
    row("removed node gone after s", &|x| x.disappear_seconds, "");
    row("rig CPU % of one core", &|x| Some(x.rig_cpu_percent), "");
    row("rig RSS MB", &|x| Some(x.rig_rss_bytes as f64 / 1e6), "");
    for x in [f, p].into_iter().flatten() {
        if !x.failure_reasons.is_empty() {
            let _ = writeln!(out, "{} failures: {:?}", x.system, x.failure_reasons);
        }
        if x.scrape_gzip_bytes > 0 && !x.scrape_gzip_served {
            let _ = writeln!(out, "{} did not answer gzip when asked", x.system);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_fleetgate_by_pushgateway_and_skip_zero() {
        let f = Figures {
            ingest_samples_per_sec: 100.0,
            rss_bytes: Some(50),
            ..Figures::default()
        };
        let p = Figures {
            ingest_samples_per_sec: 2.0,
            rss_bytes: Some(100),
            ..Figures::default()
        };
        let c = Comparison {
            fleetgate: Some(f),
            pushgateway: Some(p),
        };
        let r = ratios(&c);
        assert_eq!(r["ingest_samples_per_sec"], 50.0);
        assert_eq!(r["rss_bytes"], 0.5);
        assert!(!r.contains_key("push_p99_ms"));
        assert!(table(&c).contains("50.00x"));
    }
}
