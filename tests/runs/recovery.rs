//! Steady itself failing: a driver that dies mid-step, leases, cancellation, stopping.

use std::time::Duration;

use steady_engine::engine::{DriveEnd, EngineError, Quiet, Then};
use steady_engine::run::{Answer, Decision, RunStatus, StepStatus};
use steady_engine::runner::Stop;
use tokio::sync::watch;

use crate::*;

stories!(
    a_step_with_side_effects_found_running_after_a_crash_waits_for_a_person,
    an_idempotent_step_found_running_after_a_crash_runs_again,
    cancelling_a_run_stops_its_running_step,
    a_driver_asked_to_stop_finishes_its_step_and_leaves_the_run_resumable,
    a_driver_whose_lease_is_gone_stops_and_records_nothing_more,
    a_run_started_at_a_terminal_is_driven_there_not_by_a_server_polling_for_work,
    a_gate_answered_at_the_terminal_is_driven_on_there,
);

/// Drives the run in a task and drops that task once `ledger` shows the step started: the
/// driver dies mid-step, as when its process is killed.
async fn die_mid_step(h: &Harness, run: uuid::Uuid, ledger: &str) {
    let engine_node = h.another_node("doomed").await;
    let task = tokio::spawn(async move {
        let (_keep, stop) = watch::channel(Stop::No);
        let _ = engine_node.engine.drive(run, &Quiet, stop).await;
    });
    while count_lines(ledger) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
}

const RISKY: &str = r#"
name: risky
steps:
  - id: promote
    run: echo ran >> LEDGER; test $(wc -l < LEDGER) -ge 2 || sleep 30
    timeout: 60s
    IDEMPOTENT
  - id: after
    run: ["true"]
    read_only: true
    timeout: 5s
"#;

async fn a_step_with_side_effects_found_running_after_a_crash_waits_for_a_person(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&RISKY.replace("LEDGER", &ledger).replace("IDEMPOTENT", "")).await;
    let run = h.start("risky", &[], &[]).await;
    die_mid_step(&h, run, &ledger).await;
    assert_eq!(h.step_status(run, "promote").await, StepStatus::Running);

    // Another node may not take the run over while the dead driver's lease lasts.
    let (_keep, stop) = watch::channel(Stop::No);
    let early = h.engine.drive(run, &Quiet, stop).await;
    assert!(matches!(early, Err(EngineError::LeaseHeld { .. })), "{early:?}");
    // The dead driver's one-second lease runs out (by the engine's clock).
    h.clock.advance(Duration::from_millis(1200));

    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(h.step_status(run, "promote").await, StepStatus::Interrupted);
    assert_eq!(count_lines(&ledger), 1, "the interrupted step was not run again");
    assert!(h.actions(run).await.contains(&"step.interrupted".to_owned()));

    // A person decides to run it again.
    h.engine.decide(run, &commander(), Decision::Retry).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(count_lines(&ledger), 2);
    h.verify_chain().await;
}

async fn an_idempotent_step_found_running_after_a_crash_runs_again(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&RISKY.replace("LEDGER", &ledger).replace("IDEMPOTENT", "idempotent: true")).await;
    let run = h.start("risky", &[], &[]).await;
    die_mid_step(&h, run, &ledger).await;
    // The dead driver's one-second lease runs out (by the engine's clock).
    h.clock.advance(Duration::from_millis(1200));
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(count_lines(&ledger), 2, "run once before the crash and once after");
    let snapshot = h.snapshot(run).await;
    let attempts: Vec<_> = snapshot
        .attempts
        .iter()
        .filter(|a| a.step_id == "promote")
        .map(|a| a.status.unwrap().as_str())
        .collect();
    assert_eq!(attempts, ["interrupted", "succeeded"]);
}

async fn cancelling_a_run_stops_its_running_step(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(
        &r#"
name: long
steps:
  - id: wait
    run: echo started >> LEDGER; sleep 30
    read_only: true
    timeout: 60s
  - id: never
    run: ["true"]
    read_only: true
    timeout: 5s
"#
        .replace("LEDGER", &ledger),
    )
    .await;
    let run = h.start("long", &[], &[]).await;
    let canceller = h.another_node("canceller").await;
    let cancel = async {
        while count_lines(&ledger) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        canceller.engine.cancel(run, &commander()).await.unwrap();
    };
    let started = std::time::Instant::now();
    let (status, ()) = tokio::join!(h.drive(run), cancel);
    assert_eq!(status, RunStatus::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(h.statuses(run).await, ["wait=cancelled", "never=cancelled"]);
}

async fn a_driver_asked_to_stop_finishes_its_step_and_leaves_the_run_resumable(h: Harness) {
    h.publish(
        r#"
name: stoppable
steps:
  - id: one
    sleep: 300ms
  - id: two
    run: ["true"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("stoppable", &[], &[]).await;
    let (stop_tx, stop) = watch::channel(Stop::No);
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(Stop::AfterStep).unwrap();
    };
    let (end, ()) = tokio::join!(h.engine.drive(run, &Quiet, stop), stopper);
    assert_eq!(end.unwrap(), DriveEnd::Stopped);
    assert_eq!(h.statuses(run).await, ["one=succeeded", "two=pending"]);
    assert_eq!(h.snapshot(run).await.run.status, RunStatus::Running);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
}

async fn a_driver_whose_lease_is_gone_stops_and_records_nothing_more(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(
        &r#"
name: stalled
steps:
  - id: promote
    run: echo ran >> LEDGER; sleep 30
    timeout: 60s
"#
        .replace("LEDGER", &ledger),
    )
    .await;
    let run = h.start("stalled", &[], &[]).await;
    let driving = async {
        let (_keep, stop) = watch::channel(Stop::No);
        h.engine.drive(run, &Quiet, stop).await
    };
    let taking_over = async {
        while count_lines(&ledger) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Another process found the lease expired and let it go (as after a stall).
        h.store.release_lease(run, "node-a").await.unwrap();
    };
    let started = std::time::Instant::now();
    let (driven, ()) = tokio::join!(driving, taking_over);
    assert!(matches!(driven, Err(EngineError::LeaseLost)), "{driven:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the step was stopped, not waited for");
    assert_eq!(
        h.step_status(run, "promote").await,
        StepStatus::Running,
        "left for the next driver to judge"
    );
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(h.step_status(run, "promote").await, StepStatus::Interrupted);
}

/// `steady run` beside a `steady serve` on the same database: the server polls for runs
/// without a driver, and must not take the terminal's run in the moment between its creation
/// and the terminal's first drive, or its steps would run with the server's environment and
/// secrets. The run is created under the terminal's lease; once that lease has expired (the
/// terminal died), the server may take it over like any other.
async fn a_run_started_at_a_terminal_is_driven_there_not_by_a_server_polling_for_work(h: Harness) {
    h.publish("name: here\nsteps:\n  - id: nap\n    sleep: 1ms\n").await;
    let server = h.another_node("serve").await;
    let start = StartRun {
        origin: steady_engine::run::RunOrigin::Person,
        runbook: "here".to_owned(),
        version: None,
        params: vec![],
        mode: RunMode::Live,
        actor: commander(),
        assignments: vec![],
    };
    let run = h.engine.start_run_here(start).await.unwrap();
    assert!(!server.store.runs_needing_a_driver(h.now()).await.unwrap().contains(&run));
    let (_keep, stop) = watch::channel(Stop::No);
    let taken = server.engine.drive(run, &Quiet, stop).await;
    assert!(
        matches!(&taken, Err(EngineError::LeaseHeld { owner, .. }) if owner == "node-a"),
        "{taken:?}"
    );
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
}

/// `steady run` asking its person at a gate: the approval lets the run go on, and the
/// terminal drives it next. The answer takes the terminal's lease in the same commit, so a
/// server polling the same database does not drive the rest first. Answered anywhere else,
/// the run is free for whichever driver comes, as before.
async fn a_gate_answered_at_the_terminal_is_driven_on_there(h: Harness) {
    h.publish(
        "name: gated
roles:
  approver: { description: Senior DBA }
steps:
  - id: go
    approval: { role: approver }
  - id: nap
    sleep: 1ms
",
    )
    .await;
    let server = h.another_node("serve").await;
    let run = h.start("gated", &[], &[("approver", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    let held = h.store.run(run).await.unwrap().unwrap().run.lease;
    assert_eq!(held, None, "a waiting run is held by nobody");

    h.engine.answer(run, "go", &alice(), Answer::Approve, None, Then::Here).await.unwrap();
    let held = h.store.run(run).await.unwrap().unwrap().run.lease;
    assert_eq!(held.map(|lease| lease.owner), Some("node-a".to_owned()));
    assert!(!server.store.runs_needing_a_driver(h.now()).await.unwrap().contains(&run));
    let (_keep, stop) = watch::channel(Stop::No);
    let taken = server.engine.drive(run, &Quiet, stop).await;
    assert!(matches!(&taken, Err(EngineError::LeaseHeld { .. })), "{taken:?}");
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
}
