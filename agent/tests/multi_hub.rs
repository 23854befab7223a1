//! One agent, several real hubs: every snapshot goes to each hub, each hub has its own
//! enrollment and token under `STATE_DIR/hubs/<name>/`, a dead, slow or refusing hub never
//! holds back the others, a hub that comes back gets pushes again with the token it issued,
//! `deregister` removes the node everywhere and says where it failed, and a token stored by an
//! earlier version (directly in the state dir) is reused without enrolling again.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_agent::enroll::StateDir;
use fleetgate_shared::Family;
use fleetgate_testkit::exposition::value;
use fleetgate_testkit::{assert_stopped_once, command, eventually, Agent, Binary, Hub};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Where the agent keeps its token for the hub at `url`.
fn hub_state(state: &Path, url: &str) -> PathBuf {
    StateDir::for_hub(state, url).path().to_path_buf()
}

fn token(state: &Path, url: &str) -> String {
    std::fs::read_to_string(hub_state(state, url).join("push.token")).unwrap()
}

/// Pushes the hub accepted so far.
fn accepted(fams: &[Family]) -> f64 {
    value(fams, "fleetgate_hub_pushes_total", &[("result", "ok")]).unwrap_or(0.0)
}

/// Waits until `hub` serves a snapshot of `node`.
async fn shows(hub: &Hub, node: &str) -> Vec<Family> {
    eventually(Duration::from_secs(30), "the node on the hub", || async {
        let fams = hub.metrics().await;
        value(&fams, "fleetgate_agent_snapshot_series", &[("node", node)]).map(|_| fams)
    })
    .await
}

/// How many pushes `hub` accepts within `window`.
async fn accepted_within(hub: &Hub, window: Duration) -> f64 {
    let before = accepted(&hub.metrics().await);
    tokio::time::sleep(window).await;
    accepted(&hub.metrics().await) - before
}

/// `fleetgate_agent_hub_up{hub=url}` of `node` as served by `hub`.
async fn hub_up_seen_by(hub: &Hub, node: &str, url: &str) -> Option<f64> {
    let fams = hub.metrics().await;
    value(
        &fams,
        "fleetgate_agent_hub_up",
        &[("node", node), ("hub", url)],
    )
}

/// An agent configuration file with one `[[hubs]]` table per hub, each with the hub's own
/// enrollment token file.
fn config_file(dir: &Path, node: &str, state: &Path, hubs: &[(&str, &Path)]) -> PathBuf {
    let mut text = format!(
        "node = \"{node}\"\nstate_dir = \"{}\"\ninterval = \"300ms\"\ncollectors = []\n",
        state.display()
    );
    for (url, token_file) in hubs {
        text.push_str(&format!(
            "\n[[hubs]]\nurl = \"{url}\"\nenroll_token_file = \"{}\"\n",
            token_file.display()
        ));
    }
    let path = dir.join(format!("{node}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn every_hub_gets_every_snapshot_and_a_dead_hub_does_not_hold_back_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hub_a = Hub::start(&[]);
    let hub_b = Hub::start(&[]);
    let (url_a, url_b) = (hub_a.base_url(), hub_b.base_url());
    let state = tmp.path().join("state");
    let config = config_file(
        tmp.path(),
        "ha-1",
        &state,
        &[
            (&url_a, &hub_a.enroll_token_file()),
            (&url_b, &hub_b.enroll_token_file()),
        ],
    );
    let config_arg = config.display().to_string();
    let mut agent = Agent::start(["--config", &config_arg]);

    shows(&hub_a, "ha-1").await;
    shows(&hub_b, "ha-1").await;
    // Each hub enrolled the node with its own enrollment token and issued its own push token.
    let (token_a, token_b) = (token(&state, &url_a), token(&state, &url_b));
    assert_ne!(token_a, token_b);
    assert_ne!(hub_state(&state, &url_a), hub_state(&state, &url_b));
    assert_eq!(hub_a.nodes().await.len(), 1);
    assert_eq!(hub_b.nodes().await.len(), 1);
    // The self metrics name each hub; both up.
    for url in [&url_a, &url_b] {
        let up = eventually(Duration::from_secs(10), "hub_up 1", || async {
            hub_up_seen_by(&hub_b, "ha-1", url)
                .await
                .filter(|v| *v == 1.0)
        })
        .await;
        assert_eq!(up, 1.0);
        let fams = hub_b.metrics().await;
        assert!(
            value(
                &fams,
                "fleetgate_agent_pushes_total",
                &[("node", "ha-1"), ("hub", url), ("kind", "full")]
            )
            .is_some_and(|v| v >= 1.0),
            "pushes_total for {url}"
        );
    }
    let steady = accepted_within(&hub_b, Duration::from_secs(3)).await;

    // A dies: B keeps getting every snapshot at the interval, and hears that A is down.
    hub_a.kill9();
    eventually(Duration::from_secs(10), "hub_up{A} 0 on B", || async {
        hub_up_seen_by(&hub_b, "ha-1", &url_a)
            .await
            .filter(|v| *v == 0.0)
    })
    .await;
    let during = accepted_within(&hub_b, Duration::from_secs(3)).await;
    assert!(
        during >= steady / 2.0 && during >= 4.0,
        "B accepted {during} pushes in 3 s while A was down, {steady} before; log:\n{}",
        agent.log()
    );
    assert!(agent.is_running());

    // A back on its address with its data: the agent pushes there again with the token A
    // issued before, without enrolling again.
    hub_a.restart();
    shows(&hub_a, "ha-1").await;
    eventually(Duration::from_secs(10), "hub_up{A} 1 again", || async {
        hub_up_seen_by(&hub_b, "ha-1", &url_a)
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(token(&state, &url_a), token_a);
    let log = agent.log();
    assert_eq!(
        log.matches("enrolled; push token stored").count(),
        2,
        "one enrollment per hub, none after the restart:\n{log}"
    );
    assert!(log.contains("pushes are accepted again"), "{log}");
    assert!(agent.terminate().await.success());
}

/// A hub that enrolls at once but answers every push only after [`SLOW`]: counts the pushes
/// it received and the most that were ever in flight at once.
const SLOW: Duration = Duration::from_secs(3);

#[derive(Default)]
struct SlowHub {
    pushes: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

async fn slow_hub(listener: TcpListener, seen: Arc<SlowHub>) {
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
                let body = if path == "/push" {
                    seen.pushes.fetch_add(1, Ordering::SeqCst);
                    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(SLOW).await;
                    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                    "{}"
                } else {
                    r#"{"node":"ha-2","token":"slow-hub-push-token"}"#
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
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
async fn a_slow_hub_gets_one_push_at_a_time_and_the_other_hub_every_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(SlowHub::default());
    tokio::spawn(slow_hub(listener, seen.clone()));

    let state = tmp.path().join("state");
    let config = config_file(
        tmp.path(),
        "ha-2",
        &state,
        &[
            (&slow_url, &hub.enroll_token_file()),
            (&hub.base_url(), &hub.enroll_token_file()),
        ],
    );
    let config_arg = config.display().to_string();
    let started = std::time::Instant::now();
    let mut agent = Agent::start(["--config", &config_arg]);
    shows(&hub, "ha-2").await;

    // 300 ms interval: about 20 pushes in 6 s to the real hub, while each push to the slow one
    // takes 3 s.
    let fast = accepted_within(&hub, Duration::from_secs(6)).await;
    assert!(
        fast >= 10.0,
        "the real hub accepted only {fast} pushes in 6 s; log:\n{}",
        agent.log()
    );
    let slow = seen.pushes.load(Ordering::SeqCst);
    // One push at a time, each taking 3 s: no more than that since the agent started.
    let most = started.elapsed().as_secs_f64() / SLOW.as_secs_f64() + 1.0;
    assert!(
        slow >= 1 && slow as f64 <= most,
        "{slow} pushes reached the slow hub (at most {most:.1})"
    );
    assert_eq!(
        seen.max_in_flight.load(Ordering::SeqCst),
        1,
        "never more than one push in flight to one hub"
    );
    let fams = hub.metrics().await;
    let duration = value(
        &fams,
        "fleetgate_agent_push_duration_seconds",
        &[("node", "ha-2"), ("hub", &slow_url)],
    );
    assert!(
        duration.is_some_and(|d| d >= 2.5),
        "the slow hub's push duration is {duration:?}"
    );
    assert!(agent.terminate().await.success());
}

#[tokio::test]
async fn a_401_from_one_hub_stops_only_that_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let hub_a = Hub::start(&[]);
    let hub_b = Hub::start(&[]);
    let state = tmp.path().join("state");
    let config = config_file(
        tmp.path(),
        "ha-3",
        &state,
        &[
            (&hub_a.base_url(), &hub_a.enroll_token_file()),
            (&hub_b.base_url(), &hub_b.enroll_token_file()),
        ],
    );
    let config_arg = config.display().to_string();
    let mut agent = Agent::start(["--config", &config_arg]);
    shows(&hub_a, "ha-3").await;
    shows(&hub_b, "ha-3").await;

    let removed = hub_a.remove_node(&hub_a.admin_token(), "ha-3").await;
    assert!(removed.status().is_success(), "{}", removed.status());
    let stopped = eventually(Duration::from_secs(20), "the 401 logged", || {
        let log = agent.log();
        async move {
            log.lines()
                .find(|l| l.contains("pushing stopped"))
                .map(str::to_string)
        }
    })
    .await;
    assert!(
        stopped.contains(&hub_a.base_url()),
        "names the hub: {stopped}"
    );
    assert!(stopped.contains("ERROR"), "{stopped}");
    // B goes on, A stays removed and is not enrolled at again.
    let more = accepted_within(&hub_b, Duration::from_secs(2)).await;
    assert!(more >= 3.0, "B accepted {more} pushes after A's 401");
    assert!(agent.is_running());
    assert_stopped_once(&agent.log(), 2);
    assert_eq!(hub_a.node_state("ha-3").await.as_deref(), Some("removed"));
    assert_eq!(
        hub_up_seen_by(&hub_b, "ha-3", &hub_a.base_url()).await,
        Some(0.0)
    );
    assert!(agent.terminate().await.success());
}

/// Starts a hub in `dir` whose generated enrollment token is `token` (written before its first
/// start).
fn hub_with_enroll_token(dir: &Path, token: &str) -> Hub {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("enroll.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    Hub::start_in(dir, &[])
}

fn deregister(state: &Path) -> (bool, String) {
    let out = command(Binary::Agent)
        .args(["deregister", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_hub_list_shares_the_token_and_deregister_removes_the_node_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = "shared-enrollment-token-0123456789";
    let hub_a = hub_with_enroll_token(&tmp.path().join("hub-a"), shared);
    let mut hub_b = hub_with_enroll_token(&tmp.path().join("hub-b"), shared);
    let state = tmp.path().join("state");
    let hubs = format!("{},{}", hub_a.base_url(), hub_b.base_url());
    let state_arg = state.display().to_string();
    let mut agent = Agent::start([
        "--hub",
        &hubs,
        "--enroll-token",
        shared,
        "--node",
        "ha-4",
        "--state-dir",
        &state_arg,
        "--interval",
        "300ms",
        "--collectors",
        "",
    ]);
    shows(&hub_a, "ha-4").await;
    shows(&hub_b, "ha-4").await;
    assert!(agent.terminate().await.success());

    // B is down: A removes the node, B cannot; the exit status says it failed, the output
    // names both, and B's token is kept for the next try.
    hub_b.kill9();
    let (ok, stderr) = deregister(&state);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("deregistered from 1 of 2 hubs"), "{stderr}");
    assert!(
        stderr.contains(&format!("failed at: {}", hub_b.base_url())),
        "{stderr}"
    );
    assert_eq!(hub_a.node_state("ha-4").await.as_deref(), Some("removed"));
    assert!(!hub_state(&state, &hub_a.base_url()).exists());
    assert!(hub_state(&state, &hub_b.base_url())
        .join("push.token")
        .exists());

    // B back: deregister again removes it there too and succeeds.
    hub_b.restart();
    let (ok, stderr) = deregister(&state);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("deregistered from 1 of 1 hubs"), "{stderr}");
    assert_eq!(hub_b.node_state("ha-4").await.as_deref(), Some("removed"));
    assert!(!hub_state(&state, &hub_b.base_url()).exists());
    for hub in [&hub_a, &hub_b] {
        let fams = hub.metrics().await;
        assert!(value(
            &fams,
            "fleetgate_agent_snapshot_series",
            &[("node", "ha-4")]
        )
        .is_none());
    }
    let (ok, stderr) = deregister(&state);
    assert!(ok && stderr.contains("nothing to deregister"), "{stderr}");
}

#[tokio::test]
async fn a_token_stored_by_an_earlier_version_is_reused_without_enrolling() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&[]);
    // Enroll as an earlier agent did and store its state the old way: STATE_DIR/push.token and
    // STATE_DIR/enrollment.json.
    let issued = hub.enroll("ha-5", &[]).await;
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("push.token"), format!("{issued}\n")).unwrap();
    std::fs::write(
        state.join("enrollment.json"),
        serde_json::json!({ "node": "ha-5", "hub": hub.base_url() }).to_string(),
    )
    .unwrap();

    // No enrollment token at all: only the stored token can work.
    let state_arg = state.display().to_string();
    let url = hub.base_url();
    let mut agent = Agent::start([
        "--hub",
        &url,
        "--node",
        "ha-5",
        "--state-dir",
        &state_arg,
        "--interval",
        "300ms",
        "--collectors",
        "",
    ]);
    shows(&hub, "ha-5").await;
    let log = agent.log();
    assert!(log.contains("moved the stored push token"), "{log}");
    assert!(log.contains("reusing the stored push token"), "{log}");
    assert!(!log.contains("enrolled; push token stored"), "{log}");
    assert_eq!(token(&state, &url).trim(), issued);
    assert!(!state.join("push.token").exists());
    assert_eq!(hub.nodes().await.len(), 1);
    assert!(agent.terminate().await.success());
}
