//! The policy's rules as tables: who may approve, answer, command, add notes, and whose work
//! is what.

use super::*;
use crate::run::{Assignment, Phase, Vote};

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
    let run = RunRecord {
        status: RunStatus::Waiting,
        version: 1,
        ..RunRecord::would_start(&runbook.name, &person("carol"))
    };
    let mut steps = StepState::all_pending(runbook);
    steps.iter_mut().for_each(|state| state.status = StepStatus::Waiting);
    let assignments =
        [("approver", "alice"), ("approver", "carol"), ("lead", "dave"), ("operator", "olga")]
            .into_iter()
            .map(|(role, name)| Assignment { role: role.to_owned(), person: person(name) })
            .collect();
    RunSnapshot::begun(run, steps, assignments)
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
        assert_eq!(verdict(may_approve(&snapshot, step, &who)), approve, "{name} approves {id}");
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
                Work::Unreachable { step, missing, .. } => {
                    format!("unreachable {} short of {missing}", step.id)
                }
                Work::WaitingOnOthers { step, refusal, .. } => {
                    format!("others at {}: {refusal}", step.id)
                }
            })
            .collect()
    };
    // Carol started the run: `go` does not let her approve it, so it is not her work but
    // waits on others.
    assert_eq!(
        work("carol"),
        [
            "others at go: user:carol started this run and may not approve its gates",
            "answer own as approver",
            "decide about promote"
        ]
    );
    // Alice already answered `own`.
    assert_eq!(
        work("alice"),
        ["answer go as approver", "others at own: user:alice has already answered gate `own`"]
    );
    assert_eq!(work("olga"), ["answer fence as operator"]);
    assert!(work("bob").is_empty());
}

#[test]
fn a_gate_only_its_starter_could_approve_is_out_of_reach_and_the_commander_is_told() {
    let runbook = runbook();
    let mut snapshot = snapshot(&runbook);
    // Only Carol, the starter, holds `approver`: `go` forbids her, `own` allows her.
    snapshot.assignments.retain(|a| a.person == person("carol"));
    let table = [("go", 1), ("own", 0), ("fence", 0), ("promote", 0)];
    for (id, missing) in table {
        assert_eq!(approvals_out_of_reach(&snapshot, step(&runbook, id)), missing, "{id}");
    }
    let work: Vec<String> = work_for(&person("carol"), [(&runbook, &snapshot)])
        .into_iter()
        .filter_map(|work| match work {
            Work::Unreachable { step, missing, .. } => {
                Some(format!("{} short of {missing}", step.id))
            }
            _ => None,
        })
        .collect();
    assert_eq!(work, ["go short of 1"]);
    // Alice's approval given already counts towards the quorum.
    let mut answered = snapshot.clone();
    answered.votes.push(vote("go", "alice"));
    assert_eq!(approvals_out_of_reach(&answered, step(&runbook, "go")), 0);
}

#[test]
fn before_a_run_starts_the_gates_nobody_could_open_are_named() {
    let runbook = runbook();
    let holders = |pairs: &[(&str, &str)]| -> Vec<Assignment> {
        pairs
            .iter()
            .map(|(role, name)| Assignment { role: (*role).into(), person: person(name) })
            .collect()
    };
    let short = |starter: &str, assignments: &[Assignment]| -> Vec<String> {
        gates_out_of_reach(&runbook, &person(starter), assignments)
            .into_iter()
            .map(|(step, missing)| format!("{} {missing}", step.id))
            .collect()
    };
    let table: [(&str, Vec<Assignment>, Vec<&str>); 4] = [
        ("carol", holders(&[]), vec!["go 1", "own 1"]),
        ("carol", holders(&[("approver", "carol")]), vec!["go 1"]),
        ("carol", holders(&[("approver", "carol"), ("approver", "alice")]), vec![]),
        ("alice", holders(&[("approver", "carol")]), vec![]),
    ];
    for (starter, assignments, expected) in table {
        assert_eq!(short(starter, &assignments), expected, "{starter} {assignments:?}");
    }
}

#[test]
fn the_commander_is_offered_only_decisions_that_do_something() {
    let plain = runbook();
    let with_rollback =
        crate::parse(&format!("{RUNBOOK}rollback:\n  - id: unfence\n    run: [\"true\"]\n"))
            .runbook
            .expect("valid with a rollback step");
    let names = |runbook: &Runbook, id: &str, phase: Phase| -> Vec<&'static str> {
        decisions_offered(runbook, step(runbook, id), phase).iter().map(|d| d.as_str()).collect()
    };
    // A failed command: skip goes on; rollback only where there is something to roll back.
    assert_eq!(names(&plain, "promote", Phase::Main), ["retry", "skip", "abort"]);
    assert_eq!(
        names(&with_rollback, "promote", Phase::Main),
        ["retry", "skip", "rollback", "abort"]
    );
    // A gate is never skipped: that would run what it guards unapproved.
    assert_eq!(names(&with_rollback, "go", Phase::Main), ["retry", "rollback", "abort"]);
    // A failing rollback is not rolled back again.
    assert_eq!(names(&with_rollback, "promote", Phase::Rollback), ["retry", "skip", "abort"]);
}
