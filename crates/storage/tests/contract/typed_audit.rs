//! Typed audit data against a database the binary wrote before audit data had types: every
//! stored event, read as its [`AuditData`] and written back, must hash exactly as stored, so
//! that moving the engine to typed events changes no hash of any existing chain. The same
//! database's runs read back as types too — actors, rendered actions, approval bindings —
//! and write the same text.

use std::collections::BTreeSet;
use std::path::Path;

use steady_engine::audit::{AuditData, AuditEvent, NewEvent, Rendered, chain_hash};
use steady_engine::store::AuditFilter;

/// Every audit action the fixture's binary knew; `run.waiting` is the one no path writes, so
/// the fixture lacks it (the roles and password actions came later).
const ACTIONS: &[&str] = &[
    "runbook.published",
    "run.started",
    "run.needs_attention",
    "run.finished",
    "run.cancelled",
    "run.taken_over",
    "run.rollback_started",
    "run.commander_transferred",
    "step.started",
    "step.finished",
    "step.skipped",
    "step.would_run",
    "step.interrupted",
    "step.waiting",
    "output.stored",
    "approval.granted",
    "approval.rejected",
    "approval.voided",
    "gate.timed_out",
    "gate.escalated",
    "manual.completed",
    "manual.failed",
    "role.assigned",
    "role.unassigned",
    "decision.taken",
    "note.added",
    "user.created",
    "user.changed",
    "token.created",
    "token.revoked",
    "login.failed",
    "login.succeeded",
];

#[tokio::test]
async fn typed_audit_data_hashes_as_a_database_written_before_it() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/written-before-typed-audit/steady.db");
    // Opening migrates: work on a copy, so the fixture stays as the old binary wrote it.
    let dir = std::env::temp_dir().join(format!("steady-typed-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&fixture, dir.join("steady.db")).unwrap();
    let store = steady_storage::open(&format!("sqlite://{}", dir.join("steady.db").display()))
        .await
        .unwrap();

    let verification = store.verify_audit().await.unwrap();
    assert_eq!((verification.events, verification.first_broken), (143, None));
    let events = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(events.len(), 143);

    let mut seen = BTreeSet::new();
    for stored in &events {
        let data = AuditData::from_stored(&stored.action, &stored.data)
            .unwrap_or_else(|error| panic!("event {}: {error}", stored.seq));
        assert_eq!(data.action().as_str(), stored.action, "event {}", stored.seq);
        // Everything this database holds reads as a real type: the fallback for what an
        // earlier Steady masked in its keys must not hide a shape the types no longer fit.
        let rendered = match &data {
            AuditData::StepStarted(started) => Some(&started.rendered),
            AuditData::StepWaiting(waiting) => Some(&waiting.rendered),
            AuditData::StepWouldRun(would) => Some(&would.rendered),
            _ => None,
        };
        assert!(!matches!(rendered, Some(Rendered::Stored(_))), "event {}", stored.seq);
        let event = NewEvent {
            step_id: stored.step_id.clone(),
            ..NewEvent::typed(&stored.actor, stored.run_id, data)
        };
        let rebuilt =
            AuditEvent::chain(stored.seq, stored.id, stored.at, &stored.prev_hash, &event);
        // The stored hash covers the stored body's bytes: equal hashes, equal bytes.
        assert_eq!(rebuilt.body(), stored.body(), "event {}", stored.seq);
        assert_eq!(
            chain_hash(&stored.prev_hash, &rebuilt.body()),
            stored.hash,
            "event {}",
            stored.seq
        );
        assert_eq!(rebuilt, *stored, "event {}", stored.seq);
        seen.insert(event.action.as_str());
    }
    let expected: BTreeSet<&str> = ACTIONS.iter().copied().collect();
    assert_eq!(seen, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn typed_runs_read_back_as_a_database_written_before_them_and_write_the_same_text() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/written-before-typed-audit/steady.db");
    let dir = std::env::temp_dir().join(format!("steady-typed-runs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&fixture, dir.join("steady.db")).unwrap();
    let url = format!("sqlite://{}", dir.join("steady.db").display());
    let store = steady_storage::open(&url).await.unwrap();
    // The stored text, read beside the store, to compare with what the types write.
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();

    let steps: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT run_id, step_id, rendered, completed_by FROM run_steps")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(steps.iter().filter(|(.., rendered, _)| rendered.is_some()).count(), 34);
    for (run_id, step_id, rendered, completed_by) in &steps {
        let snapshot = store.run(run_id.parse().unwrap()).await.unwrap().unwrap();
        let state = snapshot.step(step_id).unwrap();
        assert_eq!(state.rendered.as_ref().map(ToString::to_string), *rendered, "{step_id}");
        assert!(!matches!(state.rendered, Some(Rendered::Stored(_))), "{step_id}");
        assert_eq!(state.completed_by.as_ref().map(ToString::to_string), *completed_by);
    }

    let votes: Vec<(String, String, String, String, String)> =
        sqlx::query_as("SELECT run_id, id, actor, bound, digest FROM votes")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(votes.len(), 6);
    for (run_id, id, actor, bound, digest) in &votes {
        let snapshot = store.run(run_id.parse().unwrap()).await.unwrap().unwrap();
        let vote = snapshot.votes.iter().find(|vote| vote.id.to_string() == *id).unwrap();
        assert_eq!(vote.actor.to_string(), *actor);
        assert_eq!(vote.bound.to_value().to_string(), *bound);
        assert_eq!(vote.bound.digest(), *digest);
    }
    raw.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
