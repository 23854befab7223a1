//! Retry behaviour against the real hub: a hub that is not up yet when the agent starts, and
//! `429 Too Many Requests` with `Retry-After`, which the hub answers every authenticated
//! request from a source address that has used up its budget of failed authentications.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use fleetgate_agent::enroll::StateDir;
use fleetgate_testkit::exposition::value;
use fleetgate_testkit::{eventually, Agent, AgentArgs, Hub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_late_hub_and_honours_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // Three failed authentications use up a source's budget; one more is regained every 4 s.
    // The hub is stopped again at once: its address and tokens are kept for the restart.
    let mut hub = Hub::start(&["--auth-failure-burst", "3", "--auth-failure-rate", "0.25"]);
    assert!(hub.terminate().await.success(), "{}", hub.log());
    let mut args = AgentArgs::new(&hub, "retry", &state);
    args.interval = "100ms".into();
    let mut agent = Agent::start(args.args());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(agent.is_running(), "{}", agent.log());
    assert!(agent.log().contains("cannot enroll yet"), "{}", agent.log());

    hub.restart();
    eventually(
        Duration::from_secs(30),
        "the late hub to get pushes",
        || {
            let hub = &hub;
            async move { (hub.node_state("retry").await.as_deref() == Some("up")).then_some(()) }
        },
    )
    .await;
    // The agent keeps its token for this hub in STATE_DIR/hubs/<name>/.
    let token_path = StateDir::for_hub(&state, &hub.base_url())
        .path()
        .join("push.token");
    let token = std::fs::read_to_string(&token_path).unwrap();

    // Bad tokens from the agent's own source address (loopback) until the hub refuses it.
    for _ in 0..3 {
        let resp = hub.push_text("not-a-token-of-this-hub", "x 1\n").await;
        assert_eq!(resp.status(), 401);
    }
    let flooded = Instant::now();
    let limited = hub.push_text("not-a-token-of-this-hub", "x 1\n").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&retry_after), "Retry-After: {retry_after}");
    // The agent's pushes get the same 429; it waits as told and is then accepted again.
    eventually(Duration::from_secs(30), "the agent accepted again", || {
        let log = agent.log();
        async move {
            let limited = log.find("rate limiting")?;
            log[limited..]
                .contains("pushes are accepted again")
                .then_some(())
        }
    })
    .await;
    assert!(
        flooded.elapsed() >= Duration::from_secs(retry_after - 1),
        "accepted again {:?} after the flood, Retry-After was {retry_after} s",
        flooded.elapsed()
    );
    // At a 100 ms interval an agent that ignored Retry-After would have been refused ~40 times
    // in those seconds; one that waits is refused once or twice (the probe above is one more).
    let fams = hub.metrics().await;
    let refused = value(
        &fams,
        "fleetgate_hub_auth_rate_limited_total",
        &[("route", "push")],
    )
    .unwrap();
    assert!(
        (2.0..=4.0).contains(&refused),
        "{refused} pushes refused for the failed-auth limit"
    );
    // Same identity, back on /metrics.
    assert_eq!(std::fs::read_to_string(&token_path).unwrap(), token);
    eventually(Duration::from_secs(10), "the node up again", || {
        let hub = &hub;
        async move { (hub.node_state("retry").await.as_deref() == Some("up")).then_some(()) }
    })
    .await;
    assert!(agent.terminate().await.success());
}
