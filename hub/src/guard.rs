//! What the hub does about clients that misbehave, kept out of the handlers: the per-source
//! budget of failed authentications ([`AuthLimiter`]), the bound on pushes waiting for ingest
//! ([`PushGate`]), and one log line per source and reason for every kind of refusal
//! ([`Refusals`]), so a flood of bad requests costs a counter increment each, not a log line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use rand::Rng;

/// Sources tracked at most by [`AuthLimiter`] and [`Refusals`]; beyond, entries that carry no
/// information any more are dropped first, and new sources are not tracked while it stays full.
const MAX_SOURCES: usize = 65_536;

/// A refusal is logged once per source and reason in this window; later ones are counted.
const LOG_WINDOW: Duration = Duration::from_secs(600);

/// The address a limit applies to: the IP address, or for IPv6 its /64 (one host usually holds
/// a whole /64, so per-address limits would be trivial to sidestep).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Per-source token buckets of failed authentications: each failure takes one token, tokens
/// come back at `rate` per second up to `burst`; a source with no token left is refused (429)
/// before its token is even looked at, so guessing admin or enrollment tokens is slow.
#[derive(Debug)]
pub struct AuthLimiter {
    /// Failures a source may make in a row.
    burst: f64,
    /// Failures per second regained.
    rate: f64,
    /// Sources with at least one recent failure.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AuthLimiter {
    /// A limiter allowing `burst` failures in a row and `rate` more per second.
    pub fn new(burst: u32, rate: f64) -> Self {
        AuthLimiter {
            burst: f64::from(burst.max(1)),
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                1.0
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }

    /// `Err(retry_after)` when `source` has used up its failures and must wait that long.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get(&source_key(source)) else {
            return Ok(());
        };
        let tokens = self.refill(*b, now);
        if tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - tokens) / self.rate;
        Err(Duration::from_secs_f64(wait.ceil().max(1.0)))
    }

    /// Counts a failed authentication of `source`.
    pub fn failed(&self, source: IpAddr, now: Instant) {
        let key = source_key(source);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&key) {
            // Full buckets say nothing a missing entry would not.
            buckets.retain(|_, b| self.refill(*b, now) < self.burst);
            if buckets.len() >= MAX_SOURCES {
                return;
            }
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (self.refill(*b, now) - 1.0).max(0.0);
        b.at = now;
    }

    /// Sources tracked now (for tests and the bound).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The bound on pushes read and waiting for (or in) ingest. A push that finds it full is
/// answered 429 with a `Retry-After` at once, instead of queueing until the agent times out.
#[derive(Debug)]
pub struct PushGate {
    /// One permit per pending push.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A pending push's place in the [`PushGate`], released on drop.
pub type PushPermit = tokio::sync::OwnedSemaphorePermit;

impl PushGate {
    /// A gate for at most `max_pending` pushes.
    pub fn new(max_pending: usize) -> Self {
        PushGate {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max_pending)),
        }
    }

    /// A place for one more push, or `Err(retry_after)`: a random 1 to 5 seconds, so the
    /// agents turned away together do not come back together.
    pub fn enter(&self) -> Result<PushPermit, Duration> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Duration::from_secs(rand::thread_rng().gen_range(1..=5)))
    }
}

/// At most this many renders (`/metrics` scrapes, `/api/nodes` listings) run at once; each
/// has a thread of its own and holds a snapshot of the fleet until its client has read it.
pub const MAX_RENDERS: usize = 64;

/// The bound on renders running at once ([`MAX_RENDERS`]).
#[derive(Debug)]
pub struct RenderGate {
    /// One permit per running render.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// How many permits there are.
    max: usize,
}

/// A running render's place in the [`RenderGate`], released on drop.
#[derive(Debug)]
pub struct RenderPermit {
    permit: tokio::sync::OwnedSemaphorePermit,
    /// The gate's number of places.
    max: usize,
}

impl RenderPermit {
    /// Whether this render is the only one running now.
    pub fn alone(&self) -> bool {
        running(self.max, self.permit.semaphore()) == 1
    }
}

/// Renders running in a gate of `max` places whose free ones are `permits`.
fn running(max: usize, permits: &tokio::sync::Semaphore) -> usize {
    max.saturating_sub(permits.available_permits())
}

impl RenderGate {
    /// A gate for at most `max` renders at once.
    pub fn new(max: usize) -> Self {
        RenderGate {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    /// A place for one more render, or `None` when all are taken.
    pub fn enter(&self) -> Option<RenderPermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(RenderPermit {
            permit,
            max: self.max,
        })
    }

    /// How many renders are running now.
    pub fn running(&self) -> usize {
        running(self.max, &self.permits)
    }
}

/// Why the hub refused a connection or a request without serving it; the `reason` label of
/// `fleetgate_hub_refused_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `--max-connections` open already; the new connection is closed at once.
    MaxConnections,
    /// No complete request head within `--header-read-timeout` (slowloris, idle keep-alive).
    HeaderTimeout,
    /// A request head larger than the connection buffer (431).
    HeaderTooLarge,
    /// Bytes that are not HTTP.
    Malformed,
    /// The TLS handshake failed (bad or missing client certificate, plain HTTP on TLS, timeout).
    Tls,
    /// No answer within `--request-timeout`, usually a body trickled in (408).
    RequestTimeout,
    /// A request with a missing or wrong token (401).
    AuthFailed,
    /// A source over its failed-authentication budget (429).
    AuthRateLimited,
    /// Ingest is saturated (429), counted in `fleetgate_hub_overload_total`.
    Overload,
    /// [`MAX_RENDERS`] scrapes or fleet listings are being rendered already (429).
    RendersBusy,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::Malformed => "malformed",
            Refusal::Tls => "tls",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::AuthFailed => "auth_failed",
            Refusal::AuthRateLimited => "auth_rate_limited",
            Refusal::Overload => "overload",
            Refusal::RendersBusy => "renders_busy",
        }
    }

    /// What the log line says.
    fn describe(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "connection closed: --max-connections reached",
            Refusal::HeaderTimeout => {
                "connection closed: no complete request head within --header-read-timeout"
            }
            Refusal::HeaderTooLarge => "request head too large (431), connection closed",
            Refusal::Malformed => "connection closed: not a valid HTTP request",
            Refusal::Tls => "TLS handshake failed",
            Refusal::RequestTimeout => "request not completed within --request-timeout (408)",
            Refusal::AuthFailed => "authentication failed (401)",
            Refusal::AuthRateLimited => {
                "too many failed authentications from this source, answering 429"
            }
            Refusal::Overload => "ingest saturated (--max-pending-pushes), answering 429",
            Refusal::RendersBusy => {
                "too many /metrics or /api/nodes renders at once, answering 429"
            }
        }
    }

    /// Whether it counts as a refused connection (the others are refused requests).
    fn is_connection(self) -> bool {
        !matches!(
            self,
            Refusal::AuthFailed
                | Refusal::AuthRateLimited
                | Refusal::Overload
                | Refusal::RendersBusy
        )
    }
}

/// Counts every refusal and logs the first of each source and reason per window, with how
/// many were not logged since.
#[derive(Debug)]
pub struct Refusals {
    /// `fleetgate_hub_refused_connections_total{reason}`.
    connections: IntCounterVec,
    /// When each (source, reason) was last logged, and how many followed unlogged.
    seen: Mutex<HashMap<(IpAddr, Refusal), Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    logged_at: Instant,
    unlogged: u64,
}

impl Refusals {
    /// Refusals counted into `connections` (for the connection-level ones).
    pub fn new(connections: IntCounterVec) -> Self {
        Refusals {
            connections,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a refusal of `source` and logs it when it is the first of its kind from there in
    /// the window. `detail` (never a token) goes into that log line.
    pub fn refuse(&self, source: IpAddr, why: Refusal, detail: &str) {
        if why.is_connection() {
            self.connections.with_label_values(&[why.label()]).inc();
        }
        if let Some(unlogged) = self.should_log(source_key(source), why, Instant::now()) {
            tracing::warn!(
                %source,
                reason = why.label(),
                detail,
                unlogged_since_last = unlogged,
                "{} (logged once per source and reason every {} minutes)",
                why.describe(),
                LOG_WINDOW.as_secs() / 60
            );
        }
    }

    /// `Some(unlogged count)` when this refusal is to be logged.
    fn should_log(&self, source: IpAddr, why: Refusal, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = seen.get_mut(&(source, why)) {
            if now.saturating_duration_since(s.logged_at) < LOG_WINDOW {
                s.unlogged += 1;
                return None;
            }
            let unlogged = s.unlogged;
            *s = Seen {
                logged_at: now,
                unlogged: 0,
            };
            return Some(unlogged);
        }
        if seen.len() >= MAX_SOURCES {
            seen.retain(|_, s| now.saturating_duration_since(s.logged_at) < LOG_WINDOW);
            if seen.len() >= MAX_SOURCES {
                // Still full: one line per reason for all the sources not tracked.
                let all = (IpAddr::from([0u8, 0, 0, 0]), why);
                if seen.contains_key(&all) {
                    return None;
                }
                seen.insert(
                    all,
                    Seen {
                        logged_at: now,
                        unlogged: 0,
                    },
                );
                return Some(0);
            }
        }
        seen.insert(
            (source, why),
            Seen {
                logged_at: now,
                unlogged: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_waits_for_the_rate() {
        let limiter = AuthLimiter::new(3, 0.5);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(a, t0), Ok(()));
            limiter.failed(a, t0);
        }
        // Out of tokens: one comes back every 2 s.
        assert_eq!(limiter.check(a, t0), Err(Duration::from_secs(2)));
        assert_eq!(
            limiter.check(a, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(2)), Ok(()));
        // Another source is not affected.
        assert_eq!(limiter.check(ip("192.0.2.2"), t0), Ok(()));
    }

    #[test]
    fn ipv6_sources_count_per_slash_64() {
        let limiter = AuthLimiter::new(1, 1.0);
        let t0 = Instant::now();
        limiter.failed(ip("2001:db8:1:2::1"), t0);
        assert!(limiter.check(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), t0).is_ok());
        assert_eq!(source_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn the_tracked_sources_stay_bounded() {
        let limiter = AuthLimiter::new(1, 1000.0);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            limiter.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(limiter.tracked(), MAX_SOURCES);
        // A second later every bucket is full again and gives way to new sources.
        let later = t0 + Duration::from_secs(1);
        limiter.failed(ip("203.0.113.9"), later);
        assert_eq!(limiter.tracked(), 1);
        assert!(limiter.check(ip("203.0.113.9"), later).is_err());
    }

    #[test]
    fn the_push_gate_admits_its_bound_and_frees_on_drop() {
        let gate = PushGate::new(2);
        let a = gate.enter().unwrap();
        let _b = gate.enter().unwrap();
        let retry = gate.enter().unwrap_err();
        assert!((1..=5).contains(&retry.as_secs()), "{retry:?}");
        drop(a);
        assert!(gate.enter().is_ok());
    }

    #[test]
    fn a_render_knows_when_it_runs_alone() {
        let gate = RenderGate::new(2);
        assert_eq!(gate.running(), 0);
        let a = gate.enter().unwrap();
        assert!(a.alone());
        let b = gate.enter().unwrap();
        assert_eq!(gate.running(), 2);
        assert!(!a.alone() && !b.alone());
        assert!(gate.enter().is_none(), "both places are taken");
        drop(a);
        assert!(b.alone());
        assert_eq!(gate.running(), 1);
    }

    #[test]
    fn each_source_and_reason_is_logged_once_per_window() {
        let counter = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["reason"]).unwrap();
        let r = Refusals::new(counter.clone());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(r.should_log(a, Refusal::HeaderTimeout, t0), Some(0));
        assert_eq!(r.should_log(a, Refusal::HeaderTimeout, t0), None);
        assert_eq!(r.should_log(a, Refusal::HeaderTimeout, t0), None);
        assert_eq!(r.should_log(a, Refusal::MaxConnections, t0), Some(0));
        assert_eq!(
            r.should_log(ip("192.0.2.2"), Refusal::HeaderTimeout, t0),
            Some(0)
        );
        assert_eq!(
            r.should_log(a, Refusal::HeaderTimeout, t0 + LOG_WINDOW),
            Some(2),
            "the next line says how many went unlogged"
        );
        r.refuse(a, Refusal::Tls, "x");
        r.refuse(a, Refusal::Tls, "x");
        r.refuse(a, Refusal::AuthFailed, "x");
        assert_eq!(counter.with_label_values(&["tls"]).get(), 2);
        assert_eq!(counter.with_label_values(&["auth_failed"]).get(), 0);
    }
}
