//! The commander's decision panel: what failed (the last lines of the failing attempt, right
//! where the decision is taken) and what each choice will do next, so that nobody has to
//! scroll to the step or guess what "rollback" means in this runbook at 3 a.m.

use steady_engine::machine::{attention_step, sequence};
use steady_engine::policy;
use steady_engine::run::{Decision, RunSnapshot, RunStatus};
use steady_engine::runbook::Runbook;

/// How many lines of a failing attempt's output the panel shows.
const TAIL_LINES: usize = 15;

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

/// The panel shown while a run needs its commander.
pub(crate) struct DecisionView {
    pub(crate) step: String,
    pub(crate) title: String,
    pub(crate) why: String,
    pub(crate) failed: Option<FailedAttempt>,
    pub(crate) choices: Vec<Choice>,
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
    let mut choices = vec![Choice {
        value: Decision::Retry.as_str(),
        label: "↻ Retry",
        does: format!("Retry runs `{}` again.", step.id),
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
    let failed =
        snapshot.attempts.iter().filter(|a| a.step_id == step.id).max_by_key(|a| a.number).map(
            |attempt| {
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
            },
        );
    let why = state.note.clone().unwrap_or_else(|| {
        format!("`{}` ended {}.", step.id, state.status.as_str().replace('_', " "))
    });
    Some(DecisionView {
        step: step.id.clone(),
        title: step.title().to_owned(),
        why,
        failed,
        choices,
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
