//! Who may act on a run: the one place that says so. Pure: it reads a run's snapshot and its
//! runbook and answers yes, or no with the reason, for commands (`may_command`), answers to
//! gates and manual steps (`may_answer`, `may_approve`), notes (`is_participant`) and the
//! people a run is handed to (`account_needed`); `work_for` lists what a person may do now.
//!
//! The engine asks it before every change people make and turns a [`Refusal`] into its own
//! error; pages and the terminal ask it to show only what the engine would accept.

use crate::machine;
use crate::run::{Actor, RunRecord, RunSnapshot, RunStatus, StepState, StepStatus};
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
#[derive(Debug, Clone, Copy)]
pub enum Work<'a> {
    /// A waiting gate they may approve, or a waiting manual step they may complete; `role` is
    /// the role they answer it under (a gate's escalation role once it escalated).
    Answer { snapshot: &'a RunSnapshot, step: &'a Step, state: &'a StepState, role: &'a str },
    /// A run they command that needs their decision about `step`.
    Decide { snapshot: &'a RunSnapshot, step: &'a Step },
}

/// What is `person`'s work among `runs` (each with the runbook version it follows): the
/// waiting gates they may approve and waiting manual steps they may complete, exactly as the
/// engine would accept them, and the runs they command that need attention. In the order
/// given, steps in sequence order within a run. Global roles (a responder, say) are the
/// caller's to check; a gate past its deadline is still listed until someone expires it.
pub fn work_for<'a>(
    person: &Actor,
    runs: impl IntoIterator<Item = (&'a Runbook, &'a RunSnapshot)>,
) -> Vec<Work<'a>> {
    let mut work = Vec::new();
    for (runbook, snapshot) in runs {
        match snapshot.run.status {
            RunStatus::Waiting => {
                for state in snapshot.steps.iter().filter(|s| s.status == StepStatus::Waiting) {
                    let Some(step) = machine::sequence(runbook, state.phase)
                        .iter()
                        .find(|s| s.id == state.step_id)
                    else {
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
                    if allowed.is_ok() {
                        work.push(Work::Answer { snapshot, step, state, role });
                    }
                }
            }
            RunStatus::NeedsAttention if may_command(&snapshot.run, person).is_ok() => {
                if let Some(step) = machine::attention_step(runbook, snapshot) {
                    work.push(Work::Decide { snapshot, step });
                }
            }
            _ => {}
        }
    }
    work
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
mod tests {
    use super::*;
    use crate::run::{Assignment, Phase, RunMode, Vote};

    /// Carol starts the run and commands it; Alice and Carol approve; Dave leads, to whom a
    /// gate escalates; Olga operates; Bob holds nothing.
    const RUNBOOK: &str = r#"
name: failover
roles:
  approver: { description: Senior DBA }
  lead: { description: Escalation }
  operator: { description: Fences the primary }
steps:
  - id: go
    approval: { role: approver, timeout: 5m, on_timeout: { escalate: { role: lead, timeout: 10m } } }
  - id: own
    approval: { role: approver, allow_self_approval: true }
  - id: fence
    manual: { role: operator, instructions: "Power off the primary." }
  - id: promote
    run: ["true"]
"#;

    fn person(name: &str) -> Actor {
        Actor::user(name)
    }

    fn runbook() -> Runbook {
        crate::parse(RUNBOOK).runbook.expect("the test runbook is valid")
    }

    /// A run of `runbook` by Carol with every step waiting for people.
    fn snapshot(runbook: &Runbook) -> RunSnapshot {
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let run = RunRecord {
            id: uuid::Uuid::nil(),
            runbook: runbook.name.clone(),
            version: 1,
            sha256: String::new(),
            mode: RunMode::Live,
            status: RunStatus::Waiting,
            phase: Phase::Main,
            started_by: person("carol"),
            commander: person("carol"),
            params: Default::default(),
            lock_key: None,
            created_at: at,
            updated_at: at,
            finished_at: None,
            lease: None,
            revision: 0,
        };
        let steps = runbook
            .steps
            .iter()
            .enumerate()
            .map(|(position, step)| {
                let mut state = StepState::pending(&step.id, Phase::Main, position as u32);
                state.status = StepStatus::Waiting;
                state
            })
            .collect();
        let assignments =
            [("approver", "alice"), ("approver", "carol"), ("lead", "dave"), ("operator", "olga")]
                .into_iter()
                .map(|(role, name)| Assignment { role: role.to_owned(), person: person(name) })
                .collect();
        RunSnapshot { run, steps, attempts: vec![], votes: vec![], assignments, notes: vec![] }
    }

    fn vote(step: &str, name: &str) -> Vote {
        Vote {
            id: uuid::Uuid::now_v7(),
            step_id: step.to_owned(),
            actor: person(name),
            approve: true,
            comment: None,
            bound: crate::audit::Binding::new(step, &Default::default(), []),
            digest: String::new(),
            at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            void: false,
        }
    }

    fn step<'r>(runbook: &'r Runbook, id: &str) -> &'r Step {
        runbook.steps.iter().find(|step| step.id == id).expect("a step of the test runbook")
    }

    /// Each refusal as its message, `ok` for none.
    fn verdict(result: Result<(), Refusal>) -> String {
        result.map_or_else(|refusal| refusal.to_string(), |()| "ok".to_owned())
    }

    #[test]
    fn who_may_approve_and_reject_a_gate() {
        let runbook = runbook();
        let mut snapshot = snapshot(&runbook);
        snapshot.votes.push(vote("go", "alice"));
        let table = [
            // step, person, may_approve, may_answer (reject)
            (
                "go",
                "bob",
                "user:bob does not hold role `approver` in this run",
                "user:bob does not hold role `approver` in this run",
            ),
            ("go", "carol", "user:carol started this run and may not approve its gates", "ok"),
            (
                "go",
                "alice",
                "user:alice has already answered gate `go`",
                "user:alice has already answered gate `go`",
            ),
            (
                "go",
                "dave",
                "user:dave does not hold role `approver` in this run",
                "user:dave does not hold role `approver` in this run",
            ),
            ("own", "carol", "ok", "ok"),
            ("own", "alice", "ok", "ok"),
        ];
        for (id, name, approve, answer) in table {
            let (step, who) = (step(&runbook, id), person(name));
            assert_eq!(
                verdict(may_approve(&snapshot, step, &who)),
                approve,
                "{name} approves {id}"
            );
            assert_eq!(verdict(may_answer(&snapshot, step, &who)), answer, "{name} rejects {id}");
        }
    }

    #[test]
    fn an_escalated_gate_is_answered_by_either_role_and_refusals_name_the_escalation_role() {
        let runbook = runbook();
        let mut snapshot = snapshot(&runbook);
        snapshot.steps[0].escalated_to = Some("lead".to_owned());
        let go = step(&runbook, "go");
        assert_eq!(verdict(may_approve(&snapshot, go, &person("dave"))), "ok");
        assert_eq!(verdict(may_approve(&snapshot, go, &person("alice"))), "ok");
        assert_eq!(
            verdict(may_approve(&snapshot, go, &person("bob"))),
            "user:bob does not hold role `lead` in this run"
        );
    }

    #[test]
    fn a_void_vote_does_not_count_as_an_answer() {
        let runbook = runbook();
        let mut snapshot = snapshot(&runbook);
        snapshot.votes.push(Vote { void: true, ..vote("go", "alice") });
        assert_eq!(verdict(may_approve(&snapshot, step(&runbook, "go"), &person("alice"))), "ok");
    }

    #[test]
    fn a_manual_step_is_completed_by_its_role_holders_including_the_starter() {
        let runbook = runbook();
        let mut snapshot = snapshot(&runbook);
        snapshot.assignments.push(Assignment { role: "operator".into(), person: person("carol") });
        let fence = step(&runbook, "fence");
        let table = [
            ("olga", "ok"),
            ("carol", "ok"),
            ("alice", "user:alice does not hold role `operator` in this run"),
        ];
        for (name, expected) in table {
            assert_eq!(verdict(may_answer(&snapshot, fence, &person(name))), expected, "{name}");
        }
        assert_eq!(
            verdict(may_answer(&snapshot, step(&runbook, "promote"), &person("olga"))),
            "step `promote` is not answered by people"
        );
    }

    #[test]
    fn the_commander_and_the_local_operator_command_a_run() {
        let runbook = runbook();
        let snapshot = snapshot(&runbook);
        let table = [
            (person("carol"), "ok"),
            (Actor::local("root"), "ok"),
            (person("alice"), "only the commander (user:carol) may do this"),
            (Actor::steady(), "only the commander (user:carol) may do this"),
        ];
        for (actor, expected) in table {
            assert_eq!(verdict(may_command(&snapshot.run, &actor)), expected, "{actor}");
        }
    }

    #[test]
    fn participants_are_the_commander_the_starter_role_holders_and_the_local_operator() {
        let runbook = runbook();
        let mut snapshot = snapshot(&runbook);
        snapshot.run.commander = person("erin");
        let table = [
            (person("erin"), true),
            (person("carol"), true),
            (person("olga"), true),
            (Actor::local("root"), true),
            (person("bob"), false),
        ];
        for (actor, expected) in table {
            assert_eq!(is_participant(&snapshot, &actor), expected, "{actor}");
            assert_eq!(may_note(&snapshot, &actor).is_ok(), expected, "{actor}");
        }
        assert_eq!(
            verdict(may_note(&snapshot, &person("bob"))),
            "user:bob takes no part in this run: only its commander and role holders add notes"
        );
    }

    #[test]
    fn runs_are_handed_only_to_accounts_or_to_the_local_operator_themselves() {
        // The local operator `root` hands a run to each of these.
        let root = Actor::local("root");
        let table = [
            (person("alice"), Ok(Some("alice"))),
            (Actor::local("root"), Ok(None)),
            (Actor::local("eve"), Err(Refusal::NotAUser("local:eve".into()))),
            (Actor::steady(), Err(Refusal::NotAUser("steady".into()))),
        ];
        for (person, expected) in table {
            assert_eq!(account_needed(&root, &person), expected, "{person}");
        }
    }

    #[test]
    fn work_lists_only_what_the_engine_would_accept() {
        let runbook = runbook();
        let mut waiting = snapshot(&runbook);
        waiting.votes.push(vote("own", "alice"));
        let mut stuck = snapshot(&runbook);
        stuck.run.status = RunStatus::NeedsAttention;
        stuck.steps.iter_mut().for_each(|state| state.status = StepStatus::Succeeded);
        stuck.steps[3].status = StepStatus::Failed;
        let runs = [(&runbook, &waiting), (&runbook, &stuck)];
        let work = |name: &str| -> Vec<String> {
            work_for(&person(name), runs)
                .into_iter()
                .map(|work| match work {
                    Work::Answer { step, role, .. } => format!("answer {} as {role}", step.id),
                    Work::Decide { step, .. } => format!("decide about {}", step.id),
                })
                .collect()
        };
        // Carol started the run: `go` does not let her approve it, so it is not her work.
        assert_eq!(work("carol"), ["answer own as approver", "decide about promote"]);
        // Alice already answered `own`.
        assert_eq!(work("alice"), ["answer go as approver"]);
        assert_eq!(work("olga"), ["answer fence as operator"]);
        assert!(work("bob").is_empty());
    }
}
