//! The push loop against a real `fleetgate-hub` process: enrollment, token reuse across agent
//! restarts, hub restart and outage (recovery, flat memory), removal, SIGTERM, deregister.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fleetgate_agent::enroll::StateDir;
use support::{agent_args, eventually, refs, series_labels, value, Agent, Hub};

/// Where the agent keeps its push token for `hub`: `STATE_DIR/hubs/<name>/`.
fn hub_state(state: &std::path::Path, hub: &Hub) -> std::path::PathBuf {
    StateDir::for_hub(state, &hub.url()).path().to_path_buf()
}

/// Waits until the hub shows a snapshot of `node` whose `process_start_time_seconds` is
/// `start` (when given) and returns that value: proof that a push of that agent process arrived.
async fn pushed_by(hub: &Hub, node: &str, not_start: Option<f64>) -> f64 {
    eventually(Duration::from_secs(30), "a push from the agent", || async {
        let fams = hub.metrics().await;
        let v = value(&fams, "process_start_time_seconds", &[("node", node)])?;
        (Some(v) != not_start).then_some(v)
    })
    .await
}

async fn sent_bytes(hub: &Hub, node: &str) -> f64 {
    let fams = hub.metrics().await;
    value(&fams, "fleetgate_agent_sent_bytes_total", &[("node", node)]).unwrap_or(0.0)
}

#[tokio::test]
async fn enrolls_reuses_its_token_after_restart_and_exits_0_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&tmp.path().join("hub"), "127.0.0.1:0").await;
    let state = tmp.path().join("state");
    let mut args = agent_args(&hub, "edge-1", &state, "");
    args.extend(["--label".into(), "team=ml".into()]);
    let mut agent = Agent::start(&refs(&args), &tmp.path().join("agent1.log"));

    let first_start = pushed_by(&hub, "edge-1", None).await;
    let fams = hub.metrics().await;
    let (labels, _) = series_labels(
        &fams,
        "fleetgate_agent_snapshot_series",
        &[("node", "edge-1")],
    )
    .unwrap();
    assert_eq!(labels.get("instance").map(String::as_str), Some("edge-1"));
    assert_eq!(
        labels.get("node_type").map(String::as_str),
        Some("cpu"),
        "{labels:?}"
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("ml"));
    let nodes = hub.nodes().await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert!(
        nodes[0]["hostname"].is_string(),
        "hostname sent for operators: {nodes:?}"
    );

    use std::os::unix::fs::PermissionsExt;
    let token_path = hub_state(&state, &hub).join("push.token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(!token.trim().is_empty());
    assert_eq!(
        std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hub_state(&state, &hub).join("enrollment.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["node"], "edge-1");
    assert_eq!(record["hub"], hub.url());

    let status = agent.terminate().await;
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status:?}; log:\n{}",
        agent.log()
    );
    assert!(agent.log().contains("shutting down"));

    // Restarted: same token, no new enrollment, pushes accepted.
    let mut agent = Agent::start(&refs(&args), &tmp.path().join("agent2.log"));
    pushed_by(&hub, "edge-1", Some(first_start)).await;
    assert_eq!(
        std::fs::read_to_string(&token_path).unwrap(),
        token,
        "push token was replaced"
    );
    let log = agent.log();
    assert!(log.contains("reusing the stored push token"), "{log}");
    assert!(
        !log.contains("enrolled; push token stored"),
        "enrolled again:\n{log}"
    );
    assert_eq!(hub.nodes().await.len(), 1);
    assert!(agent.terminate().await.success());
}

#[tokio::test]
async fn survives_hub_outage_and_restart_with_flat_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    let mut hub = Hub::start(&hub_dir, "127.0.0.1:0").await;
    let addr = hub.addr.clone();
    let state = tmp.path().join("state");
    let args = agent_args(&hub, "edge-2", &state, "");
    let mut agent = Agent::start(&refs(&args), &tmp.path().join("agent.log"));
    pushed_by(&hub, "edge-2", None).await;
    let token_path = hub_state(&state, &hub).join("push.token");
    let token = std::fs::read_to_string(&token_path).unwrap();

    // Hub down: the agent retries with backoff for a while (200 ms interval: 100 ms, then
    // 200 ms steps).
    hub.stop();
    let rss_before = agent.rss_bytes();
    let mut rss_max = rss_before;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            agent.is_running(),
            "agent died while the hub was down:\n{}",
            agent.log()
        );
        rss_max = rss_max.max(agent.rss_bytes());
    }
    assert!(
        rss_max < rss_before + 20 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_max} bytes during the outage"
    );
    let log = agent.log();
    assert!(log.contains("push failed, retrying with backoff"), "{log}");
    // One warning per outage, not one per attempt.
    assert_eq!(
        log.matches("push failed, retrying with backoff").count(),
        1,
        "{log}"
    );

    // Hub back on the same address with the same data: the same token works again.
    let hub = Hub::start(&hub_dir, &addr).await;
    eventually(
        Duration::from_secs(30),
        "pushes after the hub came back",
        || async { (sent_bytes(&hub, "edge-2").await > 0.0).then_some(()) },
    )
    .await;
    let fams = hub.metrics().await;
    let failures: f64 = fams
        .iter()
        .filter(|f| f.name == "fleetgate_agent_push_failures_total")
        .flat_map(|f| &f.series)
        .filter_map(|s| match s.value {
            fleetgate_shared::Value::Scalar(v) => Some(v),
            _ => None,
        })
        .sum();
    assert!(failures >= 1.0, "the outage shows in push_failures_total");
    assert_eq!(std::fs::read_to_string(&token_path).unwrap(), token);
    assert!(agent.log().contains("pushes are accepted again"));
    assert!(agent.terminate().await.success());
}

#[tokio::test]
async fn removal_stops_pushing_without_reenrolling_and_a_restart_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&tmp.path().join("hub"), "127.0.0.1:0").await;
    let state = tmp.path().join("state");
    let args = agent_args(&hub, "edge-3", &state, "");
    let mut agent = Agent::start(&refs(&args), &tmp.path().join("agent.log"));
    pushed_by(&hub, "edge-3", None).await;

    hub.remove_node("edge-3").await;
    eventually(
        Duration::from_secs(20),
        "the agent to log why it stopped",
        || {
            let log = agent.log();
            async move { log.contains("pushing stopped").then_some(()) }
        },
    )
    .await;
    // Several intervals later: still running, still removed, no second enrollment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.is_running(), "{}", agent.log());
    let log = agent.log();
    assert_eq!(log.matches("pushing stopped").count(), 1, "{log}");
    assert_eq!(
        log.matches("enrolled; push token stored").count(),
        1,
        "{log}"
    );
    assert_eq!(hub.node_state("edge-3").await.as_deref(), Some("removed"));
    assert!(agent.terminate().await.success());

    // Restarted with the revoked token: it tries the enrollment token, the hub refuses a
    // removed name without the admin token, and the agent says so and exits non-zero.
    let mut agent = Agent::start(&refs(&args), &tmp.path().join("agent2.log"));
    let status = agent.wait_exit(Duration::from_secs(30)).await;
    let log = agent.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("enrolling again with the enrollment token"),
        "{log}"
    );
    assert!(log.contains("was refused"), "{log}");
    assert!(log.contains("admin token"), "hub's answer logged: {log}");
    assert_eq!(hub.node_state("edge-3").await.as_deref(), Some("removed"));
}

#[tokio::test]
async fn deregister_removes_the_node_and_forgets_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&tmp.path().join("hub"), "127.0.0.1:0").await;
    let state = tmp.path().join("state");
    let args = agent_args(&hub, "edge-4", &state, "");
    let mut agent = Agent::start(&refs(&args), &tmp.path().join("agent.log"));
    pushed_by(&hub, "edge-4", None).await;
    assert!(agent.terminate().await.success());

    let out = std::process::Command::new(support::agent_bin())
        .args(["deregister", "--state-dir"])
        .arg(&state)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!hub_state(&state, &hub).join("push.token").exists());
    assert_eq!(hub.node_state("edge-4").await.as_deref(), Some("removed"));
    let fams = hub.metrics().await;
    assert!(value(&fams, "process_start_time_seconds", &[("node", "edge-4")]).is_none());
}
