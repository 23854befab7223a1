//! `fleetgate-loadtest`: thin wrapper around [`fleetgate_loadtest::run_all`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let config = fleetgate_loadtest::config::Config::parse();
    fleetgate_loadtest::process::until_stopped(fleetgate_loadtest::run_all(config, command)).await
}
