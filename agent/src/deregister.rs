//! `fleetgate-agent deregister`: removes the node from every hub it holds a push token for
//! (`/remove_node` with that hub's own token), all hubs at once, and says which succeeded. A hub
//! that removed the node, or no longer knows it, has its token forgotten; a hub that could not
//! be reached keeps it, so running `deregister` again retries only those.

use futures_util::future::join_all;

use crate::config::Config;
use crate::enroll::{self, Credentials, StateDir};
use crate::hub_client::{HubClient, HubError};
use crate::AgentError;

/// What one hub answered.
#[derive(Debug)]
enum Removed {
    /// The hub removed the node.
    Now,
    /// The hub no longer knew the node or its token.
    Already(&'static str),
    /// The removal failed; the token is kept.
    Failed(HubError),
}

/// Removes the node from every hub under `STATE_DIR/hubs/` (after moving a token stored by an
/// earlier version there). `Ok` when every hub removed it or had already; otherwise an error
/// naming the hubs that failed.
pub async fn deregister(config: &Config) -> Result<(), AgentError> {
    enroll::migrate_legacy(&config.state_dir)?;
    let stored = enroll::stored_tokens(&config.state_dir)?;
    if stored.is_empty() {
        tracing::warn!(state_dir = %config.state_dir.display(), "no stored push token: this node is not enrolled at any hub, nothing to deregister");
        return Ok(());
    }
    let answers = join_all(stored.iter().map(|(_, creds)| remove(creds, config))).await;

    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for ((state, creds), answer) in stored.iter().zip(answers) {
        let (node, hub) = (&creds.enrolled_as.node, &creds.enrolled_as.hub);
        match answer {
            Removed::Now => tracing::info!(%node, %hub, "node removed from the hub"),
            Removed::Already(why) => tracing::info!(%node, %hub, "{why}"),
            Removed::Failed(error) => {
                tracing::error!(%node, %hub, %error, "deregistering at this hub failed; its push token is kept, run deregister again to retry");
                failed.push(format!("{hub} ({error})"));
                continue;
            }
        }
        forget(state)?;
        removed.push(hub.as_str());
    }
    tracing::info!(
        removed_from = ?removed,
        failed_at = ?failed,
        "deregistered from {} of {} hubs",
        removed.len(),
        stored.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Deregister {
            failed: failed.join(", "),
            removed: removed.len(),
            hubs: stored.len(),
        })
    }
}

async fn remove(creds: &Credentials, config: &Config) -> Removed {
    let hub = &creds.enrolled_as.hub;
    let client = match HubClient::for_agent(hub, config) {
        Ok(c) => c,
        Err(e) => return Removed::Failed(e),
    };
    match client
        .remove(creds.token.expose(), &creds.enrolled_as.node)
        .await
    {
        Ok(()) => Removed::Now,
        Err(HubError::Rejected { status: 404, .. }) => {
            Removed::Already("the hub does not know this node (already removed)")
        }
        Err(HubError::Unauthorized(_)) => {
            Removed::Already("the hub no longer accepts this node's token (already removed)")
        }
        Err(e) => Removed::Failed(e),
    }
}

fn forget(state: &StateDir) -> Result<(), AgentError> {
    state.delete().map_err(AgentError::from)
}
