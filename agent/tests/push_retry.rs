//! Retry behaviour the real hub does not provoke on demand: a hub that is not up yet when the
//! agent starts, and `429 Too Many Requests` with `Retry-After`. A minimal HTTP/1.1 server on
//! loopback stands in for the hub and records when each request arrived.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{eventually, Agent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Requests seen: (path, arrival).
type Seen = Arc<Mutex<Vec<(String, Instant)>>>;

/// Serves `/add_node` with a token, answers the first `/push` with 429 and `Retry-After`,
/// later pushes with 200.
async fn fake_hub(listener: TcpListener, seen: Seen, retry_after_s: u64) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut sock = BufReader::new(sock);
            loop {
                let mut request_line = String::new();
                if sock.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if sock.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                if sock.read_exact(&mut body).await.is_err() {
                    return;
                }
                let pushes_before = {
                    let mut s = seen.lock().unwrap();
                    let n = s.iter().filter(|(p, _)| p == "/push").count();
                    s.push((path.clone(), Instant::now()));
                    n
                };
                let (status, extra, body) = match path.as_str() {
                    "/add_node" => (
                        "200 OK",
                        String::new(),
                        r#"{"node":"retry","token":"push-token"}"#,
                    ),
                    "/push" if pushes_before == 0 => (
                        "429 Too Many Requests",
                        format!("retry-after: {retry_after_s}\r\n"),
                        "slow down",
                    ),
                    "/push" => ("200 OK", String::new(), "{}"),
                    _ => ("404 Not Found", String::new(), "no"),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if sock.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_late_hub_and_honours_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    // Reserve a port, start the agent against it while nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let state = tmp.path().join("state");
    let state_arg = state.display().to_string();
    let mut agent = Agent::start(
        &[
            "--hub",
            &hub_url,
            "--node",
            "retry",
            "--enroll-token",
            "enroll-secret-0123456789",
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

    let seen: Seen = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(fake_hub(listener, seen.clone(), 2));

    let pushes = |seen: &Seen| -> Vec<Instant> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/push")
            .map(|(_, t)| *t)
            .collect()
    };
    let times = eventually(Duration::from_secs(30), "three pushes", || {
        let p = pushes(&seen);
        async move { (p.len() >= 3).then_some(p) }
    })
    .await;
    // The first push got 429 with Retry-After: 2; the agent waited that long before the next,
    // although its interval is 100 ms; afterwards it is back to its interval.
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?} despite Retry-After: 2"
    );
    assert_eq!(
        std::fs::read_to_string(
            fleetgate_agent::enroll::StateDir::for_hub(&state, &hub_url)
                .path()
                .join("push.token")
        )
        .unwrap()
        .trim(),
        "push-token"
    );
    let log = agent.log();
    assert!(log.contains("rate limiting"), "{log}");
    assert!(log.contains("pushes are accepted again"), "{log}");
    assert!(agent.terminate().await.success());
}
