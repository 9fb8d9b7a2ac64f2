//! The executor inside the server: drives every run that needs a driver — started over HTTP,
//! answered at a gate, decided on, left by a crashed process or an interrupted `steady run` —
//! and expires gates past their deadline. A waiting run costs it nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use steady_engine::engine::{EngineError, Quiet, now};
use steady_engine::runner::Stop;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use uuid::Uuid;

use crate::AppState;

/// How many runs one server drives at once; more wait for the next round.
const MAX_DRIVERS: usize = 64;
/// How often the executor looks for work when no change hint wakes it: hints can be missed
/// (another process on a SQLite file, a lost listener connection), leases expire unannounced.
const POLL: Duration = Duration::from_secs(1);
/// The longest a run whose driving keeps failing waits before it is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How a drive ended, for the executor's bookkeeping.
enum Outcome {
    /// Settled, stopped, or taken by another process: nothing to hold against the run.
    Fine,
    /// It failed: try again later, not at once.
    Failed,
}

/// Runs until `shutdown` turns true; then asks every driver to stop after its current step
/// and waits for them, so that every run is left durable.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let mut drivers: JoinSet<Outcome> = JoinSet::new();
    // Which run each driver task drives, so that a task that panicked still frees its run.
    let mut driving: HashMap<Id, Uuid> = HashMap::new();
    // Runs whose driving failed, and when they may be tried again.
    let mut retry_after: HashMap<Uuid, (Instant, Duration)> = HashMap::new();
    // Runs started, answered or decided here or on another node, and leases given up.
    let mut work = state.store.changes().work;
    loop {
        while let Some(done) = drivers.try_join_next_with_id() {
            settle(done, &mut driving, &mut retry_after);
        }
        if *shutdown.borrow() {
            break;
        }
        match state.store.runs_needing_a_driver(now()).await {
            Ok(runs) => {
                for run_id in runs {
                    let busy = driving.values().any(|id| *id == run_id);
                    let resting =
                        retry_after.get(&run_id).is_some_and(|(at, _)| Instant::now() < *at);
                    if busy || resting || driving.len() >= MAX_DRIVERS {
                        continue;
                    }
                    let engine = state.engine.clone();
                    let stop = stop_rx.clone();
                    let task = drivers.spawn(async move {
                        match engine.drive(run_id, &Quiet, stop).await {
                            Ok(_) => Outcome::Fine,
                            // Another process drives it; it comes round again if that one dies.
                            Err(EngineError::LeaseHeld { .. } | EngineError::LeaseLost) => {
                                Outcome::Fine
                            }
                            Err(error) => {
                                eprintln!("steady: driving run {run_id}: {error}");
                                Outcome::Failed
                            }
                        }
                    });
                    driving.insert(task.id(), run_id);
                }
            }
            Err(error) => eprintln!("steady: looking for runs to drive: {error}"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            changed = work.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(POLL).await;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
    let _ = stop_tx.send(Stop::AfterStep);
    while let Some(done) = drivers.join_next_with_id().await {
        settle(done, &mut driving, &mut retry_after);
    }
}

/// Books a finished driver task: frees its run, and backs a failing run off.
fn settle(
    done: Result<(Id, Outcome), tokio::task::JoinError>,
    driving: &mut HashMap<Id, Uuid>,
    retry_after: &mut HashMap<Uuid, (Instant, Duration)>,
) {
    let (task, failed) = match done {
        Ok((task, Outcome::Fine)) => (task, false),
        Ok((task, Outcome::Failed)) => (task, true),
        Err(error) => {
            eprintln!("steady: a driver task ended abnormally: {error}");
            (error.id(), true)
        }
    };
    let Some(run_id) = driving.remove(&task) else { return };
    if failed {
        let backoff =
            retry_after.get(&run_id).map_or(POLL, |(_, last)| (*last * 2).min(MAX_BACKOFF));
        retry_after.insert(run_id, (Instant::now() + backoff, backoff));
    } else {
        retry_after.remove(&run_id);
    }
}
