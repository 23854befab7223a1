//! Scrapes local `/metrics` endpoints (Triton and any other) and forwards their families
//! unchanged: names, types, HELP and labels as served (counters keep their names, no `_total`
//! is appended). A target that times out, answers with an error or serves garbage is counted in
//! `fleetgate_agent_scrape_failures_total{target,reason}` and skipped; the others still go out.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetgate_shared::Family;
use futures_util::future::join_all;

use super::{CollectError, CollectFuture, Collector, MetricBuffer};

/// Largest response body read from one target; a bigger one is a failure, not an allocation.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// One endpoint and what is remembered about it between cycles.
#[derive(Debug)]
struct Target {
    /// The URL scraped.
    url: String,
    /// Failures by reason since start.
    failures: BTreeMap<&'static str, u64>,
    /// Whether the previous scrape failed, so a failing target logs once, not every cycle.
    failing: bool,
}

/// Why one scrape failed; the reason becomes the `reason` label.
#[derive(Debug)]
struct ScrapeFailure {
    /// `refused`, `unreachable`, `timeout`, `http_status`, `too_large` or `parse`.
    reason: &'static str,
    /// Detail for the log.
    detail: String,
}

/// Forwards the families of one or more local endpoints.
#[derive(Debug)]
pub struct ScrapeCollector {
    /// `triton` or `scrape`: the `collector` label.
    name: &'static str,
    /// When set, a refused connection means "not running here": skipped quietly and reported as
    /// unavailable instead of counted as a failure (Triton is detected when present).
    optional: bool,
    /// The endpoints, scraped concurrently.
    targets: Vec<Target>,
    /// Pooled client with the scrape timeout.
    http: reqwest::Client,
}

impl ScrapeCollector {
    /// Scrapes `targets` (URLs) concurrently, each bounded by `timeout`.
    pub fn new(targets: Vec<String>, timeout: Duration) -> Result<Self, CollectError> {
        // Local endpoints: a proxy set for the pushes (HTTPS_PROXY, ...) is no way to them.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("fleetgate-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CollectError::Unavailable(format!("HTTP client: {e}")))?;
        let targets = targets
            .into_iter()
            .map(|url| Target {
                url,
                failures: BTreeMap::new(),
                failing: false,
            })
            .collect();
        Ok(ScrapeCollector {
            name: "scrape",
            optional: false,
            targets,
            http,
        })
    }

    /// Triton's metrics endpoint: optional (absent Triton is not an error) and named `triton`.
    pub fn triton(url: String, timeout: Duration) -> Result<Self, CollectError> {
        let mut c = Self::new(vec![url], timeout)?;
        c.name = "triton";
        c.optional = true;
        Ok(c)
    }
}

impl Collector for ScrapeCollector {
    fn name(&self) -> &'static str {
        self.name
    }

    fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
        Box::pin(async move {
            let http = &self.http;
            let results = join_all(self.targets.iter().map(|t| scrape(http, &t.url))).await;
            let mut ok = 0;
            let mut absent = 0;
            let mut last_error = String::new();
            for (target, result) in self.targets.iter_mut().zip(results) {
                match result {
                    Ok(families) => {
                        if target.failing {
                            tracing::info!(target = %target.url, "scrape target is back");
                        }
                        target.failing = false;
                        ok += 1;
                        for family in families {
                            let name = family.name.clone();
                            if !out.push_family(family) {
                                tracing::debug!(target = %target.url, family = %name, "family dropped: same name with another type");
                            }
                        }
                    }
                    Err(f) if self.optional && f.reason == "refused" => {
                        absent += 1;
                        last_error = format!("{}: {}", target.url, f.detail);
                    }
                    Err(f) => {
                        *target.failures.entry(f.reason).or_default() += 1;
                        if !target.failing {
                            tracing::warn!(target = %target.url, reason = f.reason, error = %f.detail, "scrape failed, target skipped");
                        }
                        target.failing = true;
                        last_error = format!("{}: {} ({})", target.url, f.detail, f.reason);
                    }
                }
            }
            for target in &self.targets {
                for (reason, n) in &target.failures {
                    out.counter(
                        "fleetgate_agent_scrape_failures_total",
                        "Scrapes of forwarded endpoints that failed, by target and reason.",
                        &[("target", &target.url), ("reason", reason)],
                        *n as f64,
                    );
                }
            }
            if ok > 0 || self.targets.is_empty() {
                Ok(())
            } else if absent == self.targets.len() {
                Err(CollectError::Unavailable(format!(
                    "nothing listening at {last_error}"
                )))
            } else {
                Err(CollectError::Failed(last_error))
            }
        })
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Result<Vec<Family>, ScrapeFailure> {
    let fail = |reason, detail: String| ScrapeFailure { reason, detail };
    let mut resp = http
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=1,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(|e| fail(classify(&e), error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail("http_status", format!("HTTP {}", resp.status())));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(fail(
            "too_large",
            format!("body over {MAX_BODY_BYTES} bytes"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(classify(&e), error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(fail(
                "too_large",
                format!("body over {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    fleetgate_shared::text::parse_bytes(&body).map_err(|e| fail("parse", e.to_string()))
}

fn classify(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        return "timeout";
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return "refused";
            }
        }
        source = err.source();
    }
    "unreachable"
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_shared::{MetricType, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-purpose HTTP server on loopback answering every request with `body`.
    async fn serve(body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            }
        });
        format!("http://{addr}/metrics")
    }

    async fn refused_url() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        format!("http://{addr}/metrics")
    }

    fn failures(buf: &MetricBuffer, reason: &str) -> f64 {
        buf.families()
            .iter()
            .filter(|f| f.name == "fleetgate_agent_scrape_failures_total")
            .flat_map(|f| &f.series)
            .filter(|s| {
                s.labels
                    .iter()
                    .any(|l| l.name == "reason" && l.value == reason)
            })
            .map(|s| match s.value {
                Value::Scalar(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    #[tokio::test]
    async fn counters_are_forwarded_unchanged_and_garbage_is_counted() {
        let good = serve("# HELP nv_inference_count Number of inferences\n# TYPE nv_inference_count counter\nnv_inference_count{model=\"m\",version=\"1\"} 7\n").await;
        let bad = serve("this is { not metrics\n").await;
        let mut c = ScrapeCollector::new(vec![good, bad], Duration::from_secs(5)).unwrap();
        let mut buf = MetricBuffer::new();
        c.collect(&mut buf).await.unwrap();
        let f = buf
            .families()
            .iter()
            .find(|f| f.name == "nv_inference_count")
            .unwrap();
        assert_eq!(f.kind, MetricType::Counter);
        assert_eq!(f.help, "Number of inferences");
        assert_eq!(f.series[0].value, Value::Scalar(7.0));
        assert_eq!(failures(&buf, "parse"), 1.0);
    }

    #[tokio::test]
    async fn absent_triton_is_unavailable_not_a_failure() {
        let mut c = ScrapeCollector::triton(refused_url().await, Duration::from_secs(2)).unwrap();
        let mut buf = MetricBuffer::new();
        assert!(matches!(
            c.collect(&mut buf).await,
            Err(CollectError::Unavailable(_))
        ));
        assert_eq!(buf.series_count(), 0);

        let mut c =
            ScrapeCollector::new(vec![refused_url().await], Duration::from_secs(2)).unwrap();
        let mut buf = MetricBuffer::new();
        assert!(matches!(
            c.collect(&mut buf).await,
            Err(CollectError::Failed(_))
        ));
        assert_eq!(failures(&buf, "refused"), 1.0);
    }
}
