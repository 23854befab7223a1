//! HTTP clients for thousands of simulated nodes. Each node keeps its own connection to the
//! hub, as a real agent does, so each needs its own client; built the agent's way each would
//! load the TLS root certificates again (about 250 KB per client, 2.5 GB for 10,000 nodes).
//! Here they share one TLS configuration without roots: the rig talks plain HTTP on loopback.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fleetgate_agent::hub_client::HubClient;

/// `n` clients of `url`, each with its own connection pool, as [`HubClient::new`] builds them
/// apart from the shared TLS configuration.
pub fn hub_clients(url: &str, n: usize, timeout: Duration) -> Result<Vec<HubClient>> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS configuration")?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    (0..n)
        .map(|_| {
            let http = HubClient::http_builder(timeout)
                .use_preconfigured_tls(tls.clone())
                .build()
                .context("building an HTTP client")?;
            HubClient::with_http(url, http).map_err(anyhow::Error::from)
        })
        .collect()
}
