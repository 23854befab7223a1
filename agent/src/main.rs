//! `fleetgate-agent`: parses the configuration, sets up logging and hands over to the library.

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
    fleetgate_daemon::process::init_logging();
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
        let shutdown = fleetgate_daemon::process::shutdown_signal();
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
