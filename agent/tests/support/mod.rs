//! Real processes for the agent's whole-binary tests: a `fleetgate-hub` on a loopback port
//! chosen by the kernel, and `fleetgate-agent` processes, all killed on drop.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fleetgate_shared::{Family, Value};

/// The hub binary: `FLEETGATE_HUB_BIN`, or `fleetgate-hub` next to this test's target
/// directory (`<target>/debug/fleetgate-hub`), which `cargo build -p fleetgate-hub` produces.
pub fn hub_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLEETGATE_HUB_BIN") {
        return PathBuf::from(p);
    }
    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let candidate = profile_dir.join("fleetgate-hub");
    assert!(
        candidate.is_file(),
        "{} not found: build the hub first: cargo build -p fleetgate-hub (or set FLEETGATE_HUB_BIN)",
        candidate.display()
    );
    candidate
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetgate-agent"))
}

/// Polls `f` every 100 ms until it returns `Some`, at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running hub process.
pub struct Hub {
    pub data_dir: PathBuf,
    pub addr: String,
    pub admin_token: String,
    pub enroll_token_file: PathBuf,
    /// `http`, or `https` when the hub was started with a certificate.
    scheme: &'static str,
    child: Child,
    http: reqwest::Client,
}

impl Hub {
    /// Starts a hub on `listen` (e.g. `127.0.0.1:0`) with `data_dir`, and waits until it has
    /// written its bound address.
    pub async fn start(data_dir: &Path, listen: &str) -> Hub {
        Hub::start_with(data_dir, listen, &[], None).await
    }

    /// Starts a hub like [`Hub::start`] with `extra` arguments. With `ca` (the PEM CA that
    /// signed the hub's certificate) the hub serves HTTPS and this handle trusts that CA.
    pub async fn start_with(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        ca: Option<&Path>,
    ) -> Hub {
        std::fs::create_dir_all(data_dir).unwrap();
        let addr_file = data_dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("hub.log"))
            .unwrap();
        let child = Command::new(hub_bin())
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("FLEETGATE_ADMIN_TOKEN")
            .env_remove("FLEETGATE_ENROLL_TOKEN")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start fleetgate-hub");
        let mut hub = Hub {
            data_dir: data_dir.to_path_buf(),
            addr: String::new(),
            admin_token: String::new(),
            enroll_token_file: data_dir.join("enroll.token"),
            scheme: if ca.is_some() { "https" } else { "http" },
            child,
            http: {
                let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
                if let Some(ca) = ca {
                    let pem = std::fs::read(ca).unwrap();
                    b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
                }
                b.build().unwrap()
            },
        };
        let addr = eventually(Duration::from_secs(30), "the hub's listen.addr", || {
            let status = hub.child.try_wait().unwrap();
            assert!(
                status.is_none(),
                "hub exited: {status:?}; log:\n{}",
                hub.log()
            );
            let a = std::fs::read_to_string(&addr_file).ok();
            async move { a.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) }
        })
        .await;
        hub.addr = addr;
        hub.admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        hub
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("hub.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The parsed federated `/metrics`.
    pub async fn metrics(&self) -> Vec<Family> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        fleetgate_shared::text::parse(&text)
            .unwrap_or_else(|e| panic!("hub /metrics does not parse: {e}\n{text}"))
    }

    /// `GET /nodes` as JSON.
    pub async fn nodes(&self) -> Vec<serde_json::Value> {
        self.http
            .get(format!("{}/nodes", self.url()))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The state (`up`, `stale`, `removed`) of `node` in `/nodes`.
    pub async fn node_state(&self, node: &str) -> Option<String> {
        self.nodes()
            .await
            .into_iter()
            .find(|n| n["node"] == node)
            .and_then(|n| n["state"].as_str().map(str::to_string))
    }

    /// Removes `node` with the admin token.
    pub async fn remove_node(&self, node: &str) {
        self.http
            .post(format!("{}/remove_node", self.url()))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({ "node": node }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of the series of `name` whose labels include all of `labels`.
pub fn value(fams: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series_labels(fams, name, labels).map(|(_, v)| v)
}

/// The full label set and value of the first series of `name` matching `labels`.
pub fn series_labels(
    fams: &[Family],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<(BTreeMap<String, String>, f64)> {
    let fam = fams.iter().find(|f| f.name == name)?;
    fam.series.iter().find_map(|s| {
        let all: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let matches = labels
            .iter()
            .all(|(k, v)| all.get(*k).map(String::as_str) == Some(*v));
        match (&s.value, matches) {
            (Value::Scalar(v), true) => Some((all, *v)),
            _ => None,
        }
    })
}

/// A running agent process; its log (stderr) goes to a file.
pub struct Agent {
    child: Child,
    pub log_path: PathBuf,
}

impl Agent {
    /// Starts `fleetgate-agent` with `args`, logging to `log_path`.
    pub fn start(args: &[&str], log_path: &Path) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        let child = Command::new(agent_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("FLEETGATE_ENROLL_TOKEN")
            .env_remove("FLEETGATE_HUB")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start fleetgate-agent");
        Agent {
            child,
            log_path: log_path.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Resident memory in bytes, from /proc/<pid>/status.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        self.wait_exit(Duration::from_secs(20)).await
    }

    /// Waits (bounded) for the process to exit on its own.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Common agent arguments: hub, node, state dir, a short interval and no collectors except
/// those in `collectors`.
pub fn agent_args(hub: &Hub, node: &str, state_dir: &Path, collectors: &str) -> Vec<String> {
    vec![
        "--hub".into(),
        hub.url(),
        "--node".into(),
        node.into(),
        "--enroll-token-file".into(),
        hub.enroll_token_file.display().to_string(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--interval".into(),
        "200ms".into(),
        "--collectors".into(),
        collectors.into(),
    ]
}

pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
