//! Retry behaviour against the real hub: a hub that is not up yet when the agent starts, and
//! `429 Too Many Requests` with `Retry-After`, which the hub answers every authenticated
//! request from a source address that has used up its budget of failed authentications.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{eventually, value, Agent, Hub};

/// Reserves a loopback port nothing listens on yet.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_late_hub_and_honours_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("hub");
    let state = tmp.path().join("state");
    // The enrollment token is chosen here, so the agent can start before the hub exists.
    let enroll = tmp.path().join("enroll.token");
    std::fs::write(&enroll, "enroll-secret-0123456789\n").unwrap();
    let enroll_arg = enroll.display().to_string();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let state_arg = state.display().to_string();
    let hub_url = format!("http://{listen}");
    let mut agent = Agent::start(
        &[
            "--hub",
            &hub_url,
            "--node",
            "retry",
            "--enroll-token-file",
            &enroll_arg,
            "--state-dir",
            &state_arg,
            "--interval",
            "100ms",
            "--collectors",
            "",
        ],
        &tmp.path().join("agent.log"),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(agent.is_running(), "{}", agent.log());
    assert!(agent.log().contains("cannot enroll yet"), "{}", agent.log());

    // Three failed authentications use up a source's budget; one more is regained every 4 s.
    let hub = Hub::start_with(
        &data,
        &listen,
        &[
            "--enroll-token-file",
            &enroll_arg,
            "--auth-failure-burst",
            "3",
            "--auth-failure-rate",
            "0.25",
        ],
        None,
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the late hub to get pushes",
        || {
            let hub = &hub;
            async move { (hub.node_state("retry").await.as_deref() == Some("up")).then_some(()) }
        },
    )
    .await;
    let token = std::fs::read_to_string(state.join("push.token")).unwrap();

    // Bad tokens from the agent's own source address (loopback) until the hub refuses it.
    let http = reqwest::Client::new();
    let bad_push = || {
        http.post(format!("{}/push", hub.url()))
            .bearer_auth("not-a-token-of-this-hub")
            .header("content-type", "text/plain")
            .body("x 1\n")
            .send()
    };
    for _ in 0..3 {
        assert_eq!(bad_push().await.unwrap().status(), 401);
    }
    let flooded = Instant::now();
    let limited = bad_push().await.unwrap();
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
    assert_eq!(
        std::fs::read_to_string(state.join("push.token")).unwrap(),
        token
    );
    eventually(Duration::from_secs(10), "the node up again", || {
        let hub = &hub;
        async move { (hub.node_state("retry").await.as_deref() == Some("up")).then_some(()) }
    })
    .await;
    assert!(agent.terminate().await.success());
}
