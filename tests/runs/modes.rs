//! Dry runs execute only what looks; drills run for real and say so.

use steady_engine::run::{RunMode, RunStatus, StepStatus};

use crate::*;

stories!(
    a_dry_run_executes_only_read_only_steps_and_checks,
    a_drill_runs_for_real_and_is_labelled_a_drill,
);

const PROCEDURE: &str = r#"
name: procedure
roles:
  approver: { description: Signs off }
  dba: { description: Fences }
params:
  cluster: { type: string, default: main }
steps:
  - id: look
    run: echo looked >> LEDGER
    read_only: true
    timeout: 5s
  - id: looked
    check: "steps.look.exit_code == 0"
  - id: fence
    manual: { role: dba, instructions: "Fence {{ params.cluster }}." }
  - id: go
    approval: { role: approver }
  - id: promote
    run: ["touch", "CREATED"]
    timeout: 5s
  - id: promoted
    check: "steps.promote.exit_code == 0"
  - id: settle
    sleep: 10m
"#;

async fn a_dry_run_executes_only_read_only_steps_and_checks(h: Harness) {
    let (ledger, created) = (h.path("ledger"), h.path("created"));
    h.publish(&PROCEDURE.replace("LEDGER", &ledger).replace("CREATED", &created)).await;
    let run = h.start_in(RunMode::DryRun, "procedure", &[], &[]).await;
    let started = std::time::Instant::now();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "a dry run does not sleep");
    assert_eq!(count_lines(&ledger), 1, "the read-only step ran");
    assert!(!std::path::Path::new(&created).exists(), "the step that would create a file did not");
    assert_eq!(
        h.statuses(run).await,
        [
            "look=succeeded",
            "looked=succeeded",
            "fence=would_run",
            "go=would_run",
            "promote=would_run",
            "promoted=would_run",
            "settle=would_run"
        ]
    );
    let snapshot = h.snapshot(run).await;
    let promote = snapshot.step("promote").unwrap().rendered.clone().unwrap().to_value();
    assert_eq!(promote["argv"], serde_json::json!(["touch", created]));
    let fence = snapshot.step("fence").unwrap().rendered.clone().unwrap().to_value();
    assert_eq!(fence["instructions"], "Fence main.");
    assert_eq!(snapshot.run.mode, RunMode::DryRun);
}

async fn a_drill_runs_for_real_and_is_labelled_a_drill(h: Harness) {
    h.publish(
        r#"
name: drill
steps:
  - id: act
    run: ["true"]
    timeout: 5s
"#,
    )
    .await;
    let run = h.start_in(RunMode::Drill, "drill", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let snapshot = h.snapshot(run).await;
    assert_eq!(
        (snapshot.run.mode, snapshot.step("act").unwrap().status),
        (RunMode::Drill, StepStatus::Succeeded)
    );
    let events = h.store.audit_events(&Default::default()).await.unwrap();
    assert!(events.iter().any(|e| e.action == "run.started" && e.data["mode"] == "drill"));
}
