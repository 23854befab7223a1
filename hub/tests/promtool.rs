//! The federated exposition passes `promtool check metrics` (no parse error) with many nodes,
//! histograms, summaries, and label values full of quotes, backslashes, newlines and UTF-8 — and
//! those values read back unchanged.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use fleetgate_shared::{Bucket, Histogram, MetricType, Quantile, Series, Summary, Value};
use fleetgate_testkit::exposition::promtool_check_metrics;
use fleetgate_testkit::snapshot::{family, labels, scalar, snapshot};
use fleetgate_testkit::{require_tool, Hub};

const NASTY: &str = "quote\" back\\slash new\nline ünïcødé ✓ {}=,";

fn families(node: usize) -> Vec<fleetgate_shared::Family> {
    let hist = Series {
        labels: labels(&[("handler", "/api"), ("path", NASTY)]),
        value: Value::Histogram(Histogram {
            buckets: vec![
                Bucket {
                    le: 0.1,
                    count: 1.0,
                },
                Bucket {
                    le: 1.5,
                    count: 3.0,
                },
            ],
            sum: 2.25,
            count: 4.0,
        }),
    };
    let summary = Series {
        labels: labels(&[("quantile_set", "gc")]),
        value: Value::Summary(Summary {
            quantiles: vec![
                Quantile {
                    quantile: 0.5,
                    value: 0.001,
                },
                Quantile {
                    quantile: 0.99,
                    value: 0.02,
                },
            ],
            sum: 1.5,
            count: 300.0,
        }),
    };
    let mut help_family = family(
        "weird_help_info",
        MetricType::Gauge,
        vec![scalar(&[("v", "é\"\\\n")], 1.0)],
    );
    help_family.help = "help with \\ backslash and\nnewline ✓".into();
    vec![
        family(
            "request_duration_seconds",
            MetricType::Histogram,
            vec![hist],
        ),
        family("gc_duration_seconds", MetricType::Summary, vec![summary]),
        family(
            "node_cpu_seconds_total",
            MetricType::Counter,
            (0..4)
                .flat_map(|cpu| {
                    ["idle", "user"].map(|mode| {
                        scalar(
                            &[("cpu", &cpu.to_string()), ("mode", mode)],
                            (node * 100 + cpu) as f64 + 0.5,
                        )
                    })
                })
                .collect(),
        ),
        family(
            "special_values",
            MetricType::Gauge,
            vec![
                scalar(&[("v", "nan")], f64::NAN),
                scalar(&[("v", "inf")], f64::INFINITY),
                scalar(&[("v", "neg")], -1e-300),
            ],
        ),
        family(
            "untyped_thing",
            MetricType::Untyped,
            vec![scalar(&[], 42.0)],
        ),
        help_family,
    ]
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let hub = Hub::start(&[]);
    for n in 0..12 {
        let node = format!("node-ü-{n}");
        let token = hub
            .enroll(
                &node,
                &[
                    ("node_type", if n % 2 == 0 { "gpu" } else { "cpu" }),
                    ("rack", NASTY),
                ],
            )
            .await;
        let resp = hub.push(&token, &snapshot(1, 60_000, families(n))).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let text = hub.metrics_text().await;
    let (code, msg) = promtool_check_metrics(&promtool, &text);
    assert_ne!(code, 1, "promtool found a parse error: {msg}\n{text}");
    assert_eq!(code, 0, "promtool lint: {msg}");

    let fams = fleetgate_shared::text::parse(&text).unwrap();
    let hist = fams
        .iter()
        .find(|f| f.name == "request_duration_seconds")
        .unwrap();
    assert_eq!(hist.kind, MetricType::Histogram);
    assert_eq!(hist.series.len(), 12);
    let path = hist.series[0]
        .labels
        .iter()
        .find(|l| l.name == "path")
        .unwrap();
    assert_eq!(path.value, NASTY);
    let rack = hist.series[0]
        .labels
        .iter()
        .find(|l| l.name == "rack")
        .unwrap();
    assert_eq!(rack.value, NASTY);
    let help = fams.iter().find(|f| f.name == "weird_help_info").unwrap();
    assert_eq!(help.help, "help with \\ backslash and\nnewline ✓");
    assert_eq!(
        fams.iter()
            .find(|f| f.name == "gc_duration_seconds")
            .unwrap()
            .series
            .len(),
        12
    );
    assert_eq!(
        fams.iter()
            .find(|f| f.name == "node_cpu_seconds_total")
            .unwrap()
            .series
            .len(),
        96
    );
    // Each family once.
    for f in &fams {
        assert_eq!(
            text.matches(&format!("# TYPE {} ", f.name)).count(),
            1,
            "{}",
            f.name
        );
    }

    // Gzip when asked.
    let resp = hub
        .client()
        .get(hub.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let gz = resp.bytes().await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut plain)
        .unwrap();
    assert!(plain.contains("# TYPE request_duration_seconds histogram"));
    assert!(gz.len() < plain.len());
}
