//! Proposals nobody takes expire: every node looks now and then for proposals idle (no one
//! took them, no alert came for them) longer than `ServerConfig::proposal_expiry` and ends
//! them through the engine, audited as `run.expired` by Steady. Two nodes ending the same
//! proposal at once is harmless: the run's revision lets one through.

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

/// How often a node looks: one indexed query of the proposals, so a proposal ends at most a
/// second late.
const EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true, looking every [`EVERY`].
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let idle = state.config.proposal_expiry;
    while !*shutdown.borrow() {
        match state.engine.expire_proposals(idle).await {
            Ok(ended) if !ended.is_empty() => {
                tracing::info!(count = ended.len(), "proposals expired");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "expiring proposals failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
}
