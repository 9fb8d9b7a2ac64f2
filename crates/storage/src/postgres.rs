//! The PostgreSQL backend: one database shared by several `steady serve` nodes. PostgreSQL is
//! the distributed part; Steady adds no protocol of its own:
//!
//! - a run's lease is a compare-and-set on its row (`UPDATE … WHERE lease_owner IS NULL OR
//!   lease_expires_at < now`): the row lock makes exactly one node win a takeover;
//! - every transition is guarded by the run's revision and, from a driver, its lease owner;
//! - the one audit chain is appended under a transaction-level advisory lock held until
//!   commit, so `seq` order is commit order: a reader that has seen `seq` n never later finds
//!   a new event below n (what `Last-Event-ID` relies on);
//! - `LISTEN/NOTIFY` carries hints between nodes (new events, a run needing a driver); they
//!   are only hints, and every waiter also polls;
//! - transitions queued while one commits share the next commit (group commit).

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use steady_engine::audit::{ChainVerifier, Verification};
use steady_engine::run::Transition;
use steady_engine::store::{ChangeSignals, StoreError};
use uuid::Uuid;

use crate::shared::audit::append_events;
use crate::shared::transitions::{commit_alone, guard, write_rows};
use crate::shared::{Backend, SqlStore, hint_work};
use crate::sql::database;

/// The notification channels, written once for the listener and the `NOTIFY` statements:
/// the payload on `events` is the newest `seq`, on `work` a run id.
macro_rules! channel {
    (events) => {
        "steady_events"
    };
    (work) => {
        "steady_work"
    };
}

/// A Steady database on a PostgreSQL server.
pub type PostgresStore = SqlStore<PostgresBackend>;

/// The connections of a [`PostgresStore`], and its committer.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    signals: Arc<ChangeSignals>,
    /// Transitions waiting for this node's group commit.
    commits: tokio::sync::mpsc::Sender<QueuedCommit>,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL, applies migrations (PostgreSQL's own advisory lock
    /// keeps nodes that start together from applying them twice) and starts listening for
    /// other nodes' changes.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(database)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(database)?;
        let (commits, queue) = tokio::sync::mpsc::channel(4 * GROUP_COMMIT_MAX);
        let backend = PostgresBackend { pool, signals: Arc::default(), commits };
        tokio::spawn(listen(backend.pool.clone(), Arc::downgrade(&backend.signals)));
        tokio::spawn(commit_in_groups(backend.pool.clone(), backend.signals.clone(), queue));
        let store = SqlStore { backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations in `migrations/postgres` that this database has not seen yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&self.backend.pool)
            .await
            .map_err(|error| StoreError::Database(format!("migration failed: {error}")))
    }

    /// The pool, for tests and tools that must reach under the store (the tamper test).
    pub fn pool(&self) -> &PgPool {
        &self.backend.pool
    }
}

impl Backend for PostgresBackend {
    type Db = sqlx::Postgres;

    const LOCK_RUNBOOK_NAME: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended('runbook:' || $1, 0))");
    // The same number on every node: 0x737465616479, "steady" in ASCII.
    const LOCK_AUDIT_CHAIN: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(126943754282105)");
    // Sent when the transaction commits, to every node listening (this one too).
    const NOTIFY_EVENTS: Option<&'static str> =
        Some(concat!("SELECT pg_notify('", channel!(events), "', $1)"));
    const NOTIFY_WORK: Option<&'static str> =
        Some(concat!("SELECT pg_notify('", channel!(work), "', $1)"));
    const FOR_UPDATE: &'static str = " FOR UPDATE";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn signals(&self) -> &ChangeSignals {
        &self.signals
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(database)
    }

    /// A read-only transaction that sees one snapshot of the whole database, however many
    /// nodes write meanwhile; one round trip to open.
    async fn snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(database)
    }

    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let queued = self.commits.send(QueuedCommit { run_id, transition, done }).await;
        match queued {
            Ok(()) => outcome.await.unwrap_or_else(|_| {
                Err(StoreError::Database("the commit queue stopped".to_owned()))
            }),
            Err(tokio::sync::mpsc::error::SendError(queued)) => {
                commit_alone::<Self>(self.begin().await?, &self.signals, run_id, &queued.transition)
                    .await
            }
        }
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        // One snapshot, streamed in `seq` order: appends that land meanwhile are not part of it.
        let mut tx = self.snapshot().await?;
        let mut verifier = ChainVerifier::default();
        {
            let mut rows = sqlx::query_as::<_, (i64, String, String, String)>(
                "SELECT seq, body, prev_hash, hash FROM audit_events ORDER BY seq",
            )
            .fetch(&mut *tx);
            while let Some((seq, body, prev_hash, hash)) =
                rows.try_next().await.map_err(database)?
            {
                verifier.push_stored(seq, &body, &prev_hash, &hash);
            }
        }
        tx.commit().await.map_err(database)?;
        Ok(verifier.finish())
    }
}

/// Turns other nodes' notifications into this process's change signals, reconnecting when
/// the connection drops (and then signalling both, since something may have been missed).
/// Ends when the store is dropped.
async fn listen(pool: PgPool, signals: std::sync::Weak<ChangeSignals>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if listener.listen_all([channel!(events), channel!(work)]).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            let notification = listener.try_recv().await;
            let Some(signals) = signals.upgrade() else { return };
            match notification {
                Ok(Some(notification)) if notification.channel() == channel!(work) => {
                    signals.work_available()
                }
                Ok(Some(_)) => signals.events_appended(),
                // The connection was lost and will be re-established: notifications sent
                // meanwhile are gone.
                Ok(None) | Err(_) => {
                    signals.events_appended();
                    signals.work_available();
                    if notification.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// A transition waiting for this node's committer, and where its outcome goes.
#[derive(Debug)]
struct QueuedCommit {
    run_id: Uuid,
    transition: Transition,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// The most transitions one group commit takes.
const GROUP_COMMIT_MAX: usize = 64;

/// Group commit: the transitions queued while the previous batch was committing share one
/// database transaction, one append to the audit chain (one turn of its lock) and one WAL
/// flush. Each is acknowledged only after that commit. A transition whose guard fails is
/// refused alone; if the batch itself fails (a second vote by the same person in one
/// transition hits the one-vote index, say), each is committed on its own instead, where such
/// an error is that transition's alone.
async fn commit_in_groups(
    pool: PgPool,
    signals: Arc<ChangeSignals>,
    mut queue: tokio::sync::mpsc::Receiver<QueuedCommit>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match commit_batch(&pool, &batch).await {
            Ok(outcomes) => {
                signals.events_appended();
                if batch.iter().any(|queued| queued.transition.lease_owner.is_none()) {
                    signals.work_available();
                }
                for (queued, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = queued.done.send(outcome);
                }
            }
            Err(BatchFailed::BeforeCommit) => {
                for queued in batch {
                    let outcome = match pool.begin().await {
                        Ok(tx) => {
                            commit_alone::<PostgresBackend>(
                                tx,
                                &signals,
                                queued.run_id,
                                &queued.transition,
                            )
                            .await
                        }
                        Err(error) => Err(database(error)),
                    };
                    let _ = queued.done.send(outcome);
                }
            }
            // The COMMIT itself failed: it may or may not have taken effect, so nothing is
            // retried, and every caller hears of a database error, as after a crash.
            Err(BatchFailed::AtCommit(error)) => {
                for queued in batch {
                    let _ = queued.done.send(Err(StoreError::Database(error.clone())));
                }
            }
        }
    }
}

/// How a group commit failed.
#[derive(Debug)]
enum BatchFailed {
    /// Before COMMIT was sent: nothing of the batch was committed.
    BeforeCommit,
    /// At COMMIT: whether it took effect is unknown.
    AtCommit(String),
}

impl From<StoreError> for BatchFailed {
    fn from(_: StoreError) -> Self {
        BatchFailed::BeforeCommit
    }
}

/// Commits a batch in one transaction.
async fn commit_batch(
    pool: &PgPool,
    batch: &[QueuedCommit],
) -> Result<Vec<Result<(), StoreError>>, BatchFailed> {
    let mut tx = pool.begin().await.map_err(database)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let mut for_a_driver = Vec::new();
    let mut passed = Vec::new();
    for queued in batch {
        match guard(&mut *tx, queued.run_id, &queued.transition).await {
            Ok(()) => {
                events.extend(queued.transition.events.iter().cloned());
                if queued.transition.lease_owner.is_none() {
                    for_a_driver.push(queued.run_id);
                }
                passed.push((queued.run_id, &queued.transition));
                outcomes.push(Ok(()));
            }
            Err(
                error @ (StoreError::Conflict | StoreError::LeaseLost | StoreError::NoSuchRun(_)),
            ) => outcomes.push(Err(error)),
            Err(error) => return Err(error.into()),
        }
    }
    write_rows(&mut *tx, &passed).await?;
    for run_id in for_a_driver {
        hint_work::<PostgresBackend>(&mut tx, run_id).await?;
    }
    append_events::<PostgresBackend>(&mut tx, &events).await?;
    tx.commit().await.map_err(|error| BatchFailed::AtCommit(error.to_string()))?;
    Ok(outcomes)
}
