//! `fleetgate-loadtest --quick` against the real hub binary and the real Pushgateway: both systems
//! must ingest, and Fleetgate must not fail a single push. Then Fleetgate alone with full
//! snapshots and with values pushes: the latter must fail nothing and send fewer bytes.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";

/// The hub binary: `$CARGO_TARGET_DIR` or `<workspace>/target`, release before debug.
fn hub_binary() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = Vec::new();
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(workspace.join("target"));
    dirs.iter()
        .flat_map(|d| ["release", "debug"].map(|p| d.join(p).join("fleetgate-hub")))
        .find(|p| p.is_file())
}

/// Skips loudly, or fails when `CI=true`.
fn missing(what: &str) {
    let msg = format!("SKIPPED loadtest quick: {what}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (required when CI=true)");
    }
    eprintln!("\n!!! {msg} !!!\n");
}

/// Runs `fleetgate-loadtest --quick --hub-bin <hub> <extra>` and returns its `--json` figures.
fn run_quick(hub: &Path, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("figures.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetgate-loadtest"))
        .arg("--quick")
        .arg("--hub-bin")
        .arg(hub)
        .args(extra)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // --quick finishes in well under a minute; the bound only guards against a hang.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fleetgate-loadtest --quick {extra:?} did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "fleetgate-loadtest --quick {extra:?} exited with {status}"
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

#[test]
fn values_pushes_fail_nothing_and_send_fewer_bytes() {
    let Some(hub) = hub_binary() else {
        missing("no fleetgate-hub binary; run `cargo build -p fleetgate-hub` (or --release) first");
        return;
    };
    let full = run_quick(&hub, &["--systems", "fleetgate", "--push", "full"]);
    let values = run_quick(&hub, &["--systems", "fleetgate", "--push", "values"]);
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
fn quick_mode_measures_both_systems() {
    let Some(hub) = hub_binary() else {
        missing("no fleetgate-hub binary; run `cargo build -p fleetgate-hub` (or --release) first");
        return;
    };
    if !Path::new(PUSHGATEWAY).is_file() {
        missing("no /usr/bin/prometheus-pushgateway (Debian package prometheus-pushgateway)");
        return;
    }
    let doc = run_quick(&hub, &["--pushgateway-bin", PUSHGATEWAY]);
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
    assert_eq!(
        fg["failed_pushes"].as_u64(),
        Some(0),
        "fleetgate failed pushes: {fg}"
    );
    assert!(fg["pushes"].as_u64().unwrap() > 0);
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
    let Some(hub) = hub_binary() else {
        missing("no fleetgate-hub binary; run `cargo build -p fleetgate-hub` (or --release) first");
        return;
    };
    let doc = run_quick(&hub, &["--hubs", "2", "--push", "values"]);
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
