//! The commander's decisions on a run that needs attention (retry, skip, roll back, abort, for
//! the whole step or one child of a group), and cancelling a run.

use uuid::Uuid;

use crate::audit::{AuditData, CancelReason, DecisionTaken, NewEvent};
use crate::machine::{attention_step, fails_its_group};
use crate::policy;
use crate::run::*;
use crate::runbook::{Runbook, Step};

use crate::engine::{Engine, EngineError, finished_event, transition_from};

impl Engine {
    /// The commander's answer to a run that needs attention.
    pub async fn decide(
        &self,
        run_id: Uuid,
        actor: &Actor,
        decision: Decision,
    ) -> Result<RunStatus, EngineError> {
        self.decide_because(run_id, actor, decision, None, None).await
    }

    /// [`Engine::decide`] with the commander's reason, recorded (secrets masked) in the
    /// `decision.taken` event on the step: the run page shows it in the step's history.
    ///
    /// With `child`, a retry or skip answers one failed or interrupted branch or item of the
    /// group that awaits the decision (`restart[3]`): the group then goes on with its other
    /// children and asks again about any still failed or interrupted.
    pub async fn decide_because(
        &self,
        run_id: Uuid,
        actor: &Actor,
        decision: Decision,
        child: Option<&str>,
        reason: Option<&str>,
    ) -> Result<RunStatus, EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let reason = reason.map(|reason| self.people_text(runbook, reason));
            let run = &snapshot.run;
            if let Err(refusal) = policy::may_command(run, actor) {
                return (None, Err(refusal.into()));
            }
            if run.status != RunStatus::NeedsAttention {
                return (None, Err(EngineError::NothingToDecide { status: run.status }));
            }
            let Some(step) = attention_step(runbook, snapshot) else {
                return (None, Err(EngineError::NothingToDecide { status: run.status }));
            };
            let Some(state) = snapshot.step(&step.id) else {
                return (None, Err(EngineError::NoSuchStep(step.id.clone())));
            };
            let mut transition = transition_from(snapshot);
            let mut change = RunChange::from(run);
            change.status = RunStatus::Running;
            let mut new_state = state.clone();
            if let Some(child) = child {
                let decided = decide_child(runbook, snapshot, step, child, decision, actor);
                let (again, voided) = match decided {
                    Ok(decided) => decided,
                    Err(error) => return (None, Err(error)),
                };
                transition.voided_votes = voided;
                transition.steps.push(again);
                // While other children still await a decision, the run keeps waiting for the
                // commander, who decides them one by one; with the last, the group resumes
                // with the children it has.
                // A child awaits one while it is interrupted, or failed beyond what the group
                // allows (machine::group_next's rule).
                let others = || snapshot.children(&step.id).filter(|c| c.step_id != child);
                let interrupted = others().any(|c| c.status == StepStatus::Interrupted);
                let failed = others().filter(|c| fails_its_group(runbook, c)).count();
                let total = snapshot.children(&step.id).count();
                let allowed = step.fan_out.as_ref().map_or(0, |f| f.max_failures.allowed(total));
                if interrupted || failed > allowed {
                    change.status = RunStatus::NeedsAttention;
                } else {
                    new_state.retry();
                    transition.steps.push(new_state);
                }
                transition.events.push(
                    NewEvent::typed(
                        actor,
                        Some(run.id),
                        AuditData::DecisionTaken(DecisionTaken { decision, reason }),
                    )
                    .step(child),
                );
                let status = change.status;
                transition.run = Some(change);
                return (Some(transition), Ok(status));
            }
            match decision {
                Decision::Retry => {
                    new_state.retry();
                    // A gate asked again starts afresh: earlier answers and escalation are void.
                    if step.is_gate() {
                        new_state.forget_answers();
                        transition.voided_votes =
                            snapshot.live_votes(&step.id).map(|vote| vote.id).collect();
                    }
                    // A group runs again only its children that failed or were interrupted:
                    // what succeeded never runs again.
                    for child in snapshot.children(&step.id) {
                        if child.status.is_failure() || child.status == StepStatus::Interrupted {
                            let mut again = child.clone();
                            again.retry();
                            if runbook.find_step(&child.step_id).is_some_and(Step::is_gate) {
                                again.forget_answers();
                                transition
                                    .voided_votes
                                    .extend(snapshot.live_votes(&child.step_id).map(|v| v.id));
                            }
                            transition.steps.push(again);
                        }
                    }
                }
                Decision::Skip if step.is_gate() => {
                    return (None, Err(EngineError::GateCannotBeSkipped { step: step.id.clone() }));
                }
                Decision::Skip => {
                    new_state.skip_by(actor);
                    // A skipped group's children that never started will never start: they
                    // read skipped, not pending, in a run that went on without them.
                    for child in snapshot.children(&step.id) {
                        if child.status == StepStatus::Pending {
                            let mut skipped = child.clone();
                            skipped.skip_by(actor);
                            transition.steps.push(skipped);
                        }
                    }
                }
                Decision::Rollback if run.phase == Phase::Main => change.phase = Phase::Rollback,
                Decision::Rollback => {
                    return (None, Err(EngineError::NothingToDecide { status: run.status }));
                }
                Decision::Abort => {
                    change.status = RunStatus::Failed;
                    change.finished_at = Some(now);
                    change.lease = LeaseChange::Release;
                }
            }
            transition.events.push(
                NewEvent::typed(
                    actor,
                    Some(run.id),
                    AuditData::DecisionTaken(DecisionTaken { decision, reason: reason.clone() }),
                )
                .step(&step.id),
            );
            if decision == Decision::Abort {
                transition.events.push(finished_event(run.id, RunStatus::Failed));
            }
            if new_state != *state {
                transition.steps.push(new_state);
            }
            let status = change.status;
            transition.run = Some(change);
            (Some(transition), Ok(status))
        })
        .await
    }

    /// Cancels an active run. A step that is running is stopped by its driver, which notices
    /// within a second.
    pub async fn cancel(&self, run_id: Uuid, actor: &Actor) -> Result<(), EngineError> {
        self.cancel_because(run_id, actor, None).await
    }

    /// [`Engine::cancel`] with the commander's reason, recorded (secrets masked) in the
    /// `run.cancelled` event.
    pub async fn cancel_because(
        &self,
        run_id: Uuid,
        actor: &Actor,
        reason: Option<&str>,
    ) -> Result<(), EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let reason =
                reason.map(|reason| CancelReason { reason: self.people_text(runbook, reason) });
            let run = &snapshot.run;
            if let Err(refusal) = policy::may_command(run, actor) {
                return (None, Err(refusal.into()));
            }
            if !run.status.is_active() {
                return (None, Err(EngineError::RunNotActive { status: run.status }));
            }
            let mut transition = transition_from(snapshot);
            let mut change = RunChange::from(run);
            change.status = RunStatus::Cancelled;
            change.finished_at = Some(now);
            transition.run = Some(change);
            for state in &snapshot.steps {
                // A running group ends with the run; its running children are stopped by their
                // driver and recorded `cancelled` as they end.
                let running_group = state.status == StepStatus::Running
                    && runbook.find_step(&state.step_id).is_some_and(Step::has_children);
                if (matches!(state.status, StepStatus::Waiting | StepStatus::Pending)
                    || running_group)
                    && state.phase == run.phase
                {
                    let mut cancelled = state.clone();
                    cancelled.cancel(now);
                    transition.steps.push(cancelled);
                }
            }
            transition.events.push(NewEvent::typed(
                actor,
                Some(run.id),
                AuditData::RunCancelled(reason),
            ));
            (Some(transition), Ok(()))
        })
        .await
    }
}

/// A retry or skip of one child of `group`: the child's new state, and the votes a gate
/// asked again no longer counts.
fn decide_child(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    group: &Step,
    child: &str,
    decision: Decision,
    actor: &Actor,
) -> Result<(StepState, Vec<Uuid>), EngineError> {
    if matches!(decision, Decision::Rollback | Decision::Abort) {
        return Err(EngineError::WholeRunDecision { decision });
    }
    let Some(state) = snapshot
        .children(&group.id)
        .find(|state| state.step_id == child)
        .filter(|state| state.status.is_failure() || state.status == StepStatus::Interrupted)
    else {
        // What someone typed is echoed back, within reason.
        let mut shown: String = child.chars().take(100).collect();
        if shown.len() < child.len() {
            shown.push('…');
        }
        return Err(EngineError::NotDecidable { step: shown, group: group.id.clone() });
    };
    let is_gate = runbook.find_step(child).is_some_and(Step::is_gate);
    let mut again = state.clone();
    let mut voided = Vec::new();
    match decision {
        Decision::Skip if is_gate => {
            return Err(EngineError::GateCannotBeSkipped { step: child.to_owned() });
        }
        Decision::Skip => again.skip_by(actor),
        _ => {
            again.retry();
            if is_gate {
                again.forget_answers();
                voided = snapshot.live_votes(child).map(|vote| vote.id).collect();
            }
        }
    }
    Ok((again, voided))
}
