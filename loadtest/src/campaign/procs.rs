//! The processes a campaign drives: a `fleetgate-hub` it can SIGKILL, SIGSTOP, SIGTERM and
//! restart on the same address and data directory, and `fleetgate-agent` processes; both are
//! killed when dropped. Also what `/proc` says about them (RSS, open descriptors).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

/// A hub process and everything needed to start it again.
#[derive(Debug)]
pub struct HubProc {
    /// Binary.
    bin: PathBuf,
    /// Extra arguments after `--listen` and `--data-dir`.
    args: Vec<String>,
    /// Data directory, kept across restarts.
    pub data_dir: PathBuf,
    /// Log file (appended to across restarts).
    pub log: PathBuf,
    /// Bound address, the same after every restart.
    pub addr: String,
    /// The running process.
    child: Option<Child>,
    /// Processes started so far (1 for the first).
    pub generation: u32,
}

impl HubProc {
    /// Starts `bin --listen <listen> --data-dir <dir>/data <args>` and waits until it is ready.
    pub async fn start(bin: &Path, dir: &Path, listen: &str, args: &[&str]) -> Result<HubProc> {
        if !bin.is_file() {
            bail!(
                "hub binary {} not found; build it with `cargo build --release -p fleetgate-hub` or pass --hub-bin",
                bin.display()
            );
        }
        let mut hub = HubProc {
            bin: bin.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            data_dir: dir.join("data"),
            log: dir.join("hub.log"),
            addr: listen.to_string(),
            child: None,
            generation: 0,
        };
        hub.spawn().await?;
        Ok(hub)
    }

    async fn spawn(&mut self) -> Result<()> {
        let addr_file = self.data_dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("--listen")
            .arg(&self.addr)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("FLEETGATE_CAMPAIGN_HUB_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("FLEETGATE_ADMIN_TOKEN")
            .env_remove("FLEETGATE_ENROLL_TOKEN")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        self.generation += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if !a.trim().is_empty() {
                    self.addr = a.trim().to_string();
                    break;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!(
                    "hub exited with {status} during start-up:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("hub not listening within 30 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http
            .get(self.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("hub not ready within 30 s:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A token the hub generated into its data directory.
    pub fn token(&self, name: &str) -> Result<String> {
        Ok(std::fs::read_to_string(self.data_dir.join(name))
            .with_context(|| format!("reading {name}"))?
            .trim()
            .to_string())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self
            .pid()
            .and_then(|p| Pid::from_raw(p as i32))
            .context("hub not running")?;
        kill_process(pid, sig).context("signalling the hub")
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) -> Result<()> {
        self.signal(Signal::KILL)?;
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP: the process hangs with its sockets open.
    pub fn stop(&self) -> Result<()> {
        self.signal(Signal::STOP)
    }

    /// SIGCONT after [`HubProc::stop`].
    pub fn cont(&self) -> Result<()> {
        self.signal(Signal::CONT)
    }

    /// SIGTERM and wait (at most 30 s) for the exit; returns whether it exited 0.
    pub async fn terminate(&mut self) -> Result<bool> {
        self.signal(Signal::TERM)?;
        let mut child = self.child.take().context("hub not running")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("hub did not exit within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the hub again on the same address and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.spawn().await
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 30)
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `fleetgate-agent` process, killed on drop.
#[derive(Debug)]
pub struct AgentProc {
    /// The process.
    child: Child,
    /// Its log.
    pub log: PathBuf,
    /// Its node name.
    pub node: String,
}

impl AgentProc {
    /// Starts `command` (the agent binary, possibly behind `ip netns exec`) with `args`, logging
    /// into `log`.
    pub fn start(mut command: Command, node: &str, log: &Path) -> Result<AgentProc> {
        let out = std::fs::File::create(log)?;
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting fleetgate-agent")?;
        Ok(AgentProc {
            child,
            log: log.to_path_buf(),
            node: node.to_string(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of `pid` in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    crate::procstat::sample(&pid.to_string()).map(|s| s.rss_bytes)
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Raises this process's soft limit on open files to the hard one (the abusive-client campaign
/// holds thousands of sockets) and returns it.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current
}
