//! Many nodes push concurrently while /metrics is scraped: every scrape is a consistent
//! exposition — it parses, promtool finds no error, every family appears once and contiguous,
//! and each node's series all come from one push (a push replaces a snapshot atomically).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fleetgate_shared::{MetricType, Value};
use fleetgate_testkit::exposition::promtool_check_metrics;
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::{require_tool, Hub};

const NODES: usize = 16;
const PUSHES: u64 = 60;

fn node_snapshot(node: usize, seq: u64) -> fleetgate_shared::Snapshot {
    let n = 5 + node;
    snapshot(
        seq,
        60_000,
        vec![
            family(
                "load_value",
                MetricType::Gauge,
                (0..n)
                    .map(|i| scalar(&[("i", &i.to_string())], seq as f64))
                    .collect(),
            ),
            family(
                "load_total",
                MetricType::Counter,
                (0..n)
                    .map(|i| scalar(&[("i", &i.to_string())], seq as f64))
                    .collect(),
            ),
        ],
    )
}

/// Checks one scrape; returns how many nodes it showed.
fn check_scrape(text: &str) -> usize {
    // Contiguity: once a family's block ends, its name never comes back.
    let mut done: HashSet<String> = HashSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(!done.contains(&name), "family {name} appears twice");
            if !current.is_empty() {
                done.insert(std::mem::take(&mut current));
            }
            current = name;
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| *b == current))
                .unwrap_or(name);
            assert_eq!(base, current, "sample {line:?} outside its family block");
        }
    }
    let fams = fleetgate_shared::text::parse(text).unwrap();
    let mut nodes_seen = 0;
    for fname in ["load_value", "load_total"] {
        let Some(f) = fams.iter().find(|f| f.name == fname) else {
            continue;
        };
        let mut per_node: HashMap<String, Vec<f64>> = HashMap::new();
        for s in &f.series {
            let node = s
                .labels
                .iter()
                .find(|l| l.name == "node")
                .unwrap()
                .value
                .clone();
            let Value::Scalar(v) = s.value else { panic!() };
            per_node.entry(node).or_default().push(v);
        }
        for (node, values) in &per_node {
            let idx: usize = node.strip_prefix("n").unwrap().parse().unwrap();
            assert_eq!(values.len(), 5 + idx, "{fname} of {node}: partial snapshot");
            assert!(
                values.iter().all(|v| *v == values[0]),
                "{fname} of {node} mixes pushes: {values:?}"
            );
        }
        nodes_seen = nodes_seen.max(per_node.len());
    }
    nodes_seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrapes_stay_consistent_under_concurrent_pushes() {
    let promtool = require_tool("promtool");
    let hub = Hub::start(&[]);
    let mut tokens = Vec::new();
    for n in 0..NODES {
        tokens.push(hub.enroll(&format!("n{n}"), &[]).await);
    }
    let mut pushers = Vec::new();
    for (n, token) in tokens.into_iter().enumerate() {
        let client = hub.client().clone();
        let url = hub.url("/push");
        pushers.push(tokio::spawn(async move {
            for seq in 1..=PUSHES {
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", fleetgate_shared::CONTENT_TYPE)
                    .body(fleetgate_shared::encode(&node_snapshot(n, seq)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut scrapes = 0;
    let mut max_nodes = 0;
    while scrapes < 200 && !pushers.iter().all(|p| p.is_finished()) {
        let text = hub.metrics_text().await;
        max_nodes = max_nodes.max(check_scrape(&text));
        if let Some(promtool) = promtool.as_deref().filter(|_| scrapes % 4 == 0) {
            let (code, msg) = promtool_check_metrics(promtool, &text);
            assert_ne!(code, 1, "promtool: {msg}");
        }
        scrapes += 1;
    }
    for p in pushers {
        p.await.unwrap();
    }
    let text = hub.metrics_text().await;
    assert_eq!(check_scrape(&text), NODES);
    assert!(text.contains(&format!(
        "load_value{{i=\"0\",instance=\"n3\",node=\"n3\"}} {PUSHES}\n"
    )));
    eprintln!("{scrapes} consistent scrapes during the pushes (up to {max_nodes} nodes each)");
    assert!(scrapes > 0);
}
