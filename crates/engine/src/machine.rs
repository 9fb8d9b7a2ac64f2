//! The run state machine's decisions: given a runbook and what is stored about a run, what
//! must happen next. Pure: the executor carries the decisions out.

use crate::run::{
    Phase, RunMode, RunOrigin, RunSnapshot, RunStatus, StepState, StepStatus, Timestamp, Transition,
};
use crate::runbook::{OnFailure, Runbook, SequenceIndex, Step, StepKind};

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
    unattended(snapshot, decide(runbook, snapshot, now, 0).0)
}

/// [`next`], for a driver that keeps its [`Cursor`] into the run: it reads the sequence from
/// where the last decision stopped, not from the first step, and moves the cursor on.
pub fn next_from<'r>(
    runbook: &'r Runbook,
    snapshot: &RunSnapshot,
    now: Timestamp,
    cursor: &mut Cursor,
) -> Next<'r> {
    let phase = snapshot.run.phase;
    let from = if cursor.phase == phase { cursor.passed } else { 0 };
    let (next, reached) = decide(runbook, snapshot, now, from);
    *cursor = Cursor { phase, passed: reached };
    debug_assert!(
        same(&next, &decide(runbook, snapshot, now, 0).0),
        "a cursor skipped a step that is not passed: {next:?} from step {from}"
    );
    unattended(snapshot, next)
}

fn unattended<'r>(snapshot: &RunSnapshot, next: Next<'r>) -> Next<'r> {
    let run = &snapshot.run;
    let unattended = run.origin == RunOrigin::Verification
        || (run.origin == RunOrigin::Trigger && run.mode == RunMode::DryRun);
    match next {
        Next::Attention(_) if unattended => Next::Finish(RunStatus::Failed),
        next => next,
    }
}

/// How far a driver has read its run's sequence: the first `passed` steps of `phase` were
/// found passed over (done, skipped, or failed with `on_failure: continue`). They stay so until
/// a transition touches one of them ([`Cursor::after`]) or the snapshot is read anew (a new
/// cursor). Deciding at the 3,000th step then reads one step, not 3,000.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    phase: Phase,
    passed: usize,
}

impl Default for Cursor {
    /// Nothing known: the next decision reads the sequence from its first step.
    fn default() -> Cursor {
        Cursor { phase: Phase::Main, passed: 0 }
    }
}

impl Cursor {
    /// Forgets what `transition`, just applied to the snapshot, may have reopened: a step of the
    /// sequence before the cursor (a gate whose approvals were voided, say), or another phase.
    pub fn after(&mut self, runbook: &Runbook, transition: &Transition) {
        if transition.run.as_ref().is_some_and(|change| change.phase != self.phase) {
            *self = Cursor::default();
            return;
        }
        let touched = transition.steps.iter().filter(|state| state.parent.is_none());
        for state in touched {
            let position = if state.phase == self.phase {
                position(runbook, self.phase, &state.step_id).unwrap_or(0)
            } else {
                0
            };
            self.passed = self.passed.min(position);
        }
    }
}

/// Whether two decisions are the same: the same kind, about the same step.
fn same(a: &Next, b: &Next) -> bool {
    fn about<'n>(next: &Next<'n>) -> Option<&'n str> {
        match *next {
            Next::Start(step)
            | Next::Recover(step)
            | Next::Expire(step)
            | Next::Wait(step)
            | Next::Attention(step)
            | Next::Group(step) => Some(step.id.as_str()),
            Next::Finish(status) => Some(status.as_str()),
            Next::Idle | Next::EnterRollback => None,
        }
    }
    std::mem::discriminant(a) == std::mem::discriminant(b) && about(a) == about(b)
}

/// The decision, read from the sequence's step `from` on (those before it are known passed
/// over), and the position it was reached at: the steps before that are all passed over.
fn decide<'r>(
    runbook: &'r Runbook,
    snapshot: &RunSnapshot,
    now: Timestamp,
    from: usize,
) -> (Next<'r>, usize) {
    let run = &snapshot.run;
    if !run.status.is_active() || run.status == RunStatus::NeedsAttention {
        return (Next::Idle, from);
    }
    let steps = sequence(runbook, run.phase);
    for (position, step) in steps.iter().enumerate().skip(from) {
        let decided = |next| (next, position);
        let Some(state) = snapshot.step(&step.id) else { return decided(Next::Start(step)) };
        match state.status {
            status if status.is_passed() => continue,
            status if status.is_failure() => match step.on_failure {
                OnFailure::Continue => continue,
                OnFailure::Pause => return decided(Next::Attention(step)),
                OnFailure::Abort => return decided(Next::Finish(RunStatus::Failed)),
                OnFailure::Rollback if run.phase == Phase::Main => {
                    return decided(Next::EnterRollback);
                }
                OnFailure::Rollback => return decided(Next::Attention(step)),
            },
            StepStatus::Interrupted => return decided(Next::Attention(step)),
            StepStatus::Cancelled => return decided(Next::Finish(RunStatus::Cancelled)),
            // A group is `running` while its children are; each child has its own crash rule.
            StepStatus::Running if step.has_children() => return decided(Next::Group(step)),
            StepStatus::Running => return decided(Next::Recover(step)),
            StepStatus::Waiting if state.deadline.is_some_and(|deadline| deadline <= now) => {
                return decided(Next::Expire(step));
            }
            StepStatus::Waiting => return decided(Next::Wait(step)),
            _ => return decided(Next::Start(step)),
        }
    }
    let finished = match run.phase {
        Phase::Main => RunStatus::Succeeded,
        Phase::Rollback => RunStatus::RolledBack,
    };
    (Next::Finish(finished), steps.len())
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

/// Where step `step_id` sits in the sequence of `phase`, through the index built at parse.
pub fn position(runbook: &Runbook, phase: Phase, step_id: &str) -> Option<usize> {
    index(runbook, phase).position(sequence(runbook, phase), step_id)
}

fn index(runbook: &Runbook, phase: Phase) -> &SequenceIndex {
    match phase {
        Phase::Main => &runbook.steps_index,
        Phase::Rollback => &runbook.rollback_index,
    }
}

/// The approval gate a step runs behind, if any: the nearest gate before it in its sequence.
/// A branch or item runs behind the gate of its group (`step_id` is then the group's).
pub fn governing_gate<'r>(runbook: &'r Runbook, phase: Phase, step_id: &str) -> Option<&'r Step> {
    let position = position(runbook, phase, step_id)?;
    index(runbook, phase).gate_before(sequence(runbook, phase), position)
}

/// The steps a gate guards: those after it, up to the next gate.
pub fn guarded_steps<'r>(runbook: &'r Runbook, phase: Phase, gate_id: &str) -> &'r [Step] {
    let steps = sequence(runbook, phase);
    let Some(position) = position(runbook, phase, gate_id) else { return &[] };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Actor, RunRecord};

    const RUNBOOK: &str = r#"
name: failover
roles:
  approver: { description: Senior DBA }
steps:
  - id: check_lag
    run: ["true"]
  - id: go
    approval: { role: approver }
  - id: fence
    run: ["true"]
  - id: promote
    run: ["true"]
"#;

    /// A live run with `check_lag`, `go` and `fence` done and `promote` pending.
    fn three_steps_done(runbook: &Runbook) -> RunSnapshot {
        let run = RunRecord::would_start(&runbook.name, &Actor::user("carol"));
        let done = [StepStatus::Succeeded, StepStatus::Approved, StepStatus::Succeeded];
        let mut steps = StepState::all_pending(runbook);
        for (state, status) in steps.iter_mut().zip(done) {
            state.status = status;
        }
        RunSnapshot::begun(run, steps, vec![])
    }

    fn about(next: Next) -> String {
        format!("{next:?}").split('(').next().unwrap_or_default().to_owned()
            + match next {
                Next::Start(step) | Next::Wait(step) => &step.id,
                _ => "",
            }
    }

    #[test]
    fn a_drivers_cursor_reads_on_from_where_it_stopped_and_again_from_a_gate_reopened_behind_it() {
        let runbook = crate::parse(RUNBOOK).runbook.expect("the test runbook is valid");
        let mut snapshot = three_steps_done(&runbook);
        let now = chrono::Utc::now();
        let mut cursor = Cursor::default();

        assert_eq!(about(next_from(&runbook, &snapshot, now, &mut cursor)), "Startpromote");
        assert_eq!(cursor.passed, 3, "the three steps done are not read again");

        // The command `fence` approved now renders differently: its approvals are void and
        // the gate waits again, behind the cursor.
        let mut reopened = snapshot.step("go").cloned().expect("the gate's state");
        reopened.status = StepStatus::Waiting;
        let transition = Transition { steps: vec![reopened], ..Transition::default() };
        snapshot.apply(&transition, now);
        cursor.after(&runbook, &transition);

        assert_eq!(cursor.passed, 1);
        assert_eq!(about(next_from(&runbook, &snapshot, now, &mut cursor)), "Waitgo");
        assert_eq!(about(next(&runbook, &snapshot, now)), "Waitgo", "the same as reading it all");
    }

    #[test]
    fn a_cursor_kept_into_another_phase_is_not_used() {
        let runbook = crate::parse(RUNBOOK).runbook.expect("the test runbook is valid");
        let mut snapshot = three_steps_done(&runbook);
        let now = chrono::Utc::now();
        let mut cursor = Cursor::default();
        next_from(&runbook, &snapshot, now, &mut cursor);

        snapshot.run.phase = Phase::Rollback;
        // No rollback steps: the rollback is over at once, whatever the main cursor said.
        assert!(matches!(
            next_from(&runbook, &snapshot, now, &mut cursor),
            Next::Finish(RunStatus::RolledBack)
        ));
    }
}
