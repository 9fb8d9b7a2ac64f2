//! The changes a step's state goes through, each named once: the engine edits a copy of a
//! step's state with these and commits the copy in a `Transition`.

use super::{Actor, Attempt, StepState, StepStatus, Timestamp};
use crate::plan::Rendered;

/// A step's changes, as the engine names them.
impl StepState {
    /// An attempt starts: `running`, as attempt number `attempt`, showing `rendered`.
    pub(crate) fn start(&mut self, attempt: u32, rendered: impl Into<Rendered>, at: Timestamp) {
        self.status = StepStatus::Running;
        self.attempt = attempt;
        self.started_at = Some(at);
        self.finished_at = None;
        self.rendered = Some(rendered.into());
    }

    /// An attempt ended and the step is now `status` (`pending` again when it is retried);
    /// the attempt's error, if any, is the step's note.
    pub(crate) fn finish_attempt(
        &mut self,
        status: StepStatus,
        attempt: &Attempt,
        rendered: impl Into<Rendered>,
    ) {
        self.status = status;
        self.attempt = attempt.number;
        self.rendered = Some(rendered.into());
        self.started_at = self.started_at.or(attempt.started_at);
        self.finished_at = attempt.finished_at;
        self.note = attempt.error.clone();
    }

    /// The step ends without running: skipped by its `when`, or failed (with why in `note`)
    /// before it could start or be recorded.
    pub(crate) fn end(&mut self, status: StepStatus, note: Option<String>, at: Timestamp) {
        self.status = status;
        self.note = note;
        self.finished_at = Some(at);
    }

    /// A dry run records what the step would have done.
    pub(crate) fn would_run(
        &mut self,
        rendered: impl Into<Rendered>,
        note: Option<String>,
        at: Timestamp,
    ) {
        self.status = StepStatus::WouldRun;
        self.rendered = Some(rendered.into());
        self.note = note;
        self.finished_at = Some(at);
    }

    /// A gate or manual step waits for people, showing them `rendered`, until `deadline`.
    pub(crate) fn wait_for_people(
        &mut self,
        rendered: impl Into<Rendered>,
        deadline: Option<Timestamp>,
        at: Timestamp,
    ) {
        self.status = StepStatus::Waiting;
        self.started_at = Some(at);
        self.rendered = Some(rendered.into());
        self.deadline = deadline;
    }

    /// A person answered: a gate `approved` or `rejected`, a manual step `succeeded` or
    /// `failed`, with their comment or note. Nothing waits for a deadline any more.
    pub(crate) fn answer(
        &mut self,
        status: StepStatus,
        by: &Actor,
        note: Option<String>,
        at: Timestamp,
    ) {
        self.status = status;
        self.finished_at = Some(at);
        self.deadline = None;
        self.completed_by = Some(by.clone());
        self.note = note;
    }

    /// An approved gate whose approvals no longer match what its steps render waits again.
    pub(crate) fn reopen(&mut self, deadline: Option<Timestamp>) {
        self.status = StepStatus::Waiting;
        self.finished_at = None;
        self.completed_by = None;
        self.deadline = deadline;
    }

    /// A waiting gate passed its deadline and now waits for `role`, until `deadline`.
    pub(crate) fn escalate(&mut self, role: &str, deadline: Timestamp) {
        self.escalated_to = Some(role.to_owned());
        self.deadline = Some(deadline);
    }

    /// A waiting gate passed its (last) deadline.
    pub(crate) fn time_out(&mut self, at: Timestamp) {
        self.status = StepStatus::TimedOut;
        self.finished_at = Some(at);
        self.deadline = None;
    }

    /// The step was found `running` after its driver died: `then` is `interrupted`, or
    /// `pending` when it is safe to run again.
    pub(crate) fn interrupt(&mut self, then: StepStatus, at: Timestamp) {
        self.status = then;
        self.finished_at = Some(at);
    }

    /// The commander retries the step: `pending`, with a fresh round of retries. Why it ended
    /// last time ("1 of 2 branches failed", a person's note) is history, kept in the audit log,
    /// not what the step says now.
    pub(crate) fn retry(&mut self) {
        self.status = StepStatus::Pending;
        self.attempts_before_round = self.attempt;
        self.finished_at = None;
        self.note = None;
    }

    /// A gate asked again starts afresh: no escalation, deadline or answerer.
    pub(crate) fn forget_answers(&mut self) {
        self.escalated_to = None;
        self.deadline = None;
        self.completed_by = None;
    }

    /// The commander skips the step.
    pub(crate) fn skip_by(&mut self, commander: &Actor) {
        self.status = StepStatus::Skipped;
        self.note = Some(format!("skipped by {commander}"));
    }

    /// The run was cancelled while the step was pending or waiting (or, for a group, running).
    pub(crate) fn cancel(&mut self, at: Timestamp) {
        self.status = StepStatus::Cancelled;
        self.deadline = None;
        if self.started_at.is_some() {
            self.finished_at = Some(at);
        }
    }
}
