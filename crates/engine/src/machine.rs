//! The run state machine's decisions: given a runbook and what is stored about a run, what
//! must happen next. Pure: the executor carries the decisions out.

use crate::run::{
    Phase, RunMode, RunOrigin, RunSnapshot, RunStatus, StepState, StepStatus, Timestamp,
};
use crate::runbook::{OnFailure, Runbook, Step, StepKind};

/// What a run needs next.
#[derive(Debug, Clone, Copy)]
pub enum Next<'r> {
    /// Nothing can happen without people: the run is finished or needs a decision.
    Idle,
    /// Begin this pending step.
    Start(&'r Step),
    /// This step was running when its driver died.
    Recover(&'r Step),
    /// This waiting gate is past its deadline.
    Expire(&'r Step),
    /// The run waits for people at a gate or manual step.
    Wait(&'r Step),
    /// A failed or interrupted step needs the commander's decision.
    Attention(&'r Step),
    /// A group or fan-out step is under way: its children need driving (see [`group_next`]).
    Group(&'r Step),
    /// A step whose `on_failure` is `rollback` failed: start the rollback sequence.
    EnterRollback,
    Finish(RunStatus),
}

/// Decides what a run needs next. A verification, and the dry run gathering a proposal's
/// facts, have nobody to decide for them: where another run would wait for its commander's
/// decision, they end `failed`.
pub fn next<'r>(runbook: &'r Runbook, snapshot: &RunSnapshot, now: Timestamp) -> Next<'r> {
    let run = &snapshot.run;
    let unattended = run.origin == RunOrigin::Verification
        || (run.origin == RunOrigin::Trigger && run.mode == RunMode::DryRun);
    match decide(runbook, snapshot, now) {
        Next::Attention(_) if unattended => Next::Finish(RunStatus::Failed),
        next => next,
    }
}

fn decide<'r>(runbook: &'r Runbook, snapshot: &RunSnapshot, now: Timestamp) -> Next<'r> {
    let run = &snapshot.run;
    if !run.status.is_active() || run.status == RunStatus::NeedsAttention {
        return Next::Idle;
    }
    // States are kept in sequence order, so the n-th state of the phase is the n-th step's;
    // the lookup by id is the fallback that keeps this correct if they ever are not.
    let mut states =
        snapshot.steps.iter().filter(|state| state.phase == run.phase && state.parent.is_none());
    for step in sequence(runbook, run.phase) {
        let state = match states.next() {
            Some(state) if state.step_id == step.id => Some(state),
            _ => snapshot.step(&step.id),
        };
        let Some(state) = state else { return Next::Start(step) };
        match state.status {
            status if status.is_passed() => continue,
            status if status.is_failure() => match step.on_failure {
                OnFailure::Continue => continue,
                OnFailure::Pause => return Next::Attention(step),
                OnFailure::Abort => return Next::Finish(RunStatus::Failed),
                OnFailure::Rollback if run.phase == Phase::Main => return Next::EnterRollback,
                OnFailure::Rollback => return Next::Attention(step),
            },
            StepStatus::Interrupted => return Next::Attention(step),
            StepStatus::Cancelled => return Next::Finish(RunStatus::Cancelled),
            // A group is `running` while its children are; each child has its own crash rule.
            StepStatus::Running if step.has_children() => return Next::Group(step),
            StepStatus::Running => return Next::Recover(step),
            StepStatus::Waiting if state.deadline.is_some_and(|deadline| deadline <= now) => {
                return Next::Expire(step);
            }
            StepStatus::Waiting => return Next::Wait(step),
            _ => return Next::Start(step),
        }
    }
    Next::Finish(match run.phase {
        Phase::Main => RunStatus::Succeeded,
        Phase::Rollback => RunStatus::RolledBack,
    })
}

/// What a group or fan-out step needs next, from its children's states.
#[derive(Debug, Default)]
pub struct GroupNext<'s> {
    /// Pending children to start now, in order, within `concurrency` and `max_failures`.
    pub start: Vec<&'s StepState>,
    /// Children found `running` that this driver does not run: their driver died.
    pub recover: Vec<&'s StepState>,
    /// Waiting children past their deadline.
    pub expire: Vec<&'s StepState>,
    /// A child waiting for people, if any.
    pub waiting: Option<&'s StepState>,
    /// Set when the group has ended: nothing runs, nothing may start, nothing waits.
    pub outcome: Option<StepStatus>,
}

/// Decides what a group or fan-out `step` needs next. `in_flight` says whether this driver
/// runs a child now. A group fails when more of its children failed than it allows (none for
/// a `parallel` group, whose branches may say `on_failure: continue`; `max_failures` for a
/// fan-out): then no new child starts, and the group ends once the running ones have. It
/// is `interrupted` when a child is and none failed beyond the limit.
pub fn group_next<'s>(
    runbook: &Runbook,
    step: &'s Step,
    snapshot: &'s RunSnapshot,
    in_flight: impl Fn(&str) -> bool,
    now: Timestamp,
) -> GroupNext<'s> {
    let limit = step.fan_out.as_ref().map_or(usize::MAX, |f| f.concurrency as usize);
    let counts_as_failure = |state: &StepState| fails_its_group(runbook, state);
    // One pass over the children, keeping only the first pending ones that could start: a
    // fan-out of thousands of items is looked at after every item's start and end.
    let mut next = GroupNext::default();
    let mut pending = Vec::new();
    let (mut total, mut running, mut failed, mut interrupted, mut cancelled, mut would_run) =
        (0, 0, 0, 0, 0, 0);
    for state in snapshot.children(&step.id) {
        total += 1;
        match state.status {
            StepStatus::Running if in_flight(&state.step_id) => running += 1,
            StepStatus::Running => next.recover.push(state),
            StepStatus::Waiting if state.deadline.is_some_and(|deadline| deadline <= now) => {
                next.expire.push(state)
            }
            StepStatus::Waiting => {
                next.waiting.get_or_insert(state);
            }
            StepStatus::Pending if pending.len() < limit => pending.push(state),
            StepStatus::Interrupted => interrupted += 1,
            StepStatus::Cancelled => cancelled += 1,
            StepStatus::WouldRun => would_run += 1,
            status if status.is_failure() && counts_as_failure(state) => failed += 1,
            _ => {}
        }
    }
    let allowed = step.fan_out.as_ref().map_or(0, |f| f.max_failures.allowed(total));
    if failed <= allowed && next.recover.is_empty() {
        pending.truncate(limit.saturating_sub(running));
        next.start = pending;
    }
    let busy = running > 0 || !next.start.is_empty() || !next.recover.is_empty();
    if busy || !next.expire.is_empty() {
        return next;
    }
    next.outcome = if failed > allowed {
        Some(StepStatus::Failed)
    } else if next.waiting.is_some() {
        None
    } else if interrupted > 0 {
        Some(StepStatus::Interrupted)
    } else if cancelled > 0 {
        Some(StepStatus::Cancelled)
    } else if total > 0 && would_run == total {
        Some(StepStatus::WouldRun)
    } else {
        Some(StepStatus::Succeeded)
    };
    next
}

/// Whether a failed child counts against its group: every item does, and every branch but
/// one that says `on_failure: continue`.
pub fn fails_its_group(runbook: &Runbook, child: &StepState) -> bool {
    child.status.is_failure()
        && runbook
            .find_step(&child.step_id)
            .is_none_or(|branch| branch.on_failure != OnFailure::Continue)
}

/// The step a run that needs attention is stuck on: the one the commander's decision answers.
pub fn attention_step<'r>(runbook: &'r Runbook, snapshot: &RunSnapshot) -> Option<&'r Step> {
    let mut probe = snapshot.clone();
    probe.run.status = RunStatus::Running;
    match next(runbook, &probe, Timestamp::MIN_UTC) {
        Next::Attention(step) => Some(step),
        _ => None,
    }
}

/// The steps of one phase, in order.
pub fn sequence(runbook: &Runbook, phase: Phase) -> &[Step] {
    match phase {
        Phase::Main => &runbook.steps,
        Phase::Rollback => &runbook.rollback,
    }
}

/// The approval gate a step runs behind, if any: the nearest gate before it in its sequence.
/// A branch or item runs behind the gate of its group (`step_id` is then the group's).
pub fn governing_gate<'r>(runbook: &'r Runbook, phase: Phase, step_id: &str) -> Option<&'r Step> {
    let steps = sequence(runbook, phase);
    let position = steps.iter().position(|step| step.id == step_id)?;
    steps[..position].iter().rev().find(|step| step.is_gate())
}

/// The steps a gate guards: those after it, up to the next gate.
pub fn guarded_steps<'r>(runbook: &'r Runbook, phase: Phase, gate_id: &str) -> &'r [Step] {
    let steps = sequence(runbook, phase);
    let Some(position) = steps.iter().position(|step| step.id == gate_id) else { return &[] };
    let rest = &steps[position + 1..];
    let end = rest.iter().position(Step::is_gate).unwrap_or(rest.len());
    &rest[..end]
}

/// Steps that are safe to run again after their driver died mid-way.
pub fn safe_to_repeat(step: &Step) -> bool {
    step.read_only
        || step.idempotent
        || matches!(step.kind, StepKind::Check(_) | StepKind::Sleep(_))
}
