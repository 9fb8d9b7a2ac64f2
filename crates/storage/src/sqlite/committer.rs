//! The committer: the thread that writes every transition to a SQLite file, each commit one
//! message to it and one answer back.
//!
//! A driver commits twice per step, and each commit is a transaction of several statements:
//! the guard, the chain's head, the rows, the events. Through sqlx, each statement is a round
//! trip to the connection's worker thread, and each answer wakes the async runtime again; on
//! two cores those hand-offs cost more than SQLite's work. Here the whole transaction runs on
//! one thread that owns its connection, with the same shared statements, so a commit is one
//! hand-off. Everything else still goes through sqlx: the committer's connection is one more
//! connection to the same file, and SQLite's locks order its transactions with theirs.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{OpenFlags, TransactionBehavior};
use steady_engine::audit::GENESIS;
use steady_engine::run::Transition;
use steady_engine::store::StoreError;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::shared::audit::{CHAIN_HEAD, chain_statements};
use crate::shared::transitions;
use crate::sql::{BindLimit as _, Statement, Value, database, sql};

/// The sending end of the committer thread's queue. The thread ends when the last store
/// holding it is dropped.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
}

/// One transition to commit, and where its outcome goes.
struct Job {
    run_id: Uuid,
    transition: Transition,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl Committer {
    /// Opens a connection to the database file at `path` (which sqlx opened and migrated
    /// first) with the store's settings, read-only when the store's URL said so, and starts
    /// the thread that owns it.
    pub(crate) fn start(path: &Path, read_only: bool) -> Result<Committer, StoreError> {
        let mut connection = open(path, read_only).map_err(database)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("steady-committer".to_owned())
            .spawn(move || {
                for job in queue {
                    // A bug in one commit fails that commit, not every later one; the
                    // transaction it left open rolls back as it unwinds.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        commit(&mut connection, job.run_id, &job.transition)
                    }))
                    .unwrap_or_else(|_| {
                        Err(StoreError::Database("the commit failed: a bug in Steady".to_owned()))
                    });
                    // The caller may have stopped waiting (a drive cancelled at shutdown): the
                    // commit landed or not exactly as it would have were it still there.
                    let _ = job.done.send(outcome);
                }
            })
            .map_err(|error| {
                StoreError::Database(format!("cannot start the SQLite committer thread: {error}"))
            })?;
        Ok(Committer { jobs })
    }

    /// Commits one transition as [`crate::shared::transitions::commit_alone`] does: the guard, the
    /// rows, the chained events and the votes in one `BEGIN IMMEDIATE` transaction, or nothing.
    /// Errors: `Conflict`, `LeaseLost` and `NoSuchRun` from the guard, `Conflict` for a vote the
    /// one-vote index refuses, `Database` for anything SQLite refuses.
    pub(crate) async fn commit(
        &self,
        run_id: Uuid,
        transition: Transition,
    ) -> Result<(), StoreError> {
        let stopped = || StoreError::Database("the SQLite committer thread stopped".to_owned());
        let (done, outcome) = oneshot::channel();
        self.jobs.send(Job { run_id, transition, done }).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// The store's connection settings (see [`super::SqliteStore::open`]): WAL is the file's own
/// setting already; `synchronous` and foreign keys are each connection's.
fn open(path: &Path, read_only: bool) -> rusqlite::Result<rusqlite::Connection> {
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    // Room for every statement a commit uses, of each size of its event batches.
    connection.set_prepared_statement_cache_capacity(128);
    Ok(connection)
}

fn commit(
    connection: &mut rusqlite::Connection,
    run_id: Uuid,
    transition: &Transition,
) -> Result<(), StoreError> {
    const MAX_BINDS: usize = sqlx::Sqlite::MAX_BINDS;
    // Dropped without `commit`, the transaction rolls back: every early return leaves nothing.
    let tx =
        connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(database)?;
    let id = run_id.to_string();
    if execute(&tx, &transitions::guard_statement(&id, transition)).map_err(database)? != 1 {
        let owner = query_row(&tx, &transitions::lease_owner_statement(run_id), |row| row.get(0))?;
        return Err(transitions::guard_error(run_id, owner, transition));
    }
    let head = query_row(&tx, &sql(CHAIN_HEAD), |row| Ok((row.get(0)?, row.get(1)?)))?;
    let head = head.unwrap_or_else(|| (0, GENESIS.to_owned()));
    let transitions = [(run_id, transition)];
    let ids = [id.clone()];
    let mut writes = transitions::row_statements(&transitions, &ids, MAX_BINDS);
    writes.extend(chain_statements(head, &transition.events, MAX_BINDS).0);
    for write in &writes {
        execute(&tx, write).map_err(database)?;
    }
    for vote in &transition.votes {
        match execute(&tx, &transitions::vote_statement(&id, vote)) {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => return Err(StoreError::Conflict),
            Err(error) => return Err(database(error)),
        }
    }
    tx.commit().map_err(database)
}

/// Runs a statement; how many rows it changed.
fn execute(tx: &rusqlite::Transaction<'_>, statement: &Statement<'_>) -> rusqlite::Result<usize> {
    let run = |prepared: &mut rusqlite::Statement<'_>| {
        bind(prepared, statement)?;
        prepared.raw_execute()
    };
    if statement.is_cached() {
        run(&mut *tx.prepare_cached(statement.text())?)
    } else {
        run(&mut tx.prepare(statement.text())?)
    }
}

/// Whether a unique index (a primary key included) refused a row.
fn is_unique_violation(error: &rusqlite::Error) -> bool {
    error.sqlite_error().is_some_and(|error| {
        error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    })
}

/// The first row of a query, read by `read`; `None` when there is none.
fn query_row<T>(
    tx: &rusqlite::Transaction<'_>,
    statement: &Statement<'_>,
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    let mut prepared = tx.prepare_cached(statement.text()).map_err(database)?;
    bind(&mut prepared, statement).map_err(database)?;
    let mut rows = prepared.raw_query();
    rows.next().map_err(database)?.map(read).transpose().map_err(database)
}

/// Binds a statement's values to its `$N` placeholders. SQLite numbers parameters in the order
/// it first meets each name, which is not `N` when a statement uses `$2` before `$1` or
/// one twice; so each parameter is bound by its name, as sqlx does.
fn bind(prepared: &mut rusqlite::Statement<'_>, statement: &Statement<'_>) -> rusqlite::Result<()> {
    for index in 1..=prepared.parameter_count() {
        let number = prepared
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|digits| digits.parse::<usize>().ok());
        let value = number.and_then(|number| statement.value(number)).ok_or_else(|| {
            rusqlite::Error::InvalidParameterName(
                prepared.parameter_name(index).unwrap_or("?").to_owned(),
            )
        })?;
        match value {
            Value::Text(text) => prepared.raw_bind_parameter(index, text.as_deref())?,
            Value::Integer(integer) => prepared.raw_bind_parameter(index, *integer)?,
            Value::Flag(flag) => prepared.raw_bind_parameter(index, *flag)?,
        }
    }
    Ok(())
}
