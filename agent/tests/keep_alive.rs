//! `--keep-alive` against the real hub: the agent keeps its idle connection to the hub for that
//! long and no longer, seen from the agent's own sockets (`/proc/<pid>/fd` and `net/tcp`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fleetgate_testkit::{eventually, Agent, AgentArgs, Hub};

/// The inodes of `pid`'s established TCP connections to `port` (IPv4 loopback).
fn connections_to(pid: u32, port: u16) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    let sockets: BTreeSet<u64> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            let established = *f.get(3)? == "01";
            let inode: u64 = f.get(9)?.parse().ok()?;
            (established && remote_port == port && sockets.contains(&inode)).then_some(inode)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_to_the_hub_is_kept_for_keep_alive_and_no_longer() {
    let hub = Hub::start(&[]);
    let port: u16 = hub.addr().rsplit(':').next().unwrap().parse().unwrap();
    // Pushes every second: with a keep-alive of 5 s they share one connection; with 300 ms
    // each finds its predecessor's closed and opens its own.
    for (keep_alive, reused) in [("5s", true), ("300ms", false)] {
        let tmp = tempfile::tempdir().unwrap();
        let node = format!("keep-alive-{keep_alive}");
        let mut args = AgentArgs::new(&hub, &node, &tmp.path().join("state"));
        args.interval = "1s".into();
        let mut agent = Agent::start(args.with(["--keep-alive", keep_alive]).args());
        eventually(Duration::from_secs(30), "the agent's pushes", || {
            let (hub, node) = (&hub, &node);
            async move { (hub.node_state(node).await.as_deref() == Some("up")).then_some(()) }
        })
        .await;
        let (mut seen, mut samples, mut idle) = (BTreeSet::new(), 0u32, 0u32);
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(4500) {
            let now = connections_to(agent.pid(), port);
            samples += 1;
            if now.is_empty() {
                idle += 1;
            }
            seen.extend(now);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(agent.is_running(), "{}", agent.log());
        agent.terminate().await;
        if reused {
            assert_eq!(
                (seen.len(), idle),
                (1, 0),
                "--keep-alive {keep_alive}: one connection open throughout ({samples} samples)"
            );
        } else {
            assert!(
                seen.len() >= 3 && idle > 0,
                "--keep-alive {keep_alive}: {} connections over 4 pushes, none open in {idle} \
                 of {samples} samples",
                seen.len()
            );
            assert!(
                agent.log().contains("each push opens a new connection"),
                "{}",
                agent.log()
            );
        }
    }
}
