//! Abusive clients: thousands of idle keep-alive connections, slowloris request heads, bodies
//! trickled at one byte per second, a flood of requests with bad tokens and oversized headers,
//! each from its own loopback source address (127.0.0.2 …), while simulated agents push from
//! 127.0.0.1 and a scraper reads `/metrics`. Measures the real pushes' latency, whether every
//! scrape answered, what the hub did to each abuser, and that it logged each kind of refusal
//! once per source.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::fleet::Fleet;
use super::procs::{self, HubProc};
use super::Report;
use crate::workload::{Shape, Workload};

/// Options of `fleetgate-campaign abuse`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated agents pushing real snapshots meanwhile.
    #[arg(long, default_value_t = 50)]
    pub nodes: usize,
    /// Their push interval.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub push_every: Duration,
    /// Length of the abuse.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Idle keep-alive connections held open (re-opened when the hub closes one).
    #[arg(long, default_value_t = 5000)]
    pub idle: usize,
    /// Slowloris connections (a request head never finished, a header line every few seconds).
    #[arg(long, default_value_t = 500)]
    pub slowloris: usize,
    /// Pushes whose body is trickled at one byte per second (with a valid token).
    #[arg(long, default_value_t = 20)]
    pub trickle: usize,
    /// Requests per second with bad tokens.
    #[arg(long, default_value_t = 1000)]
    pub bad_tokens_per_second: u32,
    /// Requests per second with a 64 KiB header.
    #[arg(long, default_value_t = 10)]
    pub oversized_per_second: u32,
    /// Extra hub flags (the defaults are what is under test).
    #[arg(long = "hub-arg", allow_hyphen_values = true)]
    pub hub_args: Vec<String>,
    /// Check the real pushes' p99 against --max-p99 (off for the short version, which runs on
    /// whatever machine runs the tests).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,
}

impl Args {
    /// The short version: fewer abusers, shorter hub timeouts so they take effect in the run.
    pub fn quick() -> Args {
        Args {
            nodes: 20,
            push_every: Duration::from_secs(1),
            duration: Duration::from_secs(30),
            idle: 1000,
            slowloris: 100,
            trickle: 5,
            bad_tokens_per_second: 200,
            oversized_per_second: 5,
            hub_args: ["--header-read-timeout", "5s", "--request-timeout", "10s"]
                .map(String::from)
                .to_vec(),
            max_p99: None,
        }
    }
}

/// Counts of one abuser kind.
#[derive(Debug, Default)]
struct Tally {
    /// Connections opened.
    opened: AtomicU64,
    /// Connections the hub closed (or refused), with how long each lived, milliseconds.
    closed_after_ms: Mutex<Vec<u64>>,
    /// HTTP statuses answered (0: connection closed without an answer).
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Connections that could not even be opened.
    connect_errors: AtomicU64,
}

impl Tally {
    fn closed(&self, lived: Duration) {
        if let Ok(mut v) = self.closed_after_ms.lock() {
            v.push(lived.as_millis() as u64);
        }
    }

    fn status(&self, code: u16) {
        if let Ok(mut s) = self.statuses.lock() {
            *s.entry(code).or_default() += 1;
        }
    }

    fn json(&self) -> serde_json::Value {
        let mut closed = self
            .closed_after_ms
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        closed.sort_unstable();
        let q = |f: f64| -> Option<f64> {
            (!closed.is_empty())
                .then(|| closed[((closed.len() - 1) as f64 * f) as usize] as f64 / 1000.0)
        };
        json!({
            "opened": self.opened.load(Ordering::Relaxed),
            "closed_by_hub": closed.len(),
            "lived_seconds_p50": q(0.5),
            "lived_seconds_max": q(1.0),
            "statuses": self.statuses.lock().map(|s| s.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>()).unwrap_or_default(),
            "connect_errors": self.connect_errors.load(Ordering::Relaxed),
        })
    }

    fn lived_max(&self) -> Option<Duration> {
        self.closed_after_ms
            .lock()
            .ok()?
            .iter()
            .max()
            .map(|ms| Duration::from_millis(*ms))
    }
}

fn source(last_octet: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet))
}

async fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src, 0))?;
    socket.connect(to).await
}

/// The status code of the first response in `buf`, if complete enough.
fn status_of(buf: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(buf.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until the peer closes (or `until`); returns whether it closed and what it sent.
async fn read_until_closed(stream: &mut TcpStream, until: Instant) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, got);
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => {
                if got.len() < 64 * 1024 {
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
}

/// One idle keep-alive connection after another until `end`: a request, its answer, silence.
async fn idle_connection(to: SocketAddr, end: Instant, tally: Arc<Tally>) {
    while Instant::now() < end {
        let Ok(mut s) = connect_from(source(2), to).await else {
            tally.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
            .await
            .is_err()
        {
            continue;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => tally.status(status_of(&buf[..n]).unwrap_or(0)),
            _ => tally.status(0),
        }
        let idle_from = Instant::now();
        let (closed, _) = read_until_closed(&mut s, end).await;
        if closed {
            tally.closed(idle_from.elapsed());
        }
    }
}

/// Slowloris: a request head that never ends, one more header line every `every`.
async fn slowloris(to: SocketAddr, every: Duration, end: Instant, tally: Arc<Tally>) {
    while Instant::now() < end {
        let Ok(mut s) = connect_from(source(3), to).await else {
            tally.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        let mut closed = s
            .write_all(b"POST /push HTTP/1.1\r\nHost: hub\r\n")
            .await
            .is_err();
        while !closed && Instant::now() < end {
            let (gone, got) = read_until_closed(&mut s, Instant::now() + every).await;
            if gone {
                tally.status(status_of(&got).unwrap_or(0));
                closed = true;
                break;
            }
            closed = s.write_all(b"X-Slow: 1\r\n").await.is_err();
        }
        if closed {
            tally.closed(opened.elapsed());
        }
    }
}

/// A push with a valid token whose body comes at one byte per second.
async fn trickle(to: SocketAddr, token: String, end: Instant, tally: Arc<Tally>) {
    while Instant::now() < end {
        let Ok(mut s) = connect_from(source(4), to).await else {
            tally.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        let head = format!(
            "POST /push HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
        );
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        loop {
            let (gone, got) =
                read_until_closed(&mut s, Instant::now() + Duration::from_secs(1)).await;
            if gone || !got.is_empty() {
                tally.status(status_of(&got).unwrap_or(0));
                tally.closed(opened.elapsed());
                break;
            }
            if Instant::now() >= end || s.write_all(b"a").await.is_err() {
                break;
            }
        }
    }
}

/// `per_second` requests from `src` built by `request`, over keep-alive connections.
async fn flood(
    url: String,
    src: IpAddr,
    per_second: u32,
    end: Instant,
    tally: Arc<Tally>,
    request: fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) {
    let Ok(client) = reqwest::Client::builder()
        .local_address(src)
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    let workers = per_second.clamp(1, 20);
    let period = Duration::from_secs_f64(workers as f64 / per_second.max(1) as f64);
    let mut handles = Vec::new();
    for w in 0..workers {
        let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
        handles.push(tokio::spawn(async move {
            let mut next = Instant::now() + period.mul_f64(w as f64 / workers as f64);
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                next += period;
                tally.opened.fetch_add(1, Ordering::Relaxed);
                match request(&client, &url).send().await {
                    Ok(r) => tally.status(r.status().as_u16()),
                    Err(_) => tally.status(0),
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

fn bad_token(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let token: String = (0..32)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body("x 1\n")
}

fn oversized(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    client.get(url).header("x-big", "b".repeat(64 * 1024))
}

/// Counts of "logged once per source" hub log lines by (reason, source).
fn refusal_log_lines(log: &str) -> BTreeMap<(String, String), u64> {
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!(" {key}="))? + key.len() + 2;
        let rest = &line[start..];
        let value = rest.split_whitespace().next()?;
        Some(value.trim_matches('"').to_string())
    };
    let mut counts = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("logged once per source")) {
        if let (Some(reason), Some(src)) = (field(line, "reason"), field(line, "source")) {
            *counts.entry((reason, src)).or_default() += 1;
        }
    }
    counts
}

/// The value of an unlabelled or one-label series in an exposition.
fn series_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Runs the abusive-client part.
pub async fn run(args: Args, bins: &super::Bins, dir: &std::path::Path) -> Result<Report> {
    let mut report = Report::new("abuse");
    let fd_limit = procs::raise_open_files_limit();
    let load_start = procs::load_average();
    let hub_args: Vec<&str> = args.hub_args.iter().map(String::as_str).collect();
    let hub = HubProc::start(&bins.hub, dir, "127.0.0.1:0", &hub_args).await?;
    let to: SocketAddr = hub.addr.parse().context("hub address")?;
    let enroll = hub.token("enroll.token")?;
    let workload = Arc::new(Workload::new(
        Shape::with(4, 1, 0),
        args.push_every.as_secs_f64(),
    ));
    let fleet = Fleet::enroll(
        &hub.url(""),
        &enroll,
        "abuse-real",
        args.nodes,
        workload,
        Duration::from_secs(10),
    )
    .await?;
    let trickler =
        fleetgate_agent::hub_client::HubClient::new(&hub.url(""), Duration::from_secs(10))?
            .enroll(
                &enroll,
                &fleetgate_agent::hub_client::Enrollment {
                    node: "abuse-trickle".into(),
                    ..Default::default()
                },
            )
            .await?;
    let pushers = fleet.start(args.push_every);
    // Let the fleet settle before the abuse starts, and measure only what happens during it.
    tokio::time::sleep(args.push_every * 3).await;
    fleet.stats.reset_latencies();
    let ok_before = fleet.stats.ok.load(Ordering::Relaxed);
    let failed_before = fleet.stats.failed_total();

    let end = Instant::now() + args.duration;
    let kinds = ["idle", "slowloris", "trickle", "bad_tokens", "oversized"];
    let tallies: BTreeMap<&str, Arc<Tally>> = kinds
        .iter()
        .map(|k| (*k, Arc::new(Tally::default())))
        .collect();
    let mut abusers = Vec::new();
    // Open the idle connections over a few seconds rather than in one burst of SYNs.
    for i in 0..args.idle {
        let t = tallies["idle"].clone();
        let delay = Duration::from_millis((i as u64 * 5000) / args.idle.max(1) as u64);
        abusers.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            idle_connection(to, end, t).await
        }));
    }
    let slow_every = if args.duration < Duration::from_secs(60) {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    for _ in 0..args.slowloris {
        abusers.push(tokio::spawn(slowloris(
            to,
            slow_every,
            end,
            tallies["slowloris"].clone(),
        )));
    }
    for _ in 0..args.trickle {
        abusers.push(tokio::spawn(trickle(
            to,
            trickler.clone(),
            end,
            tallies["trickle"].clone(),
        )));
    }
    abusers.push(tokio::spawn(flood(
        hub.url("/push"),
        source(5),
        args.bad_tokens_per_second,
        end,
        tallies["bad_tokens"].clone(),
        bad_token,
    )));
    abusers.push(tokio::spawn(flood(
        hub.url("/healthz"),
        source(6),
        args.oversized_per_second,
        end,
        tallies["oversized"].clone(),
        oversized,
    )));

    // The scraper, and the hub's resources, meanwhile.
    let scraper = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (mut scrapes_ok, mut scrapes_failed, mut scrape_ms) = (0u64, 0u64, Vec::new());
    let (mut peak_rss, mut peak_fds, mut peak_conns) = (0u64, 0usize, 0f64);
    let hub_pid = hub.pid().context("hub pid")?;
    while Instant::now() < end {
        let t = Instant::now();
        match scraper.get(hub.url("/metrics")).send().await {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(text) => {
                    scrapes_ok += 1;
                    scrape_ms.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    peak_conns = peak_conns.max(series_value(&text, "fleetgate_hub_connections "));
                }
                Err(_) => scrapes_failed += 1,
            },
            _ => scrapes_failed += 1,
        }
        peak_rss = peak_rss.max(procs::rss(hub_pid).unwrap_or(0));
        peak_fds = peak_fds.max(procs::open_fds(hub_pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for a in abusers {
        let _ = tokio::time::timeout(Duration::from_secs(15), a).await;
    }
    let p50 = fleet.stats.latency_ms(0.5);
    let p99 = fleet.stats.latency_ms(0.99);
    let pushes_ok = fleet.stats.ok.load(Ordering::Relaxed) - ok_before;
    let pushes_failed = fleet.stats.failed_total() - failed_before;
    fleet.stop();
    for p in pushers {
        let _ = tokio::time::timeout(Duration::from_secs(10), p).await;
    }

    let text = scraper
        .get(hub.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let refused: BTreeMap<String, f64> = [
        "max_connections",
        "header_timeout",
        "header_too_large",
        "malformed",
        "request_timeout",
    ]
    .iter()
    .map(|r| {
        (
            r.to_string(),
            series_value(
                &text,
                &format!("fleetgate_hub_refused_connections_total{{reason=\"{r}\"}}"),
            ),
        )
    })
    .collect();
    let auth_failures = series_value(&text, "fleetgate_hub_auth_failures_total{");
    let auth_limited = series_value(&text, "fleetgate_hub_auth_rate_limited_total{");
    let log = std::fs::read_to_string(&hub.log).unwrap_or_default();
    let logged = refusal_log_lines(&log);

    eprintln!(
        "abuse: real pushes ok {pushes_ok}, failed {pushes_failed}, p50 {p50:.1} ms, p99 {p99:.1} ms; scrapes ok {scrapes_ok}, failed {scrapes_failed}"
    );
    report.figure("duration_seconds", json!(args.duration.as_secs_f64()));
    report.figure("hub_args", json!(args.hub_args));
    report.figure("real_pushes", json!({"nodes": args.nodes, "every_seconds": args.push_every.as_secs_f64(), "ok": pushes_ok, "failed": pushes_failed, "p50_ms": p50, "p99_ms": p99}));
    scrape_ms.sort_unstable();
    report.figure("scrapes", json!({"ok": scrapes_ok, "failed": scrapes_failed, "p99_ms": crate::latency::quantile_ms(&scrape_ms, 0.99)}));
    for (k, t) in &tallies {
        report.figure(&format!("abuser_{k}"), t.json());
    }
    report.figure("hub_refused_connections_total", json!(refused));
    report.figure("hub_auth_failures_total", json!(auth_failures));
    report.figure("hub_auth_rate_limited_total", json!(auth_limited));
    report.figure("hub_peak", json!({"rss_mb": peak_rss as f64 / 1_048_576.0, "open_fds": peak_fds, "connections": peak_conns}));
    report.figure(
        "refusal_log_lines",
        json!(logged
            .iter()
            .map(|((r, s), n)| json!({"reason": r, "source": s, "lines": n}))
            .collect::<Vec<_>>()),
    );
    report.figure("fd_limit_of_campaign", json!(fd_limit));
    report.figure("load_average_start", json!(load_start));
    report.figure("load_average_end", json!(procs::load_average()));

    report.check(
        "real pushes all accepted",
        pushes_failed == 0 && pushes_ok > 0,
        format!("{pushes_ok} ok, {pushes_failed} failed"),
    );
    if let Some(max) = args.max_p99 {
        report.check(
            "real pushes p99",
            p99 <= max.as_secs_f64() * 1000.0,
            format!("{p99:.1} ms (goal ≤ {:?})", max),
        );
    }
    report.check(
        "every /metrics scrape answered",
        scrapes_failed == 0 && scrapes_ok > 0,
        format!("{scrapes_ok} ok, {scrapes_failed} failed"),
    );
    let header_timeout = hub_flag(
        &args.hub_args,
        "--header-read-timeout",
        Duration::from_secs(30),
    );
    let request_timeout = hub_flag(&args.hub_args, "--request-timeout", Duration::from_secs(60));
    let slack = Duration::from_secs(5);
    for kind in ["idle", "slowloris"] {
        let t = &tallies[kind];
        let closed = t.closed_after_ms.lock().map(|v| v.len()).unwrap_or(0);
        let lived = t.lived_max();
        report.check(
            &format!("{kind} connections closed by the hub within --header-read-timeout"),
            closed > 0 && lived.is_some_and(|l| l <= header_timeout + slack),
            format!("{closed} closed, longest lived {lived:?} (timeout {header_timeout:?})"),
        );
    }
    let trickle_408 = tallies["trickle"]
        .statuses
        .lock()
        .map(|s| s.get(&408).copied().unwrap_or(0))
        .unwrap_or(0);
    let trickle_lived = tallies["trickle"].lived_max();
    report.check(
        "trickled bodies answered 408 within --request-timeout",
        trickle_408 > 0 && trickle_lived.is_some_and(|l| l <= request_timeout + slack),
        format!(
            "{trickle_408} answered 408, longest {trickle_lived:?} (timeout {request_timeout:?})"
        ),
    );
    let bad = tallies["bad_tokens"]
        .statuses
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let (n401, n429) = (
        bad.get(&401).copied().unwrap_or(0),
        bad.get(&429).copied().unwrap_or(0),
    );
    // Burst (20) plus one per second, with the defaults.
    let allowed_401 = 20 + args.duration.as_secs() + 5;
    report.check(
        "bad tokens limited per source: 429 after the burst",
        n429 > 0 && n401 <= allowed_401,
        format!("{n401} × 401, {n429} × 429 (at most {allowed_401} × 401 expected)"),
    );
    let big = tallies["oversized"]
        .statuses
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let big_ok = big
        .iter()
        .filter(|(c, _)| (200..300).contains(*c))
        .map(|(_, n)| n)
        .sum::<u64>();
    report.check(
        "oversized headers refused (431 or closed)",
        big_ok == 0 && big.get(&431).copied().unwrap_or(0) > 0,
        format!("{big:?}"),
    );
    let repeated: Vec<_> = logged.iter().filter(|(_, n)| **n > 1).collect();
    report.check(
        "each refusal logged once per source and reason",
        repeated.is_empty() && !logged.is_empty(),
        format!(
            "{} (reason, source) pairs logged, repeated: {repeated:?}",
            logged.len()
        ),
    );
    report.log_tail = Some(hub.log_tail());
    Ok(report)
}

/// The duration given to the hub as `flag`, else `default`.
fn hub_flag(args: &[String], flag: &str, default: Duration) -> Duration {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| humantime::parse_duration(v).ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_counted_by_reason_and_source() {
        let log = "2026-01-01T00:00:00Z  WARN fleetgate_hub::guard: connection closed: no complete request head within --header-read-timeout (logged once per source and reason every 10 minutes) source=127.0.0.2 reason=\"header_timeout\" detail=\"x\" unlogged_since_last=0\n\
                   2026-01-01T00:00:01Z  WARN fleetgate_hub::guard: authentication failed (401) (logged once per source and reason every 10 minutes) source=127.0.0.5 reason=\"auth_failed\" detail=\"push\" unlogged_since_last=0\n\
                   other line source=1 reason=x\n";
        let c = refusal_log_lines(log);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[&("header_timeout".to_string(), "127.0.0.2".to_string())],
            1
        );
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n"), Some(408));
    }
}
