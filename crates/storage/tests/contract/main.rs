//! The store contract: what every `Store` implementation must do, written once against the
//! traits and run unchanged against each backend: SQLite files, and a real PostgreSQL server
//! the test kit starts.
//!
//! - this file: runbooks, runs, leases, the audit chain, notification targets and nodes;
//! - `proposals`: alerts filed on proposals, and proposals taken;
//! - `accounts`: users, sessions, tokens and the sign-in throttle;
//! - `rehearsals`: what a runbook's succeeded live runs and drills measured;
//! - `typed_audit`: audit data read as types hashes as a database written before the types,
//!   and its runs read back as types and write the same text;
//! - `page_size`: the page size of a new SQLite file and of one written before;
//! - `backends`: what only one backend does (PostgreSQL's notifications, a SQLite file shared
//!   by processes or opened read-only).

// The stories are tests called by `#[tokio::test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod accounts;
mod backends;
mod page_size;
mod proposals;
mod rehearsals;
mod typed_audit;

use std::collections::BTreeMap;
use std::sync::Arc;

use accounts::*;
use chrono::Duration;
use proposals::*;
use rehearsals::*;
use steady_engine::audit::{AuditData, Binding, Login, NewEvent, NoteAdded, RunStarted};
use steady_engine::engine::now;
use steady_engine::run::*;
use steady_engine::store::{AuditFilter, NodeRecord, Published, Store, StoreError};
use steady_storage::Database;
use uuid::Uuid;

/// A fresh SQLite database for one story.
fn sqlite(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("steady-contract-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    format!("sqlite://{}", dir.join("steady.db").display())
}

/// A fresh PostgreSQL database for one story.
fn postgres(_name: &str) -> String {
    steady_testkit::postgres_database()
}

/// What a story is given, opened from a database URL: the store, or the whole database when
/// the story needs accounts too.
trait Open: Sized {
    async fn open(url: &str) -> Self;
}

impl Open for Arc<dyn Store> {
    async fn open(url: &str) -> Self {
        steady_storage::open(url).await.expect("open")
    }
}

impl Open for Database {
    async fn open(url: &str) -> Self {
        steady_storage::open_database(url).await.expect("open")
    }
}

/// Opens what a story takes, told by the story's parameter.
async fn given<T: Open>(url: &str) -> T {
    T::open(url).await
}

/// Runs one contract story against every backend.
macro_rules! contract {
    ($($story:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story(super::given(&super::sqlite(stringify!($story))).await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story(super::given(&super::postgres(stringify!($story))).await).await;
                }
            )*
        }
    };
}

contract!(
    publishing_keeps_a_version_per_change,
    a_lock_key_has_one_active_holder,
    transitions_are_refused_on_a_stale_revision_or_a_lost_lease,
    leases_expire_and_pass_on,
    a_run_created_under_a_lease_is_held_from_its_first_moment,
    one_node_at_a_time_delivers_to_a_notification_target,
    nodes_say_they_are_alive,
    a_person_votes_once_per_gate,
    the_audit_chain_is_appended_filtered_and_verified,
    runs_are_listed_found_and_offered_to_drivers,
    users_are_created_found_and_disabled,
    sessions_open_are_seen_and_end,
    tokens_are_stored_found_and_revoked,
    failed_sign_ins_are_counted_and_audited,
    a_run_of_thousands_of_steps_is_stored_whole,
    rehearsals_are_the_succeeded_live_runs_and_drills_of_a_runbook,
    a_verification_period_is_claimed_once_and_its_result_kept,
    an_alert_is_filed_on_one_proposal_per_subject_until_it_is_taken,
    a_proposal_taken_at_a_terminal_is_held_from_that_moment,
);

const SOURCE: &str = "name: story\nsteps:\n  - id: nap\n    sleep: 1s\n";

fn actor() -> Actor {
    Actor::user("carol")
}

async fn new_run(store: &Arc<dyn Store>, lock: Option<&str>) -> Result<Uuid, StoreError> {
    new_run_of(store, lock, vec![StepState::pending("nap", Phase::Main, 0)]).await
}

/// A new live run of `version`, started by the story's actor, without a lock.
fn record(version: &RunbookVersion) -> RunRecord {
    let at = now();
    RunRecord {
        id: Uuid::now_v7(),
        version: version.version,
        sha256: version.sha256.clone(),
        created_at: at,
        updated_at: at,
        ..RunRecord::would_start(&version.name, &actor())
    }
}

/// A run of the story runbook whose states are `steps`.
async fn new_run_of(
    store: &Arc<dyn Store>,
    lock: Option<&str>,
    steps: Vec<StepState>,
) -> Result<Uuid, StoreError> {
    let version = match store.publish("story", SOURCE, &actor(), now()).await? {
        Published::New(version) | Published::Unchanged(version) => version,
    };
    let run = RunRecord { lock_key: lock.map(str::to_owned), ..record(&version) };
    let id = run.id;
    let started = RunStarted {
        runbook: run.runbook.clone(),
        version: run.version,
        sha256: run.sha256.clone(),
        mode: run.mode,
        params: run.params.clone(),
        lock: run.lock_key.clone(),
        assignments: vec![],
        origin: run.origin,
    };
    let event = NewEvent::typed(&actor(), Some(id), AuditData::RunStarted(started));
    store.create_run(NewRun { run, steps, assignments: vec![], event }).await?;
    Ok(id)
}

fn finish(revision: i64) -> Transition {
    Transition {
        revision,
        run: Some(RunChange {
            status: RunStatus::Succeeded,
            phase: Phase::Main,
            started_by: actor(),
            commander: actor(),
            finished_at: Some(now()),
            lease: LeaseChange::Release,
        }),
        ..Transition::default()
    }
}

async fn publishing_keeps_a_version_per_change(store: Arc<dyn Store>) {
    let first = store.publish("story", SOURCE, &actor(), now()).await.unwrap();
    assert!(matches!(&first, Published::New(v) if v.version == 1));
    let again = store.publish("story", SOURCE, &actor(), now()).await.unwrap();
    assert!(matches!(&again, Published::Unchanged(v) if v.version == 1));
    let changed = format!("{SOURCE}# reviewed\n");
    let second = store.publish("story", &changed, &Actor::user("dave"), now()).await.unwrap();
    assert!(
        matches!(&second, Published::New(v) if v.version == 2 && v.published_by == Actor::user("dave"))
    );
    let latest = store.runbook_version("story", None).await.unwrap().unwrap();
    assert_eq!((latest.version, latest.source.as_str()), (2, changed.as_str()));
    let versions = store.runbook_versions("story").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_ne!(versions[0].sha256, versions[1].sha256);
    assert_eq!(store.runbook_version("other", None).await.unwrap(), None);
    // An author's change message is kept with its version, and only with it.
    let explained = format!("{changed}# wait for lag\n");
    let why = "Wait for <lag> & then promote";
    let author = actor();
    let third =
        store.publish_with_message("story", &explained, &author, now(), Some(why), None).await;
    assert!(matches!(third.unwrap(), Published::New(v) if v.message.as_deref() == Some(why)));
    let versions = store.runbook_versions("story").await.unwrap();
    let messages: Vec<_> = versions.iter().map(|v| v.message.as_deref()).collect();
    assert_eq!(messages, [None, None, Some(why)]);
}

async fn a_lock_key_has_one_active_holder(store: Arc<dyn Store>) {
    let holder = new_run(&store, Some("pg/main")).await.unwrap();
    match new_run(&store, Some("pg/main")).await {
        Err(StoreError::LockHeld { key, run_id }) => {
            assert_eq!((key.as_str(), run_id), ("pg/main", holder))
        }
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    new_run(&store, Some("pg/other")).await.unwrap();
    store.commit(holder, finish(0)).await.unwrap();
    new_run(&store, Some("pg/main")).await.unwrap();
}

/// A transition computed from `revision` that adds a note to the run.
fn note(revision: i64) -> Transition {
    Transition {
        revision,
        notes: vec![Note {
            id: Uuid::now_v7(),
            step_id: None,
            author: actor(),
            text: "hi".into(),
            at: now(),
        }],
        ..Transition::default()
    }
}

async fn transitions_are_refused_on_a_stale_revision_or_a_lost_lease(store: Arc<dyn Store>) {
    let run = new_run(&store, None).await.unwrap();
    store.commit(run, note(0)).await.unwrap();
    assert!(matches!(store.commit(run, note(0)).await, Err(StoreError::Conflict)));
    let lease = Lease { owner: "node-a".into(), expires_at: now() + Duration::seconds(10) };
    assert!(store.acquire_lease(run, &lease, now()).await.unwrap());
    let driver = |owner: &str| Transition { lease_owner: Some(owner.into()), ..note(1) };
    assert!(matches!(store.commit(run, driver("node-b")).await, Err(StoreError::LeaseLost)));
    store.commit(run, driver("node-a")).await.unwrap();
    assert!(matches!(store.commit(Uuid::now_v7(), note(0)).await, Err(StoreError::NoSuchRun(_))));
    let snapshot = store.run(run).await.unwrap().unwrap();
    assert_eq!((snapshot.run.revision, snapshot.notes.len()), (2, 2));
}

async fn leases_expire_and_pass_on(store: Arc<dyn Store>) {
    let run = new_run(&store, None).await.unwrap();
    // One instant for the whole story, as in the notification story below.
    let at = now();
    let soon = at + Duration::milliseconds(200);
    let a = Lease { owner: "node-a".into(), expires_at: soon };
    let b = Lease { owner: "node-b".into(), expires_at: at + Duration::seconds(10) };
    assert!(store.acquire_lease(run, &a, at).await.unwrap());
    assert!(!store.acquire_lease(run, &b, at).await.unwrap(), "held and not expired");
    assert!(store.acquire_lease(run, &a, at).await.unwrap(), "the holder renews");
    assert!(
        store.acquire_lease(run, &b, soon + Duration::milliseconds(1)).await.unwrap(),
        "expired: taken over"
    );
    store.release_lease(run, "node-a").await.unwrap();
    assert_eq!(
        store.run(run).await.unwrap().unwrap().run.lease.map(|l| l.owner),
        Some("node-b".into())
    );
    store.release_lease(run, "node-b").await.unwrap();
    assert_eq!(store.run(run).await.unwrap().unwrap().run.lease, None);
}

/// A terminal's run (`steady run`) is created under the terminal's lease: no other node is
/// offered it or may take it until that lease has expired.
async fn a_run_created_under_a_lease_is_held_from_its_first_moment(store: Arc<dyn Store>) {
    let version = match store.publish("story", SOURCE, &actor(), now()).await.unwrap() {
        Published::New(version) | Published::Unchanged(version) => version,
    };
    let at = now();
    let terminal = Lease { owner: "run:host:1".into(), expires_at: at + Duration::seconds(10) };
    let run = RunRecord { lease: Some(terminal.clone()), ..record(&version) };
    let id = run.id;
    let event = NewEvent::typed(&actor(), Some(id), AuditData::RunWaiting);
    let steps = vec![StepState::pending("nap", Phase::Main, 0)];
    store.create_run(NewRun { run, steps, assignments: vec![], event }).await.unwrap();
    assert_eq!(
        store.run(id).await.unwrap().unwrap().run.lease.map(|l| l.owner),
        Some(terminal.owner.clone())
    );
    assert!(!store.runs_needing_a_driver(at).await.unwrap().contains(&id), "offered to others");
    let server = Lease { owner: "serve:host:2".into(), expires_at: at + Duration::seconds(20) };
    assert!(!store.acquire_lease(id, &server, at).await.unwrap(), "taken from the terminal");
    assert!(store.acquire_lease(id, &terminal, at).await.unwrap(), "its holder drives it");
    let expired = terminal.expires_at + Duration::milliseconds(1);
    assert!(store.runs_needing_a_driver(expired).await.unwrap().contains(&id), "never offered");
    assert!(store.acquire_lease(id, &server, expired).await.unwrap(), "expired: taken over");
}

async fn one_node_at_a_time_delivers_to_a_notification_target(store: Arc<dyn Store>) {
    new_run(&store, None).await.unwrap();
    let newest = store.latest_seq().await.unwrap();
    let target = "https://hooks.example.com/steady";
    // One instant for the whole story: the store is told the time, so a slow machine cannot
    // let node-a's lease run out between two lines.
    let at = now();
    let soon = at + Duration::milliseconds(200);
    let a = Lease { owner: "node-a".into(), expires_at: soon };
    let b = Lease { owner: "node-b".into(), expires_at: at + Duration::seconds(10) };
    assert!(store.claim_notification_target(target, &a, at).await.unwrap());
    assert_eq!(store.notification_cursor(target).await.unwrap(), Some(newest), "starts at now");
    assert!(!store.claim_notification_target(target, &b, at).await.unwrap(), "held");
    assert!(store.claim_notification_target(target, &a, at).await.unwrap(), "renewed");
    store.set_notification_cursor(target, newest + 5).await.unwrap();
    store.set_notification_cursor(target, newest + 2).await.unwrap();
    let later = soon + Duration::milliseconds(1);
    assert!(store.claim_notification_target(target, &b, later).await.unwrap(), "taken over");
    assert_eq!(
        store.notification_cursor(target).await.unwrap(),
        Some(newest + 5),
        "the cursor never moves back and survives the hand-over"
    );
}

async fn nodes_say_they_are_alive(store: Arc<dyn Store>) {
    let started = now() - Duration::days(3);
    let gone = NodeRecord {
        id: "serve:old:1".into(),
        address: "10.0.0.1:8080".into(),
        started_at: started,
        last_seen: started,
    };
    store.heartbeat(&gone).await.unwrap();
    let mut alive = NodeRecord {
        id: "serve:web1:42".into(),
        address: "10.0.0.2:8080".into(),
        started_at: now(),
        last_seen: now(),
    };
    store.heartbeat(&alive).await.unwrap();
    alive.last_seen = now();
    store.heartbeat(&alive).await.unwrap();
    assert_eq!(store.nodes().await.unwrap(), [alive], "one row a node; silent for days: forgotten");
}

async fn a_person_votes_once_per_gate(store: Arc<dyn Store>) {
    let run = new_run(&store, None).await.unwrap();
    let vote = |actor: &str| Vote {
        id: Uuid::now_v7(),
        step_id: "nap".into(),
        actor: Actor::user(actor),
        approve: true,
        comment: None,
        bound: Binding::new("nap", &BTreeMap::new(), []),
        digest: "d".into(),
        at: now(),
        void: false,
    };
    let twice = Transition {
        revision: 0,
        votes: vec![vote("alice"), vote("alice")],
        ..Transition::default()
    };
    assert!(matches!(store.commit(run, twice).await, Err(StoreError::Conflict)));
    let first = vote("alice");
    let voided = first.id;
    store
        .commit(
            run,
            Transition { revision: 0, votes: vec![first, vote("bob")], ..Transition::default() },
        )
        .await
        .unwrap();
    // A void vote no longer counts: the same person may approve again.
    let again = Transition {
        revision: 1,
        voided_votes: vec![voided],
        votes: vec![vote("alice")],
        ..Transition::default()
    };
    store.commit(run, again).await.unwrap();
    let votes = store.run(run).await.unwrap().unwrap().votes;
    assert_eq!(votes.iter().filter(|v| !v.void).count(), 2);
    assert_eq!(votes.iter().filter(|v| v.void).map(|v| v.id).collect::<Vec<_>>(), [voided]);
}

async fn the_audit_chain_is_appended_filtered_and_verified(store: Arc<dyn Store>) {
    let run = new_run(&store, None).await.unwrap();
    let before = now();
    store
        .append_events(vec![
            NewEvent::typed(
                &Actor::user("eve"),
                None,
                AuditData::LoginFailed(Login { user: "eve".into(), address: "10.0.0.1".into() }),
            ),
            NewEvent::typed(
                &actor(),
                Some(run),
                AuditData::NoteAdded(NoteAdded { text: "ünïcode \"quoted\"".into() }),
            )
            .step("nap"),
        ])
        .await
        .unwrap();
    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["runbook.published", "run.started", "login.failed", "note.added"]
    );
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(all.windows(2).all(|pair| pair[1].prev_hash == pair[0].hash));
    assert_eq!(all[3].data["text"], "ünïcode \"quoted\"");
    let of_run =
        store.audit_events(&AuditFilter { run_id: Some(run), ..Default::default() }).await.unwrap();
    assert_eq!(of_run.len(), 2);
    let by_eve = store
        .audit_events(&AuditFilter { actor: Some(Actor::user("eve")), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_eve.len(), 1);
    let since = store
        .audit_events(&AuditFilter { since: Some(before), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(since.len(), 2);
    let page = store
        .audit_events(&AuditFilter { after_seq: Some(2), limit: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    // People read the log newest first, paging back, and find a run by the start of its id.
    let newest = AuditFilter { newest_first: true, before_seq: Some(4), ..Default::default() };
    let two = AuditFilter { limit: Some(2), ..newest.clone() };
    assert_eq!(
        store.audit_events(&two).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 2]
    );
    assert_eq!(store.count_audit_events(&newest).await.unwrap(), 4, "paging is not counted");
    let prefix = AuditFilter { run_prefix: Some(run.to_string()[..8].to_owned()), ..newest };
    assert_eq!(store.count_audit_events(&prefix).await.unwrap(), 2);
    let verification = store.verify_audit().await.unwrap();
    assert_eq!((verification.events, verification.first_broken), (4, None));
}

async fn runs_are_listed_found_and_offered_to_drivers(store: Arc<dyn Store>) {
    let first = new_run(&store, None).await.unwrap();
    let second = new_run(&store, None).await.unwrap();
    store.commit(first, finish(0)).await.unwrap();
    let listed: Vec<Uuid> =
        store.runs(&RunFilter::default()).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed, [second, first], "newest first");
    let running = store
        .runs(&RunFilter { status: Some(RunStatus::Running), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(running.iter().map(|r| r.id).collect::<Vec<_>>(), [second]);
    assert_eq!(
        store.find_run(&second.to_string()[..8]).await.unwrap().len(),
        2,
        "v7 ids share a time prefix"
    );
    assert_eq!(store.find_run(&second.to_string()).await.unwrap(), [second]);
    assert_eq!(store.runs_needing_a_driver(now()).await.unwrap(), [second]);
    let held = Lease { owner: "node-a".into(), expires_at: now() + Duration::seconds(10) };
    store.acquire_lease(second, &held, now()).await.unwrap();
    assert!(store.runs_needing_a_driver(now()).await.unwrap().is_empty());
    assert_eq!(store.run_status(second).await.unwrap(), Some(RunStatus::Running));
    let record = store.run_record(second).await.unwrap().expect("the run's record");
    let snapshot = store.run(second).await.unwrap().expect("the run");
    assert_eq!(record, snapshot.run, "the snapshot's own record, read alone");
    assert!(store.run_record(Uuid::now_v7()).await.unwrap().is_none());
}

/// Batched inserts are cut into statements each database takes (500 values on SQLite, whose
/// placeholder parsing is quadratic; far more on PostgreSQL): none of 3,000 steps goes
/// missing or out of order at the cuts.
async fn a_run_of_thousands_of_steps_is_stored_whole(store: Arc<dyn Store>) {
    let steps: Vec<StepState> =
        (0..3000).map(|n| StepState::pending(&format!("s{n}"), Phase::Main, n)).collect();
    let run = new_run_of(&store, None, steps.clone()).await.unwrap();
    let stored = store.run(run).await.unwrap().unwrap();
    assert_eq!(stored.steps, steps);
}

/// Continuous verification: each period of a runbook's schedule is claimed by exactly one of
/// any number of nodes asking at once; where a runbook's verification stands is written with
/// the transition that ends a verification run (or on its own, with its events, for one that
/// could not start), and runs are listed by origin and version.
async fn a_verification_period_is_claimed_once_and_its_result_kept(store: Arc<dyn Store>) {
    use steady_engine::audit::VerificationFailed;
    use steady_engine::verification::{Failure, VerificationSlot, VerificationState};

    store.publish("story", SOURCE, &actor(), now()).await.unwrap();
    let period = "2024-05-01T02:10:00Z".parse::<Timestamp>().unwrap();
    let slot = |node: &str, start: Timestamp| VerificationSlot {
        runbook: "story".into(),
        start,
        node: node.into(),
        run_id: Uuid::now_v7(),
        claimed_at: now(),
    };
    let mut claims = tokio::task::JoinSet::new();
    for node in 0..8 {
        let store = store.clone();
        let slot = slot(&format!("node-{node}"), period);
        claims.spawn(async move { store.claim_verification_slot(&slot).await.unwrap() });
    }
    let won: Vec<bool> = claims.join_all().await;
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "{won:?}");
    assert!(!store.claim_verification_slot(&slot("node-0", period)).await.unwrap());
    let next = period + Duration::minutes(1);
    assert!(store.claim_verification_slot(&slot("node-0", next)).await.unwrap());
    assert!(!store.claim_verification_slot(&slot("node-1", next)).await.unwrap());

    // A verification run's end carries where the runbook's verification stands.
    assert_eq!(store.verification("story").await.unwrap(), None);
    let run = new_run(&store, None).await.unwrap();
    let failing = VerificationState {
        runbook: "story".into(),
        version: 1,
        at: period,
        passed: false,
        run_id: Some(run),
        failing: Some(Failure {
            since: period,
            run_id: Some(run),
            step: Some("nap".into()),
            reason: "exited 2".into(),
        }),
    };
    let ended = Transition { verification: Some(failing.clone()), ..finish(0) };
    store.commit(run, ended).await.unwrap();
    assert_eq!(store.verification("story").await.unwrap(), Some(failing.clone()));

    // One that could not start is recorded with its event, and replaces the row.
    let unstarted = VerificationState { run_id: None, at: next, ..failing.clone() };
    let event = NewEvent::typed(
        &Actor::steady(),
        None,
        AuditData::VerificationFailed(VerificationFailed {
            runbook: "story".into(),
            version: 1,
            run_id: None,
            step: None,
            reason: "could not start: secret `TOKEN` has no value".into(),
        }),
    );
    store.record_verification(&unstarted, vec![event]).await.unwrap();
    assert_eq!(store.verifications().await.unwrap(), [unstarted]);
    let filter = AuditFilter { action: Some("verification.failed".into()), ..Default::default() };
    assert_eq!(store.count_audit_events(&filter).await.unwrap(), 1);

    // Runs are told apart by origin and version.
    let of = |origin: RunOrigin, version: Option<u32>| RunFilter {
        runbook: Some("story".into()),
        origin: Some(origin),
        version,
        ..RunFilter::default()
    };
    let listed = store.runs(&of(RunOrigin::Person, Some(1))).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| (r.id, r.origin)).collect::<Vec<_>>(),
        [(run, RunOrigin::Person)]
    );
    assert!(store.runs(&of(RunOrigin::Verification, None)).await.unwrap().is_empty());
    assert!(store.runs(&of(RunOrigin::Person, Some(2))).await.unwrap().is_empty());
}
