//! Streamed renders (`GET /metrics`, `GET /api/nodes`): each runs on a thread of its own,
//! scheduled below ingest, and sends its body in chunks through a short queue, so neither the
//! async workers that serve pushes nor the hub's memory carry a whole body, and on a busy hub a
//! large scrape takes the CPU that pushes leave instead of delaying them.

use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::Source;
use crate::error::ApiError;
use crate::guard::{Refusal, MAX_RENDERS};
use crate::AppState;

/// Chunks queued between a render thread and its connection; the render waits when it is full.
const QUEUED_CHUNKS: usize = 2;

/// How much lower than the hub's other threads a render thread is scheduled (its `nice`
/// increment). Linux schedules each thread by its own value.
pub const RENDER_NICE: i32 = 10;

/// One chunk of a body, or the error that aborts it.
type Chunk = Result<Bytes, std::io::Error>;

/// Where a render sends its body, chunk by chunk.
pub struct ChunkSink {
    tx: mpsc::Sender<Chunk>,
    runtime: Handle,
    timeout: Duration,
}

impl ChunkSink {
    /// Queues one chunk, waiting while the queue is full; false when the client is gone or has
    /// taken nothing for the sink's time-out, so the render stops (and releases its snapshot).
    pub fn send(&self, chunk: Chunk) -> bool {
        self.runtime
            .block_on(tokio::time::timeout(self.timeout, self.tx.send(chunk)))
            .is_ok_and(|sent| sent.is_ok())
    }
}

/// Starts `render` on a thread of its own and answers the body it sends. 429 when
/// [`MAX_RENDERS`] renders are running already. If the render panics, the body ends in an
/// error, so the client sees a broken response, never a short one that looks complete.
pub fn streamed(
    state: &AppState,
    source: Source,
    what: &'static str,
    timeout: Duration,
    render: impl FnOnce(&ChunkSink) + Send + 'static,
) -> Result<Body, ApiError> {
    let Some(permit) = state.render_gate.enter() else {
        state.refusals.refuse(source.ip, Refusal::RendersBusy, what);
        return Err(ApiError::TooManyRequests {
            message: format!(
                "the hub is rendering {MAX_RENDERS} scrapes or fleet listings at once already; \
                 retry in 1 s"
            ),
            retry_after: Duration::from_secs(1),
        });
    };
    let (tx, rx) = mpsc::channel::<Chunk>(QUEUED_CHUNKS);
    let sink = ChunkSink {
        tx,
        runtime: Handle::current(),
        timeout,
    };
    std::thread::Builder::new()
        .name(format!("render-{what}"))
        .spawn(move || {
            // Like a blocking-pool thread: timers and channels find the hub's runtime.
            let runtime = sink.runtime.clone();
            let _runtime = runtime.enter();
            lower_this_thread(RENDER_NICE);
            let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(&sink)));
            if rendered.is_err() {
                tracing::error!(what, "a render panicked; its response is aborted");
                sink.send(Err(std::io::Error::other("the render failed")));
            }
            // The body ends here. The last of renders running at once (a scrape, a round
            // of shards) then gives back the heap they and the pushes meanwhile freed.
            drop(sink);
            if permit.alone() {
                trim_heap();
            }
        })
        .map_err(|e| ApiError::Internal(format!("could not start a render thread: {e}")))?;
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(Body::from_stream(chunks))
}

/// Returns the heap's free pages to the system. glibc keeps memory freed by a thread in that
/// thread's arena, and only trims an arena's top: after renders (their chunks, cursors and
/// compressors, each render on a thread and arena of its own) and the values pushes replace,
/// free pages stay resident between live allocations. At 10,000 nodes one trim took the
/// hub's RSS from 618 to 540 MB, and the trims lowered its peak by 5–9 %
/// (docs/PERFORMANCE.md); a trim after a render takes milliseconds.
#[allow(unsafe_code)]
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: `malloc_trim` is glibc's own call to release free memory; it takes the
        // arenas' locks itself and touches no allocation in use.
        let released = unsafe { libc::malloc_trim(0) } == 1;
        tracing::debug!(
            released,
            took_us = started.elapsed().as_micros() as u64,
            "trimmed the heap after a render"
        );
    }
}

/// Raises this thread's `nice` value by `by`. A failure costs only the priority, never the
/// render, so it is logged at debug level.
fn lower_this_thread(by: i32) {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(tid))
            .and_then(|now| rustix::process::setpriority_process(Some(tid), now + by));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "could not lower a render thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &std::path::Path) -> AppState {
        AppState::open(crate::Config::with_data_dir(dir)).unwrap()
    }

    fn source() -> Source {
        Source {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            client_cert: false,
        }
    }

    /// A render by a test client, with a timeout no test reaches.
    fn render(
        state: &AppState,
        f: impl FnOnce(&ChunkSink) + Send + 'static,
    ) -> Result<Body, ApiError> {
        streamed(state, source(), "test", Duration::from_secs(5), f)
    }

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn a_render_runs_on_a_thread_of_its_own_below_the_hubs_priority() {
        let dir = tempfile::tempdir().unwrap();
        let base = nice_of_this_thread();
        let body = render(&state(dir.path()), |sink| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            let seen = format!("{name} {}", nice_of_this_thread());
            assert!(sink.send(Ok(Bytes::from(seen))));
        })
        .unwrap();
        let seen = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        // A thread's nice value cannot pass 19, whatever the test itself runs at.
        let expected = format!("render-test {}", (base + RENDER_NICE).min(19));
        assert_eq!(String::from_utf8_lossy(&seen), expected);
        assert_eq!(
            nice_of_this_thread(),
            base,
            "the caller's priority is untouched"
        );
    }

    #[tokio::test]
    async fn a_render_that_panics_aborts_its_body_instead_of_ending_it_short() {
        let dir = tempfile::tempdir().unwrap();
        let body = render(&state(dir.path()), |sink| {
            assert!(sink.send(Ok(Bytes::from_static(b"up 1\n"))));
            panic!("a render failed halfway");
        })
        .unwrap();
        assert!(axum::body::to_bytes(body, usize::MAX).await.is_err());
    }

    #[tokio::test]
    async fn renders_past_the_bound_get_429_until_one_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(released));
        let mut bodies = Vec::new();
        for _ in 0..MAX_RENDERS {
            let released = released.clone();
            let body = render(&state, move |_| {
                let _ = released.lock().unwrap().recv();
            });
            bodies.push(body.unwrap());
        }
        assert_eq!(state.render_gate.running(), MAX_RENDERS);
        match render(&state, |_| {}) {
            Err(e @ ApiError::TooManyRequests { .. }) => {
                assert_eq!(e.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
                assert!(e.to_string().contains("64 scrapes"), "{e}");
            }
            other => panic!("expected 429, got {:?}", other.map(|_| ())),
        }
        for _ in 0..MAX_RENDERS {
            release.send(()).unwrap();
        }
        for body in bodies {
            assert!(axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap()
                .is_empty());
        }
        // Each thread gives its place back as it ends, right after its body ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match render(&state, |_| {}) {
                Ok(body) => {
                    axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    break;
                }
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("no place freed: {e}"),
            }
        }
    }
}
