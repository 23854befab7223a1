//! `fleetgate-agent`: parses the configuration, sets up logging and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use fleetgate_agent::config::{Args, Config};

fn main() -> ExitCode {
    let (mode, config) = match Config::from_args(Args::parse()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("fleetgate-agent: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Logs go to stderr: stdout carries the exposition text of `--once`.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetgate-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The signal handlers are installed before anything else runs, so a SIGTERM that arrives
    // during the first push (or enrollment) is held until the in-flight request is done.
    let run = async {
        let shutdown = shutdown_signal();
        fleetgate_agent::run(mode, config, shutdown).await
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fleetgate-agent stopped");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now (inside the runtime) and returns a future that
/// resolves on the first of them. A signal that arrives while the future is not being polled
/// is kept and seen at the next poll.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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
        tokio::select! {
            _ = term => {}
            _ = int => {}
        }
    }
}
