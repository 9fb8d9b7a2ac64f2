//! The run page's situation header, what an incident commander looks at first: live or
//! rehearsal, the parameters, how far the run is, how long it has taken, whom it waits for and
//! until when; once it has ended, its outcome in words that tell the endings apart. A dry run
//! adds its report's summary. A proposal says that nothing runs until someone takes command,
//! and once dismissed or expired, by whom and why.

use chrono::{DateTime, Utc};
use steady_engine::audit::AuditData;
use steady_engine::machine::sequence;
use steady_engine::policy::{self, waiting_for};
use steady_engine::run::{Decision, Phase, RunMode, RunOrigin, RunSnapshot, RunStatus, StepStatus};
use steady_engine::runbook::{Runbook, StepKind};

use crate::page::CodeSpans;

/// One decision of the commander's, on one step.
pub(crate) struct Decided {
    pub(crate) step: String,
    pub(crate) decision: Decision,
    pub(crate) who: String,
    pub(crate) at: DateTime<Utc>,
    pub(crate) reason: Option<String>,
}

/// What people decided in this run, read from its audit events: the run page shows each
/// decision in its step's history and the reason in the outcome.
#[derive(Default)]
pub(crate) struct History {
    /// Oldest first.
    pub(crate) decisions: Vec<Decided>,
    /// Who cancelled the run and why.
    pub(crate) cancelled: Option<(String, Option<String>)>,
    /// Who dismissed the proposal and why.
    pub(crate) dismissed: Option<(String, String)>,
    /// How long the proposal was left alone before Steady ended it, in seconds.
    pub(crate) expired: Option<u64>,
}

impl History {
    /// Reads the decisions, the cancel and a proposal's end out of the run's audit events.
    pub(crate) fn from_events(events: &[steady_engine::audit::AuditEvent]) -> History {
        let mut history = History::default();
        for event in events {
            match AuditData::from_stored(&event.action, &event.data) {
                Ok(AuditData::DecisionTaken(taken)) => history.decisions.push(Decided {
                    step: event.step_id.clone().unwrap_or_default(),
                    decision: taken.decision,
                    who: event.actor.to_string(),
                    at: event.at,
                    reason: taken.reason,
                }),
                Ok(AuditData::RunCancelled(reason)) => {
                    history.cancelled =
                        Some((event.actor.to_string(), reason.map(|reason| reason.reason)));
                }
                Ok(AuditData::RunDismissed(dismissed)) => {
                    history.dismissed = Some((event.actor.to_string(), dismissed.reason));
                }
                Ok(AuditData::RunExpired(expired)) => history.expired = Some(expired.idle_seconds),
                _ => {}
            }
        }
        history
    }
}

/// The header's view model.
pub(crate) struct Situation {
    /// `● LIVE`, `drill` or `dry run`, and its class.
    pub(crate) mode: (&'static str, &'static str),
    pub(crate) params: Vec<(String, String)>,
    /// "step 6 of 8", or "rollback step 1 of 2", or "8 of 8 steps done" once ended.
    pub(crate) progress: String,
    pub(crate) done: usize,
    pub(crate) total: usize,
    /// What the time counted is: "elapsed", or "waiting" for a proposal nobody took yet.
    pub(crate) elapsed_label: &'static str,
    pub(crate) elapsed: String,
    /// When the run started, for the script to keep the elapsed time ticking.
    pub(crate) since: String,
    /// Whom the run waits for, and for how long.
    pub(crate) waiting: Option<Waiting>,
    /// The outcome of a run that has ended: words and class.
    pub(crate) outcome: Option<(String, &'static str)>,
    /// When the page was rendered, for "the state when it was loaded".
    pub(crate) loaded: String,
    /// A dry run's summary: "3 checks passed, 4 steps would run, …".
    pub(crate) report: Option<String>,
}

/// Whom the run waits for.
pub(crate) struct Waiting {
    pub(crate) who: CodeSpans,
    pub(crate) for_how_long: String,
    /// When the gate times out: the words, and the instant for the script's countdown.
    pub(crate) deadline: Option<(String, String)>,
}

/// "2 h 05 min", "3 min 12 s", "12 s".
pub(crate) fn span(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) => format!("{h} h {m:02} min"),
    }
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The situation of `snapshot` at `now`; `params` are shown as given, secrets masked by the
/// caller.
pub(crate) fn situation(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    history: &History,
    params: Vec<(String, String)>,
    now: DateTime<Utc>,
) -> Situation {
    let run = &snapshot.run;
    let mode = match (run.mode, run.origin) {
        _ if run.status == RunStatus::Proposed => ("◆ PROPOSED", "proposed"),
        // Dismissed or expired: it never ran, live or otherwise.
        _ if run.status == RunStatus::Dismissed => ("◆ proposal", "dry"),
        (RunMode::Live, _) => ("● LIVE", "live"),
        (RunMode::Drill, _) => ("drill", "drill"),
        (RunMode::DryRun, RunOrigin::Verification) => ("dry run · verification", "dry"),
        (RunMode::DryRun, RunOrigin::Person) => ("dry run", "dry"),
        (RunMode::DryRun, RunOrigin::Trigger) => ("dry run · facts for a proposal", "dry"),
    };
    // Branches and items are counted by their group: "step 2 of 3" names top-level steps.
    let phase_steps: Vec<_> =
        snapshot.steps.iter().filter(|s| s.phase == run.phase && s.parent.is_none()).collect();
    let total = sequence(runbook, run.phase).len();
    // Done means done: a failed step of an aborted run is not counted as work completed.
    let done = phase_steps.iter().filter(|s| s.status.is_passed()).count();
    let current = phase_steps
        .iter()
        .filter(|s| !matches!(s.status, StepStatus::Pending) && !s.status.is_passed())
        .map(|s| s.position)
        .min()
        .or_else(|| {
            phase_steps.iter().filter(|s| s.status == StepStatus::Pending).map(|s| s.position).min()
        });
    let rollback = if run.phase == Phase::Rollback { "rollback " } else { "" };
    let progress = match current {
        _ if run.status == RunStatus::Proposed => format!("{total} steps planned, none run yet"),
        _ if run.status == RunStatus::Dismissed => format!("{total} steps planned, none run"),
        Some(position) if run.status.is_active() => {
            format!("{rollback}step {} of {total}", position + 1)
        }
        // A dry run changes nothing: its steps were read or planned, not done.
        _ if run.mode == RunMode::DryRun => format!("{total} steps planned, nothing changed"),
        _ => format!("{done} of {total} {rollback}steps done"),
    };
    let end = run.finished_at.unwrap_or(now);
    let waiting = waiting(runbook, snapshot, now);
    Situation {
        mode,
        params,
        progress,
        done,
        total,
        elapsed_label: if run.status == RunStatus::Proposed { "waiting" } else { "elapsed" },
        elapsed: span((end - run.created_at).num_seconds()),
        since: instant(run.created_at),
        waiting,
        outcome: outcome(runbook, snapshot, history),
        loaded: now.format("%H:%M:%S UTC").to_string(),
        report: (run.mode == RunMode::DryRun).then(|| report(runbook, snapshot)),
    }
}

fn waiting(runbook: &Runbook, snapshot: &RunSnapshot, now: DateTime<Utc>) -> Option<Waiting> {
    let run = &snapshot.run;
    match run.status {
        // A running run may also wait for people: a manual branch waits while its sibling runs.
        RunStatus::Waiting | RunStatus::Running => {
            // A group waits while one of its branches or items waits for people: name the
            // child that waits, whose role can answer it, not the group.
            let (state, step) = snapshot
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Waiting)
                .filter_map(|s| Some((s, super::steps::step_of(runbook, s)?)))
                .min_by_key(|(_, step)| step.has_children())?;
            let step = step.as_ref();
            let since = state.started_at.unwrap_or(run.updated_at);
            Some(Waiting {
                who: CodeSpans(format!("`{}` waits for {}", step.id, waiting_for(snapshot, step))),
                for_how_long: span((now - since).num_seconds()),
                deadline: state.deadline.map(|deadline| {
                    let left = (deadline - now).num_seconds();
                    // The instant itself is already in `who` (`waiting_for` says it).
                    let words = if left > 0 {
                        format!("times out in {}", span(left))
                    } else {
                        format!("timed out at {}", deadline.format("%H:%M:%S UTC"))
                    };
                    (words, instant(deadline))
                }),
            })
        }
        RunStatus::NeedsAttention => Some(Waiting {
            who: CodeSpans(format!("waits for the commander, {}, to decide", run.commander)),
            for_how_long: span((now - run.updated_at).num_seconds()),
            deadline: None,
        }),
        _ => None,
    }
}

/// The ending in words that tell apart what a glance at a colour cannot.
fn outcome(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    history: &History,
) -> Option<(String, &'static str)> {
    let run = &snapshot.run;
    let main = |status: StepStatus| {
        snapshot
            .steps
            .iter()
            .filter(|s| s.phase == Phase::Main && s.parent.is_none() && s.status == status)
            .count()
    };
    let because = |reason: &Option<String>| {
        reason.as_ref().map(|reason| format!(": “{reason}”")).unwrap_or_default()
    };
    Some(match run.status {
        RunStatus::Succeeded if run.mode == RunMode::DryRun => (
            format!("○ dry run complete — nothing was changed; {}", report(runbook, snapshot)),
            "ok",
        ),
        RunStatus::Succeeded => match main(StepStatus::Skipped) {
            0 => ("✓ succeeded: every step done".to_owned(), "ok"),
            1 => ("✓ succeeded with 1 skipped step".to_owned(), "partial"),
            n => (format!("✓ succeeded with {n} skipped steps"), "partial"),
        },
        RunStatus::RolledBack => ("↺ rolled back: the rollback steps ran".to_owned(), "rolledback"),
        RunStatus::Failed => {
            let abort = history.decisions.iter().rev().find(|d| d.decision == Decision::Abort);
            match abort {
                Some(Decided { step, who, reason, .. }) => {
                    (format!("■ aborted at `{step}` by {who}{}", because(reason)), "bad")
                }
                None => ("✗ failed".to_owned(), "bad"),
            }
        }
        RunStatus::Dismissed => match (&history.dismissed, history.expired) {
            (Some((who, reason)), _) => (format!("⊘ dismissed by {who}: “{reason}”"), "cancelled"),
            (None, Some(idle)) => {
                (format!("⊘ expired: nobody took it within {}", idle_words(idle)), "cancelled")
            }
            (None, None) => ("⊘ dismissed".to_owned(), "cancelled"),
        },
        RunStatus::Cancelled => match &history.cancelled {
            Some((who, reason)) => {
                (format!("■ cancelled by {who}{}", because(reason)), "cancelled")
            }
            None => ("■ cancelled".to_owned(), "cancelled"),
        },
        _ => return None,
    })
}

/// How long a proposal may wait, as its expiry was set: "90 s", "60 min", "2 h".
fn idle_words(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s"),
        _ if seconds.is_multiple_of(3600) => format!("{} h", seconds / 3600),
        _ => format!("{} min", seconds / 60),
    }
}

/// A dry run's summary: "3 checks passed, 4 steps would run, 1 gate would wait for approver",
/// with a warning for each gate nobody in the run could approve.
fn report(runbook: &Runbook, snapshot: &RunSnapshot) -> String {
    summary(runbook, snapshot, true)
}

/// The summary of the dry run that gathered a proposal's facts: what it found first, and no
/// gate warning, since it has no run roles (whoever takes command gives them).
pub(crate) fn facts_summary(runbook: &Runbook, snapshot: &RunSnapshot) -> String {
    summary(runbook, snapshot, false)
}

/// `report` for a dry run people started (`own`), or for a proposal's facts.
fn summary(runbook: &Runbook, snapshot: &RunSnapshot, own: bool) -> String {
    let mut checks = (0, 0);
    let mut ran = 0;
    let mut would_run = 0;
    let mut gates = Vec::new();
    let mut manual = Vec::new();
    let mut unreachable = Vec::new();
    for step in &runbook.steps {
        let Some(state) = snapshot.step(&step.id) else { continue };
        match (&step.kind, state.status) {
            (StepKind::Check(_), StepStatus::Succeeded) => checks.0 += 1,
            (StepKind::Check(_), status) if status.is_failure() => checks.1 += 1,
            (StepKind::Approval(gate), StepStatus::WouldRun) => {
                gates.push(gate.role.name.clone());
                if own && policy::approvals_out_of_reach(snapshot, step) > 0 {
                    unreachable.push(step.id.clone());
                }
            }
            (StepKind::Manual(waiting), StepStatus::WouldRun) => {
                manual.push(waiting.role.name.clone())
            }
            (_, StepStatus::WouldRun) => would_run += 1,
            (_, StepStatus::Succeeded) => ran += 1,
            _ => {}
        }
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts = Vec::new();
    // A report says how many checks passed, even none; facts say what was found.
    if own || checks.0 > 0 {
        parts.push(plural(checks.0, "check passed", "checks passed"));
    }
    if checks.1 > 0 {
        parts.push(plural(checks.1, "check failed", "checks failed"));
    }
    if ran > 0 {
        parts.push(plural(ran, "read-only step ran", "read-only steps ran"));
    }
    parts.push(plural(would_run, "step would run", "steps would run"));
    let roles = |roles: &[String]| {
        let mut roles = roles.to_vec();
        roles.dedup();
        roles.join(", ")
    };
    if !gates.is_empty() {
        parts.push(format!(
            "{} would wait for {}",
            plural(gates.len(), "gate", "gates"),
            roles(&gates)
        ));
    }
    if !manual.is_empty() {
        parts.push(format!(
            "{} would wait for {}",
            plural(manual.len(), "manual step", "manual steps"),
            roles(&manual)
        ));
    }
    for gate in unreachable {
        parts.push(format!("nobody in the run could approve gate {gate}: assign its role"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::{idle_words, span};

    #[test]
    fn an_expiry_reads_as_it_was_set() {
        assert_eq!(idle_words(90), "90 s");
        assert_eq!(idle_words(3600), "1 h");
        assert_eq!(idle_words(7200), "2 h");
        assert_eq!(idle_words(2700), "45 min");
        assert_eq!(idle_words(5400), "90 min");
    }

    #[test]
    fn spans_read_like_a_clock_people_glance_at() {
        assert_eq!(span(12), "12 s");
        assert_eq!(span(192), "3 min 12 s");
        assert_eq!(span(7500), "2 h 05 min");
        assert_eq!(span(-3), "0 s");
    }
}
