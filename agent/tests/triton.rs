//! Triton through the agent to the hub, all real: a Triton Inference Server started through
//! PyTriton (the venv of `scripts/requirements-test.txt`, `tests/triton/serve.py`) serving a
//! trivial model, a `fleetgate-hub` process and the agent forwarding Triton's families unchanged.
//! Beside it, a target serving malformed text and one that never answers are counted and skipped.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_shared::MetricType;
use fleetgate_testkit::exposition::{serve, value};
use fleetgate_testkit::{eventually, require, Agent, AgentArgs, Hub};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The python of `$FLEETGATE_VENV` (scripts/test.sh sets it) or of the repository's `.venv`,
/// when it can import pytriton.
fn python_with_pytriton() -> Result<PathBuf, String> {
    let venv = std::env::var_os("FLEETGATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        return Err(format!("no {}", python.display()));
    }
    let ok = Command::new(&python)
        .args(["-c", "import pytriton, numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import pytriton (PyPI nvidia-pytriton, scripts/requirements-test.txt)",
            python.display()
        ))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The PyTriton server in its own process group (Python plus the tritonserver it spawns).
struct Triton {
    child: Child,
    log: PathBuf,
    http_port: u16,
    metrics_port: u16,
}

impl Triton {
    async fn start(python: &Path, dir: &Path) -> Triton {
        let (http_port, grpc_port, metrics_port) = (free_port(), free_port(), free_port());
        let log = dir.join("triton.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .arg(repo_root().join("tests/triton/serve.py"))
            .args([http_port, grpc_port, metrics_port].map(|p| p.to_string()))
            .env("HOME", dir)
            .current_dir(dir)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut t = Triton {
            child,
            log,
            http_port,
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let text = std::fs::read_to_string(&t.log).unwrap_or_default();
            if text.contains("READY") {
                break;
            }
            let status = t.child.try_wait().unwrap();
            assert!(status.is_none(), "Triton exited ({status:?}):\n{text}");
            assert!(
                Instant::now() < deadline,
                "Triton not ready after 180 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        t
    }

    async fn infer(&self, http: &reqwest::Client) {
        let body = serde_json::json!({
            "inputs": [{"name": "data", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]
        });
        let resp = http
            .post(format!(
                "http://127.0.0.1:{}/v2/models/identity/infer",
                self.http_port
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "inference failed: {}",
            resp.text().await.unwrap()
        );
    }

    fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left of the group (tritonserver, backend stubs).
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

/// Accepts connections and never answers.
async fn serve_hanging() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    format!("http://{addr}/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triton_counters_reach_the_hub_unchanged_and_bad_targets_are_skipped() {
    let Some(python) = require("Python with PyTriton", python_with_pytriton()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let triton = Triton::start(&python, tmp.path()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    const REQUESTS: f64 = 5.0;
    for _ in 0..REQUESTS as usize {
        triton.infer(&http).await;
    }
    let model = [("model", "identity"), ("version", "1")];
    let triton_fams = eventually(Duration::from_secs(60), "Triton's own counter", || async {
        let text = http
            .get(triton.metrics_url())
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let fams = fleetgate_shared::text::parse(&text).unwrap();
        (value(&fams, "nv_inference_request_success", &model) == Some(REQUESTS)).then_some(fams)
    })
    .await;
    let triton_family = triton_fams
        .iter()
        .find(|f| f.name == "nv_inference_request_success")
        .unwrap();
    assert_eq!(triton_family.kind, MetricType::Counter);

    let malformed =
        serve("# TYPE broken counter\nbroken{label=\"unterminated} 1\n<html>oops</html>\n".into())
            .await;
    let hanging = serve_hanging().await;
    let hub = Hub::start(&[]);
    let mut args = AgentArgs::new(&hub, "gpu-box", &tmp.path().join("state")).with([
        "--scrape-timeout".to_string(),
        "1s".to_string(),
        "--triton-url".to_string(),
        triton.metrics_url(),
        "--scrape-url".to_string(),
        malformed.clone(),
        "--scrape-url".to_string(),
        hanging.clone(),
    ]);
    args.collectors = "triton".into();
    let mut agent = Agent::start(args.args());

    let node = [("node", "gpu-box")];
    let deadline = Instant::now() + Duration::from_secs(60);
    let fams = loop {
        let fams = hub.metrics().await;
        let forwarded = value(
            &fams,
            "nv_inference_request_success",
            &[model[0], model[1], node[0]],
        );
        let parse = value(
            &fams,
            "fleetgate_agent_scrape_failures_total",
            &[("target", &malformed), ("reason", "parse")],
        );
        let timeout = value(
            &fams,
            "fleetgate_agent_scrape_failures_total",
            &[("target", &hanging), ("reason", "timeout")],
        );
        if forwarded.is_some() && parse.is_some() && timeout.is_some() {
            break fams;
        }
        if Instant::now() > deadline {
            let names: Vec<_> = fams.iter().map(|f| f.name.as_str()).collect();
            panic!(
                "Triton's counter ({forwarded:?}) or the scrape failures (parse {parse:?}, timeout {timeout:?}) did not reach the hub\nhub families: {names:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Exactly Triton's value, type and HELP, under Triton's name (no `_total` appended).
    let forwarded = fams
        .iter()
        .find(|f| f.name == "nv_inference_request_success")
        .unwrap();
    assert_eq!(forwarded.kind, MetricType::Counter);
    assert_eq!(forwarded.help, triton_family.help);
    assert_eq!(
        value(
            &fams,
            "nv_inference_request_success",
            &[model[0], model[1], node[0]]
        ),
        Some(REQUESTS)
    );
    assert!(!fams
        .iter()
        .any(|f| f.name.starts_with("nv_") && f.name.ends_with("_total")));
    assert_eq!(
        value(&fams, "nv_inference_count", &[model[0], model[1], node[0]]),
        value(&triton_fams, "nv_inference_count", &model)
    );
    // The bad targets are skipped; Triton and the self metrics still went out.
    assert!(!fams.iter().any(|f| f.name == "broken"));
    assert_eq!(
        value(
            &fams,
            "fleetgate_agent_collector_up",
            &[("collector", "triton"), node[0]]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &fams,
            "fleetgate_agent_collector_up",
            &[("collector", "scrape"), node[0]]
        ),
        Some(0.0)
    );
    assert!(value(&fams, "process_resident_memory_bytes", &node).is_some());
    let log = agent.log();
    assert_eq!(
        log.matches("scrape failed, target skipped").count(),
        2,
        "one warning per bad target:\n{log}"
    );
    assert!(agent.terminate().await.success());
}
