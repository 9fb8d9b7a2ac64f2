//! Continuous verification, the pure part: which period a runbook's `verify` schedule is in,
//! how a verification's run is summed up when it fails, and where a runbook's verification
//! stands after each one — with the audit event its change calls for, once per spell of
//! failures. The engine starts verifications and records their ends (`engine/verify.rs`);
//! the server's scheduler decides when.

use uuid::Uuid;

use crate::audit::{AuditData, VerificationFailed, VerificationRecovered, format_timestamp};
use crate::run::{Phase, RunSnapshot, RunStatus, StepState, StepStatus, Timestamp};

/// The start of the period `now` falls in, for a schedule of one run per `every`: `now`
/// floored to a multiple of `every` since the Unix epoch, so that every node of a cluster
/// names the same period the same way whatever its start-up time.
pub fn period_start(now: Timestamp, every: std::time::Duration) -> Timestamp {
    let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let millis = now.timestamp_millis();
    let start = millis - millis.rem_euclid(every);
    Timestamp::from_timestamp_millis(start).unwrap_or(now)
}

/// One claimed period of a runbook's schedule: at most one node starts a verification for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationSlot {
    pub runbook: String,
    /// The period's start ([`period_start`]).
    pub start: Timestamp,
    /// The node that claimed it, by lease-owner name.
    pub node: String,
    /// The run started for it (or that would have been, when it could not start).
    pub run_id: Uuid,
    pub claimed_at: Timestamp,
}

/// Where a runbook's verification stands: how the latest one ended and, while they fail, the
/// first failure since the last pass. Kept by the store, one per runbook, changed with the
/// transition that finishes a verification (or with the record of one that could not start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationState {
    pub runbook: String,
    /// The version the latest verification followed.
    pub version: u32,
    /// When the latest verification ended, or found that it could not start.
    pub at: Timestamp,
    pub passed: bool,
    /// The latest verification's run; `None` when it could not start.
    pub run_id: Option<Uuid>,
    /// Set while verifications fail: the first failure since the last one that passed.
    pub failing: Option<Failure>,
}

/// A failed verification, summed up for people: "standby_in_recovery exited 2".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When it ended.
    pub since: Timestamp,
    pub run_id: Option<Uuid>,
    /// The first step that failed; `None` when the run could not start.
    pub step: Option<String>,
    /// Why, in a few words, from stored (masked) text only.
    pub reason: String,
}

impl Failure {
    /// "standby_in_recovery exited 2", or the reason alone.
    pub fn summary(&self) -> String {
        match &self.step {
            Some(step) => format!("{step} {}", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// How one verification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub runbook: String,
    pub version: u32,
    pub at: Timestamp,
    pub run_id: Option<Uuid>,
    /// `None` when it passed: the first failing step and why.
    pub failure: Option<(Option<String>, String)>,
}

impl Outcome {
    /// The outcome of a verification run ending with `status` (succeeded passes; failed and
    /// rolled back fail, named by their first failing step); `None` for an end that says
    /// nothing about the systems verified (cancelled, or not ended). A run that succeeded past
    /// a failed step (`on_failure: continue`) fails too: a check that failed found the
    /// systems wrong, whatever the procedure does next.
    pub fn of_run(snapshot: &RunSnapshot, status: RunStatus, at: Timestamp) -> Option<Outcome> {
        let failure = match status {
            RunStatus::Succeeded if snapshot.steps.iter().any(|s| s.status.is_failure()) => {
                Some(first_failure(snapshot, status))
            }
            RunStatus::Succeeded => None,
            RunStatus::Failed | RunStatus::RolledBack => Some(first_failure(snapshot, status)),
            _ => return None,
        };
        let run = &snapshot.run;
        Some(Outcome {
            runbook: run.runbook.clone(),
            version: run.version,
            at,
            run_id: Some(run.id),
            failure,
        })
    }
}

/// The longest reason kept: a summary on one line of a page, not the output.
const MAX_REASON: usize = 200;

/// The first step of the main sequence that failed (the first failed branch or item of a
/// group, when it was a group), and why: "exited 2", the attempt's error ("stdout does not
/// match `^t$`", "check was false: …", "timed out after 5s"), or its note.
fn first_failure(snapshot: &RunSnapshot, status: RunStatus) -> (Option<String>, String) {
    let failed =
        |state: &&StepState| state.status.is_failure() || state.status == StepStatus::Interrupted;
    let mut top: Vec<&StepState> = snapshot
        .steps
        .iter()
        .filter(|state| state.phase == Phase::Main && state.parent.is_none())
        .collect();
    top.sort_by_key(|state| state.position);
    let Some(step) = top.into_iter().find(failed).or_else(|| snapshot.steps.iter().find(failed))
    else {
        return (None, format!("the run {status}"));
    };
    let mut children: Vec<&StepState> = snapshot.children(&step.step_id).collect();
    children.sort_by_key(|state| state.position);
    let state = children.into_iter().find(failed).unwrap_or(step);
    let attempt = snapshot.last_attempt(&state.step_id);
    let error = attempt.and_then(|attempt| attempt.error.as_deref());
    let reason = match (attempt.and_then(|attempt| attempt.exit_code), error) {
        (Some(code), Some(error)) if error.starts_with("exit code") => format!("exited {code}"),
        (_, Some(error)) => error.to_owned(),
        _ => match &state.note {
            Some(note) => note.clone(),
            None => state.status.as_str().replace('_', " "),
        },
    };
    (Some(state.step_id.clone()), shortened(&reason))
}

/// The first line of `text`, at most [`MAX_REASON`] characters.
fn shortened(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(MAX_REASON) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Where the runbook's verification stands after `outcome`, given where it stood, and the
/// event the change calls for: `verification.failed` when it passed before (or never ran),
/// `verification.recovered` when it failed before, nothing when it goes on as it was — a
/// verification that keeps failing notifies nobody again.
pub fn record(
    previous: Option<&VerificationState>,
    outcome: Outcome,
) -> (VerificationState, Option<AuditData>) {
    let was_failing = previous.and_then(|state| state.failing.as_ref());
    let (failing, event) = match (&outcome.failure, was_failing) {
        (None, None) => (None, None),
        (None, Some(failing)) => {
            let recovered = outcome.run_id.map(|run_id| {
                AuditData::VerificationRecovered(VerificationRecovered {
                    runbook: outcome.runbook.clone(),
                    version: outcome.version,
                    run_id,
                    failing_since: format_timestamp(failing.since),
                })
            });
            (None, recovered)
        }
        (Some(_), Some(failing)) => (Some(failing.clone()), None),
        (Some((step, reason)), None) => {
            let failure = Failure {
                since: outcome.at,
                run_id: outcome.run_id,
                step: step.clone(),
                reason: reason.clone(),
            };
            let event = AuditData::VerificationFailed(VerificationFailed {
                runbook: outcome.runbook.clone(),
                version: outcome.version,
                run_id: outcome.run_id,
                step: step.clone(),
                reason: reason.clone(),
            });
            (Some(failure), Some(event))
        }
    };
    let state = VerificationState {
        runbook: outcome.runbook,
        version: outcome.version,
        at: outcome.at,
        passed: outcome.failure.is_none(),
        run_id: outcome.run_id,
        failing,
    };
    (state, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn a_period_starts_at_a_multiple_of_its_length_since_the_epoch() {
        let minute = std::time::Duration::from_secs(60);
        let table = [
            ("2024-05-01T02:10:00Z", minute, "2024-05-01T02:10:00Z"),
            ("2024-05-01T02:10:59.999Z", minute, "2024-05-01T02:10:00Z"),
            ("2024-05-01T02:11:00.001Z", minute, "2024-05-01T02:11:00Z"),
            (
                "2024-05-01T02:10:07.5Z",
                std::time::Duration::from_secs(6 * 3600),
                "2024-05-01T00:00:00Z",
            ),
            ("2024-05-01T02:10:07.5Z", std::time::Duration::from_secs(1), "2024-05-01T02:10:07Z"),
            // 1714529407 s since the epoch is 3 s past a multiple of 7.
            ("2024-05-01T02:10:07.5Z", std::time::Duration::from_secs(7), "2024-05-01T02:10:04Z"),
            // Before the epoch, still floored (not rounded towards zero).
            ("1969-12-31T23:59:59.5Z", std::time::Duration::from_secs(1), "1969-12-31T23:59:59Z"),
        ];
        for (now, every, start) in table {
            assert_eq!(period_start(at(now), every), at(start), "{now} every {every:?}");
        }
        // Every instant of a period names the same period; the next instant, the next one.
        let every = std::time::Duration::from_secs(90);
        let first = period_start(at("2024-05-01T00:00:44Z"), every);
        assert_eq!(period_start(first + chrono::Duration::milliseconds(89_999), every), first);
        assert_eq!(
            period_start(first + chrono::Duration::seconds(90), every),
            first + chrono::Duration::seconds(90)
        );
    }

    fn outcome(at_text: &str, failure: Option<(&str, &str)>) -> Outcome {
        Outcome {
            runbook: "pg".to_owned(),
            version: 3,
            at: at(at_text),
            run_id: Some(Uuid::nil()),
            failure: failure.map(|(step, reason)| (Some(step.to_owned()), reason.to_owned())),
        }
    }

    #[test]
    fn a_spell_of_failures_is_announced_once_and_its_end_once() {
        let (state, event) = record(None, outcome("2024-05-01T02:00:00Z", None));
        assert!(state.passed && state.failing.is_none() && event.is_none(), "{state:?}");

        let failed = outcome("2024-05-01T02:10:00Z", Some(("standby_in_recovery", "exited 2")));
        let (state, event) = record(Some(&state), failed);
        let Some(AuditData::VerificationFailed(data)) = event else { panic!("{event:?}") };
        assert_eq!(
            (data.step.as_deref(), data.reason.as_str()),
            (Some("standby_in_recovery"), "exited 2")
        );
        let failing = state.failing.clone().expect("failing");
        assert_eq!(
            (failing.since, failing.summary()),
            (at("2024-05-01T02:10:00Z"), "standby_in_recovery exited 2".to_owned())
        );

        // Failing again changes the latest result, not the spell, and says nothing.
        let again = outcome("2024-05-01T02:20:00Z", Some(("lag_ok", "check was false")));
        let (state, event) = record(Some(&state), again);
        assert!(event.is_none() && !state.passed, "{event:?}");
        assert_eq!(state.at, at("2024-05-01T02:20:00Z"));
        assert_eq!(
            state.failing.as_ref().map(Failure::summary).as_deref(),
            Some("standby_in_recovery exited 2")
        );

        let (state, event) = record(Some(&state), outcome("2024-05-01T02:30:00Z", None));
        let Some(AuditData::VerificationRecovered(data)) = event else { panic!("{event:?}") };
        assert_eq!(data.failing_since, "2024-05-01T02:10:00.000000Z");
        assert!(state.passed && state.failing.is_none());
    }

    #[test]
    fn a_first_verification_that_fails_is_announced() {
        let (state, event) =
            record(None, outcome("2024-05-01T02:10:00Z", Some(("probe", "exited 1"))));
        assert!(matches!(event, Some(AuditData::VerificationFailed(_))) && !state.passed);
    }

    #[test]
    fn a_verification_that_went_on_past_a_failed_check_failed() {
        use crate::run::{Phase, RunMode, RunOrigin, StepState};
        let run = crate::run::RunRecord {
            version: 1,
            mode: RunMode::DryRun,
            origin: RunOrigin::Verification,
            status: RunStatus::Succeeded,
            created_at: at("2026-11-30T02:00:00Z"),
            updated_at: at("2026-11-30T02:00:00Z"),
            ..crate::run::RunRecord::would_start("continued", &crate::run::Actor::steady())
        };
        let steps = vec![StepState::pending("standby", Phase::Main, 0)];
        let mut snapshot = RunSnapshot::begun(run, steps, vec![]);
        snapshot.steps[0].status = StepStatus::Failed;
        let when = at("2026-11-30T02:00:05Z");
        let outcome = Outcome::of_run(&snapshot, RunStatus::Succeeded, when).expect("an end");
        assert_eq!(outcome.failure.map(|(step, _)| step), Some(Some("standby".to_owned())));
        snapshot.steps[0].status = StepStatus::Succeeded;
        let outcome = Outcome::of_run(&snapshot, RunStatus::Succeeded, when).expect("an end");
        assert_eq!(outcome.failure, None);
    }

    #[test]
    fn a_long_reason_is_cut_to_one_short_line() {
        assert_eq!(shortened("exited 2\nmore"), "exited 2");
        let long = "x".repeat(500);
        assert_eq!(shortened(&long).chars().count(), MAX_REASON + 1);
    }
}
