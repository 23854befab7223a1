//! Push outcomes of one run: latencies kept whole (a run has at most a few hundred thousand
//! pushes) so percentiles are exact, plus byte and failure counts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Thread-safe tally of pushes, shared by every simulated node.
#[derive(Debug, Default)]
pub struct PushLog {
    /// Everything behind one lock: a push takes it once, for nanoseconds.
    inner: Mutex<Tally>,
}

/// What [`PushLog`] has counted so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Latency of every successful push, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Successful pushes.
    pub ok: u64,
    /// Samples carried by successful pushes.
    pub samples: u64,
    /// Request body bytes of successful pushes.
    pub body_bytes: u64,
    /// Failed pushes by reason.
    pub failures: BTreeMap<String, u64>,
    /// Push slots skipped because the previous push of that node was still running.
    pub skipped: u64,
}

impl PushLog {
    /// Records one successful push.
    pub fn ok(&self, latency: Duration, samples: usize, body_bytes: usize) {
        if let Ok(mut t) = self.inner.lock() {
            t.latencies_us
                .push(latency.as_micros().min(u32::MAX as u128) as u32);
            t.ok += 1;
            t.samples += samples as u64;
            t.body_bytes += body_bytes as u64;
        }
    }

    /// Records one failed push.
    pub fn failed(&self, reason: &str) {
        if let Ok(mut t) = self.inner.lock() {
            *t.failures.entry(reason.to_string()).or_default() += 1;
        }
    }

    /// Records push slots a node could not use.
    pub fn skipped(&self, n: u64) {
        if let Ok(mut t) = self.inner.lock() {
            t.skipped += n;
        }
    }

    /// A copy of the counts so far.
    pub fn tally(&self) -> Tally {
        self.inner.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Tally {
    /// Failed pushes of every reason.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// The `q` quantile (0..=1) of `values` in milliseconds, nearest-rank; 0 when empty.
pub fn quantile_ms(values: &[u32], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1000.0
}

/// The `q` quantile of `values` (any unit), nearest-rank; 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
    }

    #[test]
    fn log_counts_ok_failed_and_bytes() {
        let log = PushLog::default();
        log.ok(Duration::from_millis(3), 1000, 5000);
        log.failed("unreachable");
        log.failed("unreachable");
        let t = log.tally();
        assert_eq!(
            (t.ok, t.samples, t.body_bytes, t.failed()),
            (1, 1000, 5000, 2)
        );
    }
}
