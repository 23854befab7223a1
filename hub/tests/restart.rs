//! Identities survive restarts, `kill -9` included: every acknowledged enrollment keeps pushing
//! with its token, removed nodes stay removed, generated admin/enroll tokens stay the same.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use fleetgate_shared::MetricType;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::Hub;

fn snap(seq: u64) -> fleetgate_shared::Snapshot {
    snapshot(
        seq,
        60_000,
        vec![family(
            "restart_value",
            MetricType::Gauge,
            vec![scalar(&[], seq as f64)],
        )],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_identities_and_tokens() {
    let mut hub = Hub::start(&[]);
    let a = hub.enroll("a", &[("node_type", "gpu")]).await;
    let b = hub.enroll("b", &[]).await;
    assert_eq!(hub.push(&a, &snap(1)).await.status(), 200);
    assert_eq!(hub.remove_node(&hub.admin_token(), "b").await.status(), 200);

    // Enrollments racing with a kill -9: each one that was acknowledged must survive.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = hub.client().clone();
        let url = hub.url("/add_node");
        let token = hub.enroll_token();
        tasks.push(tokio::spawn(async move {
            let node = format!("racer-{i}");
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({ "node": node }))
                .send()
                .await
                .ok()?;
            if resp.status() != 200 {
                return None;
            }
            let v: serde_json::Value = resp.json().await.ok()?;
            Some((node, v["token"].as_str()?.to_string()))
        }));
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    let admin_before = hub.admin_token();
    hub.kill9_and_restart();
    let mut acknowledged = Vec::new();
    for t in tasks {
        if let Some(pair) = t.await.unwrap() {
            acknowledged.push(pair);
        }
    }
    eprintln!(
        "{} of 40 racing enrollments were acknowledged before the kill",
        acknowledged.len()
    );

    assert_eq!(hub.admin_token(), admin_before);
    assert_eq!(
        hub.push(&a, &snap(2)).await.status(),
        200,
        "token works after kill -9"
    );
    assert_eq!(
        hub.push(&b, &snap(2)).await.status(),
        401,
        "removed node stays revoked"
    );
    for (node, token) in &acknowledged {
        let resp = hub.push(token, &snap(1)).await;
        assert_eq!(resp.status(), 200, "{node}: {}", resp.text().await.unwrap());
    }
    let info = hub.node("a").await.unwrap();
    assert_eq!(info["labels"]["node_type"], "gpu");
    assert_eq!(info["hostname"], "a.example");
    assert_eq!(hub.node("b").await.unwrap()["state"], "removed");
    let text = hub.metrics_text().await;
    assert!(
        text.contains("restart_value{instance=\"a\",node=\"a\",node_type=\"gpu\"} 2\n"),
        "{text}"
    );

    // A second, plain restart changes nothing either.
    hub.kill9_and_restart();
    assert_eq!(hub.push(&a, &snap(3)).await.status(), 200);
}
