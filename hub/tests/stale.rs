//! A node that stops pushing drops out of /metrics after three of its push intervals but keeps
//! its identity, with `fleetgate_node_up` 0; its next push brings it back.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::{Duration, Instant};

use fleetgate_shared::MetricType;
use fleetgate_testkit::exposition::lines_with;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::Hub;

#[tokio::test]
async fn stale_nodes_drop_out_and_come_back() {
    let hub = Hub::start(&[]);
    let fast = hub.enroll("fast", &[]).await;
    let steady = hub.enroll("steady", &[]).await;
    let snap = |seq, interval_ms| {
        snapshot(
            seq,
            interval_ms,
            vec![family(
                "stale_value",
                MetricType::Gauge,
                vec![scalar(&[], 1.0)],
            )],
        )
    };
    // 200 ms interval: stale after 600 ms. The steady node declares a minute.
    assert_eq!(hub.push(&fast, &snap(1, 200)).await.status(), 200);
    assert_eq!(hub.push(&steady, &snap(1, 60_000)).await.status(), 200);
    let text = hub.metrics_text().await;
    assert_eq!(
        lines_with(&text, "stale_value", "node", "fast").len(),
        1,
        "{text}"
    );
    assert!(text.contains("fleetgate_node_up{instance=\"fast\",node=\"fast\"} 1\n"));

    let start = Instant::now();
    let text = loop {
        let text = hub.metrics_text().await;
        if lines_with(&text, "stale_value", "node", "fast").is_empty() {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "fast node never went stale"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        text.contains("fleetgate_node_up{instance=\"fast\",node=\"fast\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("fleetgate_node_series{instance=\"fast\",node=\"fast\"} 0\n"));
    assert_eq!(
        lines_with(
            &text,
            "fleetgate_node_last_push_timestamp_seconds",
            "node",
            "fast"
        )
        .len(),
        1
    );
    assert_eq!(lines_with(&text, "stale_value", "node", "steady").len(), 1);
    assert!(
        text.contains("fleetgate_hub_nodes{state=\"stale\"} 1"),
        "{text}"
    );
    let info = hub.node("fast").await.unwrap();
    assert_eq!(info["state"], "stale");
    assert!(info["last_push"].as_f64().unwrap() > 1.0e9);
    assert_eq!(hub.node("steady").await.unwrap()["state"], "up");

    assert_eq!(hub.push(&fast, &snap(2, 60_000)).await.status(), 200);
    let text = hub.metrics_text().await;
    assert_eq!(lines_with(&text, "stale_value", "node", "fast").len(), 1);
    assert_eq!(hub.node("fast").await.unwrap()["state"], "up");
}
