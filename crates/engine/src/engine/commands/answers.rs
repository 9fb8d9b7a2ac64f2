//! People's answers to the steps that wait for them: a gate's approval or rejection, a manual
//! step done or failed.

use uuid::Uuid;

use crate::audit::{
    ApprovalAnswer, AuditData, ManualAnswer, NewEvent, StepAnswered, StepFinished, new_id,
};
use crate::policy;
use crate::run::*;
use crate::runbook::{Runbook, Step, StepKind};

use super::Then;
use crate::engine::{Engine, EngineError, transition_from};

impl Engine {
    /// Approves a gate. When the quorum is reached the gate opens and the run needs a driver.
    pub async fn approve(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<StepStatus, EngineError> {
        self.answer(run_id, step_id, actor, Answer::Approve, comment, Then::AnyDriver).await
    }

    /// Rejects a gate: one rejection ends it, and the step's `on_failure` decides what follows.
    pub async fn reject(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<StepStatus, EngineError> {
        self.answer(run_id, step_id, actor, Answer::Reject, comment, Then::AnyDriver).await
    }

    /// Answers a waiting gate for `actor`, with an optional comment (its secrets masked).
    /// Returns the gate's status after the answer: `waiting` below the quorum, `approved` at
    /// it, `rejected`.
    ///
    /// Errors: `NoSuchStep`, `RunNotActive`, `NotWaiting`, `WrongKind` (not a gate),
    /// `GateTimedOut` (its deadline passed: the timeout is committed), and the refusals of
    /// [`policy::may_approve`] / [`policy::may_answer`] (`NotEligible`, `SelfApproval`,
    /// `AlreadyAnswered`). `then` says who drives the run on once the gate opens or closes.
    pub async fn answer(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        answer: Answer,
        comment: Option<&str>,
        then: Then,
    ) -> Result<StepStatus, EngineError> {
        let approve = answer == Answer::Approve;
        self.act_then(run_id, then, |runbook, snapshot, now| {
            let comment = comment.map(|text| self.people_text(runbook, text));
            let comment = comment.as_deref();
            let (step, state) = match waiting_step(runbook, snapshot, step_id) {
                Ok(found) => found,
                Err(error) => return (None, Err(error)),
            };
            let StepKind::Approval(gate) = &step.kind else {
                let error =
                    EngineError::WrongKind { step: step_id.to_owned(), expected: "an approval" };
                return (None, Err(error));
            };
            if state.deadline.is_some_and(|deadline| deadline <= now) {
                let transition = self.late_expiry(runbook, snapshot, step);
                return (
                    Some(transition),
                    Err(EngineError::GateTimedOut { step: step_id.to_owned() }),
                );
            }
            let allowed = match answer {
                Answer::Approve => policy::may_approve(snapshot, step, actor),
                Answer::Reject => policy::may_answer(snapshot, step, actor),
            };
            if let Err(refusal) = allowed {
                return (None, Err(refusal.into()));
            }
            let bound = self.binding(runbook, snapshot, step);
            let vote = Vote {
                id: new_id(),
                step_id: step_id.to_owned(),
                actor: actor.clone(),
                approve,
                comment: comment.map(str::to_owned),
                digest: bound.digest(),
                bound,
                at: now,
                void: false,
            };
            let approvals = snapshot.live_votes(step_id).filter(|v| v.approve).count() as u32
                + u32::from(approve);
            let mut transition = transition_from(snapshot);
            let mut new_state = state.clone();
            let answered = ApprovalAnswer {
                comment: comment.map(str::to_owned),
                digest: vote.digest.clone(),
                approvals,
                quorum: gate.approvals,
            };
            let data = match answer {
                Answer::Approve => AuditData::ApprovalGranted(answered),
                Answer::Reject => AuditData::ApprovalRejected(answered),
            };
            transition
                .events
                .push(NewEvent::typed(actor, Some(snapshot.run.id), data).step(step_id));
            if !approve || approvals >= gate.approvals {
                let status = match answer {
                    Answer::Approve => StepStatus::Approved,
                    Answer::Reject => StepStatus::Rejected,
                };
                new_state.answer(status, actor, comment.map(str::to_owned), now);
                let mut run = RunChange::from(&snapshot.run);
                run.status = RunStatus::Running;
                transition.run = Some(run);
                let answered = StepFinished::Answered(StepAnswered { status: new_state.status });
                transition.events.push(
                    NewEvent::typed(
                        actor,
                        Some(snapshot.run.id),
                        AuditData::StepFinished(answered),
                    )
                    .step(step_id),
                );
            }
            let status = new_state.status;
            transition.steps.push(new_state);
            transition.votes.push(vote);
            (Some(transition), Ok(status))
        })
        .await
    }

    /// Marks a waiting manual step done (`succeeded`) or failed, with a note (its secrets
    /// masked). Returns the step's status after it.
    ///
    /// Errors: `NoSuchStep`, `RunNotActive`, `NotWaiting`, `WrongKind` (not a manual step), and
    /// `NotEligible` from [`policy::may_answer`]. `then` says who drives the run on.
    pub async fn complete_manual(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        completion: Completion,
        note: Option<&str>,
        then: Then,
    ) -> Result<StepStatus, EngineError> {
        self.act_then(run_id, then, |runbook, snapshot, now| {
            let note = note.map(|text| self.people_text(runbook, text));
            let note = note.as_deref();
            let (step, state) = match waiting_step(runbook, snapshot, step_id) {
                Ok(found) => found,
                Err(error) => return (None, Err(error)),
            };
            let StepKind::Manual(_) = &step.kind else {
                let error =
                    EngineError::WrongKind { step: step_id.to_owned(), expected: "a manual" };
                return (None, Err(error));
            };
            if let Err(refusal) = policy::may_answer(snapshot, step, actor) {
                return (None, Err(refusal.into()));
            }
            let mut new_state = state.clone();
            let status = match completion {
                Completion::Done => StepStatus::Succeeded,
                Completion::Failed => StepStatus::Failed,
            };
            new_state.answer(status, actor, note.map(str::to_owned), now);
            let mut transition = transition_from(snapshot);
            let answered = ManualAnswer { note: note.map(str::to_owned) };
            let data = match completion {
                Completion::Done => AuditData::ManualCompleted(answered),
                Completion::Failed => AuditData::ManualFailed(answered),
            };
            transition.events.push(NewEvent::typed(actor, Some(run_id), data).step(step_id));
            let mut run = RunChange::from(&snapshot.run);
            run.status = RunStatus::Running;
            transition.run = Some(run);
            let status = new_state.status;
            transition.steps.push(new_state);
            (Some(transition), Ok(status))
        })
        .await
    }
}

/// The step `step_id` and its state, when it waits for people in an active run.
fn waiting_step<'r, 's>(
    runbook: &'r Runbook,
    snapshot: &'s RunSnapshot,
    step_id: &str,
) -> Result<(&'r Step, &'s StepState), EngineError> {
    let step =
        runbook.find_step(step_id).ok_or_else(|| EngineError::NoSuchStep(step_id.to_owned()))?;
    let state =
        snapshot.step(step_id).ok_or_else(|| EngineError::NoSuchStep(step_id.to_owned()))?;
    if !snapshot.run.status.is_active() {
        return Err(EngineError::RunNotActive { status: snapshot.run.status });
    }
    if state.status == StepStatus::TimedOut {
        return Err(EngineError::GateTimedOut { step: step_id.to_owned() });
    }
    if state.status != StepStatus::Waiting {
        return Err(EngineError::NotWaiting { step: step_id.to_owned(), status: state.status });
    }
    Ok((step, state))
}
