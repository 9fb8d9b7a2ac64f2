//! The SQLite backend: the embedded default. WAL, `synchronous=FULL`, foreign keys on; every
//! write that reads first is one `BEGIN IMMEDIATE` transaction on a dedicated writer
//! connection, so writers queue instead of failing midway, and transitions are committed by
//! the [`committer`]'s thread. Also here: `VACUUM INTO` backups and the paged chain
//! verification.

mod committer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use steady_engine::audit::{ChainVerifier, Verification};
use steady_engine::run::Transition;
use steady_engine::store::{ChangeSignals, StoreError};
use uuid::Uuid;

use crate::shared::{Backend, SqlStore};
use crate::sql::database;
use committer::Committer;

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
    /// The thread that commits transitions, a driver's two per step among them.
    committer: Arc<Committer>,
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
            // Smaller pages than SQLite's 4 KiB for a new file (an existing one keeps its own;
            // a backup, `VACUUM INTO`, is a new file): a driver's commit changes one row in
            // each of a few tables and indexes, and syncs one WAL frame, a whole page, for
            // each: about 12 KiB a commit at 2 KiB instead of 24. Measured on a virtual disk:
            // a no-op step about 6 % faster (10 % at 1 KiB); reading costs more pages, the
            // page of a 100-step run 5.6 ms instead of 3.9 (7.3 at 1 KiB) and verifying a
            // million events 1.9 s instead of 1.8 (2.7 at 1 KiB).
            .page_size(2048)
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
        migrate(&pool).await?;
        let committer = Arc::new(Committer::start(&database_file(&writer).await?, read_only(url))?);
        let backend = SqliteBackend { pool, writer, committer, signals: Arc::default() };
        Ok(SqlStore { backend })
    }

    /// Applies the migrations in `migrations/sqlite` that this database has not seen yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate(&self.backend.pool).await
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

    /// On the committer's thread: the shared statements of [`crate::shared::transitions::commit_alone`]
    /// in one hand-off instead of one per statement.
    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        // A person's change (an answer, a decision) may leave the run for a driver to take.
        let for_a_driver = transition.lease_owner.is_none();
        self.committer.commit(run_id, transition).await?;
        self.signals.events_appended();
        if for_a_driver {
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

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::migrate!("../../migrations/sqlite")
        .run(pool)
        .await
        .map_err(|error| StoreError::Database(format!("migration failed: {error}")))
}

/// Whether a `sqlite:` URL asks for its file read-only (`?mode=ro`), which the committer's
/// own connection must honour as sqlx's do.
fn read_only(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=ro"))
}

/// The path of the file a pool's database lives in. An in-memory database has none, and
/// cannot be Steady's: each connection would see a database of its own.
async fn database_file(pool: &SqlitePool) -> Result<std::path::PathBuf, StoreError> {
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await
            .map_err(database)?;
    if file.is_empty() {
        return Err(StoreError::Database(
            "an in-memory SQLite database cannot hold Steady's data: give a file, sqlite://PATH"
                .to_owned(),
        ));
    }
    Ok(file.into())
}
