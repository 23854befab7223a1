//! Restarts without a gap: after SIGTERM the hub saves every node's latest snapshot, and the
//! next start serves them before any agent pushes again, with every node up and values pushes
//! carrying on against the saved base. A corrupt or other-version snapshots file is skipped
//! with one log line; after `kill -9` the hub starts without snapshots but keeps every
//! identity.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use fleetgate_shared::{
    encode_values, layout_hash, sample_values, MetricType, Snapshot, ValuesHeader,
    VALUES_CONTENT_TYPE,
};
use fleetgate_testkit::snapshot::{family, scalar, snapshot};
use fleetgate_testkit::Hub;

const NODES: [&str; 3] = ["gpu-1", "gpu-2", "cpu-1"];

fn snap(seq: u64, x: f64) -> Snapshot {
    snapshot(
        seq,
        60_000,
        vec![
            family(
                "gr_temperature_celsius",
                MetricType::Gauge,
                vec![scalar(&[("gpu", "0")], x), scalar(&[("gpu", "1")], x + 1.0)],
            ),
            family(
                "gr_requests_total",
                MetricType::Counter,
                vec![scalar(&[], 100.0 + x)],
            ),
        ],
    )
}

/// The sample lines of the pushed families, sorted.
fn node_series(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| l.starts_with("gr_")).collect();
    lines.sort_unstable();
    lines
}

/// The warnings and errors the hub logged after byte `from` of its log.
fn warnings_since(hub: &Hub, from: usize) -> Vec<String> {
    let log = hub.log();
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

/// SIGTERMs the hub, expecting a clean exit.
async fn stop(hub: &mut Hub) {
    let status = hub.terminate().await;
    assert!(status.success(), "the hub exited with {status} on SIGTERM");
}

/// Enrolls and pushes every node of [`NODES`] (node `i` with values `i`); their tokens.
async fn fleet(hub: &Hub) -> Vec<String> {
    let mut tokens = Vec::new();
    for (i, node) in NODES.iter().enumerate() {
        let token = hub.enroll(node, &[("rack", "r1")]).await;
        assert_eq!(hub.push(&token, &snap(10, i as f64)).await.status(), 200);
        tokens.push(token);
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_start_serves_every_node_before_any_push() {
    let mut hub = Hub::start(&[]);
    let tokens = fleet(&hub).await;
    let before = hub.metrics_text().await;
    assert_eq!(node_series(&before).len(), 3 * 3, "{before}");

    stop(&mut hub).await;
    assert!(hub.data_dir().join("snapshots.bin").exists());
    let logged = hub.log().len();
    hub.restart();

    // No push since the restart: every series comes from the saved snapshots.
    let after = hub.metrics_text().await;
    assert_eq!(node_series(&after), node_series(&before));
    for node in NODES {
        assert_eq!(hub.node_state(node).await.as_deref(), Some("up"), "{node}");
        assert!(
            after.contains(&format!(
                "fleetgate_node_up{{instance=\"{node}\",node=\"{node}\",rack=\"r1\"}} 1\n"
            )),
            "{node} not up in {after}"
        );
    }
    // The file is consumed at start: a later crash cannot bring these snapshots back.
    assert!(!hub.data_dir().join("snapshots.bin").exists());
    assert!(hub.log()[logged..].contains("loaded the snapshots saved at the last shutdown"));
    assert_eq!(warnings_since(&hub, logged), Vec::<String>::new());

    // Values pushes carry on against the base saved before the restart.
    let header = ValuesHeader {
        seq: 11,
        interval_ms: 60_000,
        timestamp_ms: 0,
        base_seq: 10,
        layout: layout_hash(&snap(11, 7.5).families),
    };
    let body = encode_values(
        &header,
        &sample_values(&snap(10, 0.0).families),
        &sample_values(&snap(11, 7.5).families),
    );
    let resp = hub
        .push_raw(&tokens[0], VALUES_CONTENT_TYPE, None, body)
        .await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let text = hub.metrics_text().await;
    assert!(text.contains(
        "gr_temperature_celsius{gpu=\"1\",instance=\"gpu-1\",node=\"gpu-1\",rack=\"r1\"} 8.5\n"
    ));
    assert!(text.contains(
        "gr_temperature_celsius{gpu=\"1\",instance=\"gpu-2\",node=\"gpu-2\",rack=\"r1\"} 2\n"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_snapshots_file_is_skipped_with_one_log_line() {
    let mut hub = Hub::start(&[]);
    let tokens = fleet(&hub).await;
    let path = hub.data_dir().join("snapshots.bin");

    // One flipped byte in the middle fails the checksum; a version byte from the future is
    // another format. Either way the hub starts, without the snapshots, and says so once.
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 2] = [
        ("corrupt", |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
        }),
        ("format version 200", |b| b[4] = 200),
    ];
    for (why, damage) in damages {
        stop(&mut hub).await;
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        let logged = hub.log().len();
        hub.restart();

        let text = hub.metrics_text().await;
        assert_eq!(node_series(&text), Vec::<&str>::new(), "{why}");
        let warnings = warnings_since(&hub, logged);
        assert_eq!(warnings.len(), 1, "{why}: {warnings:#?}");
        assert!(
            warnings[0].contains("snapshots file skipped") && warnings[0].contains(why),
            "{why}: {warnings:#?}"
        );
        // Identities are untouched: every node pushes again with its token.
        for (i, token) in tokens.iter().enumerate() {
            assert_eq!(hub.push(token, &snap(20, i as f64)).await.status(), 200);
        }
        assert_eq!(node_series(&hub.metrics_text().await).len(), 3 * 3, "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_starts_without_snapshots_but_with_every_identity() {
    let mut hub = Hub::start(&[]);
    let tokens = fleet(&hub).await;
    // A graceful stop first leaves a file; a start consumes it; then a crash.
    stop(&mut hub).await;
    hub.restart();
    assert_eq!(node_series(&hub.metrics_text().await).len(), 3 * 3);
    hub.kill9_and_restart();

    let text = hub.metrics_text().await;
    assert_eq!(node_series(&text), Vec::<&str>::new(), "{text}");
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(hub.push(token, &snap(30, i as f64)).await.status(), 200);
    }
    assert_eq!(node_series(&hub.metrics_text().await).len(), 3 * 3);
}
