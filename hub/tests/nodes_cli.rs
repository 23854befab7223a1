//! `fleetgate-hub nodes ...` against a real hub process: the table and `--json`, every action,
//! finding the hub through its data dir or the environment, and the exit codes scripts rely on
//! (0 done, 1 refused, 2 usage or settings, 3 unreachable).

#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::Duration;

use fleetgate_testkit::{command, eventually, Binary, Hub};
use serde_json::Value;

/// Runs `fleetgate-hub ARGS` to completion, with no `FLEETGATE_*` variable but those in `env`.
fn hub_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(Binary::Hub);
    cmd.args(args).envs(env.iter().copied());
    cmd.output().unwrap()
}

/// `POST /push` of Prometheus text.
async fn push_text(hub: &Hub, token: &str, text: &str) -> u16 {
    hub.push_raw(token, "text/plain", None, text.as_bytes().to_vec())
        .await
        .status()
        .as_u16()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `fleetgate-hub --data-dir DIR nodes ARGS`, asserts exit 0 and returns stdout.
fn ok(hub: &Hub, args: &[&str]) -> String {
    let mut full = vec!["--data-dir", hub.data_dir().to_str().unwrap(), "nodes"];
    full.extend_from_slice(args);
    let out = hub_cli(&full, &[]);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs `fleetgate-hub --data-dir DIR nodes ARGS`, asserts exit `want` and returns stderr.
fn fails(hub: &Hub, args: &[&str], want: i32) -> String {
    let mut full = vec!["--data-dir", hub.data_dir().to_str().unwrap(), "nodes"];
    full.extend_from_slice(args);
    let out = hub_cli(&full, &[]);
    assert_eq!(
        code(&out),
        want,
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{args:?} printed {}", stdout(&out));
    stderr(&out)
}

/// The table row of `node`, split into words.
fn row(table: &str, node: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("no row for {node}:\n{table}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn series_of(metrics: &str, node: &str) -> usize {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("fleetgate_"))
        .filter(|l| l.contains(&format!("node=\"{node}\"")))
        .count()
}

#[tokio::test]
async fn lists_shows_removes_readmits_and_adds_through_a_running_hub() {
    let hub = Hub::start(&[]);
    let web = hub
        .enroll("web-01", &[("node_type", "cpu"), ("rack", "r1")])
        .await;
    assert_eq!(
        push_text(
            &hub,
            &web,
            "a 1\n# TYPE b counter\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n"
        )
        .await,
        200
    );
    assert_eq!(push_text(&hub, &web, "not a sample\n").await, 400);
    hub.enroll("gpu-01", &[("node_type", "gpu")]).await; // enrolled, never pushes

    // The table, found through the data dir alone.
    let table = ok(&hub, &["list"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..3], ["NODE", "STATE", "TYPE"], "{table}");
    let web_row = row(&table, "web-01");
    assert_eq!(&web_row[1..3], ["up", "cpu"], "{table}");
    assert!(web_row.contains(&"3".to_string()), "series: {table}");
    assert!(web_row.contains(&"rack=r1".to_string()), "{table}");
    assert!(
        web_row.contains(&"400".to_string()),
        "last rejection: {table}"
    );
    assert_eq!(
        &row(&table, "gpu-01")[1..4],
        ["stale", "gpu", "never"],
        "{table}"
    );
    assert!(
        table.contains("1 up, 1 stale, 0 removed; 3 series"),
        "{table}"
    );

    // --json is the hub's view, admin fields included; --state filters. Options may follow
    // `nodes` or the action.
    let json: Value = serde_json::from_str(&ok(&hub, &["--json", "list"])).unwrap();
    assert_eq!(json["admin"], true);
    let web_json = &json["nodes"][1];
    assert_eq!(web_json["node"], "web-01");
    assert_eq!(web_json["hostname"], "web-01.example");
    assert_eq!(web_json["full_pushes"], 1);
    assert_eq!(web_json["last_rejection"]["status"], 400);
    let stale: Value =
        serde_json::from_str(&ok(&hub, &["list", "--state", "stale", "--json"])).unwrap();
    let names: Vec<&str> = stale["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpu-01"]);

    // One node with its families.
    let shown = ok(&hub, &["show", "web-01"]);
    assert!(shown.contains("web-01.example"), "{shown}");
    assert_eq!(&row(&shown, "b")[1..], ["counter", "2"], "{shown}");
    assert_eq!(&row(&shown, "a")[1..], ["untyped", "1"], "{shown}");
    let detail: Value = serde_json::from_str(&ok(&hub, &["show", "web-01", "--json"])).unwrap();
    assert_eq!(detail["families"].as_array().unwrap().len(), 2);
    let err = fails(&hub, &["show", "nope"], 1);
    assert!(err.contains("404") && err.contains("nope"), "{err}");

    // Remove: the series leave /metrics at once.
    assert_eq!(series_of(&hub.metrics_text().await, "web-01"), 3);
    let out = ok(&hub, &["remove", "web-01"]);
    assert!(out.contains("removed"), "{out}");
    assert_eq!(series_of(&hub.metrics_text().await, "web-01"), 0);
    assert_eq!(push_text(&hub, &web, "a 1\n").await, 401);
    assert_eq!(row(&ok(&hub, &["list"]), "web-01")[1], "removed");
    fails(&hub, &["remove", "nope"], 1);

    // Re-admit: the enrollment token works for the name again; the old token does not.
    let err = fails(&hub, &["readmit", "gpu-01"], 1);
    assert!(err.contains("not removed"), "{err}");
    assert_eq!(
        hub.add_node(&hub.enroll_token(), "web-01", &[])
            .await
            .status(),
        403
    );
    ok(&hub, &["readmit", "web-01"]);
    assert_eq!(row(&ok(&hub, &["list"]), "web-01")[1], "stale");
    assert_eq!(push_text(&hub, &web, "a 1\n").await, 401);
    let again = hub.enroll("web-01", &[("node_type", "cpu")]).await;
    assert_eq!(push_text(&hub, &again, "a 1\n").await, 200);

    // Add: a push token for a script; an enrolled node is not replaced by accident.
    let added: Value = serde_json::from_str(&ok(
        &hub,
        &[
            "add", "batch-01", "--label", "rack=r9", "--label", "team=ml", "--json",
        ],
    ))
    .unwrap();
    let token = added["token"].as_str().unwrap().to_string();
    assert_eq!(push_text(&hub, &token, "jobs_done 4\n").await, 200);
    let batch = row(&ok(&hub, &["list"]), "batch-01");
    assert_eq!(batch[1], "up");
    assert!(
        batch.last().unwrap().contains("rack=r9,team=ml"),
        "{batch:?}"
    );
    let err = fails(&hub, &["add", "batch-01"], 1);
    assert!(err.contains("--replace"), "{err}");
    let replaced = ok(&hub, &["add", "batch-01", "--replace"]);
    let new_token = replaced.lines().last().unwrap().trim();
    assert_eq!(new_token.len(), 64, "{replaced}");
    assert_eq!(push_text(&hub, &token, "jobs_done 5\n").await, 401);
    assert_eq!(push_text(&hub, new_token, "jobs_done 5\n").await, 200);

    // Usage errors are 2, like clap's own.
    fails(&hub, &["add", "x", "--label", "1x=y"], 2);
    fails(&hub, &["frobnicate"], 2);
    fails(&hub, &["list", "--state", "sleepy"], 2);
}

#[tokio::test]
async fn exit_codes_for_a_wrong_token_no_hub_and_no_settings() {
    let mut hub = Hub::start(&["--stale-after", "1s"]);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-admin-token-0123456789\n").unwrap();
    let data = hub.data_dir().to_str().unwrap().to_string();
    let data = data.as_str();

    // The URL and token from the environment, without a data dir.
    let url = hub.base_url();
    let admin = hub.admin_token();
    let env = [
        ("FLEETGATE_HUB_URL", url.as_str()),
        ("FLEETGATE_ADMIN_TOKEN", admin.as_str()),
        ("FLEETGATE_DATA_DIR", "/nonexistent"),
    ];
    let out = hub_cli(&["nodes", "list", "--json"], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()["admin"],
        true
    );

    // 1: the hub refuses the token.
    let out = hub_cli(
        &[
            "nodes",
            "--data-dir",
            data,
            "--admin-token-file",
            wrong.to_str().unwrap(),
            "list",
        ],
        &[],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // 2: nothing says where the hub is, or no token.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = hub_cli(
        &["nodes", "--data-dir", empty.to_str().unwrap(), "list"],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("listen.addr"), "{}", stderr(&out));
    let out = hub_cli(
        &[
            "nodes",
            "--data-dir",
            empty.to_str().unwrap(),
            "--url",
            &url,
            "list",
        ],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("admin.token"), "{}", stderr(&out));
    let out = hub_cli(
        &["nodes", "--data-dir", data, "--url", "ftp://x", "list"],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // 3: no hub there (a port nothing listens on).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = hub_cli(
        &[
            "nodes",
            "--data-dir",
            data,
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "list",
        ],
        &[],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    // A hub that stops: its listen.addr stays, the command says it cannot reach it.
    let node = hub.enroll("n", &[]).await;
    assert_eq!(push_text(&hub, &node, "x 1\n").await, 200);
    eventually(Duration::from_secs(10), "n stale after 1 s", || async {
        let out = hub_cli(
            &[
                "nodes",
                "--data-dir",
                data,
                "list",
                "--state",
                "stale",
                "--json",
            ],
            &[],
        );
        (stdout(&out).contains("\"n\"")).then_some(())
    })
    .await;
    hub.kill9();
    let out = hub_cli(&["nodes", "--data-dir", data, "list"], &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}
