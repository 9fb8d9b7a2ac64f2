//! The audit chain: every change is an event, and changing a stored event is detected.

use steady_engine::run::RunStatus;

use crate::*;

stories!(a_tampered_event_is_named_by_its_seq, a_deleted_event_breaks_the_chain_where_it_was,);

async fn a_tampered_event_is_named_by_its_seq(h: Harness) {
    h.publish(
        r#"
name: audited
steps:
  - id: one
    run: ["echo", "one"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("audited", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let events = h.store.audit_events(&Default::default()).await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            // The harness's people: carol, alice and bob.
            "user.created",
            "user.created",
            "user.created",
            "runbook.published",
            "run.started",
            "step.started",
            "step.finished",
            "output.stored",
            "run.finished"
        ]
    );
    h.verify_chain().await;

    // Steady refuses to change its log...
    let refused = h
        .raw
        .execute(
            "UPDATE audit_events SET body = replace(body, 'steady', 'user:mallory') WHERE seq = 7",
        )
        .await;
    assert!(refused.is_err(), "the log is append-only");

    // ...so an attacker with the database file drops the guard and edits one row.
    h.raw.drop_append_only_guard().await;
    let edited = h
        .raw
        .execute(
            "UPDATE audit_events SET body = replace(body, '\"succeeded\"', '\"failed\"') WHERE seq = 7",
        )
        .await
        .unwrap();
    assert_eq!(edited, 1);
    let verification = h.store.verify_audit().await.unwrap();
    assert_eq!((verification.first_broken, verification.events), (Some(7), 9));
}

async fn a_deleted_event_breaks_the_chain_where_it_was(h: Harness) {
    h.publish("name: tiny\nsteps:\n  - id: nap\n    sleep: 1ms\n").await;
    let run = h.start("tiny", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    h.raw.drop_append_only_guard().await;
    assert_eq!(h.raw.execute("DELETE FROM audit_events WHERE seq = 6").await.unwrap(), 1);
    assert_eq!(h.store.verify_audit().await.unwrap().first_broken, Some(7));
}
