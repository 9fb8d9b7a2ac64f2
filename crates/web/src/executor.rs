//! The executor inside the server: drives every run that needs a driver — started over HTTP,
//! answered at a gate, decided on, left by a crashed process or an interrupted `steady run` —
//! and expires gates past their deadline. A waiting run costs it nothing.
//!
//! Its observer logs what each driver does (inside the engine's `run` and `step` spans) and
//! feeds the step-duration histogram of `/metrics` as attempts finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steady_engine::engine::{EngineError, Observer, Progress, now};
use steady_engine::run::RunRecord;
use steady_engine::runner::Stop;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use uuid::Uuid;

use crate::{AppState, Metrics};

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
                    let recorder = Recorder { metrics: state.metrics.clone() };
                    let task = drivers.spawn(async move {
                        match engine.drive(run_id, &recorder, stop).await {
                            Ok(_) => Outcome::Fine,
                            // Another process drives it; it comes round again if that one dies.
                            Err(EngineError::LeaseHeld { owner, .. }) => {
                                tracing::debug!(%run_id, %owner, "another process drives the run");
                                Outcome::Fine
                            }
                            Err(EngineError::LeaseLost) => {
                                tracing::warn!(%run_id, "lease lost while driving the run");
                                Outcome::Fine
                            }
                            Err(error) => {
                                tracing::warn!(%run_id, %error, "driving the run failed; retrying later");
                                Outcome::Failed
                            }
                        }
                    });
                    driving.insert(task.id(), run_id);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "looking for runs to drive failed; retrying");
            }
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
            tracing::error!(%error, "a driver task ended abnormally");
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

/// The executor's observer. Its events are logged inside the engine's `run` and `step` spans,
/// which name the run, the step and the attempt; nothing it logs is rendered or output (the
/// rendered action, notes and errors could hold what a step printed), only statuses and times.
#[derive(Debug)]
struct Recorder {
    metrics: Arc<Metrics>,
}

impl Observer for Recorder {
    fn progress(&self, _run: &RunRecord, event: Progress<'_>) {
        match event {
            Progress::StepStarted { .. } => tracing::info!("step started"),
            Progress::StepEnded { status, duration, .. } => {
                if let Some(duration) = duration {
                    self.metrics.step_finished(duration);
                }
                let duration_ms = duration.map(|duration| duration.as_millis() as u64);
                tracing::info!(%status, duration_ms, "step ended");
            }
            Progress::RetryIn { delay, .. } => {
                tracing::info!(delay_ms = delay.as_millis() as u64, "step retried after a pause");
            }
            // The engine logs the run settling, waiting or finished, with its status.
            Progress::Waiting { .. } | Progress::Finished { .. } => {}
            Progress::ApprovalVoided { gate } => {
                tracing::info!(gate = %gate.id, "approvals voided: the step renders differently");
            }
            Progress::NeedsAttention { .. } => tracing::warn!("run needs attention"),
            Progress::RolledBack => tracing::info!("rolling back"),
        }
    }
}
