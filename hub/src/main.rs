//! `fleetgate-hub`: parse the configuration, bind, and run until ctrl-c or SIGTERM; or, with the
//! `nodes` subcommand, manage the nodes of a running hub.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fleetgate_hub::config::Command;
use fleetgate_hub::{Args, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Nodes(nodes)) = args.command.take() {
        return fleetgate_hub::cli::run(args, nodes).await;
    }
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    fleetgate_daemon::process::init_logging();
    let shutdown = fleetgate_daemon::process::shutdown_signal();
    let config = Config::from_args(args)?;
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    fleetgate_hub::run(config, listener, shutdown).await?;
    Ok(())
}
