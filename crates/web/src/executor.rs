//! The executor inside the server: drives every run that needs a driver — started over HTTP,
//! answered at a gate, decided on, left by a crashed process or an interrupted `steady run` —
//! and expires gates past their deadline. A waiting run costs it nothing.

use std::collections::HashSet;
use std::time::Duration;

use steady_engine::engine::{EngineError, Quiet, now};
use steady_engine::runner::Stop;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::AppState;

/// How many runs one server drives at once; more wait for the next round.
const MAX_DRIVERS: usize = 64;
/// How often the executor looks for work when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true; then asks every driver to stop after its current step
/// and waits for them, so that every run is left durable.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let mut drivers: JoinSet<Uuid> = JoinSet::new();
    let mut driving: HashSet<Uuid> = HashSet::new();
    loop {
        while let Some(done) = drivers.try_join_next() {
            if let Ok(run_id) = done {
                driving.remove(&run_id);
            }
        }
        if *shutdown.borrow() {
            break;
        }
        match state.store.runs_needing_a_driver(now()).await {
            Ok(runs) => {
                for run_id in runs {
                    if driving.len() >= MAX_DRIVERS || !driving.insert(run_id) {
                        continue;
                    }
                    let engine = state.engine.clone();
                    let stop = stop_rx.clone();
                    drivers.spawn(async move {
                        match engine.drive(run_id, &Quiet, stop).await {
                            // Another process drives it; it will come round again if it dies.
                            Ok(_) | Err(EngineError::LeaseHeld { .. } | EngineError::LeaseLost) => {
                            }
                            Err(error) => eprintln!("steady: driving run {run_id}: {error}"),
                        }
                        run_id
                    });
                }
            }
            Err(error) => eprintln!("steady: looking for runs to drive: {error}"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = state.wake_executor.notified() => {}
            _ = shutdown.changed() => {}
            Some(done) = drivers.join_next() => {
                if let Ok(run_id) = done {
                    driving.remove(&run_id);
                }
            }
        }
    }
    let _ = stop_tx.send(Stop::AfterStep);
    while drivers.join_next().await.is_some() {}
}
