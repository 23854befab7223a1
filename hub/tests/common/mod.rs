//! Helpers shared by the whole-binary tests: a real `fleetgate-hub` process on loopback with a
//! temporary data directory, killed on drop, plus small snapshot builders and real-tool checks.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_shared::{Family, Label, MetricType, Series, Snapshot, Value};

/// A running hub process.
pub struct Hub {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub admin: String,
    pub enroll: String,
    pub args: Vec<String>,
    pub client: reqwest::Client,
    pub scheme: &'static str,
}

impl Hub {
    pub fn start(args: &[&str]) -> Hub {
        Self::start_in(
            tempfile::tempdir().unwrap(),
            args.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn start_in(dir: tempfile::TempDir, args: Vec<String>) -> Hub {
        let (child, addr) = spawn(dir.path(), &args);
        let admin = std::fs::read_to_string(dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let enroll = std::fs::read_to_string(dir.path().join("enroll.token"))
            .unwrap()
            .trim()
            .to_string();
        Hub {
            child,
            dir,
            addr,
            admin,
            enroll,
            args,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            scheme: "http",
        }
    }

    /// SIGKILLs the process and starts a new one on the same data directory.
    pub fn kill9_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, addr) = spawn(self.dir.path(), &self.args);
        self.child = child;
        self.addr = addr;
    }

    /// Sends SIGTERM and waits for the process to exit; whether it exited cleanly.
    pub fn sigterm(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.child.wait().unwrap().success()
    }

    /// Starts a new process on the same data directory (after [`Hub::sigterm`]), its stderr
    /// going to `stderr`.
    pub fn start_again(&mut self, stderr: std::fs::File) {
        let (child, addr) = spawn_logged(self.dir.path(), &self.args, Stdio::from(stderr));
        self.child = child;
        self.addr = addr;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub async fn enroll(&self, node: &str, labels: &[(&str, &str)]) -> String {
        let resp = self.add_node(&self.enroll, node, labels).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["node"], node);
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn add_node(
        &self,
        token: &str,
        node: &str,
        labels: &[(&str, &str)],
    ) -> reqwest::Response {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        self.client
            .post(self.url("/add_node"))
            .bearer_auth(token)
            .json(&serde_json::json!({"node": node, "hostname": format!("{node}.example"), "labels": labels}))
            .send()
            .await
            .unwrap()
    }

    pub async fn remove_node(&self, token: &str, node: &str) -> reqwest::Response {
        self.client
            .post(self.url("/remove_node"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "node": node }))
            .send()
            .await
            .unwrap()
    }

    pub async fn push(&self, token: &str, snapshot: &Snapshot) -> reqwest::Response {
        self.push_raw(
            token,
            fleetgate_shared::CONTENT_TYPE,
            None,
            fleetgate_shared::encode(snapshot),
        )
        .await
    }

    pub async fn push_raw(
        &self,
        token: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/push"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        req.send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        resp.text().await.unwrap()
    }

    pub async fn nodes(&self) -> Vec<serde_json::Value> {
        let resp = self
            .client
            .get(self.url("/nodes"))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub async fn node_info(&self, node: &str) -> serde_json::Value {
        self.nodes()
            .await
            .into_iter()
            .find(|n| n["node"] == node)
            .unwrap_or_else(|| panic!("{node} not in /nodes"))
    }
}

fn spawn(dir: &Path, args: &[String]) -> (Child, String) {
    spawn_logged(dir, args, Stdio::inherit())
}

fn spawn_logged(dir: &Path, args: &[String], stderr: Stdio) -> (Child, String) {
    let addr_file = dir.join("listen.addr");
    let _ = std::fs::remove_file(&addr_file);
    let child = Command::new(env!("CARGO_BIN_EXE_fleetgate-hub"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("FLEETGATE_ADMIN_TOKEN")
        .env_remove("FLEETGATE_ENROLL_TOKEN")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn fleetgate-hub");
    let addr = wait_for_file(&addr_file, Duration::from_secs(30));
    (child, addr)
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for_file(path: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return s.trim().to_string();
            }
        }
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a real tool is installed; without it, fail under CI and skip loudly otherwise.
pub fn require(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{path} is required (CI=true) but missing");
    }
    eprintln!("!!! SKIPPING: {path} is not installed on this machine");
    false
}

/// Runs `promtool check metrics` on `text`; returns its exit code and output.
pub fn promtool_check(text: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    let mut stdin = child.stdin.take().unwrap();
    let text = text.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), msg)
}

pub fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
}

pub fn family(name: &str, kind: MetricType, series: Vec<Series>) -> Family {
    Family {
        name: name.into(),
        help: format!("{name} help"),
        kind,
        series,
    }
}

pub fn scalar(pairs: &[(&str, &str)], v: f64) -> Series {
    Series {
        labels: labels(pairs),
        value: Value::Scalar(v),
    }
}

pub fn snapshot(seq: u64, interval_ms: u64, families: Vec<Family>) -> Snapshot {
    Snapshot {
        seq,
        interval_ms,
        timestamp_ms: 0,
        families,
    }
}

/// Sample lines of `text` whose name is `metric` and that carry `label="value"`.
pub fn lines_with<'a>(text: &'a str, metric: &str, label: &str, value: &str) -> Vec<&'a str> {
    let needle = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(metric) && l.contains(&needle))
        .collect()
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
