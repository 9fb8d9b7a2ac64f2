//! Who may act on a run: the one place that says so. Pure: it reads a run's snapshot and its
//! runbook and answers yes, or no with the reason, for commands (`may_command`), answers to
//! gates and manual steps (`may_answer`, `may_approve`), notes (`is_participant`) and the
//! people a run is handed to (`account_needed`); `work_for` lists what a person may do now.
//!
//! The engine asks it before every change people make and turns a [`Refusal`] into its own
//! error; pages and the terminal ask it to show only what the engine would accept.

use crate::machine;
use crate::run::{
    Actor, Assignment, Decision, Phase, RunRecord, RunSnapshot, RunStatus, StepState, StepStatus,
};
use crate::runbook::{Approval, Runbook, Step, StepKind};

/// Why a person may not do what they asked. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A gate or manual step is answered by people holding its role (a gate's escalation role
    /// too, once it escalated). `role` is the one they would need.
    #[error("{person} does not hold role `{role}` in this run")]
    NotHolder { person: Actor, role: String },
    /// Separation of duties: the starter of a run does not approve its gates unless a gate
    /// allows it. Rejecting is always allowed.
    #[error("{person} started this run and may not approve its gates")]
    SelfApproval { person: Actor },
    /// One person, one answer per gate round.
    #[error("{person} has already answered gate `{step}`")]
    AlreadyAnswered { person: Actor, step: String },
    /// Only the commander (or the local operator) steers a run.
    #[error("only the commander ({commander}) may do this")]
    NotCommander { commander: Actor },
    /// Notes come from the run's participants (see [`is_participant`]).
    #[error("{person} takes no part in this run: only its commander and role holders add notes")]
    NotParticipant { person: Actor },
    /// Run roles and command go to accounts (`user:<name>`) only, or to the local operator
    /// naming themselves.
    #[error("`{0}` is not an existing, enabled user")]
    NotAUser(String),
    /// The step is not a gate or manual step: people do not answer it.
    #[error("step `{step}` is not answered by people")]
    NotAnswerable { step: String },
}

/// The local operator at a terminal (`local:<os user>`) is trusted like anyone with write
/// access to the database: the engine never stands in their way.
pub fn is_local(actor: &Actor) -> bool {
    actor.is_local()
}

/// May `actor` steer the run (decide, assign, hand over command, cancel)? The commander
/// may, and so may the local operator.
///
/// Errors: [`Refusal::NotCommander`], naming the commander.
pub fn may_command(run: &RunRecord, actor: &Actor) -> Result<(), Refusal> {
    if *actor == run.commander || is_local(actor) {
        Ok(())
    } else {
        Err(Refusal::NotCommander { commander: run.commander.clone() })
    }
}

/// Does `actor` take part in the run: its commander, its starter, a role holder, or the
/// local operator?
pub fn is_participant(snapshot: &RunSnapshot, actor: &Actor) -> bool {
    *actor == snapshot.run.commander
        || *actor == snapshot.run.started_by
        || snapshot.assignments.iter().any(|a| a.person == *actor)
        || is_local(actor)
}

/// May `actor` add a note to the run's timeline? Its participants may.
///
/// Errors: [`Refusal::NotParticipant`].
pub fn may_note(snapshot: &RunSnapshot, actor: &Actor) -> Result<(), Refusal> {
    if is_participant(snapshot, actor) {
        Ok(())
    } else {
        Err(Refusal::NotParticipant { person: actor.clone() })
    }
}

/// Which account must exist and be enabled before `actor` gives `person` a run role or
/// command: `Ok(Some(name))` for `user:<name>`, which only the store can confirm; `Ok(None)`
/// for the local operator naming themselves, who needs no account.
///
/// Errors: [`Refusal::NotAUser`] for anyone else (another local operator, `steady`, a typo
/// without `user:`).
pub fn account_needed<'p>(actor: &Actor, person: &'p Actor) -> Result<Option<&'p str>, Refusal> {
    if is_local(person) && person == actor {
        return Ok(None);
    }
    match person {
        Actor::User(name) => Ok(Some(name)),
        Actor::Local(_) | Actor::Steady => Err(Refusal::NotAUser(person.to_string())),
    }
}

/// May `person` answer `step` — reject a gate, or mark a manual step done or failed? They
/// must hold its role (for a gate, its role or the role it escalated to) and, at a gate, not
/// have answered it already. Whether the step is waiting, and still in time, is the run's
/// state, not who may act: the engine checks that first.
///
/// Errors: [`Refusal::NotHolder`], [`Refusal::AlreadyAnswered`], [`Refusal::NotAnswerable`].
pub fn may_answer(snapshot: &RunSnapshot, step: &Step, person: &Actor) -> Result<(), Refusal> {
    answer_rules(snapshot, step, person, Intent::Answer)
}

/// May `person` approve the gate `step`? What [`may_answer`] asks, and separation of duties:
/// the run's starter approves only gates with `allow_self_approval`.
///
/// Errors: those of [`may_answer`], and [`Refusal::SelfApproval`].
pub fn may_approve(snapshot: &RunSnapshot, step: &Step, person: &Actor) -> Result<(), Refusal> {
    answer_rules(snapshot, step, person, Intent::Approve)
}

/// Whether the answer is an approval, to which separation of duties applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Answer,
    Approve,
}

/// The rules of [`may_answer`] and [`may_approve`], in the order their refusals are reported.
fn answer_rules(
    snapshot: &RunSnapshot,
    step: &Step,
    person: &Actor,
    intent: Intent,
) -> Result<(), Refusal> {
    let state = snapshot.step(&step.id);
    match &step.kind {
        StepKind::Approval(gate) => {
            let eligible = snapshot.holds(person, &gate.role.name)
                || state
                    .and_then(|s| s.escalated_to.as_deref())
                    .is_some_and(|role| snapshot.holds(person, role));
            if !eligible {
                let role = answering_role(state, gate).to_owned();
                return Err(Refusal::NotHolder { person: person.clone(), role });
            }
            if intent == Intent::Approve
                && *person == snapshot.run.started_by
                && !gate.allow_self_approval
            {
                return Err(Refusal::SelfApproval { person: person.clone() });
            }
            if snapshot.live_votes(&step.id).any(|vote| vote.actor == *person) {
                return Err(Refusal::AlreadyAnswered {
                    person: person.clone(),
                    step: step.id.clone(),
                });
            }
            Ok(())
        }
        StepKind::Manual(manual) if snapshot.holds(person, &manual.role.name) => Ok(()),
        StepKind::Manual(manual) => {
            Err(Refusal::NotHolder { person: person.clone(), role: manual.role.name.clone() })
        }
        _ => Err(Refusal::NotAnswerable { step: step.id.clone() }),
    }
}

/// The role a gate is answered under now: the one it escalated to, or its own.
fn answering_role<'a>(state: Option<&'a StepState>, gate: &'a Approval) -> &'a str {
    state.and_then(|s| s.escalated_to.as_deref()).unwrap_or(&gate.role.name)
}

/// One thing a person may do now.
#[derive(Debug, Clone)]
pub enum Work<'a> {
    /// A waiting gate they may approve, or a waiting manual step they may complete; `role` is
    /// the role they answer it under (a gate's escalation role once it escalated).
    Answer { snapshot: &'a RunSnapshot, step: &'a Step, state: &'a StepState, role: &'a str },
    /// A run they command that needs their decision about `step`, with the decisions worth
    /// offering ([`decisions_offered`]).
    Decide { snapshot: &'a RunSnapshot, step: &'a Step, offered: Vec<Decision> },
    /// A waiting gate of a run they command that nobody in the run may approve enough to
    /// open: `missing` approvals are out of reach ([`approvals_out_of_reach`]) until the
    /// commander gives the role to someone who may.
    Unreachable { snapshot: &'a RunSnapshot, step: &'a Step, missing: u32 },
    /// A waiting gate in a role they hold that they may not approve (they started the run, or
    /// already answered): shown as waiting on others, never offered as theirs.
    WaitingOnOthers { snapshot: &'a RunSnapshot, step: &'a Step, refusal: Refusal },
}

/// What is `person`'s work among `runs` (each with the runbook version it follows): the
/// waiting gates they may approve and waiting manual steps they may complete, exactly as the
/// engine would accept them; the runs they command that need attention, or whose waiting gate
/// nobody may open; and the gates in their role they may not approve, as waiting on others.
/// In the order given, steps in sequence order within a run. Global roles (a responder, say) are the
/// caller's to check; a gate past its deadline is still listed until someone expires it.
pub fn work_for<'a>(
    person: &Actor,
    runs: impl IntoIterator<Item = (&'a Runbook, &'a RunSnapshot)>,
) -> Vec<Work<'a>> {
    let mut work = Vec::new();
    for (runbook, snapshot) in runs {
        match snapshot.run.status {
            // A branch of a group waits for people while its siblings run.
            RunStatus::Waiting | RunStatus::Running => {
                for state in snapshot.steps.iter().filter(|s| s.status == StepStatus::Waiting) {
                    let Some(step) = runbook.find_step(&state.step_id) else {
                        continue;
                    };
                    let (allowed, role) = match &step.kind {
                        StepKind::Approval(gate) => {
                            (may_approve(snapshot, step, person), answering_role(Some(state), gate))
                        }
                        StepKind::Manual(manual) => {
                            (may_answer(snapshot, step, person), manual.role.name.as_str())
                        }
                        _ => continue,
                    };
                    match allowed {
                        Ok(()) => work.push(Work::Answer { snapshot, step, state, role }),
                        Err(
                            refusal @ (Refusal::SelfApproval { .. }
                            | Refusal::AlreadyAnswered { .. }),
                        ) => work.push(Work::WaitingOnOthers { snapshot, step, refusal }),
                        Err(_) => {}
                    }
                    let missing = approvals_out_of_reach(snapshot, step);
                    if missing > 0 && may_command(&snapshot.run, person).is_ok() {
                        work.push(Work::Unreachable { snapshot, step, missing });
                    }
                }
            }
            RunStatus::NeedsAttention if may_command(&snapshot.run, person).is_ok() => {
                if let Some(step) = machine::attention_step(runbook, snapshot) {
                    let phase = snapshot.step(&step.id).map_or(Phase::Main, |state| state.phase);
                    let offered = decisions_offered(runbook, step, phase);
                    work.push(Work::Decide { snapshot, step, offered });
                }
            }
            _ => {}
        }
    }
    work
}

/// How many of gate `step`'s approvals nobody in the run could give: its quorum less the
/// approvals it has and the people who may still approve it, as [`may_approve`] says of each
/// role holder. `0` when the gate can still open, and for any other step.
pub fn approvals_out_of_reach(snapshot: &RunSnapshot, step: &Step) -> u32 {
    let StepKind::Approval(gate) = &step.kind else { return 0 };
    let given = snapshot.live_votes(&step.id).filter(|vote| vote.approve).count();
    let mut people: Vec<&Actor> = snapshot.assignments.iter().map(|a| &a.person).collect();
    people.sort();
    people.dedup();
    let able = people.iter().filter(|person| may_approve(snapshot, step, person).is_ok()).count();
    gate.approvals.saturating_sub(u32::try_from(given + able).unwrap_or(u32::MAX))
}

/// The gates a run of `runbook` started by `starter` with `assignments` could not open, each
/// with how many approvals nobody could give ([`approvals_out_of_reach`] on the run as it
/// would start): asked before a run starts, so that nobody starts towards a gate that only
/// its starter, whom separation of duties forbids, could approve. An escalation role counts
/// only once a gate escalates, so it is not counted here.
pub fn gates_out_of_reach<'r>(
    runbook: &'r Runbook,
    starter: &Actor,
    assignments: &[Assignment],
) -> Vec<(&'r Step, u32)> {
    let run = RunRecord::would_start(&runbook.name, starter);
    let snapshot = RunSnapshot::begun(run, vec![], assignments.to_vec());
    runbook
        .all_steps()
        .filter_map(|step| {
            let missing = approvals_out_of_reach(&snapshot, step);
            (missing > 0).then_some((step, missing))
        })
        .collect()
}

/// The decisions worth offering the commander at `step`, which failed in `phase`, in the order
/// shown: retry always; skip unless it is a gate (the engine refuses: skipping would run what
/// it guards unapproved); rollback only in the main phase of a runbook that has rollback
/// steps (otherwise there is nothing to roll back); abort always.
pub fn decisions_offered(runbook: &Runbook, step: &Step, phase: Phase) -> Vec<Decision> {
    Decision::ALL
        .iter()
        .copied()
        .filter(|decision| match decision {
            Decision::Skip => !step.is_gate(),
            Decision::Rollback => phase == Phase::Main && !runbook.rollback.is_empty(),
            Decision::Retry | Decision::Abort => true,
        })
        .collect()
}

/// Words for what a waiting step waits for, and who may answer it.
pub fn waiting_for(snapshot: &RunSnapshot, step: &Step) -> String {
    let state = snapshot.step(&step.id);
    let (role, what) = match &step.kind {
        StepKind::Approval(gate) => {
            let have = snapshot.live_votes(&step.id).filter(|v| v.approve).count();
            let role = answering_role(state, gate).to_owned();
            let self_note =
                if gate.allow_self_approval { "" } else { ", not the person who started the run" };
            (
                role.clone(),
                format!(
                    "{have} of {} approvals from people holding `{role}`{self_note}",
                    gate.approvals
                ),
            )
        }
        StepKind::Manual(manual) => (
            manual.role.name.clone(),
            format!("a person holding `{}` to mark it done or failed", manual.role.name),
        ),
        _ => (String::new(), "people".to_owned()),
    };
    let holders = holders_of(snapshot, &role);
    let holders = if holders.is_empty() {
        "nobody holds it yet".to_owned()
    } else {
        let names: Vec<String> = holders.iter().map(Actor::to_string).collect();
        format!("held by {}", names.join(", "))
    };
    let deadline = state
        .and_then(|s| s.deadline)
        .map(|deadline| format!("; times out at {}", deadline.format("%H:%M:%S UTC")))
        .unwrap_or_default();
    format!("{what} ({holders}){deadline}")
}

/// The people holding `role` in the run, for audit data and messages.
pub(crate) fn holders_of(snapshot: &RunSnapshot, role: &str) -> Vec<Actor> {
    snapshot.holders(role).into_iter().cloned().collect()
}

#[cfg(test)]
mod tests;
