//! What pushing to several hubs costs, for `docs/PERFORMANCE.md` ("Several hubs"): runs the
//! release `fleetgate-agent` (host collector) against 1, 2 and 3 release `fleetgate-hub`
//! processes in turn and reports, per run, the agent's CPU per collection cycle, its resident
//! memory, the bytes it sent to each hub per cycle, and each hub's CPU. Prints Markdown.
//!
//! ```text
//! cargo build --release -p fleetgate-agent -p fleetgate-hub --example replication
//! target/release/examples/replication --interval-ms 2000 --window-s 60
//! ```
//!
//! Every process it starts is killed when it ends; everything lives in a temporary directory.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Debug, Parser)]
struct Opts {
    /// Push interval of the agent, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    /// Length of each measuring window, in seconds (after a warm-up of five intervals).
    #[arg(long, default_value_t = 60)]
    window_s: u64,
    /// Hub counts to measure, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    hubs: Vec<usize>,
    /// Directory with the release `fleetgate-agent` and `fleetgate-hub` (default: the parent of
    /// this example's directory, i.e. `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// A child process, killed and reaped when dropped.
#[derive(Debug)]
struct Running(Child);

impl Running {
    fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Running(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_comm
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Ok(ticks as f64 / 100.0)
}

/// VmRSS in kB.
fn rss_kb(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0))
}

fn metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// The value of the first line of `text` that starts with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_for_file(path: &Path) -> anyhow::Result<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return Ok(text.trim().to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not appear within 30 s", path.display())
}

/// One hub of a run: its process, address, and counters at the start of the window.
struct Hub {
    process: Running,
    addr: SocketAddr,
    cpu0: f64,
    bytes0: f64,
    pushes0: f64,
}

/// What one run measured.
struct Run {
    hubs: usize,
    cycles: f64,
    agent_cpu_ms_per_cycle: f64,
    agent_rss_kb: u64,
    bytes_per_cycle_per_hub: Vec<f64>,
    hub_cpu_percent: Vec<f64>,
}

fn run(opts: &Opts, bin: &Path, tmp: &Path, n: usize) -> anyhow::Result<Run> {
    let token = "replication-enroll-token-0123456789";
    let mut hubs = Vec::new();
    for i in 0..n {
        let data = tmp.join(format!("hubs-{n}-{i}"));
        std::fs::create_dir_all(&data)?;
        std::fs::write(data.join("enroll.token"), format!("{token}\n"))?;
        let process = Running::spawn(
            Command::new(bin.join("fleetgate-hub"))
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .env("RUST_LOG", "warn"),
            &data.join("hub.log"),
        )?;
        let addr: SocketAddr = wait_for_file(&data.join("listen.addr"))?.parse()?;
        hubs.push(Hub {
            process,
            addr,
            cpu0: 0.0,
            bytes0: 0.0,
            pushes0: 0.0,
        });
    }
    let urls: Vec<String> = hubs.iter().map(|h| format!("http://{}", h.addr)).collect();
    let token_file = tmp.join(format!("hubs-{n}-0")).join("enroll.token");
    let agent = Running::spawn(
        Command::new(bin.join("fleetgate-agent"))
            .args(["--hub", &urls.join(","), "--node", "replication"])
            .arg("--enroll-token-file")
            .arg(&token_file)
            .arg("--state-dir")
            .arg(tmp.join(format!("agent-{n}")))
            .args([
                "--interval",
                &format!("{}ms", opts.interval_ms),
                "--collectors",
                "host",
            ])
            .env("RUST_LOG", "warn"),
        &tmp.join(format!("agent-{n}.log")),
    )?;
    let interval = Duration::from_millis(opts.interval_ms);
    std::thread::sleep(interval * 5);
    let ok = "fleetgate_hub_pushes_total{result=\"ok\"}";
    let bytes = "fleetgate_hub_push_bytes_total{result=\"ok\"}";
    for h in &mut hubs {
        let text = metrics(h.addr)?;
        h.cpu0 = cpu_seconds(h.process.pid())?;
        h.bytes0 = value(&text, bytes);
        h.pushes0 = value(&text, ok);
        if h.pushes0 < 2.0 {
            bail!(
                "hub {} accepted {} pushes in the warm-up",
                h.addr,
                h.pushes0
            );
        }
    }
    let agent_cpu0 = cpu_seconds(agent.pid())?;
    let started = Instant::now();
    let mut rss_max = 0;
    while started.elapsed() < Duration::from_secs(opts.window_s) {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss_kb(agent.pid())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let agent_cpu = cpu_seconds(agent.pid())? - agent_cpu0;
    let mut bytes_per_cycle = Vec::new();
    let mut hub_cpu = Vec::new();
    let mut cycles = f64::MAX;
    for h in &hubs {
        let text = metrics(h.addr)?;
        let pushes = value(&text, ok) - h.pushes0;
        cycles = cycles.min(pushes);
        bytes_per_cycle.push((value(&text, bytes) - h.bytes0) / pushes.max(1.0));
        hub_cpu.push(100.0 * (cpu_seconds(h.process.pid())? - h.cpu0) / elapsed);
    }
    drop(agent);
    Ok(Run {
        hubs: n,
        cycles,
        agent_cpu_ms_per_cycle: 1000.0 * agent_cpu / cycles.max(1.0),
        agent_rss_kb: rss_max,
        bytes_per_cycle_per_hub: bytes_per_cycle,
        hub_cpu_percent: hub_cpu,
    })
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let bin = match &opts.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("no parent directory of this example")?
            .to_path_buf(),
    };
    for b in ["fleetgate-agent", "fleetgate-hub"] {
        if !bin.join(b).is_file() {
            bail!("{} not found: cargo build --release -p fleetgate-agent -p fleetgate-hub, or pass --bin-dir", bin.join(b).display());
        }
    }
    let tmp = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for &n in &opts.hubs {
        eprintln!(
            "measuring the agent with {n} hub(s) for {} s",
            opts.window_s
        );
        runs.push(run(&opts, &bin, tmp.path(), n)?);
    }
    println!(
        "| hubs | cycles | agent CPU per cycle | agent RSS | bytes sent per cycle, per hub | each hub's CPU |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &runs {
        let bytes: Vec<String> = r
            .bytes_per_cycle_per_hub
            .iter()
            .map(|b| format!("{b:.0}"))
            .collect();
        let cpu: Vec<String> = r
            .hub_cpu_percent
            .iter()
            .map(|c| format!("{c:.2} %"))
            .collect();
        println!(
            "| {} | {:.0} | {:.2} ms | {:.1} MB | {} B | {} |",
            r.hubs,
            r.cycles,
            r.agent_cpu_ms_per_cycle,
            r.agent_rss_kb as f64 / 1024.0,
            bytes.join(" / "),
            cpu.join(" / ")
        );
    }
    Ok(())
}
