//! `fleetgate-loadtest --quick` against the real hub binary and the real Pushgateway: both systems
//! must ingest, and Fleetgate must meet the thresholds the test command gives it. Then Fleetgate
//! alone with full snapshots and with values pushes: the latter must fail nothing and send fewer
//! bytes; its shard scrapes (at once, gzip, one after another) must hold the fleet. With two
//! hubs every node pushes to both. And a run against a hub that refuses every push must fail,
//! naming the threshold. A run stopped by SIGTERM stops the hub it started.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use fleetgate_testkit::{binary, require_tool, Binary, Hub};

/// Runs `fleetgate-loadtest --quick <args> --json <tmp>` to its end (bounded: `--quick` takes
/// well under a minute; the bound only guards against a hang) and returns its output and, when
/// it wrote them, its figures.
fn run_quick(args: &[&str]) -> (Output, Option<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("figures.json");
    let mut child = Command::new(binary(Binary::Loadtest))
        .arg("--quick")
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on their own threads, so a chatty run cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut s).map(|_| s)
    });
    let what = format!("fleetgate-loadtest --quick {args:?}");
    let status = wait_bounded(&mut child, Duration::from_secs(240), &what);
    let output = Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    };
    let figures = std::fs::read(&json)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap());
    (output, figures)
}

/// Waits for `child` to exit, for at most `within`: past that it is killed and the test fails,
/// naming `what`.
fn wait_bounded(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `run_quick` that must succeed; returns the figures.
fn passing(args: &[&str]) -> serde_json::Value {
    let (out, figures) = run_quick(args);
    assert!(
        out.status.success(),
        "fleetgate-loadtest --quick {args:?} exited with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    figures.expect("--json written")
}

fn hub_bin() -> String {
    binary(Binary::Hub).display().to_string()
}

/// [`passing`] for Fleetgate alone, with no failed push allowed, and `more` arguments.
fn fleetgate_alone(more: &[&str]) -> serde_json::Value {
    let hub = hub_bin();
    let common = [
        "--hub-bin",
        &hub,
        "--systems",
        "fleetgate",
        "--max-failed",
        "0",
    ];
    passing(&[&common[..], more].concat())
}

#[test]
fn values_pushes_fail_nothing_and_send_fewer_bytes() {
    let full = fleetgate_alone(&["--push", "full"]);
    let values = fleetgate_alone(&["--push", "values"]);
    let (full, values) = (&full["fleetgate"], &values["fleetgate"]);
    assert_eq!(values["failed_pushes"].as_u64(), Some(0), "{values}");
    assert!(values["pushes"].as_u64().unwrap() > 0);
    let bytes = |f: &serde_json::Value| f["wire_bytes_per_sample"].as_f64().unwrap();
    // Every node's first push is a full snapshot, the rest carry values only.
    assert!(
        bytes(values) < bytes(full) * 0.75,
        "values pushes: {} B/sample, full snapshots: {} B/sample",
        bytes(values),
        bytes(full)
    );
    let expected = values["nodes"].as_u64().unwrap() * values["series_per_node"].as_u64().unwrap();
    assert!(
        values["scrape_series"].as_u64().unwrap() * 10 >= expected * 9,
        "scrape had {} samples, expected about {expected}",
        values["scrape_series"]
    );
}

#[test]
fn shard_scrapes_hold_the_whole_fleet() {
    // Sharded in 4: --quick's 2 s scrape interval gives each kind of scrape one turn (the
    // unsharded one first, before every node has pushed, so its count is not checked here).
    let sharded = fleetgate_alone(&["--push", "values", "--scrape-shards", "4"]);
    let fleet = &sharded["fleetgate"];
    let expected = fleet["nodes"].as_u64().unwrap() * fleet["series_per_node"].as_u64().unwrap();
    let shards = &fleet["shard_scrapes"];
    assert_eq!(shards["shards"].as_u64(), Some(4), "{shards}");
    assert!(shards["rounds"].as_u64().unwrap() >= 1, "{shards}");
    assert!(
        shards["round_series"].as_u64().unwrap() * 10 >= expected * 9,
        "the 4 shards had {} samples, expected about {expected}",
        shards["round_series"]
    );
    assert!(shards["gzip_served"].as_bool().unwrap(), "{shards}");
    assert!(
        shards["sequential_rounds"].as_u64().unwrap() >= 1,
        "{shards}"
    );
    assert!(
        shards["sequential_shard_seconds"].as_f64().unwrap() > 0.0,
        "{shards}"
    );
}

#[test]
fn quick_mode_measures_both_systems_and_meets_its_thresholds() {
    let Some(pushgateway) = require_tool("prometheus-pushgateway") else {
        return;
    };
    let (hub, pgw) = (hub_bin(), pushgateway.display().to_string());
    let doc = passing(&[
        "--hub-bin",
        &hub,
        "--pushgateway-bin",
        &pgw,
        "--max-failed",
        "0",
        "--min-ingest-ratio",
        "0.9",
    ]);
    for system in ["fleetgate", "pushgateway"] {
        let f = &doc[system];
        assert!(f.is_object(), "{system} missing from {doc}");
        for key in [
            "ingest_samples_per_sec",
            "push_p50_ms",
            "push_p99_ms",
            "failed_pushes",
            "scrape_seconds",
            "scrape_bytes",
            "rss_bytes",
            "cpu_seconds",
            "wire_bytes_per_sample",
        ] {
            assert!(f.get(key).is_some(), "{system}.{key} missing");
        }
        assert!(
            f["ingest_samples_per_sec"].as_f64().unwrap() > 0.0,
            "{system} ingested nothing"
        );
        assert!(
            f["scrape_series"].as_u64().unwrap() > 0,
            "{system} /metrics was empty"
        );
        assert!(f["rss_bytes"].as_u64().unwrap() > 0);
    }
    let fg = &doc["fleetgate"];
    assert_eq!(fg["failed_pushes"].as_u64(), Some(0), "{fg}");
    assert_eq!(doc["missed_thresholds"], serde_json::json!([]));
    assert!(doc["ratios"]["ingest_samples_per_sec"].as_f64().unwrap() >= 0.9);
    // The pushed series reached /metrics (allowing for a node the hub may consider stale).
    let expected = fg["nodes"].as_u64().unwrap() * fg["series_per_node"].as_u64().unwrap();
    assert!(
        fg["scrape_series"].as_u64().unwrap() * 10 >= expected * 9,
        "scrape had {} samples, expected about {expected}",
        fg["scrape_series"]
    );
    assert!(
        fg["appear_seconds"].is_number(),
        "probe node never appeared: {fg}"
    );
    assert!(
        fg["disappear_seconds"].is_number(),
        "removed probe node never left: {fg}"
    );
}

#[test]
fn every_node_pushes_to_every_hub() {
    let hub = hub_bin();
    let doc = passing(&["--hub-bin", &hub, "--hubs", "2", "--push", "values"]);
    let hubs = doc["hubs"].as_array().unwrap();
    assert_eq!(hubs.len(), 2, "{doc}");
    assert_ne!(hubs[0]["hub"], hubs[1]["hub"]);
    let nodes = doc["nodes"].as_u64().unwrap();
    for h in hubs {
        assert_eq!(h["enrolled"].as_u64(), Some(nodes), "{h}");
        assert!(h["failures"].as_object().unwrap().is_empty(), "{h}");
        // 20 nodes every 2 s for 8 s: about four pushes each, to each hub.
        assert!(h["pushes"].as_u64().unwrap() >= 2 * nodes, "{h}");
        assert!(
            h["cpu_percent"].as_f64().is_some() && h["rss_bytes"].as_u64().is_some(),
            "{h}"
        );
        assert!(h["scrape_series"].as_u64().unwrap() > 0, "{h}");
    }
}

#[test]
fn a_missed_threshold_fails_the_run_and_names_it() {
    // A real hub that enrolls every node but refuses each of their pushes (more series than it
    // allows per node): every push of the run fails.
    let hub = Hub::start(&["--max-series-per-node", "10"]);
    let token_file = hub.enroll_token_file().display().to_string();
    let (out, figures) = run_quick(&[
        "--systems",
        "fleetgate",
        "--hub-url",
        &hub.base_url(),
        "--enroll-token-file",
        &token_file,
        "--saturate",
        "0s",
        "--max-failed",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("threshold missed: --max-failed 0: fleetgate failed"),
        "{stderr}"
    );
    assert!(stderr.contains("\"rejected\""), "{stderr}");
    // The figures are written all the same, with what was missed.
    let doc = figures.expect("--json written");
    let failed = doc["fleetgate"]["failed_pushes"].as_u64().unwrap();
    assert!(failed > 0, "{doc}");
    assert_eq!(doc["fleetgate"]["pushes"].as_u64(), Some(0), "{doc}");
    assert_eq!(doc["missed_thresholds"].as_array().unwrap().len(), 1);

    // Limits that cannot be judged are refused before anything runs.
    let (out, _) = run_quick(&["--systems", "fleetgate", "--min-ingest-ratio", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("add pushgateway to --systems"), "{stderr}");
}

/// The running children of `pid` (every thread's), from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn a_run_stopped_by_sigterm_stops_the_hub_it_started() {
    let hub = hub_bin();
    let mut rig = Command::new(binary(Binary::Loadtest))
        .args(["--hub-bin", &hub, "--systems", "fleetgate", "--nodes", "20"])
        .args(["--duration", "120s", "--saturate", "0s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let hubs: Vec<u32> = children(rig.id())
            .into_iter()
            .filter(|&c| {
                std::fs::read(format!("/proc/{c}/cmdline"))
                    .is_ok_and(|cmd| cmd.split(|&b| b == 0).any(|arg| arg == b"--listen"))
            })
            .collect();
        if let [one] = hubs[..] {
            break one;
        }
        assert!(Instant::now() < deadline, "the rig started no hub in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Running: its nodes enroll and push for a while before the stop.
    std::thread::sleep(Duration::from_secs(3));
    assert!(running(started));
    let killed = Command::new("kill")
        .args(["-TERM", &rig.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_bounded(&mut rig, Duration::from_secs(30), "the rig, after SIGTERM,");
    // Checked first, so a hub left running is killed before any assertion fails.
    let outlived = running(started);
    if outlived {
        let _ = Command::new("kill")
            .args(["-KILL", &started.to_string()])
            .status();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut rig.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !outlived,
        "the hub the rig started (pid {started}) outlived it: {status}\n{stderr}"
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
}
