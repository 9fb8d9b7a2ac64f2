//! Proposals: an alert files one proposal per subject until someone takes it, and a proposal
//! taken at a terminal is held by that terminal from the moment it is taken.

use super::*;

/// A proposal of the story runbook for lock `key`, as an alert makes it.
pub(super) fn proposal(version: &RunbookVersion, key: &str) -> NewRun {
    let run = RunRecord {
        origin: RunOrigin::Trigger,
        status: RunStatus::Proposed,
        started_by: Actor::user("alerts"),
        commander: Actor::user("alerts"),
        lock_key: Some(key.to_owned()),
        ..record(version)
    };
    let id = run.id;
    let note = AuditData::NoteAdded(NoteAdded { text: "proposed".into() });
    let event = NewEvent::typed(&Actor::user("alerts"), Some(id), note);
    NewRun {
        run,
        steps: vec![StepState::pending("nap", Phase::Main, 0)],
        assignments: vec![],
        event,
    }
}

pub(super) fn alert_event() -> NewEvent {
    NewEvent::typed(
        &Actor::user("alerts"),
        None,
        AuditData::NoteAdded(NoteAdded { text: "again".into() }),
    )
}

pub(super) async fn an_alert_is_filed_on_one_proposal_per_subject_until_it_is_taken(
    store: Arc<dyn Store>,
) {
    use steady_engine::store::Filed;
    let version = match store.publish("story", SOURCE, &actor(), now()).await.unwrap() {
        Published::New(version) | Published::Unchanged(version) => version,
    };
    // Nothing is about pg/main: a resolved alert finds nothing, a firing one proposes.
    let subject = proposal(&version, "pg/main").run.subject().unwrap();
    let subject = subject.as_str();
    let unmatched = store.file_alert(subject, alert_event(), None, now()).await.unwrap();
    assert_eq!(unmatched, Filed::Unmatched);
    let first = proposal(&version, "pg/main");
    let id = first.run.id;
    assert_eq!(
        store.file_alert(subject, alert_event(), Some(first), now()).await.unwrap(),
        Filed::Proposed(id)
    );

    // Ten deliveries at once, each with a proposal of its own: all go to the first.
    let racing: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let new = proposal(&version, "pg/main");
            let subject = subject.to_owned();
            tokio::spawn(async move {
                store.file_alert(&subject, alert_event(), Some(new), now()).await
            })
        })
        .collect();
    for filed in racing {
        assert_eq!(filed.await.unwrap().unwrap(), Filed::Added(id));
    }
    let proposals = RunFilter { status: Some(RunStatus::Proposed), ..RunFilter::default() };
    assert_eq!(store.runs(&proposals).await.unwrap().len(), 1);
    let filter = AuditFilter { run_id: Some(id), ..AuditFilter::default() };
    assert_eq!(store.audit_events(&filter).await.unwrap().len(), 11, "its event and ten alerts");

    // A proposal holds no lock: a live run takes pg/main, and alerts now go to it.
    let live = new_run(&store, Some("pg/main")).await.unwrap();
    let again = proposal(&version, "pg/main");
    assert_eq!(
        store.file_alert(subject, alert_event(), Some(again), now()).await.unwrap(),
        Filed::Added(live)
    );

    // Taking the proposal is refused while the live run holds the lock, and takes it after.
    let snapshot = store.run(id).await.unwrap().unwrap();
    let take = |revision| {
        let mut change = RunChange::from(&snapshot.run);
        change.status = RunStatus::Running;
        change.started_by = actor();
        change.commander = actor();
        Transition { revision, run: Some(change), ..Transition::default() }
    };
    match store.take_proposal(id, take(snapshot.run.revision)).await {
        Err(StoreError::LockHeld { key, run_id }) => {
            assert_eq!((key.as_str(), run_id), ("pg/main", live))
        }
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    store.commit(live, finish(0)).await.unwrap();
    store.take_proposal(id, take(snapshot.run.revision)).await.unwrap();
    let taken = store.run(id).await.unwrap().unwrap().run;
    assert_eq!((taken.status, taken.started_by), (RunStatus::Running, actor()));
    match new_run(&store, Some("pg/main")).await {
        Err(StoreError::LockHeld { run_id, .. }) => assert_eq!(run_id, id),
        other => panic!("the taken proposal holds the lock: {other:?}"),
    }
}

/// `steady take` beside a `steady serve` on one database: the proposal becomes `running` and
/// the terminal's lease in one commit, so the server, polling for runs without a driver, never
/// finds it free before the terminal's first drive.
pub(super) async fn a_proposal_taken_at_a_terminal_is_held_from_that_moment(store: Arc<dyn Store>) {
    use steady_engine::store::Filed;
    let version = match store.publish("story", SOURCE, &actor(), now()).await.unwrap() {
        Published::New(version) | Published::Unchanged(version) => version,
    };
    let proposed = proposal(&version, "pg/main");
    let id = proposed.run.id;
    let subject = proposed.run.subject().unwrap();
    let filed = store.file_alert(&subject, alert_event(), Some(proposed), now()).await.unwrap();
    assert_eq!(filed, Filed::Proposed(id));

    let at = now();
    let terminal = Lease { owner: "take:host:1".into(), expires_at: at + Duration::seconds(10) };
    let snapshot = store.run(id).await.unwrap().unwrap();
    let mut change = RunChange::from(&snapshot.run);
    change.status = RunStatus::Running;
    change.started_by = actor();
    change.commander = actor();
    change.lease = LeaseChange::Take(terminal.clone());
    let take =
        Transition { revision: snapshot.run.revision, run: Some(change), ..Transition::default() };
    store.take_proposal(id, take).await.unwrap();

    let taken = store.run(id).await.unwrap().unwrap().run;
    assert_eq!((taken.status, taken.lease), (RunStatus::Running, Some(terminal.clone())));
    assert!(!store.runs_needing_a_driver(at).await.unwrap().contains(&id), "offered to others");
    let server = Lease { owner: "serve:host:2".into(), expires_at: at + Duration::seconds(20) };
    assert!(!store.acquire_lease(id, &server, at).await.unwrap(), "taken from the terminal");
    assert!(store.acquire_lease(id, &terminal, at).await.unwrap(), "its holder drives it");

    // A later change that keeps the lease leaves it to its holder.
    let revision = store.run(id).await.unwrap().unwrap().run.revision;
    store.commit(id, note(revision)).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().run.lease, Some(terminal));
}
