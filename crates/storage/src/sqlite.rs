//! The SQLite backend: the embedded default. WAL, `synchronous=FULL`, foreign keys on; every
//! write that reads first is one `BEGIN IMMEDIATE` transaction on a dedicated writer
//! connection, so writers queue instead of failing midway. Also here: `VACUUM INTO` backups
//! and the paged chain verification.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use steady_engine::audit::{ChainVerifier, GENESIS, Verification};
use steady_engine::run::Transition;
use steady_engine::store::{ChangeSignals, StoreError};
use uuid::Uuid;

use crate::codec::Columns;
use crate::shared::audit::{CHAIN_HEAD, chain_statements};
use crate::shared::{Backend, SqlStore, runs};
use crate::sql::{BindLimit, Statement, database, sql};

/// A Steady database in one SQLite file.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// The connections of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    /// Reads and single-statement writes.
    pool: SqlitePool,
    /// One connection for every `BEGIN IMMEDIATE` transaction. SQLite serialises writers anyway;
    /// always writing through the same connection keeps its page cache valid from one commit
    /// to the next, where a pool handing out its connections in turn made every commit re-read
    /// the pages another connection had written.
    writer: SqlitePool,
    /// Only this process's own changes: another process writing the same file is seen by
    /// polling.
    signals: Arc<ChangeSignals>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at a `sqlite://` URL and applies migrations.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // A connection is not pinged each time it is taken from its pool (a round trip to its
        // worker thread): a file that went away fails the statement that follows just as well.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(database)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(database)?;
        let store = SqlStore { backend: SqliteBackend { pool, writer, signals: Arc::default() } };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations in `migrations/sqlite` that this database has not seen yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations/sqlite")
            .run(&self.backend.pool)
            .await
            .map_err(|error| StoreError::Database(format!("migration failed: {error}")))
    }

    /// Writes a consistent copy of the whole database to a new file while it stays in use:
    /// `VACUUM INTO` reads one snapshot, so writers go on and the copy has no half-written run.
    /// The copy is a complete database: point `--db` at it to restore.
    pub async fn backup_to(&self, to: &std::path::Path) -> Result<(), StoreError> {
        if to.exists() {
            return Err(StoreError::Database(format!(
                "{} already exists: a backup never overwrites a file",
                to.display()
            )));
        }
        let target = to
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("{} is not a UTF-8 path", to.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.backend.pool)
            .await
            .map_err(database)?;
        Ok(())
    }

    /// The pool, for tests and tools that must reach under the store (the tamper test).
    pub fn pool(&self) -> &SqlitePool {
        &self.backend.pool
    }
}

impl Backend for SqliteBackend {
    type Db = sqlx::Sqlite;

    // `BEGIN IMMEDIATE` already makes every write transaction the only one.
    const LOCK_RUNBOOK_NAME: Option<&'static str> = None;
    const LOCK_AUDIT_CHAIN: Option<&'static str> = None;
    // Only this process's hints, which the store sends itself.
    const NOTIFY_EVENTS: Option<&'static str> = None;
    const NOTIFY_WORK: Option<&'static str> = None;
    const FOR_UPDATE: &'static str = "";

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn signals(&self) -> &ChangeSignals {
        &self.signals
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(database)
    }

    /// A deferred transaction: in WAL mode its first read fixes the snapshot it sees.
    async fn snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin().await.map_err(database)
    }

    /// The shared [`runs::commit_alone`] in four calls to the writer's worker thread instead
    /// of one per statement: a driver commits twice per step, and each call is a wake-up of
    /// that thread and of this one.
    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        /// The most values the writes of one commit are joined with (a step's start or end
        /// binds a few dozen).
        const MAX_JOINED_VALUES: usize = 2_000;
        let mut tx = self.begin().await?;
        let id = run_id.to_string();
        // The guard and the chain's head in one call; SQLite's `changes()` is the number of
        // rows the statement just before it, the guard, changed.
        let checked = Statement::join(vec![
            runs::guard_statement(&id, &transition),
            sql(format!(
                "SELECT changes() AS guarded, head.seq AS seq, head.hash AS hash
                 FROM (SELECT 1) LEFT JOIN ({CHAIN_HEAD}) AS head ON TRUE"
            )),
        ])
        .fetch_one(&mut *tx)
        .await?;
        if checked.integer("guarded")? != 1 {
            return Err(runs::guard_failure(&mut *tx, run_id, &transition).await);
        }
        let head = match checked.optional_integer("seq")? {
            Some(seq) => (seq, checked.text("hash")?),
            None => (0, GENESIS.to_owned()),
        };
        let transitions = [(run_id, &transition)];
        let ids = [id.clone()];
        let mut writes = runs::row_statements(&transitions, &ids, sqlx::Sqlite::MAX_BINDS);
        let (chain, _) = chain_statements(head, &transition.events, sqlx::Sqlite::MAX_BINDS);
        writes.extend(chain);
        // Joined, the writes are one call to the writer's thread. SQLite sizes a statement's
        // bound values by its highest placeholder number, which joining raises: a fan-out's
        // start, thousands of rows, is written statement by statement instead.
        let values: usize = writes.iter().map(Statement::value_count).sum();
        if values <= MAX_JOINED_VALUES {
            Statement::join(writes).execute(&mut *tx).await?;
        } else {
            for write in writes {
                write.execute(&mut *tx).await?;
            }
        }
        runs::insert_votes(&mut *tx, &id, &transition).await?;
        tx.commit().await.map_err(database)?;
        self.signals.events_appended();
        // A person's change (an answer, a decision) may leave the run for a driver to take.
        if transition.lease_owner.is_none() {
            self.signals.work_available();
        }
        Ok(())
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        // sqlx hands SQLite rows over one at a time from its worker thread, which costs more
        // than hashing them; so the chain is read in pages, each page one row that SQLite
        // concatenates (records split by \x1e, which canonical JSON never holds bare), and the
        // next page is read while this one is hashed. The page's records come in the order of
        // the ordered subquery (an `ORDER BY` inside the aggregate would sort them again and
        // cost more than the rest); were they ever out of order, the chain would show as
        // broken, never as intact.
        const PAGE: i64 = 10_000;
        let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<Result<String, StoreError>>(2);
        let pool = self.pool.clone();
        let reader = tokio::spawn(async move {
            let mut after = 0i64;
            loop {
                let page = sqlx::query_as::<_, (Option<String>, Option<i64>)>(
                    "SELECT group_concat(seq || ' ' || prev_hash || hash || body, char(30)), max(seq)
                     FROM (SELECT seq, prev_hash, hash, body FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2)",
                )
                .bind(after)
                .bind(PAGE)
                .fetch_one(&pool)
                .await
                .map_err(database);
                let (text, last) = match page {
                    Ok((text, last)) => (Ok(text.unwrap_or_default()), last),
                    Err(error) => (Err(error), None),
                };
                if pages_tx.send(text).await.is_err() {
                    return;
                }
                match last {
                    Some(last) => after = last,
                    None => return,
                }
            }
        });
        let mut verifier = ChainVerifier::default();
        while let Some(text) = pages.recv().await {
            let text = text?;
            if text.is_empty() {
                break;
            }
            for record in text.split('\u{1e}') {
                // `seq`, a space, 64 hex digits of `prev_hash`, 64 of `hash`, then the body.
                let parsed = record.split_once(' ').and_then(|(seq, rest)| {
                    let seq = seq.parse::<i64>().ok()?;
                    let (prev_hash, rest) = rest.split_at_checked(64)?;
                    let (hash, body) = rest.split_at_checked(64)?;
                    Some((seq, prev_hash, hash, body))
                });
                match parsed {
                    Some((seq, prev_hash, hash, body)) => {
                        verifier.push_stored(seq, body, prev_hash, hash)
                    }
                    None => verifier.push_unreadable(),
                }
            }
        }
        let _ = reader.await;
        Ok(verifier.finish())
    }
}
