//! The systems under test as child processes on loopback: the Fleetgate hub (release binary,
//! `--listen 127.0.0.1:0`) and Prometheus Pushgateway. Both are killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A child process that is killed and reaped on drop, with its log file kept for errors.
#[derive(Debug)]
pub struct Service {
    /// The running process.
    child: Child,
    /// Where its stdout and stderr go, shown when start-up fails.
    log: PathBuf,
    /// Base URL, e.g. `http://127.0.0.1:43127`.
    pub url: String,
    /// Scratch directory (hub data dir, logs), removed on drop.
    _dir: tempfile::TempDir,
}

impl Service {
    /// The process id, for `/proc/<pid>` sampling.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the process's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started hub and the enrollment token it generated.
#[derive(Debug)]
pub struct Hub {
    /// The hub process.
    pub service: Service,
    /// Contents of `DATA_DIR/enroll.token`.
    pub enroll_token: String,
    /// Contents of `DATA_DIR/admin.token`, used to remove nodes.
    pub admin_token: String,
}

/// Starts `bin --listen 127.0.0.1:0 --data-dir <tmp>` and waits for `listen.addr` and `/readyz`.
pub async fn start_hub(bin: &Path) -> Result<Hub> {
    if !bin.is_file() {
        bail!(
            "hub binary {} not found; build it with `cargo build --release -p fleetgate-hub` or pass --hub-bin",
            bin.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("fleetgate-loadtest-hub")
        .tempdir()?;
    let data = dir.path().join("data");
    let log = dir.path().join("hub.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(bin)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .env(
            "RUST_LOG",
            std::env::var("FLEETGATE_LOADTEST_HUB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("FLEETGATE_ADMIN_TOKEN")
        .env_remove("FLEETGATE_ENROLL_TOKEN")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut service = Service {
        child,
        log,
        url: String::new(),
        _dir: dir,
    };
    let addr_file = data.join("listen.addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            if !a.trim().is_empty() {
                break a.trim().to_string();
            }
        }
        if let Ok(Some(status)) = service.child.try_wait() {
            bail!(
                "hub exited with {status} during start-up:\n{}",
                service.log_tail()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "hub wrote no {} within 20 s:\n{}",
                addr_file.display(),
                service.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    service.url = format!("http://{addr}");
    let read = |name: &str| -> Result<String> {
        Ok(std::fs::read_to_string(data.join(name))
            .with_context(|| format!("reading hub {name}"))?
            .trim()
            .to_string())
    };
    let hub = Hub {
        enroll_token: read("enroll.token")?,
        admin_token: read("admin.token")?,
        service,
    };
    wait_ready(&hub.service, "/readyz").await?;
    Ok(hub)
}

/// Starts Pushgateway on a free loopback port, without persistence, and waits for `/-/ready`.
pub async fn start_pushgateway(bin: &Path) -> Result<Service> {
    if !bin.is_file() {
        bail!(
            "Pushgateway binary {} not found (Debian package prometheus-pushgateway) or pass --pushgateway-bin",
            bin.display()
        );
    }
    let mut last_err = None;
    // The port is free when probed but another process could take it before Pushgateway binds;
    // a few attempts make that race harmless.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::Builder::new()
            .prefix("fleetgate-loadtest-pgw")
            .tempdir()?;
        let log = dir.path().join("pushgateway.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--persistence.file=")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let service = Service {
            child,
            log,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        match wait_ready(&service, "/-/ready").await {
            Ok(()) => return Ok(service),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Pushgateway did not start")))
}

async fn wait_ready(service: &Service, path: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{}{path}", service.url);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} not ready within 20 s:\n{}", service.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `work` until it ends or the rig is asked to stop (SIGINT or SIGTERM). Stopped, `work`
/// is dropped first, so the hubs, Pushgateways and agents it started are killed with it
/// instead of being left running, and the error names the signal.
pub async fn until_stopped<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        result = work => result,
        signal = stop_signal() => bail!(
            "stopped by {signal}; the systems it had started are stopped too"
        ),
    }
}

/// The name of the first stop signal received. A signal that cannot be watched is logged and
/// never arrives (the run is not cut short for it).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGINT; it will not stop the run cleanly");
                std::future::pending().await
            }
        }
    };
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                "SIGTERM"
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; it will not stop the run cleanly");
                std::future::pending().await
            }
        }
    };
    tokio::select! {
        signal = interrupt => signal,
        signal = terminate => signal,
    }
}
