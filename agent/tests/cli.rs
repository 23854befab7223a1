//! The agent binary without a hub: `--once` output and configuration errors.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use fleetgate_shared::{MetricType, Value};
use fleetgate_testkit::{command, Binary};

fn agent() -> Command {
    command(Binary::Agent)
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/metrics")
}

#[test]
fn once_prints_exposition_that_parses_and_reports_absent_triton_quietly() {
    let out = agent()
        .args([
            "--once",
            "--node",
            "n1",
            "--collectors",
            "triton",
            "--triton-url",
            &closed_port_url(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let fams = fleetgate_shared::text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let up = fams
        .iter()
        .find(|f| f.name == "fleetgate_agent_collector_up")
        .unwrap();
    assert_eq!(up.kind, MetricType::Gauge);
    assert_eq!(up.series.len(), 1);
    assert_eq!(up.series[0].labels[0].value, "triton");
    assert_eq!(up.series[0].value, Value::Scalar(0.0));
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "fleetgate_agent_snapshot_series",
        "fleetgate_agent_sent_bytes_total",
        "fleetgate_agent_collector_duration_seconds",
    ] {
        assert!(
            fams.iter().any(|f| f.name == name),
            "{name} missing:\n{text}"
        );
    }
    // An absent Triton is one info line, not a warning or an error.
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("collector source unavailable").count(),
        1,
        "{stderr}"
    );
    // Logs never go to stdout.
    assert!(!text.contains("INFO"));
}

#[test]
fn bad_configuration_fails_naming_the_field() {
    let out = agent()
        .args(["--once", "--node", "n1"])
        .env("FLEETGATE_INTERVAL", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FLEETGATE_INTERVAL: invalid duration \"abc\""),
        "{stderr}"
    );

    for (args, field) in [
        (vec!["--hub", "ftp://hub:8000"], "FLEETGATE_HUB"),
        (vec!["--label", "bad-name=x"], "FLEETGATE_LABELS"),
        (vec!["--collectors", "host,nope"], "FLEETGATE_COLLECTORS"),
    ] {
        let out = agent().arg("--once").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{field}: ")), "{args:?}: {stderr}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "hub = \"http://127.0.0.1:8000\"\nintervl = \"5s\"\n").unwrap();
    let out = agent()
        .arg("--once")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FLEETGATE_CONFIG") && stderr.contains("intervl"),
        "{stderr}"
    );
}

#[test]
fn run_without_a_token_or_stored_state_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args([
            "--node",
            "n1",
            "--collectors",
            "",
            "--hub",
            "http://127.0.0.1:9",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FLEETGATE_ENROLL_TOKEN"), "{stderr}");
}
