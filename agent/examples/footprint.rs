//! Footprint benchmark for `docs/PERFORMANCE.md` ("Agent footprint"): runs the release
//! `fleetgate-agent` with all collectors, pushing to a real `fleetgate-hub`, side by side with
//! Debian's `prometheus-node-exporter` scraped at the same interval, and reports resident memory,
//! CPU per collection cycle and bytes per sample on the wire; then again with N running
//! containers; then, inside this process, each collector's CPU per cycle and the encoded
//! snapshot size at several zstd levels next to the steady-state values push. Prints Markdown
//! on stdout.
//!
//! ```text
//! cargo build --release -p fleetgate-agent -p fleetgate-hub --bins --example footprint
//! target/release/examples/footprint --interval-ms 2000 --window-s 40 --containers 50
//! ```
//!
//! The hub, the agent and the containers are the test harness's (`fleetgate-testkit`): the
//! release binaries next to this example (refused when older than their sources), a busybox image
//! made with `docker import`. Needs a running Docker engine the user may talk to, `/bin/busybox`
//! (static) and the node_exporter binary. Everything it starts (processes, containers, the image)
//! is removed when it ends. `tests/footprint.rs` checks the same figures with generous bounds.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use fleetgate_agent::collectors::agent_self::PushStats;
use fleetgate_agent::config::{Args, Config};
use fleetgate_shared::{Snapshot, Value};
use fleetgate_testkit::docker::{BusyboxImage, Container};
use fleetgate_testkit::process::{cpu_time, memory, Memory};
use fleetgate_testkit::{Agent, Hub};

#[derive(Debug, Parser)]
struct Opts {
    /// Agent push interval and node_exporter scrape interval, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    /// Length of each measuring window, in seconds.
    #[arg(long, default_value_t = 40)]
    window_s: u64,
    /// Running containers started for the second window (0 skips it).
    #[arg(long, default_value_t = 50)]
    containers: usize,
    /// Directory with the `fleetgate-agent` and `fleetgate-hub` to measure (default: those of
    /// this example's build, `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The node_exporter to compare with.
    #[arg(long, default_value = "/usr/bin/prometheus-node-exporter")]
    node_exporter: PathBuf,
    /// Only the in-process part (no hub, agent or node_exporter processes).
    #[arg(long)]
    in_process_only: bool,
    /// Collection cycles per in-process measurement.
    #[arg(long, default_value_t = 10)]
    cycles: u32,
}

/// node_exporter, killed and reaped when dropped.
#[derive(Debug)]
struct Exporter(Child);

impl Exporter {
    fn spawn(bin: &Path, addr: SocketAddr, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Exporter(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mem(pid: u32) -> anyhow::Result<Memory> {
    memory(pid).with_context(|| format!("process {pid} is gone"))
}

fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    Ok(cpu_time(pid)
        .with_context(|| format!("process {pid} is gone"))?
        .as_secs_f64()
        * 1e3)
}

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("unreadable /proc/thread-self/schedstat"))
}

/// A plain HTTP/1.0 GET; returns the body (still gzip-compressed when `gzip` is asked for and
/// the server used it, as Prometheus receives it).
fn http_get(addr: SocketAddr, path: &str, gzip: bool) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    if head.get(9..12) != Some("200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(raw[split + 4..].to_vec())
}

/// Lines of an exposition text that are samples.
fn count_samples(text: &[u8]) -> usize {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// The hub's push counters for successful pushes.
#[derive(Debug, Default, Clone, Copy)]
struct HubCounters {
    pushes: f64,
    bytes: f64,
    samples: f64,
}

fn hub_counters(hub: SocketAddr) -> anyhow::Result<HubCounters> {
    let text = String::from_utf8(http_get(hub, "/metrics", false)?)?;
    let value = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(HubCounters {
        pushes: value("fleetgate_hub_pushes_total{result=\"ok\"}"),
        bytes: value("fleetgate_hub_push_bytes_total{result=\"ok\"}"),
        samples: value("fleetgate_hub_ingested_samples_total "),
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What one measuring window saw.
#[derive(Debug, Default)]
struct Window {
    agent: Memory,
    agent_rss_max: u64,
    agent_cycles: f64,
    agent_cpu_ms: f64,
    wire_bytes: f64,
    wire_samples: f64,
    exporter: Memory,
    exporter_rss_max: u64,
    exporter_scrapes: u32,
    exporter_cpu_ms: f64,
    exporter_gzip_bytes: usize,
    exporter_samples: usize,
    dockerd_cpu_ms: Option<f64>,
    containers_running: usize,
}

/// Measures agent and node_exporter side by side for `opts.window_s`, scraping node_exporter
/// (with `Accept-Encoding: gzip`, as Prometheus does) every interval.
fn measure(
    opts: &Opts,
    agent: &Agent,
    exporter: (&Exporter, SocketAddr),
    hub: SocketAddr,
) -> anyhow::Result<Window> {
    let dockerd = pidof("dockerd");
    let interval = Duration::from_millis(opts.interval_ms);
    let (a0, e0, h0) = (
        cpu_ms(agent.pid())?,
        cpu_ms(exporter.0.pid())?,
        hub_counters(hub)?,
    );
    let d0 = dockerd.and_then(|p| cpu_ms(p).ok());
    let mut w = Window::default();
    let start = Instant::now();
    let mut next_scrape = start;
    while start.elapsed() < Duration::from_secs(opts.window_s) {
        if Instant::now() >= next_scrape {
            w.exporter_gzip_bytes += http_get(exporter.1, "/metrics", true)?.len();
            w.exporter_scrapes += 1;
            next_scrape += interval;
        }
        w.agent_rss_max = w.agent_rss_max.max(mem(agent.pid())?.rss);
        w.exporter_rss_max = w.exporter_rss_max.max(mem(exporter.0.pid())?.rss);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (a1, e1, h1) = (
        cpu_ms(agent.pid())?,
        cpu_ms(exporter.0.pid())?,
        hub_counters(hub)?,
    );
    w.agent_cycles = h1.pushes - h0.pushes;
    w.agent_cpu_ms = a1 - a0;
    w.wire_bytes = h1.bytes - h0.bytes;
    w.wire_samples = h1.samples - h0.samples;
    w.exporter_cpu_ms = e1 - e0;
    w.dockerd_cpu_ms = match (dockerd, d0) {
        (Some(p), Some(d0)) => cpu_ms(p).ok().map(|d1| d1 - d0),
        _ => None,
    };
    w.agent = mem(agent.pid())?;
    w.exporter = mem(exporter.0.pid())?;
    w.exporter_samples = count_samples(&http_get(exporter.1, "/metrics", false)?);
    w.containers_running = fleetgate_testkit::docker::docker(&["ps", "-q"])
        .lines()
        .count();
    Ok(w)
}

fn pidof(name: &str) -> Option<u32> {
    let out = Command::new("pidof").arg(name).output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Idle busybox containers and their image, removed when dropped (containers first).
#[derive(Debug)]
struct Containers {
    _running: Vec<Container>,
    _image: BusyboxImage,
}

impl Containers {
    fn start(n: usize) -> Self {
        let image = BusyboxImage::build("footprint");
        let running = (0..n)
            .map(|_| Container::run(&image, "footprint", &[], "sleep 3600"))
            .collect();
        Containers {
            _running: running,
            _image: image,
        }
    }
}

/// In-process figures for one set of collectors.
#[derive(Debug)]
struct InProcess {
    collectors: String,
    cpu_ms_per_cycle: f64,
    samples: usize,
    postcard_bytes: usize,
    text_bytes: usize,
    /// (zstd level, encoded bytes, encode CPU in ms).
    encoded: Vec<(i32, usize, f64)>,
    /// zstd-3 size with a dictionary of every family's name and HELP text (the same on every
    /// host): what a static dictionary shared by agent and hub would give.
    with_names_dictionary: usize,
    /// zstd-3 size with the previous cycle's payload as dictionary: what pushing against a
    /// reference the hub keeps would give at best.
    with_previous_dictionary: usize,
    /// Size of the values push (`fleetgate_shared::encode_values`) of a cycle collected one
    /// interval after the measured ones, against the last measured one: what the agent sends
    /// in steady state. `None` when the layout changed between the two.
    values_push: Option<usize>,
    /// zstd-3 size without HELP texts.
    without_help: usize,
    /// zstd-3 size without HELP texts and with every value 0: names and labels alone.
    structure_only: usize,
}

const LEVELS: [i32; 6] = [1, 3, 6, 9, 15, 19];
const ENCODE_REPEATS: u32 = 20;

/// Builds the agent's collection for `collectors` as `--once` does, runs one warm-up cycle
/// (version negotiation, first inspects), then `cycles` measured ones on this thread.
fn in_process(collectors: &str, cycles: u32, interval: Duration) -> anyhow::Result<InProcess> {
    let args = Args::try_parse_from([
        "fleetgate-agent",
        "--once",
        "--node",
        "footprint",
        "--collectors",
        collectors,
    ])?;
    let (_, config) = Config::from_args(args)?;
    let (mut collection, _) = fleetgate_agent::build_collection(&config, PushStats::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut families = rt.block_on(collection.collect());
    let previous = payload(&snapshot_of(families.clone()));
    let before = thread_cpu_ns()?;
    for _ in 0..cycles {
        families = rt.block_on(collection.collect());
    }
    let cpu_ms_per_cycle = (thread_cpu_ns()? - before) as f64 / 1e6 / f64::from(cycles.max(1));
    // One more cycle an interval later, as the agent's next push would see it.
    std::thread::sleep(interval);
    let next = rt.block_on(collection.collect());
    let layout = fleetgate_shared::layout_hash(&families);
    let values_push = (fleetgate_shared::layout_hash(&next) == layout).then(|| {
        let header = fleetgate_shared::ValuesHeader {
            seq: 2,
            interval_ms: interval.as_millis() as u64,
            timestamp_ms: 0,
            base_seq: 1,
            layout,
        };
        fleetgate_shared::encode_values(
            &header,
            &fleetgate_shared::sample_values(&families),
            &fleetgate_shared::sample_values(&next),
        )
        .len()
    });
    let snapshot = snapshot_of(families);
    let samples = snapshot
        .families
        .iter()
        .flat_map(|f| &f.series)
        .map(|s| s.value.sample_count())
        .sum();
    let encoded = LEVELS
        .iter()
        .map(|&l| {
            // Repeated: the scheduler's per-thread clock advances in coarse steps.
            let start = thread_cpu_ns().unwrap_or(0);
            let mut bytes = 0;
            for _ in 0..ENCODE_REPEATS {
                bytes = fleetgate_shared::encode_with_level(&snapshot, l).len();
            }
            let ns = thread_cpu_ns().unwrap_or(0).saturating_sub(start);
            (l, bytes, ns as f64 / 1e6 / f64::from(ENCODE_REPEATS))
        })
        .collect();
    let mut names = Vec::new();
    for f in &snapshot.families {
        names.extend_from_slice(f.name.as_bytes());
        names.extend_from_slice(f.help.as_bytes());
    }
    let current = payload(&snapshot);
    let with_names_dictionary = zstd::bulk::Compressor::with_dictionary(3, &names)?
        .compress(&current)?
        .len()
        + 5;
    let with_previous_dictionary = zstd::bulk::Compressor::with_dictionary(3, &previous)?
        .compress(&current)?
        .len()
        + 5;
    let mut stripped = snapshot.clone();
    for f in &mut stripped.families {
        f.help.clear();
    }
    let without_help = fleetgate_shared::encode(&stripped).len();
    for s in stripped.families.iter_mut().flat_map(|f| &mut f.series) {
        zero(&mut s.value);
    }
    let structure_only = fleetgate_shared::encode(&stripped).len();
    Ok(InProcess {
        values_push,
        without_help,
        structure_only,
        collectors: collectors.to_string(),
        cpu_ms_per_cycle,
        samples,
        postcard_bytes: current.len(),
        with_names_dictionary,
        with_previous_dictionary,
        text_bytes: fleetgate_shared::text::render(&snapshot.families).len(),
        encoded,
    })
}

/// Sets every number of a value to 0, keeping its shape (bucket bounds, quantiles).
fn zero(value: &mut Value) {
    match value {
        Value::Scalar(v) => *v = 0.0,
        Value::Histogram(h) => {
            h.sum = 0.0;
            h.count = 0.0;
            h.buckets.iter_mut().for_each(|b| b.count = 0.0);
        }
        Value::Summary(s) => {
            s.sum = 0.0;
            s.count = 0.0;
            s.quantiles.iter_mut().for_each(|q| q.value = 0.0);
        }
    }
}

fn snapshot_of(families: Vec<fleetgate_shared::Family>) -> Snapshot {
    Snapshot {
        seq: 1,
        interval_ms: 15_000,
        timestamp_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        families,
    }
}

/// The uncompressed (postcard) payload of the encoding: a level-1 frame decoded back.
fn payload(snapshot: &Snapshot) -> Vec<u8> {
    let encoded = fleetgate_shared::encode_with_level(snapshot, 1);
    let header = fleetgate_shared::MAGIC.len() + 1;
    fleetgate_shared::decompress_capped(
        fleetgate_shared::ContentEncoding::Zstd,
        &encoded[header..],
        64 << 20,
    )
    .unwrap_or_default()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn print_window(title: &str, w: &Window) {
    let per = |ms: f64, n: f64| if n > 0.0 { ms / n } else { f64::NAN };
    println!("### {title}\n");
    println!(
        "running containers (whole engine): {}; agent cycles (accepted pushes): {}; node_exporter scrapes: {}\n",
        w.containers_running, w.agent_cycles, w.exporter_scrapes
    );
    println!("| metric | fleetgate-agent | node_exporter |");
    println!("|---|---|---|");
    println!(
        "| VmRSS at end / max seen | {} / {} | {} / {} |",
        mib(w.agent.rss),
        mib(w.agent_rss_max),
        mib(w.exporter.rss),
        mib(w.exporter_rss_max)
    );
    println!("| VmHWM | {} | {} |", mib(w.agent.hwm), mib(w.exporter.hwm));
    println!(
        "| RssAnon / RssFile | {} / {} | {} / {} |",
        mib(w.agent.anon),
        mib(w.agent.file),
        mib(w.exporter.anon),
        mib(w.exporter.file)
    );
    println!("| threads | {} | {} |", w.agent.threads, w.exporter.threads);
    println!(
        "| CPU per cycle / scrape | {:.2} ms | {:.2} ms |",
        per(w.agent_cpu_ms, w.agent_cycles),
        per(w.exporter_cpu_ms, f64::from(w.exporter_scrapes))
    );
    let agent_bytes = per(w.wire_bytes, w.agent_cycles);
    let agent_samples = per(w.wire_samples, w.agent_cycles);
    let exporter_bytes = per(w.exporter_gzip_bytes as f64, f64::from(w.exporter_scrapes));
    println!(
        "| samples per cycle | {agent_samples:.0} | {} |",
        w.exporter_samples
    );
    println!(
        "| bytes on the wire per cycle (agent: values pushes, a full snapshot every 20th push and after a layout change; node_exporter: gzip text) | {agent_bytes:.0} | {exporter_bytes:.0} |"
    );
    println!(
        "| bytes per sample on the wire | {:.2} | {:.2} |",
        agent_bytes / agent_samples,
        exporter_bytes / w.exporter_samples as f64
    );
    if let Some(ms) = w.dockerd_cpu_ms {
        println!(
            "| dockerd CPU per agent cycle (whole engine, includes other clients) | {:.2} ms | |",
            per(ms, w.agent_cycles)
        );
    }
    println!();
}

fn print_in_process(rows: &[InProcess]) {
    print!("| collectors | CPU per cycle | samples | text bytes | postcard bytes |");
    for l in LEVELS {
        print!(" zstd {l} (bytes, per sample, encode CPU) |");
    }
    println!();
    println!("|---|---|---|---|---|{}", "---|".repeat(LEVELS.len()));
    for r in rows {
        print!(
            "| {} | {:.2} ms | {} | {} | {} |",
            r.collectors, r.cpu_ms_per_cycle, r.samples, r.text_bytes, r.postcard_bytes
        );
        for (_, bytes, ms) in &r.encoded {
            print!(
                " {bytes} B, {:.2} B/sample, {ms:.2} ms |",
                *bytes as f64 / r.samples as f64
            );
        }
        println!();
    }
    println!();
    println!("Where the compressed bytes go (zstd 3): HELP texts, values, names and labels.\n");
    println!("| collectors | HELP texts | values | names + labels + framing |");
    println!("|---|---|---|---|");
    for r in rows {
        let full = r
            .encoded
            .iter()
            .find(|(l, _, _)| *l == 3)
            .map_or(0, |(_, b, _)| *b);
        let part = |bytes: usize| {
            format!(
                "{bytes} B ({:.2} B/sample)",
                bytes as f64 / r.samples as f64
            )
        };
        println!(
            "| {} | {} | {} | {} |",
            r.collectors,
            part(full.saturating_sub(r.without_help)),
            part(r.without_help.saturating_sub(r.structure_only)),
            part(r.structure_only)
        );
    }
    println!();
    println!("Full snapshot against the values push, and wire-size options not in the format (zstd 3, 5-byte header included):\n");
    println!(
        "| collectors | full snapshot | values push, next cycle one interval later | static dictionary of names + HELP | previous cycle as dictionary |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        let per = |bytes: usize| {
            format!(
                "{bytes} B ({:.2} B/sample)",
                bytes as f64 / r.samples as f64
            )
        };
        let full = r
            .encoded
            .iter()
            .find(|(l, _, _)| *l == 3)
            .map_or(0, |(_, b, _)| *b);
        println!(
            "| {} | {} | {} | {} | {} |",
            r.collectors,
            per(full),
            r.values_push
                .map_or_else(|| "layout changed".to_string(), per),
            per(r.with_names_dictionary),
            per(r.with_previous_dictionary)
        );
    }
    println!();
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    if let Some(dir) = &opts.bin_dir {
        // The harness takes the binaries from these (and refuses nothing it did not build).
        std::env::set_var("FLEETGATE_HUB_BIN", dir.join("fleetgate-hub"));
        std::env::set_var("FLEETGATE_AGENT_BIN", dir.join("fleetgate-agent"));
    }
    let scratch = tempfile::tempdir()?;
    if opts.in_process_only {
        let containers = (opts.containers > 0).then(|| Containers::start(opts.containers));
        return print_in_process_part(&opts, containers);
    }

    let hub = Hub::start(&[]);
    let hub_addr: SocketAddr = hub.addr().parse()?;
    let exporter_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let exporter = Exporter::spawn(
        &opts.node_exporter,
        exporter_addr,
        &scratch.path().join("node_exporter.log"),
    )?;
    let state_dir = scratch.path().join("agent");
    let agent = Agent::start([
        "--hub".to_string(),
        hub.base_url(),
        "--enroll-token-file".to_string(),
        hub.enroll_token_file().display().to_string(),
        "--node".to_string(),
        format!("footprint-{}", std::process::id()),
        "--interval".to_string(),
        format!("{}ms", opts.interval_ms),
        "--collectors".to_string(),
        "host,gpu,containers,triton".to_string(),
        "--state-dir".to_string(),
        state_dir.display().to_string(),
    ]);

    // Warm-up: enrollment, Docker version negotiation, the first inspects, node_exporter's start.
    let warm_up = Duration::from_millis(opts.interval_ms * 3).max(Duration::from_secs(5));
    std::thread::sleep(warm_up);
    let log = agent.log();
    if hub_counters(hub_addr)?.pushes < 1.0 {
        bail!("the agent has not pushed after {warm_up:?}; its log:\n{log}");
    }

    println!(
        "## Footprint run: interval {} ms, windows of {} s, node_exporter {}\n",
        opts.interval_ms,
        opts.window_s,
        opts.node_exporter.display()
    );
    println!("agent log at start:\n\n```text\n{}```\n", log);
    let first = measure(&opts, &agent, (&exporter, exporter_addr), hub_addr)?;
    print_window("All collectors, the engine's own containers", &first);

    let containers = if opts.containers > 0 {
        let c = Containers::start(opts.containers);
        std::thread::sleep(warm_up);
        let w = measure(&opts, &agent, (&exporter, exporter_addr), hub_addr)?;
        print_window(
            &format!(
                "All collectors, {} more busybox containers",
                opts.containers
            ),
            &w,
        );
        Some(c)
    } else {
        None
    };
    drop(agent);
    drop(exporter);
    drop(hub);
    print_in_process_part(&opts, containers)
}

/// The in-process measurements, with `containers` (if any) still running.
fn print_in_process_part(opts: &Opts, containers: Option<Containers>) -> anyhow::Result<()> {
    println!("### In-process: CPU per collection cycle (this thread) and encoded snapshot size\n");
    let interval = Duration::from_millis(opts.interval_ms);
    let mut rows = vec![in_process("host", opts.cycles, interval)?];
    rows.push(in_process("containers", opts.cycles, interval)?);
    rows.push(in_process("host,containers", opts.cycles, interval)?);
    print_in_process(&rows);
    drop(containers);
    Ok(())
}
