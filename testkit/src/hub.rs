//! A real `fleetgate-hub` process on loopback and its HTTP API.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use fleetgate_shared::{Family, Snapshot};

use crate::bins::{command, Binary};
use crate::process::{tail, Process};

/// How long a hub may take to write `listen.addr` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a hub may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `fleetgate-hub --listen 127.0.0.1:0 --data-dir DIR [args]`, killed on drop.
///
/// Its log (`RUST_LOG=info`, or `FLEETGATE_TEST_LOG`) goes to a file of its own, appended to by
/// every restart and printed when a test fails. Tokens are those the hub generated in its data
/// dir on first start (every `FLEETGATE_*` variable of the test's environment is removed).
#[derive(Debug)]
pub struct Hub {
    /// The process; `None` between a stop and the next restart.
    process: Option<Process>,
    /// Owns the default data dir and the log file.
    scratch: tempfile::TempDir,
    /// `--data-dir`: the scratch's `data/` or the directory given to [`Hub::start_in`].
    data_dir: PathBuf,
    /// Extra flags, repeated on every restart.
    args: Vec<String>,
    /// The bound address (`127.0.0.1:PORT`), kept across restarts.
    addr: String,
    /// The CA certificate the client trusts after [`Hub::use_tls`].
    tls_ca: Option<Vec<u8>>,
    /// Client for every request the harness makes (30 s timeout); a new one after each start,
    /// so no request goes out on a kept-alive connection of a killed process.
    client: reqwest::Client,
}

impl Hub {
    /// Starts a hub on a free loopback port with a temporary data dir and extra flags `args`.
    pub fn start(args: &[&str]) -> Hub {
        Self::launch(None, args)
    }

    /// Starts a hub with the data dir `data_dir` (created if missing, kept after the hub is
    /// dropped: it belongs to the caller).
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Hub {
        Self::launch(Some(data_dir), args)
    }

    fn launch(data_dir: Option<&Path>, args: &[&str]) -> Hub {
        let scratch = tempfile::Builder::new()
            .prefix("fleetgate-testkit-hub")
            .tempdir()
            .expect("temporary directory for the hub");
        let data_dir = data_dir.map_or_else(|| scratch.path().join("data"), Path::to_path_buf);
        std::fs::create_dir_all(&data_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", data_dir.display()));
        let mut hub = Hub {
            process: None,
            scratch,
            data_dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            addr: "127.0.0.1:0".to_string(),
            tls_ca: None,
            client: client(None),
        };
        hub.spawn();
        hub
    }

    /// Starts the process on `self.addr` and waits until it has written the address it bound.
    fn spawn(&mut self) {
        assert!(self.process.is_none(), "the hub is already running");
        let addr_file = self.data_dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = command(Binary::Hub);
        cmd.args(["--listen", &self.addr, "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.args);
        let mut process =
            Process::spawn(cmd, "fleetgate-hub", &self.scratch.path().join("hub.log"));
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(addr) = std::fs::read_to_string(&addr_file)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
            {
                break addr;
            }
            if let Some(status) = process.exited() {
                panic!(
                    "fleetgate-hub {:?} exited during start-up ({status}); log:\n{}",
                    self.args,
                    tail(&process.log(), 100)
                );
            }
            assert!(
                Instant::now() < deadline,
                "fleetgate-hub wrote no {} within {START_TIMEOUT:?}; log:\n{}",
                addr_file.display(),
                tail(&process.log(), 100)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.addr = addr;
        self.process = Some(process);
        self.client = client(self.tls_ca.as_deref());
    }

    /// SIGKILL: the process dies at once, wherever it was. Does nothing when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// SIGTERM, then waits (at most 30 s) for the exit and returns its status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut p = self
            .process
            .take()
            .expect("terminate: the hub is not running");
        p.signal("TERM");
        p.wait_exit(STOP_TIMEOUT).await
    }

    /// Starts the hub again with the same data dir, flags and address (after [`Hub::kill9`] or
    /// [`Hub::terminate`]); agents configured with its URL reach it again.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// [`Hub::kill9`], then [`Hub::restart`].
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// The process id; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("the hub is not running").pid()
    }

    /// The bound address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT` (https after [`Hub::use_tls`]), no trailing slash: what an agent's
    /// `--hub` takes.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `base_url()` followed by `path` (`/metrics`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Its `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin token from `DATA_DIR/admin.token`.
    pub fn admin_token(&self) -> String {
        self.read_token("admin.token")
    }

    /// The enrollment token from `DATA_DIR/enroll.token`.
    pub fn enroll_token(&self) -> String {
        self.read_token("enroll.token")
    }

    /// `DATA_DIR/enroll.token`, for an agent's `--enroll-token-file`.
    pub fn enroll_token_file(&self) -> PathBuf {
        self.data_dir.join("enroll.token")
    }

    fn read_token(&self, file: &str) -> String {
        let path = self.data_dir.join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Everything the hub has logged, over all its restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("hub.log")).unwrap_or_default()
    }

    /// The HTTP client the harness uses, for requests it has no method for.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Talks HTTPS from now on, trusting the CA certificate `ca_pem` (for a hub started with
    /// `--tls-cert`/`--tls-key`).
    pub fn use_tls(&mut self, ca_pem: &[u8]) {
        self.client = client(Some(ca_pem));
        self.tls_ca = Some(ca_pem.to_vec());
    }

    /// Enrolls `node` with the enrollment token and `labels`; asserts success and returns the
    /// push token. The hostname sent is `<node>.example`.
    pub async fn enroll(&self, node: &str, labels: &[(&str, &str)]) -> String {
        let resp = self.add_node(&self.enroll_token(), node, labels).await;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "enrolling {node}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["node"], node, "{body}");
        v["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {body}"))
            .to_string()
    }

    /// `POST /add_node` with `token` (enrollment or admin); the response as it came.
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
        let body = serde_json::json!({
            "node": node,
            "hostname": format!("{node}.example"),
            "labels": labels,
        });
        self.send(
            self.client
                .post(self.url("/add_node"))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// `POST /remove_node` of `node` with `token` (admin or the node's push token).
    pub async fn remove_node(&self, token: &str, node: &str) -> reqwest::Response {
        self.send(
            self.client
                .post(self.url("/remove_node"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "node": node })),
        )
        .await
    }

    /// Pushes `snapshot` in the native encoding.
    pub async fn push(&self, token: &str, snapshot: &Snapshot) -> reqwest::Response {
        self.push_raw(
            token,
            fleetgate_shared::CONTENT_TYPE,
            None,
            fleetgate_shared::encode(snapshot),
        )
        .await
    }

    /// Pushes Prometheus text (`text/plain; version=0.0.4`), uncompressed.
    pub async fn push_text(&self, token: &str, text: &str) -> reqwest::Response {
        self.push_raw(
            token,
            "text/plain; version=0.0.4",
            None,
            text.as_bytes().to_vec(),
        )
        .await
    }

    /// Pushes `body` as it is, with `content_type` and, when given, `Content-Encoding`.
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
        self.send(req).await
    }

    /// `GET /metrics` as text; asserts 200 and the exposition's content type.
    pub async fn metrics_text(&self) -> String {
        let resp = self.send(self.client.get(self.url("/metrics"))).await;
        assert_eq!(resp.status(), 200, "GET /metrics");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(fleetgate_shared::text::CONTENT_TYPE),
            "GET /metrics content type"
        );
        resp.text().await.expect("read the /metrics body")
    }

    /// `GET /metrics` parsed by `fleetgate_shared::text::parse`; panics, showing the text, when it
    /// does not parse.
    pub async fn metrics(&self) -> Vec<Family> {
        let text = self.metrics_text().await;
        fleetgate_shared::text::parse(&text)
            .unwrap_or_else(|e| panic!("the hub's /metrics does not parse: {e}\n{text}"))
    }

    /// `GET /nodes` with the admin token; asserts 200.
    pub async fn nodes(&self) -> Vec<serde_json::Value> {
        let resp = self
            .send(
                self.client
                    .get(self.url("/nodes"))
                    .bearer_auth(self.admin_token()),
            )
            .await;
        assert_eq!(resp.status(), 200, "GET /nodes");
        resp.json().await.expect("/nodes is JSON")
    }

    /// The entry of `node` in `/nodes`.
    pub async fn node(&self, node: &str) -> Option<serde_json::Value> {
        self.nodes().await.into_iter().find(|n| n["node"] == node)
    }

    /// The state (`up`, `stale`, `removed`) of `node` in `/nodes`.
    pub async fn node_state(&self, node: &str) -> Option<String> {
        self.node(node)
            .await
            .and_then(|n| n["state"].as_str().map(str::to_string))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> reqwest::Response {
        req.send()
            .await
            .unwrap_or_else(|e| panic!("request to the hub at {} failed: {e}", self.addr))
    }
}

fn client(ca_pem: Option<&[u8]>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(pem).expect("a PEM CA certificate"),
        );
    }
    builder.build().expect("HTTP client")
}
