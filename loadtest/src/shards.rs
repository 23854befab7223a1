//! Scraping a hub the way a sharded Prometheus job does (`--scrape-shards N`). Each scrape
//! interval renders the fleet once, as one scraper would, taking turns: an unsharded plain
//! scrape, then `/metrics?shard=I&of=N` for every `I` at once, plain, then the same round
//! asking for gzip, then the N shards one after another, plain. The hub's CPU time is read
//! around each, so what gzip costs shows apart from what rendering costs (pushes arriving
//! meanwhile count too).
//!
//! All at once is the worst case; one after another is what a Prometheus or vmagent job of N
//! shard targets mostly sees, as both spread their targets' scrapes over the interval (each
//! target at an offset from a hash of its labels).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use tokio::time::sleep_until;

use crate::procstat;
use crate::run::{scrape, Scrape};

/// N shard scrapes run at once.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    /// Wall time of the whole round.
    wall: f64,
    /// Slowest shard.
    slowest: f64,
    /// All shards' bytes.
    bytes: u64,
    /// All shards' sample lines.
    series: u64,
    /// Every shard answered gzip.
    gzip: bool,
}

/// What the sharded scraper measured over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardFigures {
    /// Shards per round.
    pub shards: u32,
    /// Plain rounds done (the gzip rounds take turns with them).
    pub rounds: u64,
    /// Slowest single shard scrape, plain.
    pub shard_seconds: f64,
    /// Slowest round of all shards at once, plain (wall time).
    pub round_seconds: f64,
    /// Plain bytes and sample lines of the last round (all shards).
    pub round_bytes: u64,
    /// Sample lines of the last plain round (all shards).
    pub round_series: u64,
    /// Slowest single shard scrape, asking for gzip.
    pub gzip_shard_seconds: f64,
    /// Slowest round asking for gzip (wall time).
    pub gzip_round_seconds: f64,
    /// Compressed bytes of the last gzip round.
    pub gzip_round_bytes: u64,
    /// Whether the hub answered every shard with gzip.
    pub gzip_served: bool,
    /// Hub CPU seconds of one plain round, median of the rounds.
    pub hub_cpu_plain_round: Option<f64>,
    /// Hub CPU seconds of one gzip round, median of the rounds.
    pub hub_cpu_gzip_round: Option<f64>,
    /// Hub CPU seconds of one unsharded plain scrape, median.
    pub hub_cpu_unsharded: Option<f64>,
    /// Rounds of the shards scraped one after another, plain.
    pub sequential_rounds: u64,
    /// Slowest single shard scrape of those rounds: a shard scraped while no other is.
    pub sequential_shard_seconds: f64,
}

/// Counts the sample lines (not comments, not blank) in a body streamed in `chunk`s;
/// `at_line_start` carries over between chunks.
pub fn count_samples(chunk: &[u8], at_line_start: &mut bool) -> u64 {
    let mut n = 0;
    let mut starts = |b: u8| {
        if b != b'#' && b != b'\n' {
            n += 1;
        }
    };
    if *at_line_start {
        if let Some(&b) = chunk.first() {
            starts(b);
        }
    }
    for at in memchr::memchr_iter(b'\n', chunk) {
        if let Some(&b) = chunk.get(at + 1) {
            starts(b);
        }
    }
    if let Some(&last) = chunk.last() {
        *at_line_start = last == b'\n';
    }
    n
}

/// The URL of shard `shard` of `of`.
fn nth_shard_url(base: &str, shard: u32, of: u32) -> String {
    format!("{base}/metrics?shard={shard}&of={of}")
}

/// The URL of the one shard of `of` that holds `node`.
pub fn shard_url(base: &str, node: &str, of: u32) -> String {
    nth_shard_url(base, fleetgate_hub::shard::shard_of(node, of), of)
}

/// Hub CPU seconds used while `work` runs, when the hub's pid is known.
async fn with_cpu<T>(
    pid: Option<&str>,
    work: impl std::future::Future<Output = T>,
) -> (T, Option<f64>) {
    let before = pid.and_then(procstat::sample);
    let out = work.await;
    let after = pid.and_then(procstat::sample);
    let cpu = match (before, after) {
        (Some(a), Some(b)) => Some(b.cpu_seconds - a.cpu_seconds),
        _ => None,
    };
    (out, cpu)
}

async fn round(http: &reqwest::Client, base: &str, of: u32, gzip: bool) -> Option<Round> {
    let started = Instant::now();
    let scrapes = futures_util::future::join_all((0..of).map(|i| {
        let url = nth_shard_url(base, i, of);
        async move { scrape(http, &url, gzip, None).await.map(|s| s.0) }
    }))
    .await;
    let wall = started.elapsed().as_secs_f64();
    let scrapes: Vec<Scrape> = scrapes.into_iter().collect::<Result<_>>().ok()?;
    Some(Round {
        wall,
        slowest: scrapes.iter().map(|s| s.seconds).fold(0.0, f64::max),
        bytes: scrapes.iter().map(|s| s.bytes).sum(),
        series: scrapes.iter().map(|s| s.series).sum(),
        gzip: scrapes.iter().all(|s| s.gzip),
    })
}

/// The `of` shards scraped one after another, plain; the slowest shard's seconds.
async fn one_by_one(http: &reqwest::Client, base: &str, of: u32) -> Option<f64> {
    let mut slowest = 0.0f64;
    for i in 0..of {
        let (s, _) = scrape(http, &nth_shard_url(base, i, of), false, None)
            .await
            .ok()?;
        slowest = slowest.max(s.seconds);
    }
    Some(slowest)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Scrapes `base` every `every` until `end`, in turn: an unsharded plain scrape (returned, for
/// the run's usual scrape figures), a plain round of `of` shards at once, a gzip round, the
/// shards one after another.
pub(crate) async fn scrape_loop(
    base: String,
    of: u32,
    every: Duration,
    timeout: Duration,
    end: Instant,
    hub_pid: Option<String>,
) -> (Vec<Scrape>, ShardFigures) {
    let mut figures = ShardFigures {
        shards: of,
        ..ShardFigures::default()
    };
    let Ok(http) = reqwest::Client::builder().timeout(timeout).build() else {
        return (Vec::new(), figures);
    };
    let pid = hub_pid.as_deref();
    let (mut unsharded, mut cpu_plain, mut cpu_gzip, mut cpu_whole) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut next = Instant::now() + every / 2;
    for turn in 0u64.. {
        if next >= end {
            break;
        }
        sleep_until(next.into()).await;
        match turn % 4 {
            0 => {
                let (whole, cpu) =
                    with_cpu(pid, scrape(&http, &format!("{base}/metrics"), false, None)).await;
                if let Ok((s, _)) = whole {
                    unsharded.push(s);
                    cpu_whole.extend(cpu);
                }
            }
            1 => {
                let (plain, cpu) = with_cpu(pid, round(&http, &base, of, false)).await;
                if let Some(r) = plain {
                    figures.rounds += 1;
                    figures.shard_seconds = figures.shard_seconds.max(r.slowest);
                    figures.round_seconds = figures.round_seconds.max(r.wall);
                    figures.round_bytes = r.bytes;
                    figures.round_series = r.series;
                    cpu_plain.extend(cpu);
                }
            }
            2 => {
                let (gz, cpu) = with_cpu(pid, round(&http, &base, of, true)).await;
                if let Some(r) = gz {
                    figures.gzip_shard_seconds = figures.gzip_shard_seconds.max(r.slowest);
                    figures.gzip_round_seconds = figures.gzip_round_seconds.max(r.wall);
                    figures.gzip_round_bytes = r.bytes;
                    figures.gzip_served = r.gzip;
                    cpu_gzip.extend(cpu);
                }
            }
            _ => {
                if let Some(slowest) = one_by_one(&http, &base, of).await {
                    figures.sequential_rounds += 1;
                    figures.sequential_shard_seconds =
                        figures.sequential_shard_seconds.max(slowest);
                }
            }
        }
        next += every;
        while next <= Instant::now() {
            next += every;
        }
    }
    figures.hub_cpu_plain_round = median(cpu_plain);
    figures.hub_cpu_gzip_round = median(cpu_gzip);
    figures.hub_cpu_unsharded = median(cpu_whole);
    (unsharded, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_are_counted_across_chunk_boundaries() {
        let body = b"# HELP a x\n# TYPE a gauge\na 1\na{b=\"#\"} 2\n\nb 3\n";
        for split in 0..body.len() {
            let (x, y) = body.split_at(split);
            let mut start = true;
            let n = count_samples(x, &mut start) + count_samples(y, &mut start);
            assert_eq!(n, 3, "split at {split}");
        }
    }
}
