//! `fleetgate-hub`: parse the configuration, bind, and run until ctrl-c or SIGTERM.

use anyhow::Context;
use clap::Parser;
use fleetgate_hub::{Args, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetgate_daemon::process::init_logging();
    let shutdown = fleetgate_daemon::process::shutdown_signal();
    let config = Config::from_args(Args::parse())?;
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    fleetgate_hub::run(config, listener, shutdown).await?;
    Ok(())
}
