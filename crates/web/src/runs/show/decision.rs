//! The commander's decision panel: what failed (the last lines of the failing attempt, right
//! where the decision is taken) and what each choice will do next, so that nobody has to
//! scroll to the step or guess what "rollback" means in this runbook at 3 a.m. When a
//! `parallel` group or a fan-out awaits the decision, the panel lists its failed and
//! interrupted branches or items, each with what it printed last and a retry and skip of its
//! own, beside the decisions about the whole group.

use std::collections::{HashMap, HashSet};

use steady_engine::machine::{attention_step, sequence};
use steady_engine::policy;
use steady_engine::run::{Attempt, Decision, RunSnapshot, RunStatus, StepState, StepStatus};
use steady_engine::runbook::{Runbook, Step, item_text};

use super::steps::step_of;
use crate::runs::{status_class, step_badge};

/// How many lines of a failing attempt's output the panel shows.
const TAIL_LINES: usize = 15;

/// How many of a group's failed and interrupted children the panel lists; the others are
/// decided in the group's grid or lanes, which offer the same buttons. A fan-out of a
/// thousand hosts that all failed keeps a page one can read.
const CHILDREN_LISTED: usize = 50;

/// One choice the commander has, with what it does in this run.
pub(crate) struct Choice {
    /// `retry`, `skip`, `rollback` or `abort`: the form's `decision` value.
    pub(crate) value: &'static str,
    /// The button's words.
    pub(crate) label: &'static str,
    /// What happens next, in this run's terms ("Skip continues at `promote`").
    pub(crate) does: String,
    /// The button's look, by risk: `primary`, `neutral` or `danger`.
    pub(crate) class: &'static str,
    /// Ending or reversing work needs a reason and a confirmation.
    pub(crate) needs_reason: bool,
}

impl Choice {
    /// [`Choice::does`] for the page, the step ids it names shown as code.
    pub(crate) fn does_shown(&self) -> crate::page::CodeSpans {
        crate::page::CodeSpans(self.does.clone())
    }

    /// [`Choice::does`] for the confirmation dialog, which shows plain text.
    pub(crate) fn does_plain(&self) -> String {
        self.does.replace('`', "")
    }
}

/// The last lines of the attempt that failed.
pub(crate) struct FailedAttempt {
    pub(crate) number: u32,
    pub(crate) exit_code: Option<i32>,
    pub(crate) http_status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) stdout_tail: String,
    pub(crate) stderr_tail: String,
    /// Some lines were left out above the tail.
    pub(crate) cut: bool,
}

/// A failed or interrupted branch or item of the group that awaits the decision: decided on
/// its own with "Retry this one" or "Skip this one".
pub(crate) struct ChildView {
    /// The child's step id (`restart[3]`): the form's `step` value.
    pub(crate) id: String,
    /// The branch's title, or the item as people read it.
    pub(crate) title: String,
    pub(crate) status: String,
    pub(crate) status_class: &'static str,
    pub(crate) why: Option<String>,
    pub(crate) failed: Option<FailedAttempt>,
    /// A gate is never skipped: skipping would run what it guards unapproved.
    pub(crate) can_skip: bool,
}

/// The panel shown while a run needs its commander.
pub(crate) struct DecisionView {
    pub(crate) step: String,
    pub(crate) title: String,
    pub(crate) why: String,
    pub(crate) failed: Option<FailedAttempt>,
    pub(crate) choices: Vec<Choice>,
    /// A group's failed and interrupted children, at most [`CHILDREN_LISTED`] of them.
    pub(crate) children: Vec<ChildView>,
    /// "2 items failed or were interrupted": what [`DecisionView::children`] lists.
    pub(crate) children_heading: String,
    /// How many more failed or interrupted children there are than are listed.
    pub(crate) more_children: usize,
}

impl DecisionView {
    /// The choice named `value`, when this run offers it.
    pub(crate) fn choice(&self, value: &str) -> Option<&Choice> {
        self.choices.iter().find(|choice| choice.value == value)
    }
}

/// The last `TAIL_LINES` lines of `text`, and whether lines were left out.
fn tail(text: &str) -> (String, bool) {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    (lines[from..].join("\n"), from > 0)
}

/// The last lines of `attempt`, as the panel shows them.
fn failed_attempt(attempt: &Attempt) -> FailedAttempt {
    let (stdout_tail, cut_out) = tail(&attempt.stdout);
    let (stderr_tail, cut_err) = tail(&attempt.stderr);
    FailedAttempt {
        number: attempt.number,
        exit_code: attempt.exit_code,
        http_status: attempt.http_status,
        error: attempt.error.clone(),
        stdout_tail,
        stderr_tail,
        cut: cut_out || cut_err,
    }
}

/// A child that awaits a decision of its own: it failed or was interrupted.
fn undecided(state: &StepState) -> bool {
    state.status.is_failure() || state.status == StepStatus::Interrupted
}

/// "1 item", "3 branches".
fn counted(n: usize, fan_out: bool) -> String {
    let noun = match (fan_out, n == 1) {
        (true, true) => "item",
        (true, false) => "items",
        (false, true) => "branch",
        (false, false) => "branches",
    };
    format!("{n} {noun}")
}

/// What retrying `group` does: only its failed and interrupted children run again, those not
/// run yet start, and what succeeded stays done.
fn group_retry(group: &Step, children: &[&StepState]) -> String {
    let fan_out = group.fan_out.is_some();
    let again = children.iter().filter(|child| undecided(child)).count();
    let waiting = children.iter().filter(|child| child.status == StepStatus::Pending).count();
    let mut does = format!(
        "Retry runs only the failed and interrupted {} of `{}` again ({})",
        if fan_out { "items" } else { "branches" },
        group.id,
        counted(again, fan_out),
    );
    if waiting > 0 {
        does.push_str(&format!(" and starts the {} not run yet", counted(waiting, fan_out)));
    }
    does.push_str("; those that succeeded do not run again.");
    does
}

/// The failed and interrupted children of `group`, the latest attempt of each found in one
/// pass over the run's attempts.
fn children_to_decide(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    children: &[&StepState],
) -> Vec<ChildView> {
    let listed: Vec<&StepState> =
        children.iter().copied().filter(|child| undecided(child)).take(CHILDREN_LISTED).collect();
    let wanted: HashSet<&str> = listed.iter().map(|child| child.step_id.as_str()).collect();
    let mut latest: HashMap<&str, &Attempt> = HashMap::with_capacity(wanted.len());
    for attempt in &snapshot.attempts {
        if !wanted.contains(attempt.step_id.as_str()) {
            continue;
        }
        let entry = latest.entry(attempt.step_id.as_str()).or_insert(attempt);
        if attempt.number > entry.number {
            *entry = attempt;
        }
    }
    listed
        .into_iter()
        .map(|child| {
            let step = step_of(runbook, child);
            let title = match (&child.item, &step) {
                (Some(item), _) => item_text(item),
                (None, Some(step)) => step.title().to_owned(),
                (None, None) => child.step_id.clone(),
            };
            ChildView {
                id: child.step_id.clone(),
                title,
                status: step_badge(child.status),
                status_class: status_class(child.status.as_str()),
                why: child.note.clone(),
                failed: latest.get(child.step_id.as_str()).map(|attempt| failed_attempt(attempt)),
                can_skip: step.is_none_or(|step| !step.is_gate()),
            }
        })
        .collect()
}

/// The decision panel of a run that needs attention; `None` for any other run.
pub(crate) fn decision(runbook: &Runbook, snapshot: &RunSnapshot) -> Option<DecisionView> {
    if snapshot.run.status != RunStatus::NeedsAttention {
        return None;
    }
    let step = attention_step(runbook, snapshot)?;
    let state = snapshot.step(&step.id)?;
    let phase = state.phase;
    let steps = sequence(runbook, phase);
    let next = steps.iter().skip_while(|s| s.id != step.id).nth(1);
    let rollback: Vec<String> =
        runbook.rollback.iter().map(|s| format!("`{}`", s.id)).collect::<Vec<_>>();
    let children: Vec<&StepState> =
        if step.has_children() { snapshot.children(&step.id).collect() } else { Vec::new() };
    let retry = if step.has_children() {
        group_retry(step, &children)
    } else {
        format!("Retry runs `{}` again.", step.id)
    };
    let mut choices = vec![Choice {
        value: Decision::Retry.as_str(),
        label: "↻ Retry",
        does: retry,
        class: "primary",
        needs_reason: false,
    }];
    let offered = policy::decisions_offered(runbook, step, phase);
    if offered.contains(&Decision::Skip) {
        let does = match next {
            Some(next) => {
                format!("Skip marks `{}` skipped and continues at `{}`.", step.id, next.id)
            }
            None => {
                format!("Skip marks `{}` skipped; it is the last step, so the run ends.", step.id)
            }
        };
        choices.push(Choice {
            value: Decision::Skip.as_str(),
            label: "↷ Skip",
            does,
            class: "neutral",
            needs_reason: false,
        });
    }
    if offered.contains(&Decision::Rollback) {
        choices.push(Choice {
            value: Decision::Rollback.as_str(),
            label: "↺ Roll back",
            does: format!(
                "Roll back runs {} and ends the run as rolled back.",
                rollback.join(", ")
            ),
            class: "danger",
            needs_reason: true,
        });
    }
    choices.push(Choice {
        value: Decision::Abort.as_str(),
        label: "■ Abort",
        does: "Abort ends the run as failed; the steps after it do not run.".to_owned(),
        class: "danger",
        needs_reason: true,
    });
    let failed = snapshot
        .attempts
        .iter()
        .filter(|a| a.step_id == step.id)
        .max_by_key(|a| a.number)
        .map(failed_attempt);
    let undecided_count = children.iter().filter(|child| undecided(child)).count();
    let listed = children_to_decide(runbook, snapshot, &children);
    let children_heading = match undecided_count {
        0 => String::new(),
        1 => format!("{} failed or was interrupted", counted(1, step.fan_out.is_some())),
        n => format!("{} failed or were interrupted", counted(n, step.fan_out.is_some())),
    };
    let why = state.note.clone().unwrap_or_else(|| {
        format!("`{}` ended {}.", step.id, state.status.as_str().replace('_', " "))
    });
    Some(DecisionView {
        step: step.id.clone(),
        title: step.title().to_owned(),
        why,
        failed,
        choices,
        more_children: undecided_count - listed.len(),
        children: listed,
        children_heading,
    })
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn a_tail_keeps_the_last_lines_and_says_it_cut() {
        let text: String = (1..=20).map(|n| format!("line {n}\n")).collect();
        let (kept, cut) = tail(&text);
        assert!(cut);
        assert!(kept.starts_with("line 6\n") && kept.ends_with("line 20"), "{kept}");
        assert_eq!(tail("one\ntwo\n"), ("one\ntwo".to_owned(), false));
    }
}
