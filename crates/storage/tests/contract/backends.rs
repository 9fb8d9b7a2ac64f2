//! What one backend does that the other does not: PostgreSQL wakes other nodes with a
//! notification; a SQLite file is shared by processes, opened read-only, and never in memory.

use super::*;

/// Several nodes on PostgreSQL: a change one node commits reaches another node as a hint
/// through the database (`LISTEN/NOTIFY`), which is how live event streams and executors on
/// every node learn of it without waiting for their next poll. (On SQLite only the process's
/// own changes are hinted; other processes are found by polling.)
#[tokio::test]
async fn on_postgres_a_change_on_one_node_wakes_the_others() {
    let url = steady_testkit::postgres_database();
    let node_a = steady_storage::open(&url).await.unwrap();
    let node_b = steady_storage::open(&url).await.unwrap();
    let mut events = node_b.changes().events;
    let mut work = node_b.changes().work;
    events.mark_unchanged();
    work.mark_unchanged();
    // B's listener connects in the background: A keeps changing things until B hears.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut heard_events, mut heard_work) = (false, false);
    while !(heard_events && heard_work) {
        assert!(tokio::time::Instant::now() < deadline, "node B never heard of node A's runs");
        new_run(&node_a, None).await.unwrap();
        let wait = std::time::Duration::from_millis(200);
        heard_events |= tokio::time::timeout(wait, events.changed()).await.is_ok();
        heard_work |= tokio::time::timeout(wait, work.changed()).await.is_ok();
    }
}

/// Two processes on one SQLite file, as `steady serve` and a `steady run` beside it: each
/// commits transitions on its own committer thread while the other also writes through its
/// sqlx connections (runs created, events appended). Every commit lands once, in order, and
/// the audit chain both wrote into stays whole.
#[tokio::test]
async fn on_sqlite_two_processes_commit_to_one_file_and_the_chain_stays_whole() {
    let url = sqlite("two_processes");
    let first = steady_storage::open(&url).await.unwrap();
    let second = steady_storage::open(&url).await.unwrap();
    let note = |revision| Transition {
        events: vec![NewEvent::typed(&actor(), None, AuditData::RunWaiting)],
        ..note(revision)
    };
    let write = |store: Arc<dyn Store>| async move {
        let run = new_run(&store, None).await.unwrap();
        for revision in 0..40 {
            store.commit(run, note(revision)).await.unwrap();
            if revision % 10 == 0 {
                store.append_events(vec![alert_event()]).await.unwrap();
                new_run(&store, None).await.unwrap();
            }
        }
        run
    };
    let (one, two) = tokio::join!(write(first.clone()), write(second.clone()));
    for run in [one, two] {
        let snapshot = second.run(run).await.unwrap().unwrap();
        assert_eq!((snapshot.run.revision, snapshot.notes.len()), (40, 40));
    }
    let verification = first.verify_audit().await.unwrap();
    assert_eq!(verification.first_broken, None, "{verification:?}");
    // The runbook published once; each side: 5 runs started, 40 commits of one event, 4
    // events appended.
    assert_eq!(verification.events, 1 + 2 * (5 + 40 + 4));
}

/// A database opened read-only (`?mode=ro`), to look at a copy, say, refuses every change,
/// the commits of runs included: nothing is written.
#[tokio::test]
async fn on_sqlite_a_database_opened_read_only_refuses_changes() {
    let url = sqlite("read_only");
    let store = steady_storage::open(&url).await.unwrap();
    let run = new_run(&store, None).await.unwrap();
    let looking = steady_storage::open(&format!("{url}?mode=ro")).await.unwrap();
    let refused = looking.commit(run, note(0)).await;
    assert!(
        matches!(&refused, Err(StoreError::Database(error)) if error.contains("readonly")),
        "{refused:?}"
    );
    let stored = store.run(run).await.unwrap().unwrap();
    assert_eq!((stored.run.revision, stored.notes.len()), (0, 0));
}

/// An in-memory SQLite database would be a different, empty database on each connection:
/// it is refused, saying what to give instead.
#[tokio::test]
async fn on_sqlite_an_in_memory_database_is_refused() {
    let Err(error) = steady_storage::open("sqlite::memory:").await else {
        panic!("an in-memory database was opened");
    };
    assert!(error.to_string().contains("sqlite://PATH"), "{error}");
}
