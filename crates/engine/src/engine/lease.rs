//! The lease keeper: renews a driver's lease on its run, and turns a cancellation, a lost lease
//! or the caller's request into a stop for the running step.

use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::run::*;
use crate::runner::Stop;
use crate::store::Store;

use super::EngineConfig;
use crate::clock::Clock;

/// Aborts a task when dropped: a driver whose future is dropped (its process is dying) stops
/// renewing its lease, so that another process can take the run over.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease while a driver works, and turns a cancelled run, a lost lease or the
/// caller's request into a stop for the running step.
pub(super) async fn keep_lease(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    run_id: Uuid,
    config: EngineConfig,
    mut outside: watch::Receiver<Stop>,
    steps_stop: watch::Sender<Stop>,
) {
    let tick = config.renew_every.min(config.lease / 3);
    let mut held_until = clock.later(config.lease);
    // Once the caller can no longer ask anything (its sender is gone), stop listening to it.
    let mut listening = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            changed = outside.changed(), if listening => {
                match changed {
                    Ok(()) => {
                        let _ = steps_stop.send(*outside.borrow_and_update());
                    }
                    Err(_) => listening = false,
                }
                continue;
            }
        }
        let lease = Lease { owner: config.node.clone(), expires_at: clock.later(config.lease) };
        match store.renew_lease(run_id, &lease).await {
            Ok(true) => held_until = lease.expires_at,
            // Someone else took the run over, or let it go: stop touching it.
            Ok(false) => {
                tracing::warn!("lease lost: another process holds the run; interrupting the step");
                let _ = steps_stop.send(Stop::Interrupt);
                return;
            }
            // A database hiccup: try again next tick, but never past the lease's own end.
            Err(error) if clock.now() < held_until => {
                tracing::warn!(%error, "renewing the lease failed; retrying");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "lease lost: it could not be renewed in time; interrupting the step");
                let _ = steps_stop.send(Stop::Interrupt);
                return;
            }
        }
        if let Ok(Some(RunStatus::Cancelled)) = store.run_status(run_id).await {
            let _ = steps_stop.send(Stop::Cancel);
        }
    }
}
