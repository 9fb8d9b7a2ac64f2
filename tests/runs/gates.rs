//! Approval gates and manual steps: people, roles and separation of duties.

use steady_engine::engine::{EngineError, Then};
use steady_engine::run::{Completion, Decision, RoleChange, RunStatus, StepStatus};

use crate::*;

stories!(
    the_failover_story_needs_a_role_holder_other_than_the_starter,
    a_quorum_of_two_needs_two_distinct_people,
    one_rejection_ends_the_gate_and_the_rollback_runs,
    a_gate_past_its_timeout_refuses_a_late_approval,
    an_unanswered_gate_escalates_to_another_role,
    an_approval_is_void_when_the_guarded_command_renders_differently_after_a_retry,
    manual_steps_are_answered_by_role_holders_with_a_note,
    a_gate_is_never_skipped_and_a_retried_gate_starts_afresh,
);

const FAILOVER: &str = r#"
name: failover
roles:
  approver: { description: Senior DBA }
  operator: { description: Performs the promotion }
params:
  cluster: { type: string, required: true }
steps:
  - id: healthy
    run: ["true"]
    read_only: true
    timeout: 5s
  - id: go
    approval: { role: approver, prompt: "Promote {{ params.cluster }}?" }
  - id: promote
    run: echo "promoted {{ params.cluster }}" >> LEDGER
    timeout: 5s
"#;

async fn the_failover_story_needs_a_role_holder_other_than_the_starter(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&FAILOVER.replace("LEDGER", &ledger)).await;
    let starter = commander();
    let run = h
        .start(
            "failover",
            &[("cluster", "main")],
            &[("approver", &alice()), ("approver", &starter)],
        )
        .await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    assert_eq!(h.statuses(run).await, ["healthy=succeeded", "go=waiting", "promote=pending"]);

    let outsider = h.engine.approve(run, "go", &bob(), None).await;
    assert!(matches!(outsider, Err(EngineError::NotEligible { .. })), "{outsider:?}");
    let self_approval = h.engine.approve(run, "go", &starter, None).await;
    assert!(matches!(self_approval, Err(EngineError::SelfApproval { .. })), "{self_approval:?}");
    assert_eq!(count_lines(&ledger), 0, "nothing ran while the gate was closed");

    let status = h.engine.approve(run, "go", &alice(), Some("lag is zero, go")).await.unwrap();
    assert_eq!(status, StepStatus::Approved);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "promoted main\n");
    let snapshot = h.snapshot(run).await;
    let vote = &snapshot.votes[0];
    assert_eq!(
        (vote.actor.to_string().as_str(), vote.comment.as_deref()),
        ("user:alice", Some("lag is zero, go"))
    );
    let actions = h.actions(run).await;
    assert!(actions.contains(&"approval.granted".to_owned()));
    h.verify_chain().await;
}

async fn a_quorum_of_two_needs_two_distinct_people(h: Harness) {
    h.publish(
        r#"
name: quorum
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, approvals: 2 }
  - id: done
    check: "steps.go.approved_by | length == 2"
"#,
    )
    .await;
    let run = h.start("quorum", &[], &[("approver", &alice()), ("approver", &bob())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);

    // The same person approving twice at the same moment counts once.
    let alice = alice();
    let (first, second) = tokio::join!(
        h.engine.approve(run, "go", &alice, None),
        h.engine.approve(run, "go", &alice, None),
    );
    let answers = [first, second];
    assert_eq!(
        answers.iter().filter(|a| matches!(a, Ok(StepStatus::Waiting))).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| matches!(a, Err(EngineError::AlreadyAnswered { .. }))).count(),
        1
    );
    assert_eq!(h.step_status(run, "go").await, StepStatus::Waiting);

    assert_eq!(h.engine.approve(run, "go", &bob(), None).await.unwrap(), StepStatus::Approved);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
}

async fn one_rejection_ends_the_gate_and_the_rollback_runs(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(
        &r#"
name: rejected
roles:
  approver: { description: Signs off }
steps:
  - id: drain
    run: echo drained >> LEDGER
    idempotent: true
    timeout: 5s
  - id: go
    approval: { role: approver, approvals: 2 }
    on_failure: rollback
  - id: promote
    run: echo promoted >> LEDGER
    timeout: 5s
rollback:
  - id: undrain
    run: echo undrained >> LEDGER
    idempotent: true
    timeout: 5s
"#
        .replace("LEDGER", &ledger),
    )
    .await;
    let run = h.start("rejected", &[], &[("approver", &alice()), ("approver", &bob())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine.approve(run, "go", &alice(), None).await.unwrap();
    assert_eq!(
        h.engine.reject(run, "go", &bob(), Some("lag too high")).await.unwrap(),
        StepStatus::Rejected
    );
    assert_eq!(h.drive(run).await, RunStatus::RolledBack);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "drained\nundrained\n");
    assert_eq!(
        h.statuses(run).await,
        ["drain=succeeded", "go=rejected", "promote=pending", "undrain=succeeded"]
    );
}

async fn a_gate_past_its_timeout_refuses_a_late_approval(h: Harness) {
    h.publish(
        r#"
name: slow
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, timeout: 30m }
  - id: after
    run: ["true"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("slow", &[], &[("approver", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    // Half an hour and a minute later, by the engine's clock: nobody waits for it here.
    h.clock.advance(std::time::Duration::from_secs(31 * 60));
    let late = h.engine.approve(run, "go", &alice(), None).await;
    assert!(matches!(late, Err(EngineError::GateTimedOut { .. })), "{late:?}");
    assert_eq!(h.step_status(run, "go").await, StepStatus::TimedOut);
    let again = h.engine.approve(run, "go", &alice(), None).await;
    assert!(matches!(again, Err(EngineError::GateTimedOut { .. })), "{again:?}");
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert!(h.actions(run).await.contains(&"gate.timed_out".to_owned()));
}

async fn an_unanswered_gate_escalates_to_another_role(h: Harness) {
    h.publish(r#"
name: escalating
roles:
  approver: { description: On-call DBA }
  lead: { description: Engineering lead }
steps:
  - id: go
    approval: { role: approver, timeout: 30m, on_timeout: { escalate: { role: lead, timeout: 10m } } }
"#).await;
    let run = h.start("escalating", &[], &[("approver", &alice()), ("lead", &bob())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    // Nobody answers for half an hour (by the engine's clock).
    h.clock.advance(std::time::Duration::from_secs(31 * 60));
    // The driver that finds the gate past its deadline escalates it.
    let due = h.store.runs_needing_a_driver(h.now()).await.unwrap();
    assert_eq!(due, [run]);
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    let snapshot = h.snapshot(run).await;
    assert_eq!(snapshot.step("go").unwrap().escalated_to.as_deref(), Some("lead"));
    assert!(h.actions(run).await.contains(&"gate.escalated".to_owned()));
    assert_eq!(h.engine.approve(run, "go", &bob(), None).await.unwrap(), StepStatus::Approved);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
}

async fn an_approval_is_void_when_the_guarded_command_renders_differently_after_a_retry(
    h: Harness,
) {
    let ledger = h.path("ledger");
    let flag = h.path("flag");
    h.publish(
        &r#"
name: bound
roles:
  approver: { description: Signs off }
  operator: { description: Runs the promotion }
steps:
  - id: go
    approval: { role: approver }
  - id: promote
    run: echo "{{ roles.operator }}" >> LEDGER && test -e FLAG
    timeout: 5s
"#
        .replace("LEDGER", &ledger)
        .replace("FLAG", &flag),
    )
    .await;
    let run = h.start("bound", &[], &[("approver", &alice()), ("operator", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine.approve(run, "go", &alice(), Some("alice promotes")).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(count_lines(&ledger), 1);

    // The commander hands the promotion to bob and retries: not what alice approved.
    h.engine.assign(run, &commander(), "operator", &alice(), RoleChange::Unassign).await.unwrap();
    h.engine.assign(run, &commander(), "operator", &bob(), RoleChange::Assign).await.unwrap();
    h.engine.decide(run, &commander(), Decision::Retry).await.unwrap();
    std::fs::write(&flag, "").unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    assert_eq!(count_lines(&ledger), 1, "the changed command did not run on a stale approval");
    let snapshot = h.snapshot(run).await;
    assert!(snapshot.votes[0].void);
    assert_eq!(snapshot.step("go").unwrap().status, StepStatus::Waiting);
    assert!(h.actions(run).await.contains(&"approval.voided".to_owned()));

    h.engine.approve(run, "go", &alice(), Some("bob promotes")).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "user:alice\nuser:bob\n");
}

async fn manual_steps_are_answered_by_role_holders_with_a_note(h: Harness) {
    h.publish(
        r#"
name: manual
roles:
  dba: { description: Fences the primary }
steps:
  - id: fence
    manual: { role: dba, instructions: "Power off the primary." }
  - id: noted
    check: "steps.fence.note == 'powered off at 03:12'"
  - id: confirm
    manual: { role: dba, instructions: "Confirm nothing writes." }
    on_failure: abort
"#,
    )
    .await;
    let run = h.start("manual", &[], &[("dba", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    let refused = h
        .engine
        .complete_manual(run, "fence", &bob(), Completion::Done, None, Then::AnyDriver)
        .await;
    assert!(matches!(refused, Err(EngineError::NotEligible { .. })), "{refused:?}");
    h.engine
        .complete_manual(
            run,
            "fence",
            &alice(),
            Completion::Done,
            Some("powered off at 03:12"),
            Then::AnyDriver,
        )
        .await
        .unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine
        .complete_manual(
            run,
            "confirm",
            &alice(),
            Completion::Failed,
            Some("still writing"),
            Then::AnyDriver,
        )
        .await
        .unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Failed);
    assert_eq!(h.statuses(run).await, ["fence=succeeded", "noted=succeeded", "confirm=failed"]);
}

async fn a_gate_is_never_skipped_and_a_retried_gate_starts_afresh(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(
        &r#"
name: asked-again
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, approvals: 2 }
  - id: promote
    run: echo promoted >> LEDGER
    timeout: 5s
"#
        .replace("LEDGER", &ledger),
    )
    .await;
    let run = h.start("asked-again", &[], &[("approver", &alice()), ("approver", &bob())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine.approve(run, "go", &alice(), None).await.unwrap();
    h.engine.reject(run, "go", &bob(), Some("not yet")).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);

    // Skipping the gate would run what it guards unapproved.
    let skipped = h.engine.decide(run, &commander(), Decision::Skip).await;
    assert!(matches!(skipped, Err(EngineError::GateCannotBeSkipped { .. })), "{skipped:?}");

    // Asked again, earlier answers no longer count: both answer anew.
    h.engine.decide(run, &commander(), Decision::Retry).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    assert_eq!(
        h.engine.approve(run, "go", &bob(), Some("now")).await.unwrap(),
        StepStatus::Waiting
    );
    assert_eq!(h.engine.approve(run, "go", &alice(), None).await.unwrap(), StepStatus::Approved);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(count_lines(&ledger), 1);
    let votes = h.snapshot(run).await.votes;
    assert_eq!(votes.iter().filter(|v| v.void).count(), 2);
}
