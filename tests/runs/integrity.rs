//! Integrity under real use: what authors, commanders, admins and odd processes did to runs
//! in production, and what Steady now does instead.

use steady_engine::engine::{EngineError, StartRun};
use steady_engine::run::{RunMode, RunStatus};

use crate::*;

stories!(a_dry_run_that_needs_attention_never_blocks_a_live_run,);

const LOCKED: &str = r#"
name: failover
lock: "pg/{{ params.cluster }}"
params:
  cluster: { type: string, default: main }
steps:
  - id: standby_ok
    run: ["false"]
    read_only: true
    timeout: 5s
"#;

async fn a_dry_run_that_needs_attention_never_blocks_a_live_run(h: Harness) {
    h.publish(LOCKED).await;
    let dry = h.start_in(RunMode::DryRun, "failover", &[], &[]).await;
    assert_eq!(h.drive(dry).await, RunStatus::NeedsAttention);
    assert_eq!(h.snapshot(dry).await.run.lock_key, None, "a dry run takes no lock");
    let live = h.start("failover", &[], &[]).await;
    assert_eq!(h.snapshot(live).await.run.lock_key.as_deref(), Some("pg/main"));
    // And a live run holding the lock does not stop a rehearsal on paper either.
    h.start_in(RunMode::DryRun, "failover", &[], &[]).await;
    let second = h
        .engine
        .start_run(StartRun {
            runbook: "failover".into(),
            version: None,
            params: vec![],
            mode: RunMode::Live,
            actor: commander(),
            assignments: vec![],
        })
        .await;
    match second {
        Err(EngineError::LockHeld { run_id, .. }) => assert_eq!(run_id, live),
        other => panic!("a second live run must be refused naming the first: {other:?}"),
    }
}
