//! Every kind of bad input gets its status code and a message naming the problem, and the hub
//! keeps serving the other nodes throughout.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use fleetgate_shared::{Histogram, MetricType, Series, Value};
use fleetgate_testkit::exposition::lines_with;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::Hub;

async fn expect(resp: reqwest::Response, status: u16, needle: &str) {
    let code = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(code, status, "body: {body}");
    assert!(body.contains(needle), "expected {needle:?} in {body:?}");
}

fn good() -> fleetgate_shared::Snapshot {
    snapshot(
        1,
        60_000,
        vec![family(
            "good_value",
            MetricType::Gauge,
            vec![scalar(&[("k", "v")], 1.0)],
        )],
    )
}

#[tokio::test]
async fn bad_input_is_refused_with_a_named_reason() {
    let hub = Hub::start(&[
        "--max-body-bytes",
        "4096",
        "--max-decompressed-bytes",
        "65536",
        "--max-series-per-node",
        "5",
        "--max-labels-per-series",
        "3",
        "--max-label-value-len",
        "16",
    ]);
    let healthy = hub.enroll("healthy", &[]).await;
    assert_eq!(hub.push(&healthy, &good()).await.status(), 200);
    let bad = hub.enroll("bad", &[("node_type", "cpu")]).await;

    // 401: none, unknown, revoked by re-enrollment.
    let resp = hub
        .client()
        .post(hub.url("/push"))
        .body("x 1\n")
        .send()
        .await
        .unwrap();
    expect(resp, 401, "missing bearer token").await;
    expect(
        hub.push("not-a-token", &good()).await,
        401,
        "unknown or revoked",
    )
    .await;
    let bad2 = hub.enroll("bad", &[("node_type", "cpu")]).await;
    expect(hub.push(&bad, &good()).await, 401, "unknown or revoked").await;
    let bad = bad2;
    assert_eq!(hub.push(&bad, &good()).await.status(), 200);

    // 413: body over the limit; decompressed size over the cap (a zstd bomb of a few KB).
    let big = "x 1\n".repeat(2000).into_bytes();
    expect(
        hub.push_raw(&bad, "text/plain", None, big).await,
        413,
        "exceeds the limit of 4096 bytes",
    )
    .await;
    let mut bomb = Vec::new();
    zstd::stream::copy_encode(
        std::io::Read::take(std::io::repeat(b'a'), 64 << 20),
        &mut bomb,
        3,
    )
    .unwrap();
    assert!(bomb.len() < 4096, "bomb is {} bytes", bomb.len());
    expect(
        hub.push_raw(&bad, "text/plain", Some("zstd"), bomb).await,
        413,
        "decompressed body exceeds",
    )
    .await;

    // 400: malformed bodies, with what failed.
    expect(
        hub.push_raw(
            &bad,
            fleetgate_shared::CONTENT_TYPE,
            None,
            b"garbage".to_vec(),
        )
        .await,
        400,
        "bad magic",
    )
    .await;
    expect(
        hub.push_raw(&bad, "text/plain", None, b"ok 1\nbad{ 2\n".to_vec())
            .await,
        400,
        "line 2",
    )
    .await;
    expect(
        hub.push_raw(&bad, "text/plain", Some("gzip"), b"not gzip".to_vec())
            .await,
        400,
        "gzip",
    )
    .await;

    // 415: unknown Content-Type or Content-Encoding.
    expect(
        hub.push_raw(&bad, "application/json", None, b"{}".to_vec())
            .await,
        415,
        "Content-Type",
    )
    .await;
    expect(
        hub.push_raw(&bad, "text/plain", Some("br"), b"x 1\n".to_vec())
            .await,
        415,
        "Content-Encoding",
    )
    .await;

    // 422: each rule names the first offender.
    let cases: Vec<(Vec<fleetgate_shared::Family>, &str)> = vec![
        (
            vec![family(
                "bad-metric",
                MetricType::Gauge,
                vec![scalar(&[], 1.0)],
            )],
            "invalid metric name \"bad-metric\"",
        ),
        (
            vec![family(
                "m",
                MetricType::Gauge,
                vec![scalar(&[("bad-label", "1")], 1.0)],
            )],
            "invalid label name \"bad-label\"",
        ),
        (
            vec![family(
                "m",
                MetricType::Gauge,
                vec![scalar(&[("a", "1")], 1.0), scalar(&[("a", "1")], 2.0)],
            )],
            "duplicate series m{a=\"1\"}",
        ),
        (
            vec![family(
                "m",
                MetricType::Gauge,
                (0..6)
                    .map(|i| scalar(&[("i", &i.to_string())], 1.0))
                    .collect(),
            )],
            "6 series, more than the limit of 5",
        ),
        (
            vec![family(
                "m",
                MetricType::Gauge,
                vec![scalar(
                    &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
                    1.0,
                )],
            )],
            "4 labels, more than the limit of 3",
        ),
        (
            vec![family(
                "m",
                MetricType::Gauge,
                vec![scalar(&[("a", "this value is far too long")], 1.0)],
            )],
            "value of label a in series m is 26 bytes",
        ),
    ];
    for (families, needle) in cases {
        expect(
            hub.push(&bad, &snapshot(10, 60_000, families)).await,
            422,
            needle,
        )
        .await;
    }
    let info = hub.node("bad").await.unwrap();
    assert!(
        info["last_rejection"]
            .as_str()
            .unwrap()
            .contains("value of label a"),
        "{info}"
    );

    // Type conflict: only that family is quarantined; the rest of the push is exposed.
    let mut conflict = good();
    conflict.seq = 20;
    conflict.families[0].kind = MetricType::Counter;
    conflict.families[0].name = "good_value".into();
    conflict.families.push(family(
        "bad_only",
        MetricType::Gauge,
        vec![scalar(&[], 7.0)],
    ));
    let resp = hub.push(&bad, &conflict).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["quarantined"], serde_json::json!(["good_value"]));
    let info = hub.node("bad").await.unwrap();
    assert!(
        info["last_rejection"]
            .as_str()
            .unwrap()
            .contains("good_value is counter"),
        "{info}"
    );
    assert_eq!(info["quarantined_families"], 1);
    let text = hub.metrics_text().await;
    assert_eq!(text.matches("# TYPE good_value ").count(), 1);
    assert!(text.contains("# TYPE good_value gauge"));
    assert_eq!(lines_with(&text, "good_value", "node", "bad").len(), 0);
    assert_eq!(lines_with(&text, "bad_only", "node", "bad").len(), 1);
    assert!(
        text.contains("fleetgate_hub_quarantined_families{node=\"bad\"} 1"),
        "{text}"
    );
    assert!(text.contains("fleetgate_hub_rejected_series_total{reason=\"type_conflict\"} 1"));
    assert!(text.contains("fleetgate_hub_rejected_series_total{reason=\"duplicate\"}"));

    // A histogram value in a gauge family is refused, not rendered into a broken exposition.
    let mut wrong = good();
    wrong.seq = 30;
    wrong.families[0].series = vec![Series {
        labels: vec![],
        value: Value::Histogram(Histogram::default()),
    }];
    expect(
        hub.push(&bad, &wrong).await,
        422,
        "does not match the family type gauge",
    )
    .await;

    // Out-of-order push: accepted as 200 but ignored.
    let mut old = good();
    old.seq = 2;
    let v: serde_json::Value = hub.push(&bad, &old).await.json().await.unwrap();
    assert_eq!(v["result"], "out_of_order");

    // Administration errors.
    expect(
        hub.remove_node(&hub.admin_token(), "nobody").await,
        404,
        "unknown node \"nobody\"",
    )
    .await;
    expect(
        hub.remove_node(&healthy, "bad").await,
        403,
        "only remove its own node",
    )
    .await;
    expect(hub.remove_node("nope", "bad").await, 401, "").await;
    expect(hub.add_node("nope", "x", &[]).await, 401, "").await;
    expect(
        hub.add_node(&hub.enroll_token(), "x", &[("instance", "forged")])
            .await,
        422,
        "set by the hub",
    )
    .await;
    let resp = hub
        .client()
        .post(hub.url("/add_node"))
        .bearer_auth(hub.enroll_token())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect(resp, 400, "").await;
    let resp = hub
        .client()
        .get(hub.url("/nodes"))
        .bearer_auth(hub.enroll_token())
        .send()
        .await
        .unwrap();
    expect(resp, 401, "admin").await;
    assert_eq!(hub.remove_node(&bad, "bad").await.status(), 200);
    expect(hub.push(&bad, &good()).await, 401, "revoked").await;
    expect(
        hub.add_node(&hub.enroll_token(), "bad", &[]).await,
        403,
        "needs the admin token",
    )
    .await;
    assert_eq!(
        hub.add_node(&hub.admin_token(), "bad", &[]).await.status(),
        200
    );

    // Through all of it the healthy node stayed exposed.
    let text = hub.metrics_text().await;
    assert_eq!(
        lines_with(&text, "good_value", "node", "healthy").len(),
        1,
        "{text}"
    );
    assert!(text.contains("fleetgate_hub_pushes_total{result=\"unauthorized\"}"));
    assert!(
        text.contains("fleetgate_hub_pushes_total{result=\"too_large\"} 2"),
        "{text}"
    );
    assert!(text.contains("fleetgate_hub_pushes_total{result=\"out_of_order\"} 1"));
}
