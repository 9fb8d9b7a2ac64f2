//! The verification scheduler inside the server: every tick it looks at the latest version of
//! each runbook that declares `verify`, and for each period of its schedule not yet handled
//! here asks the engine to start that period's dry run (`Engine::verify`), which the store
//! lets exactly one node of the cluster claim. The executor then drives the run like any other.
//!
//! A verification whose predecessor is still running waits for it (the period is claimed at a
//! later tick, or not at all), so that verifications of one runbook never overlap: each one's
//! end is judged against the one before. A runbook whose verification cannot start is
//! recorded by the engine as a failed verification; nothing here stops the loop.

use std::collections::HashMap;
use std::time::Duration;

use steady_engine::engine::{EngineError, Verifying};
use steady_engine::run::{RunFilter, RunOrigin, Timestamp};
use steady_engine::verification::period_start;
use tokio::sync::watch;

use crate::AppState;

/// The schedule list is read again every this many ticks: a new version's `verify` (or its
/// removal) is followed within ten ticks.
const REFRESH_EVERY: u32 = 10;

/// One runbook's schedule, as its latest version declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Schedule {
    runbook: String,
    version: u32,
    every: Duration,
}

/// Runs until `shutdown` turns true, waking every `ServerConfig::verification_tick`.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let tick = state.config.verification_tick;
    let mut schedules: Vec<Schedule> = Vec::new();
    // The period each runbook's verification was last handled for on this node (started
    // here, or found claimed by another node): a period costs one claim per node at most.
    let mut handled: HashMap<String, Timestamp> = HashMap::new();
    let mut ticks: u32 = 0;
    while !*shutdown.borrow() {
        if ticks.is_multiple_of(REFRESH_EVERY) {
            match read_schedules(&state).await {
                Ok(read) => schedules = read,
                Err(error) => {
                    tracing::warn!(%error, "reading the verification schedules failed; retrying")
                }
            }
        }
        ticks = ticks.wrapping_add(1);
        let now = state.engine.now();
        for schedule in &schedules {
            let period = period_start(now, schedule.every);
            if handled.get(&schedule.runbook) == Some(&period) {
                continue;
            }
            match start(&state, schedule, period).await {
                Ok(true) => {
                    handled.insert(schedule.runbook.clone(), period);
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    runbook = %schedule.runbook,
                    %error,
                    "starting a verification failed; retrying"
                ),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The schedules of the latest versions that declare `verify`. A version that no longer
/// parses (validation grew stricter since it was published) is left out, with a warning.
async fn read_schedules(state: &AppState) -> Result<Vec<Schedule>, EngineError> {
    let mut schedules = Vec::new();
    for name in state.store.runbook_names().await? {
        let Some(latest) = state.store.runbook_version(&name, None).await? else { continue };
        match state.engine.runbook(&name, latest.version).await {
            Ok(runbook) => {
                if let Some(verify) = &runbook.verify {
                    schedules.push(Schedule {
                        runbook: name,
                        version: latest.version,
                        every: verify.every.as_std(),
                    });
                }
            }
            Err(error) => {
                tracing::warn!(runbook = %name, %error, "cannot read the latest version's schedule")
            }
        }
    }
    Ok(schedules)
}

/// Handles one due period: true when it is settled for this node (started here, taken by
/// another node, or recorded as failed), false when it must be tried again at the next tick
/// because the runbook's previous verification still runs.
async fn start(
    state: &AppState,
    schedule: &Schedule,
    period: Timestamp,
) -> Result<bool, EngineError> {
    let runbook = &schedule.runbook;
    let previous = state
        .store
        .runs(&RunFilter {
            runbook: Some(runbook.clone()),
            origin: Some(RunOrigin::Verification),
            limit: Some(1),
            ..RunFilter::default()
        })
        .await?;
    if previous.first().is_some_and(|run| run.status.is_active()) {
        tracing::debug!(%runbook, "the previous verification still runs; this period waits for it");
        return Ok(false);
    }
    match state.engine.verify(runbook, schedule.version, period).await? {
        Verifying::Started(run_id) => tracing::info!(%runbook, %run_id, "verification started"),
        Verifying::Taken => tracing::debug!(%runbook, "another node verifies this period"),
        // The reason (which can quote parameter values) is on the runbooks page and in the
        // audit log, not in the server's log.
        Verifying::Unstarted(_) => {
            tracing::warn!(%runbook, "the verification could not start: recorded as failed")
        }
        Verifying::NotScheduled => {}
    }
    Ok(true)
}
