//! The process around the hub and the agent: logs on stderr and the signals that stop them.

use std::future::Future;
use std::io::IsTerminal;

/// Logs to stderr (stdout stays free for output such as `fleetgate-agent --once`), at the level
/// `RUST_LOG` asks for (default `info`), without colour codes when stderr is a file or a pipe.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Installs the SIGTERM and SIGINT handlers now (call it inside the runtime, before the work
/// starts) and returns a future that resolves on the first of them. A signal that arrives while
/// the future is not being polled is kept and seen at the next poll, so a SIGTERM during the
/// first request is not lost, and never kills the process half-way through it.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn first(s: std::io::Result<Signal>) {
        match s {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot install a signal handler");
                std::future::pending::<()>().await;
            }
        }
    }
    let term = first(signal(SignalKind::terminate()));
    let int = first(signal(SignalKind::interrupt()));
    async move {
        let signal = tokio::select! {
            _ = term => "SIGTERM",
            _ = int => "SIGINT",
        };
        tracing::info!(signal, "stop requested");
    }
}
