//! Values pushes against a real hub process: after a full snapshot, a push of only the values
//! (relative to the accepted ones) shows exactly the values a full push would; every push that
//! does not fit what the hub holds is a 409 naming why, and changes nothing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use fleetgate_shared::{
    encode_values, layout_hash, sample_values, Bucket, Family, Histogram, MetricType, Quantile,
    Series, Snapshot, Summary, Value, ValuesHeader, VALUES_CONTENT_TYPE,
};
use fleetgate_testkit::snapshot::{family, labels, scalar, snapshot};
use fleetgate_testkit::Hub;

/// A snapshot whose values all derive from `x`: a counter, a float gauge, a histogram and a
/// summary, in an order that is not sorted by name.
fn snap(seq: u64, x: f64) -> Snapshot {
    snapshot(
        seq,
        60_000,
        vec![
            family(
                "vp_requests_total",
                MetricType::Counter,
                vec![
                    scalar(&[("code", "200")], 1e6 + x),
                    scalar(&[("code", "500")], 3.0),
                ],
            ),
            family(
                "vp_temperature",
                MetricType::Gauge,
                vec![scalar(&[], 0.1 * x + 0.2)],
            ),
            Family {
                name: "vp_latency_seconds".into(),
                help: "latency".into(),
                kind: MetricType::Histogram,
                series: vec![Series {
                    labels: labels(&[("path", "/a b")]),
                    value: Value::Histogram(Histogram {
                        buckets: vec![
                            Bucket {
                                le: 0.005,
                                count: x,
                            },
                            Bucket {
                                le: 1.0,
                                count: 2.0 * x,
                            },
                        ],
                        sum: x * 0.37,
                        count: 3.0 * x,
                    }),
                }],
            },
            Family {
                name: "vp_gc_seconds".into(),
                help: String::new(),
                kind: MetricType::Summary,
                series: vec![Series {
                    labels: vec![],
                    value: Value::Summary(Summary {
                        quantiles: vec![Quantile {
                            quantile: 0.5,
                            value: if x > 1.0 { f64::NAN } else { -0.0 },
                        }],
                        sum: f64::INFINITY,
                        count: 1.8e19 + x * 4096.0,
                    }),
                }],
            },
        ],
    )
}

fn values_body(base: &Snapshot, new: &Snapshot, base_seq: u64) -> Vec<u8> {
    let header = ValuesHeader {
        seq: new.seq,
        interval_ms: new.interval_ms,
        timestamp_ms: new.timestamp_ms,
        base_seq,
        layout: layout_hash(&new.families),
    };
    encode_values(
        &header,
        &sample_values(&base.families),
        &sample_values(&new.families),
    )
}

/// The sample lines of `node`, with the node's name written as `NODE`.
fn node_lines(text: &str, node: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("vp_") && l.contains(&format!("node=\"{node}\"")))
        .map(|l| l.replace(&format!("\"{node}\""), "\"NODE\""))
        .collect();
    lines.sort();
    lines
}

fn counter(text: &str, result: &str) -> f64 {
    let prefix = format!("fleetgate_hub_pushes_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap())
}

async fn push_values(hub: &Hub, token: &str, body: Vec<u8>) -> (u16, String) {
    let resp = hub.push_raw(token, VALUES_CONTENT_TYPE, None, body).await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_push_shows_what_a_full_push_would() {
    let hub = Hub::start(&[]);
    let a = hub.enroll("a", &[("node_type", "cpu")]).await;
    let b = hub.enroll("b", &[("node_type", "cpu")]).await;
    let first = snap(10, 1.0);
    assert_eq!(hub.push(&a, &first).await.status(), 200);

    let second = snap(11, 2.5);
    let (status, body) = push_values(&hub, &a, values_body(&first, &second, 10)).await;
    assert_eq!(status, 200, "{body}");
    // Node b gets the same values as a full push: both nodes must show the same lines.
    assert_eq!(hub.push(&b, &second).await.status(), 200);
    let text = hub.metrics_text().await;
    let shown = node_lines(&text, "a");
    assert_eq!(shown.len(), 2 + 1 + 5 + 3, "{shown:#?}");
    assert_eq!(shown, node_lines(&text, "b"));
    let line = |metric: &str| {
        shown
            .iter()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("{metric} missing in {shown:#?}"))
            .clone()
    };
    assert!(line("vp_temperature{").ends_with(" 0.45"), "{shown:#?}");
    assert!(line("vp_requests_total{code=\"200\"").ends_with(" 1000002.5"));
    assert!(line("vp_latency_seconds_bucket{path=\"/a b\",instance=\"NODE\",node=\"NODE\",node_type=\"cpu\",le=\"1\"}").ends_with(" 5"));
    assert!(line("vp_latency_seconds_sum").ends_with(" 0.925"));
    assert!(line("vp_gc_seconds{").ends_with(" NaN"));
    assert!(line("vp_gc_seconds_sum").ends_with(" +Inf"));
    let count = line("vp_gc_seconds_count");
    let count: f64 = count.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(count.to_bits(), (1.8e19 + 2.5 * 4096.0f64).to_bits());

    // A chain of values pushes, each against the previous one; compressed bodies too.
    let third = snap(12, 0.5);
    let body = values_body(&second, &third, 11);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &body).unwrap();
    let resp = hub
        .push_raw(&a, VALUES_CONTENT_TYPE, Some("gzip"), gz.finish().unwrap())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(hub.push(&b, &third).await.status(), 200);
    let text = hub.metrics_text().await;
    assert_eq!(node_lines(&text, "a"), node_lines(&text, "b"));
    assert!(node_lines(&text, "a")
        .iter()
        .any(|l| l.starts_with("vp_gc_seconds{") && l.ends_with(" -0")));
    assert_eq!(counter(&text, "ok"), 5.0);
    // The node's series count and quarantine are those of its last full push.
    assert!(text.contains("fleetgate_node_series{instance=\"a\",node=\"a\",node_type=\"cpu\"} 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_pushes_that_do_not_fit_are_409_and_change_nothing() {
    let mut hub = Hub::start(&[]);
    let a = hub.enroll("a", &[]).await;
    let (status, body) = push_values(&hub, &a, values_body(&snap(1, 1.0), &snap(2, 2.0), 1)).await;
    assert_eq!((status, body.trim()), (409, "no base snapshot"));

    let base = snap(40, 1.0);
    assert_eq!(hub.push(&a, &base).await.status(), 200);
    let before = node_lines(&hub.metrics_text().await, "a");

    let (status, body) = push_values(&hub, &a, values_body(&base, &snap(42, 2.0), 41)).await;
    assert_eq!(
        (status, body.trim()),
        (409, "base seq 41 is not the stored seq 40")
    );
    let mut other = snap(41, 2.0);
    other.families[1].help = "changed".into();
    let (status, body) = push_values(&hub, &a, values_body(&base, &other, 40)).await;
    assert_eq!(status, 409);
    assert!(body.contains("layout differs"), "{body}");
    // The right layout but another base than the hub's: the checksum tells.
    let (status, body) =
        push_values(&hub, &a, values_body(&snap(40, 1.5), &snap(41, 2.0), 40)).await;
    assert_eq!(status, 409);
    assert!(body.contains("checksum"), "{body}");
    let (status, _) = push_values(&hub, &a, b"FGSV\x01garbage".to_vec()).await;
    assert_eq!(status, 400);
    let text = hub.metrics_text().await;
    assert_eq!(node_lines(&text, "a"), before);
    assert_eq!(counter(&text, "conflict"), 4.0);

    // A restart loses every base.
    hub.kill9_and_restart();
    let (status, body) = push_values(&hub, &a, values_body(&base, &snap(41, 2.0), 40)).await;
    assert_eq!((status, body.trim()), (409, "no base snapshot"));
    assert!(node_lines(&hub.metrics_text().await, "a").is_empty());
    assert_eq!(hub.push(&a, &base).await.status(), 200);
    let (status, body) = push_values(&hub, &a, values_body(&base, &snap(41, 2.0), 40)).await;
    assert_eq!(status, 200, "{body}");

    // So does removal: the old token is revoked, the new enrollment has no base.
    assert_eq!(hub.remove_node(&hub.admin_token(), "a").await.status(), 200);
    let (status, _) = push_values(&hub, &a, values_body(&base, &snap(42, 2.0), 41)).await;
    assert_eq!(status, 401);
    let resp = hub.add_node(&hub.admin_token(), "a", &[]).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    let a2 = v["token"].as_str().unwrap().to_string();
    let (status, body) = push_values(&hub, &a2, values_body(&base, &snap(42, 2.0), 41)).await;
    assert_eq!((status, body.trim()), (409, "no base snapshot"));
    assert!(node_lines(&hub.metrics_text().await, "a").is_empty());
}
