//! `fleetgate-campaign`: thin wrapper around [`fleetgate_loadtest::campaign::main`].

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
    let cli = fleetgate_loadtest::campaign::Cli::parse();
    fleetgate_loadtest::process::until_stopped(fleetgate_loadtest::campaign::main(cli, command))
        .await
}
