//! Integrity under real use: what authors, commanders, admins and odd processes did to runs
//! in production, and what Steady now does instead.

use steady_engine::engine::{EngineError, FolderFile, StartRun};
use steady_engine::run::{Assignment, RoleChange, RunMode, RunStatus, StepStatus};
use steady_engine::store::StoreError;

use crate::*;

stories!(
    a_restart_never_turns_an_older_file_back_into_the_latest_version,
    a_dry_run_that_needs_attention_never_blocks_a_live_run,
    only_existing_enabled_users_hold_roles_or_command_and_an_admin_takes_any_run,
    disabling_revokes_tokens_for_good_and_never_locks_the_admins_out,
    a_step_printing_nul_bytes_is_stored_and_says_so,
    a_result_the_database_refuses_fails_the_step_once,
    a_late_approval_leaves_the_run_needing_a_decision_not_running_without_a_driver,
);

const V1: &str = "name: restart\nsteps:\n  - id: nap\n    sleep: 1ms\n";
const V2: &str = "name: restart\ntitle: Fixed by the author\nsteps:\n  - id: nap\n    sleep: 2ms\n";
const V3: &str = "name: restart\ntitle: Newer in the folder\nsteps:\n  - id: nap\n    sleep: 3ms\n";

async fn a_restart_never_turns_an_older_file_back_into_the_latest_version(h: Harness) {
    let folder = Actor::local("serve");
    assert!(matches!(
        h.engine.publish_from_folder(V1, None, &folder).await.unwrap(),
        FolderFile::Published(version) if version.version == 1
    ));
    h.publish(V2).await;
    // The server restarts with the old file in its folder.
    let restarted = h.engine.publish_from_folder(V1, None, &folder).await.unwrap();
    assert_eq!(restarted, FolderFile::Behind { name: "restart".into(), file: 1, latest: 2 });
    let latest = h.store.runbook_version("restart", None).await.unwrap().unwrap();
    assert_eq!(latest.version, 2, "the author's version stays the latest");
    assert!(matches!(
        h.engine.publish_from_folder(V2, None, &folder).await.unwrap(),
        FolderFile::Latest(version) if version.version == 2
    ));
    assert!(matches!(
        h.engine.publish_from_folder(V3, None, &folder).await.unwrap(),
        FolderFile::Published(version) if version.version == 3
    ));
    assert_eq!(h.store.runbook_versions("restart").await.unwrap().len(), 3);
}

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
            origin: steady_engine::run::RunOrigin::Person,
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

const GATED: &str = r#"
name: gated
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver }
"#;

async fn only_existing_enabled_users_hold_roles_or_command_and_an_admin_takes_any_run(h: Harness) {
    h.publish(GATED).await;
    for typed in ["alx", "<script>", "steady", "local:mallory"] {
        let start = h
            .engine
            .start_run(StartRun {
                origin: steady_engine::run::RunOrigin::Person,
                runbook: "gated".into(),
                version: None,
                params: vec![],
                mode: RunMode::Live,
                actor: commander(),
                assignments: vec![Assignment {
                    role: "approver".into(),
                    person: Actor::person(typed),
                }],
            })
            .await;
        match start {
            Err(error @ EngineError::NoSuchPerson(_)) => {
                assert!(error.to_string().contains(&format!("`{typed}`")), "{error}")
            }
            other => panic!("`{typed}` must be refused: {other:?}"),
        }
    }
    let run = h.start("gated", &[], &[("approver", &alice())]).await;
    let typo = h
        .engine
        .assign(run, &commander(), "approver", &Actor::person("bbo"), RoleChange::Assign)
        .await;
    assert!(matches!(typo, Err(EngineError::NoSuchPerson(name)) if name == "bbo"));
    let handed = h.engine.transfer_command(run, &commander(), &Actor::person("bbo")).await;
    assert!(matches!(handed, Err(EngineError::NoSuchPerson(name)) if name == "bbo"));
    assert_eq!(h.snapshot(run).await.run.commander, commander(), "nobody got a typo's run");

    // A disabled user is nobody to hand things to; taking a role away is always possible.
    h.accounts().set_disabled("bob", true, &Actor::local("ops")).await.unwrap();
    let disabled = h.engine.assign(run, &commander(), "approver", &bob(), RoleChange::Assign).await;
    assert!(matches!(disabled, Err(EngineError::NoSuchPerson(name)) if name == "bob"));
    h.engine.assign(run, &commander(), "approver", &alice(), RoleChange::Unassign).await.unwrap();

    // The commander is gone: an admin takes the run, audited as a transfer by the admin.
    h.add_user("ada").await;
    let ada = Actor::user("ada");
    h.engine.take_command(run, &ada).await.unwrap();
    assert_eq!(h.snapshot(run).await.run.commander, ada);
    let events = h
        .store
        .audit_events(&steady_engine::store::AuditFilter {
            run_id: Some(run),
            action: Some("run.commander_transferred".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, ada);
    assert_eq!(events[0].data["taken_by_admin"], true);
    assert_eq!(events[0].data["from"], "user:carol");
    h.engine.cancel(run, &ada).await.unwrap();
    let finished = h.engine.take_command(run, &ada).await;
    assert!(matches!(finished, Err(EngineError::RunNotActive { .. })), "{finished:?}");
    h.verify_chain().await;
}

async fn disabling_revokes_tokens_for_good_and_never_locks_the_admins_out(h: Harness) {
    use steady_engine::accounts::ApiToken;
    let ops = Actor::local("ops");
    let token = ApiToken {
        id: uuid::Uuid::now_v7(),
        label: "ci".into(),
        user: "bob".into(),
        hash: "hash-of-bobs-secret".into(),
        created_at: steady_engine::engine::now(),
        revoked_at: None,
    };
    h.accounts().create_token(&token, &ops).await.unwrap();
    assert!(h.accounts().set_disabled("bob", true, &ops).await.unwrap());
    assert!(h.accounts().set_disabled("bob", false, &ops).await.unwrap());
    let after = h.accounts().token_by_hash("hash-of-bobs-secret").await.unwrap().unwrap();
    assert!(after.revoked_at.is_some(), "re-enabling bob revives none of his tokens");

    let admin = |name: &str| User {
        name: name.to_owned(),
        roles: vec![GlobalRole::Admin],
        password_hash: None,
        disabled: false,
        created_at: steady_engine::engine::now(),
    };
    h.accounts().create_user(&admin("ada"), &ops).await.unwrap();
    let own = h.accounts().set_disabled("ada", true, &Actor::user("ada")).await;
    assert!(
        matches!(own, Err(StoreError::LockOut(ref reason)) if reason.contains("your own")),
        "{own:?}"
    );
    let last = h.accounts().set_disabled("ada", true, &ops).await;
    assert!(
        matches!(last, Err(StoreError::LockOut(ref reason)) if reason.contains("last enabled admin")),
        "{last:?}"
    );
    h.accounts().create_user(&admin("eve"), &ops).await.unwrap();
    assert!(h.accounts().set_disabled("ada", true, &Actor::user("eve")).await.unwrap());
    assert!(h.accounts().user("ada").await.unwrap().unwrap().disabled);
    h.verify_chain().await;
}

async fn a_step_printing_nul_bytes_is_stored_and_says_so(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&format!(
        r#"
name: binary
steps:
  - id: dump
    run: echo ran >> {ledger} && printf 'a\000b'
    read_only: true
    timeout: 5s
"#
    ))
    .await;
    let run = h.start("binary", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(count_lines(&ledger), 1, "the step ran once");
    let snapshot = h.snapshot(run).await;
    let attempt = snapshot.last_attempt("dump").unwrap();
    assert_eq!(attempt.stdout, "a\u{2400}b");
    assert_eq!(attempt.error.as_deref(), Some("output contained NUL bytes, shown as \u{2400}"));
    // People's text too.
    h.engine.add_note(run, &commander(), None, "pasted \0 from a terminal").await.unwrap();
    assert_eq!(h.snapshot(run).await.notes[0].text, "pasted \u{2400} from a terminal");
    h.verify_chain().await;
}

async fn a_result_the_database_refuses_fails_the_step_once(h: Harness) {
    let statements: &[&str] = match h.raw {
        Raw::Sqlite(_) => &[
            "CREATE TRIGGER refuse_poison_insert BEFORE INSERT ON step_attempts WHEN NEW.stdout LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
            "CREATE TRIGGER refuse_poison_update BEFORE UPDATE ON step_attempts WHEN NEW.stdout LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
        ],
        Raw::Postgres(_) => &[
            "ALTER TABLE step_attempts ADD CONSTRAINT refuse_poison CHECK (stdout NOT LIKE '%poison%')",
        ],
    };
    for statement in statements {
        h.raw.execute(statement).await.expect("install the refusal");
    }
    let ledger = h.path("ledger");
    h.publish(&format!(
        r#"
name: poisoned
steps:
  - id: look
    run: echo ran >> {ledger} && echo poison
    read_only: true
    timeout: 5s
"#
    ))
    .await;
    let run = h.start("poisoned", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(h.step_status(run, "look").await, StepStatus::Failed);
    let snapshot = h.snapshot(run).await;
    let error = snapshot.last_attempt("look").unwrap().error.clone().unwrap_or_default();
    assert!(error.starts_with("the database refused to record this step: "), "{error}");
    // Nothing drives it again by itself: it waits for the commander.
    assert!(h.store.runs_needing_a_driver(steady_engine::engine::now()).await.unwrap().is_empty());
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(count_lines(&ledger), 1, "the step ran once");
}

async fn a_late_approval_leaves_the_run_needing_a_decision_not_running_without_a_driver(
    h: Harness,
) {
    h.publish(
        r#"
name: slow
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, timeout: 300ms }
  - id: after
    run: ["true"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    h.publish(
        r#"
name: strict
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, timeout: 300ms }
    on_failure: abort
"#,
    )
    .await;
    let paused = h.start("slow", &[], &[("approver", &alice())]).await;
    let aborted = h.start("strict", &[], &[("approver", &alice())]).await;
    for run in [paused, aborted] {
        assert_eq!(h.drive(run).await, RunStatus::Waiting);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for run in [paused, aborted] {
        let late = h.engine.approve(run, "go", &alice(), None).await;
        assert!(matches!(late, Err(EngineError::GateTimedOut { .. })), "{late:?}");
        assert_eq!(h.step_status(run, "go").await, StepStatus::TimedOut);
    }
    assert_eq!(h.snapshot(paused).await.run.status, RunStatus::NeedsAttention);
    assert!(h.actions(paused).await.contains(&"run.needs_attention".to_owned()));
    assert_eq!(h.snapshot(aborted).await.run.status, RunStatus::Failed);
    assert!(h.snapshot(aborted).await.run.finished_at.is_some());
    assert!(h.store.runs_needing_a_driver(steady_engine::engine::now()).await.unwrap().is_empty());
    h.verify_chain().await;
}
