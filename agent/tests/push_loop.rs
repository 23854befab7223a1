//! The push loop against a real `fleetgate-hub` process: enrollment, token reuse across agent
//! restarts, hub outage and restart (recovery, only the latest snapshot kept), removal,
//! SIGTERM, deregister.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::time::Duration;

use fleetgate_agent::enroll::StateDir;
use fleetgate_shared::{Bucket, Family, Label, Quantile, Series, Value};
use fleetgate_testkit::exposition::{series_labels, serve, sum, value};
use fleetgate_testkit::{assert_stopped_once, command, eventually, Agent, AgentArgs, Binary, Hub};

/// Where the agent keeps its push token for `hub`: `STATE_DIR/hubs/<name>/`.
fn hub_state(state: &std::path::Path, hub: &Hub) -> std::path::PathBuf {
    StateDir::for_hub(state, &hub.base_url())
        .path()
        .to_path_buf()
}

/// Waits until the hub shows a snapshot of `node` whose `process_start_time_seconds` is not
/// `not_start` and returns it: proof that a push of a (new) agent process arrived.
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
    let hub = Hub::start(&[]);
    let state = tempfile::tempdir().unwrap();
    let args = AgentArgs::new(&hub, "edge-1", state.path()).with(["--label", "team=ml"]);
    let mut agent = Agent::start(args.args());

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
    let token_path = hub_state(state.path(), &hub).join("push.token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(!token.trim().is_empty());
    assert_eq!(
        std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hub_state(state.path(), &hub).join("enrollment.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["node"], "edge-1");
    assert_eq!(record["hub"], hub.base_url());

    let status = agent.terminate().await;
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    assert!(agent.log().contains("shutting down"));

    // Restarted: same token, no new enrollment, pushes accepted.
    let mut agent = Agent::start(args.args());
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

/// Series of the scrape target in the outage test: 20,000 series of two labels make one
/// snapshot hold 6.4 MiB of heap in the agent (what [`snapshot_heap_bytes`] counts), far more
/// than its heap's peak moves between cycles.
const OUTAGE_SERIES: usize = 20_000;

/// A gauge family of `series` series, like a host with many disks would expose.
fn outage_workload(series: usize) -> String {
    let mut text = String::from(
        "# HELP outage_workload_bytes A value per series.\n# TYPE outage_workload_bytes gauge\n",
    );
    for i in 0..series {
        let _ = writeln!(
            text,
            "outage_workload_bytes{{disk=\"sd{}\",series=\"{i}\"}} {}",
            i % 64,
            i * 4096
        );
    }
    text
}

/// Heap bytes that one snapshot of `families` holds: the family and series vectors, the label
/// vectors and every string, at their capacities. What keeping one more snapshot costs at least;
/// the allocator adds its own overhead to each of these allocations.
fn snapshot_heap_bytes(families: Vec<Family>) -> u64 {
    let label = |l: &Label| l.name.capacity() + l.value.capacity();
    let series = |s: &Series| {
        let value = match &s.value {
            Value::Scalar(_) => 0,
            Value::Histogram(h) => h.buckets.capacity() * std::mem::size_of::<Bucket>(),
            Value::Summary(q) => q.quantiles.capacity() * std::mem::size_of::<Quantile>(),
        };
        s.labels.capacity() * std::mem::size_of::<Label>()
            + s.labels.iter().map(label).sum::<usize>()
            + value
    };
    let family = |f: &Family| {
        f.name.capacity()
            + f.help.capacity()
            + f.series.capacity() * std::mem::size_of::<Series>()
            + f.series.iter().map(series).sum::<usize>()
    };
    (families.capacity() * std::mem::size_of::<Family>()
        + families.iter().map(family).sum::<usize>()) as u64
}

/// The highest `RssAnon` of `agent` sampled every 50 ms for `window`; panics if it exits.
async fn peak_anon(agent: &mut Agent, window: Duration) -> u64 {
    let end = std::time::Instant::now() + window;
    let mut peak = 0;
    while std::time::Instant::now() < end {
        assert!(agent.is_running(), "the agent exited");
        peak = peak.max(agent.memory().anon);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_hub_outage_and_restart_keeping_only_the_latest_snapshot() {
    let workload = outage_workload(OUTAGE_SERIES);
    let snapshot = snapshot_heap_bytes(fleetgate_shared::text::parse(&workload).unwrap());
    let target = serve(workload).await;
    let mut hub = Hub::start(&[]);
    let state = tempfile::tempdir().unwrap();
    let mut args = AgentArgs::new(&hub, "edge-2", state.path()).with(["--scrape-url", &target]);
    // Long enough for a debug build to collect and push 20,000 series well within one interval:
    // a push still in flight at the next collection holds the snapshot it sends.
    args.interval = "1s".into();
    let mut agent = Agent::start(args.args());
    eventually(
        Duration::from_secs(30),
        "the workload on the hub",
        || async {
            let fams = hub.metrics().await;
            let n = fams
                .iter()
                .find(|f| f.name == "outage_workload_bytes")
                .map_or(0, |f| f.series.len());
            (n == OUTAGE_SERIES).then_some(())
        },
    )
    .await;
    let token = std::fs::read_to_string(hub_state(state.path(), &hub).join("push.token")).unwrap();

    // The agent's heap (RssAnon) in normal operation, sampled every 50 ms over two windows of
    // 4 s after a few cycles: how far its peak moves on its own is the noise the outage is
    // measured against. A snapshot lives on the heap; RssFile (the binary's pages) is left out
    // because the kernel drops and reloads those under memory pressure from other processes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = peak_anon(&mut agent, Duration::from_secs(4)).await;
    let second = peak_anon(&mut agent, Duration::from_secs(4)).await;
    let noise = first.abs_diff(second);
    let before = first.max(second);

    // Hub down for 8 s: the agent retries with backoff (1 s interval: 250 ms doubling up to
    // one interval) and collects a new snapshot every interval, dropping the one it held before
    // each collection.
    hub.kill9();
    let during = peak_anon(&mut agent, Duration::from_secs(8)).await;
    let growth = during.saturating_sub(before);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "one snapshot {:.2} MiB; agent RssAnon peak {:.2} then {:.2} MiB in normal operation \
         (noise {:.2} MiB), {:.2} MiB during the outage (growth {:.2} MiB)",
        mib(snapshot),
        mib(first),
        mib(second),
        mib(noise),
        mib(during),
        mib(growth)
    );
    // The bound: an agent that kept one snapshot more than the latest (the one it cannot push)
    // would grow by a whole `snapshot` at its next collection; one that queued them would grow
    // by that at every collection. Half a snapshot tells one kept snapshot from two, provided
    // the peak moves by much less than that on its own, which the noise shows.
    assert!(
        noise < snapshot / 4,
        "the agent's heap peak moved by {noise} bytes in normal operation, too close to one \
         snapshot ({snapshot} bytes) for this test to tell one kept snapshot from two"
    );
    assert!(
        growth < snapshot / 2,
        "the agent's heap grew by {growth} bytes during the outage: more than half of one \
         snapshot ({snapshot} bytes), so more than the latest snapshot was kept"
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
    hub.restart();
    eventually(
        Duration::from_secs(30),
        "pushes after the hub came back",
        || async { (sent_bytes(&hub, "edge-2").await > 0.0).then_some(()) },
    )
    .await;
    let failures = sum(
        &hub.metrics().await,
        "fleetgate_agent_push_failures_total",
        &[("node", "edge-2")],
    );
    assert!(
        failures >= 3.0,
        "{failures} failed attempts during the outage; the test needs several cycles"
    );
    assert_eq!(
        std::fs::read_to_string(hub_state(state.path(), &hub).join("push.token")).unwrap(),
        token
    );
    // The hub shows the push before the agent has read the answer and logged it.
    eventually(Duration::from_secs(10), "the recovery logged", || {
        let log = agent.log();
        async move { log.contains("pushes are accepted again").then_some(()) }
    })
    .await;
    assert!(agent.terminate().await.success());
}

#[tokio::test]
async fn removal_stops_pushing_without_reenrolling_and_a_restart_is_refused() {
    let hub = Hub::start(&[]);
    let state = tempfile::tempdir().unwrap();
    let args = AgentArgs::new(&hub, "edge-3", state.path());
    let mut agent = Agent::start(args.args());
    pushed_by(&hub, "edge-3", None).await;

    let resp = hub.remove_node(&hub.admin_token(), "edge-3").await;
    assert_eq!(resp.status(), 200);
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
    assert!(agent.is_running());
    assert_stopped_once(&agent.log(), 1);
    assert_eq!(hub.node_state("edge-3").await.as_deref(), Some("removed"));
    assert!(agent.terminate().await.success());

    // Restarted with the revoked token: it tries the enrollment token, the hub refuses a
    // removed name without the admin token, and the agent says so and exits non-zero.
    let mut agent = Agent::start(args.args());
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
    let hub = Hub::start(&[]);
    let state = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(AgentArgs::new(&hub, "edge-4", state.path()).args());
    pushed_by(&hub, "edge-4", None).await;
    assert!(agent.terminate().await.success());

    let out = command(Binary::Agent)
        .args(["deregister", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!hub_state(state.path(), &hub).join("push.token").exists());
    assert_eq!(hub.node_state("edge-4").await.as_deref(), Some("removed"));
    let fams = hub.metrics().await;
    assert!(value(&fams, "process_start_time_seconds", &[("node", "edge-4")]).is_none());
}
