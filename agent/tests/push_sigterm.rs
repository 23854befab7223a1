//! SIGTERM while a push is in flight: the agent finishes that push (the hub stores it) and only
//! then exits 0. A loopback proxy between the agent and a real hub holds one request for a few
//! seconds, so the signal is sure to land while the agent waits for the hub's answer.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use fleetgate_testkit::exposition::value;
use fleetgate_testkit::{eventually, Agent, AgentArgs, Hub};

/// How long the proxy holds the request it was asked to hold.
const HOLD: Duration = Duration::from_secs(3);

/// When the held request arrived, and when it was passed on.
type Held = Arc<Mutex<Option<(Instant, Option<Instant>)>>>;

/// A TCP proxy to the hub that, once armed, delays the next request it sees by [`HOLD`].
struct HoldingProxy {
    addr: String,
    armed: Arc<AtomicBool>,
    held: Held,
}

impl HoldingProxy {
    async fn start(upstream: String) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let armed = Arc::new(AtomicBool::new(false));
        let held: Held = Arc::new(Mutex::new(None));
        let (a, h) = (Arc::clone(&armed), Arc::clone(&held));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let (armed, held) = (Arc::clone(&a), Arc::clone(&h));
                tokio::spawn(async move {
                    let Ok(hub) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_rd, mut client_wr) = client.into_split();
                    let (mut hub_rd, mut hub_wr) = hub.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut hub_rd, &mut client_wr).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if armed.swap(false, Ordering::SeqCst) {
                            *held.lock().unwrap() = Some((Instant::now(), None));
                            tokio::time::sleep(HOLD).await;
                            if let Some((_, released)) = held.lock().unwrap().as_mut() {
                                *released = Some(Instant::now());
                            }
                        }
                        if hub_wr.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        HoldingProxy { addr, armed, held }
    }
}

#[tokio::test]
async fn sigterm_during_a_push_finishes_it_then_exits_0() {
    let state = tempfile::tempdir().unwrap();
    let hub = Hub::start(&[]);
    let proxy = HoldingProxy::start(hub.addr().to_string()).await;
    let mut args = AgentArgs::new(&hub, "term-1", state.path());
    args.hub_url = format!("http://{}", proxy.addr);
    let mut agent = Agent::start(args.args());

    let last_push = |fams: &[fleetgate_shared::Family]| {
        value(
            fams,
            "fleetgate_node_last_push_timestamp_seconds",
            &[("node", "term-1")],
        )
    };
    eventually(Duration::from_secs(30), "a first push", || async {
        last_push(&hub.metrics().await)
    })
    .await;

    // Hold the next push in the proxy, and signal the agent while it waits for the answer.
    proxy.armed.store(true, Ordering::SeqCst);
    let held_at = eventually(Duration::from_secs(10), "a push held", || async {
        proxy.held.lock().unwrap().map(|(at, _)| at)
    })
    .await;
    let before = last_push(&hub.metrics().await).unwrap();
    let status = agent.terminate().await;
    let exited = Instant::now();

    assert!(status.success(), "exit status {status:?}");
    let (_, released) = proxy.held.lock().unwrap().unwrap();
    let released = released.expect("the proxy passed the held push on");
    assert!(
        released <= exited && released >= held_at,
        "the agent exited before its in-flight push reached the hub; log:\n{}",
        agent.log()
    );
    let after = last_push(&hub.metrics().await).unwrap();
    assert!(
        after > before,
        "the held push was not stored (last push {before} -> {after}); log:\n{}",
        agent.log()
    );
    assert!(agent.log().contains("shutting down"), "{}", agent.log());
}
