//! The PostgreSQL store: one database shared by several `steady serve` nodes. PostgreSQL is
//! the distributed part; Steady adds no protocol of its own:
//!
//! - a run's lease is a compare-and-set on its row (`UPDATE … WHERE lease_owner IS NULL OR
//!   lease_expires_at < now`): the row lock makes exactly one node win a takeover;
//! - every transition is guarded by the run's revision and, from a driver, its lease owner;
//! - the one audit chain is appended under a transaction-level advisory lock held until
//!   commit, so `seq` order is commit order: a reader that has seen `seq` n never later finds
//!   a new event below n (what `Last-Event-ID` relies on);
//! - `LISTEN/NOTIFY` carries hints between nodes (new events, a run needing a driver); they
//!   are only hints, and every waiter also polls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use steady_engine::audit::{
    AuditEvent, ChainVerifier, GENESIS, NewEvent, Verification, format_timestamp, sha256_hex,
};
use steady_engine::run::*;
use steady_engine::store::{
    AuditFilter, ChangeSignals, Changes, NodeRecord, Published, Store, StoreError,
};
use uuid::Uuid;

use crate::codec::*;
use crate::rows::*;

mod accounts;

/// The advisory lock that serialises appends to the audit chain, the same number on every
/// node ("steady" in ASCII).
const AUDIT_CHAIN_LOCK: i64 = 0x0000_7374_6561_6479;
/// Notification channels: the payload of `EVENTS` is the newest `seq`.
const EVENTS: &str = "steady_events";
const WORK: &str = "steady_work";

/// A Steady database on a PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PostgresStore {
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
        let store = PostgresStore { pool, signals: Arc::default(), commits };
        store.migrate().await?;
        tokio::spawn(listen(store.pool.clone(), Arc::downgrade(&store.signals)));
        tokio::spawn(commit_in_groups(store.pool.clone(), store.signals.clone(), queue));
        Ok(store)
    }

    /// Applies the migrations in `migrations/postgres` that this database has not seen yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|error| StoreError::Database(format!("migration failed: {error}")))
    }

    /// The pool, for tests and tools that must reach under the store (the tamper test).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn begin(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
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
        if listener.listen_all([EVENTS, WORK]).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            let notification = listener.try_recv().await;
            let Some(signals) = signals.upgrade() else { return };
            match notification {
                Ok(Some(notification)) if notification.channel() == WORK => {
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

pub(crate) fn database<E: std::error::Error + 'static>(error: E) -> StoreError {
    // PostgreSQL's text cannot hold a NUL character (SQLSTATE 22021; 22P05 for text its
    // encoding cannot represent): that is the caller's input, not a failing database.
    let refused = (&error as &dyn std::error::Error)
        .downcast_ref::<sqlx::Error>()
        .and_then(|error| match error {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        })
        .is_some_and(|code| code == "22021" || code == "22P05");
    if refused {
        return StoreError::Unstorable("text may not contain a NUL character".to_owned());
    }
    StoreError::Database(error.to_string())
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Appends events to the one chain. The advisory lock is taken as late as possible and held
/// to commit: appends from all nodes queue on it, so each reads the head its predecessor
/// committed and `seq` order is commit order.
pub(crate) async fn append_events(
    conn: &mut PgConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_CHAIN_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(database)?;
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(database)?;
    let (mut seq, mut prev_hash) = last.unwrap_or((0, GENESIS.to_owned()));
    let at = now();
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let event = AuditEvent::chain(seq, Uuid::now_v7(), at, &prev_hash, event);
        prev_hash = event.hash.clone();
        stored.push(event);
    }
    // PostgreSQL allows 65535 bound values: 4 a row leaves room for 3000 rows a statement.
    for chunk in stored.chunks(3000) {
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO audit_events (seq, body, prev_hash, hash) ");
        insert.push_values(chunk, |mut row, event| {
            row.push_bind(event.seq)
                .push_bind(event.body())
                .push_bind(event.prev_hash.clone())
                .push_bind(event.hash.clone());
        });
        insert.build().execute(&mut *conn).await.map_err(database)?;
    }
    notify(conn, EVENTS, &seq.to_string()).await
}

/// Sent when the transaction commits, to every node listening (this one too).
async fn notify(conn: &mut PgConnection, channel: &str, payload: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut *conn)
        .await
        .map_err(database)?;
    Ok(())
}

/// Writes step states, many in one statement (a batch never holds the same step twice: a
/// second transition of the same run would have failed its revision guard).
async fn upsert_steps(
    conn: &mut PgConnection,
    steps: &[(String, &StepState)],
) -> Result<(), StoreError> {
    // 14 values a row; PostgreSQL takes 65535 in one statement.
    for chunk in steps.chunks(4000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO run_steps (run_id, step_id, phase, position, status, attempt, attempts_before_round,
                                    started_at, finished_at, deadline, escalated_to, rendered, note, completed_by) ",
        );
        insert.push_values(chunk, |mut row, (run_id, step)| {
            row.push_bind(run_id.clone())
                .push_bind(step.step_id.clone())
                .push_bind(step.phase.as_str())
                .push_bind(i64::from(step.position))
                .push_bind(step.status.as_str())
                .push_bind(i64::from(step.attempt))
                .push_bind(i64::from(step.attempts_before_round))
                .push_bind(step.started_at.map(format_timestamp))
                .push_bind(step.finished_at.map(format_timestamp))
                .push_bind(step.deadline.map(format_timestamp))
                .push_bind(step.escalated_to.clone())
                .push_bind(step.rendered.as_ref().map(ToString::to_string))
                .push_bind(step.note.clone())
                .push_bind(step.completed_by.as_ref().map(|actor| actor.as_str().to_owned()));
        });
        insert.push(
            " ON CONFLICT (run_id, step_id) DO UPDATE SET
                 status = excluded.status, attempt = excluded.attempt,
                 attempts_before_round = excluded.attempts_before_round,
                 started_at = excluded.started_at, finished_at = excluded.finished_at,
                 deadline = excluded.deadline, escalated_to = excluded.escalated_to,
                 rendered = excluded.rendered, note = excluded.note, completed_by = excluded.completed_by",
        );
        insert.build().execute(&mut *conn).await.map_err(database)?;
    }
    Ok(())
}

/// Writes step attempts, many in one statement.
async fn upsert_attempts(
    conn: &mut PgConnection,
    attempts: &[(String, &Attempt)],
) -> Result<(), StoreError> {
    for chunk in attempts.chunks(4000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO step_attempts (run_id, step_id, number, status, started_at, finished_at, exit_code,
                                        http_status, final_url, stdout, stderr, stdout_truncated, stderr_truncated, json, error) ",
        );
        insert.push_values(chunk, |mut row, (run_id, attempt)| {
            row.push_bind(run_id.clone())
                .push_bind(attempt.step_id.clone())
                .push_bind(i64::from(attempt.number))
                .push_bind(attempt.status.map(StepStatus::as_str))
                .push_bind(attempt.started_at.map(format_timestamp))
                .push_bind(attempt.finished_at.map(format_timestamp))
                .push_bind(attempt.exit_code.map(i64::from))
                .push_bind(attempt.http_status.map(i64::from))
                .push_bind(attempt.final_url.clone())
                .push_bind(attempt.stdout.clone())
                .push_bind(attempt.stderr.clone())
                .push_bind(attempt.stdout_truncated)
                .push_bind(attempt.stderr_truncated)
                .push_bind(attempt.json.as_ref().map(ToString::to_string))
                .push_bind(attempt.error.clone());
        });
        insert.push(
            " ON CONFLICT (run_id, step_id, number) DO UPDATE SET
                 status = excluded.status, started_at = excluded.started_at, finished_at = excluded.finished_at,
                 exit_code = excluded.exit_code, http_status = excluded.http_status, final_url = excluded.final_url,
                 stdout = excluded.stdout, stderr = excluded.stderr,
                 stdout_truncated = excluded.stdout_truncated, stderr_truncated = excluded.stderr_truncated,
                 json = excluded.json, error = excluded.error",
        );
        insert.build().execute(&mut *conn).await.map_err(database)?;
    }
    Ok(())
}

/// Checks a transition's guard and applies its change to the run's row, inside the caller's
/// transaction. When the guard fails (`Conflict`, `LeaseLost`, `NoSuchRun`) nothing was
/// changed, so a group commit can go on with the other transitions of its batch.
async fn guard(
    conn: &mut PgConnection,
    run_id: Uuid,
    transition: &Transition,
) -> Result<(), StoreError> {
    let id = run_id.to_string();
    let at = format_timestamp(now());
    // One statement both checks that the transition was computed from the current
    // revision (and, for drivers, that the lease is still theirs) and applies the change;
    // the row lock it takes queues concurrent changes to the same run from other nodes.
    let updated = match &transition.run {
        Some(change) => sqlx::query(
            "UPDATE runs SET status = $1, phase = $2, commander = $3, finished_at = $4, updated_at = $5,
                 revision = revision + 1,
                 lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END,
                 lease_expires_at = CASE WHEN $6 THEN NULL ELSE lease_expires_at END
             WHERE id = $7 AND revision = $8 AND ($9::text IS NULL OR lease_owner = $9)",
        )
        .bind(change.status.as_str())
        .bind(change.phase.as_str())
        .bind(change.commander.as_str())
        .bind(change.finished_at.map(format_timestamp))
        .bind(&at)
        .bind(change.release_lease)
        .bind(&id)
        .bind(transition.revision)
        .bind(&transition.lease_owner),
        None => sqlx::query(
            "UPDATE runs SET updated_at = $1, revision = revision + 1
             WHERE id = $2 AND revision = $3 AND ($4::text IS NULL OR lease_owner = $4)",
        )
        .bind(&at)
        .bind(&id)
        .bind(transition.revision)
        .bind(&transition.lease_owner),
    }
    .execute(&mut *conn)
    .await
    .map_err(database)?;
    if updated.rows_affected() == 0 {
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT lease_owner FROM runs WHERE id = $1")
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(database)?;
        let owner = owner.ok_or(StoreError::NoSuchRun(run_id))?;
        return Err(match &transition.lease_owner {
            Some(expected) if owner.as_deref() != Some(expected.as_str()) => StoreError::LeaseLost,
            _ => StoreError::Conflict,
        });
    }
    Ok(())
}

/// Writes the rows of transitions whose guards passed, without their audit events: steps and
/// attempts of all of them in a statement each.
async fn write_rows(
    conn: &mut PgConnection,
    transitions: &[(Uuid, &Transition)],
) -> Result<(), StoreError> {
    let steps: Vec<_> = transitions
        .iter()
        .flat_map(|(run_id, transition)| {
            transition.steps.iter().map(|step| (run_id.to_string(), step))
        })
        .collect();
    upsert_steps(&mut *conn, &steps).await?;
    let attempts: Vec<_> = transitions
        .iter()
        .flat_map(|(run_id, transition)| {
            transition.attempts.iter().map(|attempt| (run_id.to_string(), attempt))
        })
        .collect();
    upsert_attempts(&mut *conn, &attempts).await?;
    for (run_id, transition) in transitions {
        write_the_rest(&mut *conn, *run_id, transition).await?;
    }
    Ok(())
}

/// Votes, assignments and notes: rare, one statement each.
async fn write_the_rest(
    conn: &mut PgConnection,
    run_id: Uuid,
    transition: &Transition,
) -> Result<(), StoreError> {
    let id = run_id.to_string();
    for vote in &transition.voided_votes {
        sqlx::query("UPDATE votes SET void = TRUE WHERE id = $1 AND run_id = $2")
            .bind(vote.to_string())
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map_err(database)?;
    }
    for vote in &transition.votes {
        let inserted = sqlx::query(
            "INSERT INTO votes (id, run_id, step_id, actor, approve, comment, bound, digest, at, void)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(vote.id.to_string())
        .bind(&id)
        .bind(&vote.step_id)
        .bind(vote.actor.as_str())
        .bind(vote.approve)
        .bind(&vote.comment)
        .bind(vote.bound.to_string())
        .bind(&vote.digest)
        .bind(format_timestamp(vote.at))
        .bind(vote.void)
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => return Err(StoreError::Conflict),
            Err(error) => return Err(database(error)),
        }
    }
    for assignment in &transition.assign {
        sqlx::query(
            "INSERT INTO assignments (run_id, role, person) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&assignment.role)
        .bind(assignment.person.as_str())
        .execute(&mut *conn)
        .await
        .map_err(database)?;
    }
    for assignment in &transition.unassign {
        sqlx::query("DELETE FROM assignments WHERE run_id = $1 AND role = $2 AND person = $3")
            .bind(&id)
            .bind(&assignment.role)
            .bind(assignment.person.as_str())
            .execute(&mut *conn)
            .await
            .map_err(database)?;
    }
    for note in &transition.notes {
        sqlx::query("INSERT INTO notes (id, run_id, step_id, author, text, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(note.id.to_string())
            .bind(&id)
            .bind(&note.step_id)
            .bind(note.author.as_str())
            .bind(&note.text)
            .bind(format_timestamp(note.at))
            .execute(&mut *conn)
            .await
            .map_err(database)?;
    }
    Ok(())
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
                    let outcome =
                        commit_alone(&pool, &signals, queued.run_id, &queued.transition).await;
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
        match guard(&mut tx, queued.run_id, &queued.transition).await {
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
    write_rows(&mut tx, &passed).await?;
    for run_id in for_a_driver {
        notify(&mut tx, WORK, &run_id.to_string()).await?;
    }
    append_events(&mut tx, &events).await?;
    tx.commit().await.map_err(|error| BatchFailed::AtCommit(error.to_string()))?;
    Ok(outcomes)
}

/// Commits one transition in a transaction of its own.
async fn commit_alone(
    pool: &PgPool,
    signals: &ChangeSignals,
    run_id: Uuid,
    transition: &Transition,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(database)?;
    guard(&mut tx, run_id, transition).await?;
    write_rows(&mut tx, &[(run_id, transition)]).await?;
    // A person's change (an answer, a decision) may leave the run for a driver to take.
    let for_a_driver = transition.lease_owner.is_none();
    if for_a_driver {
        notify(&mut tx, WORK, &run_id.to_string()).await?;
    }
    append_events(&mut tx, &transition.events).await?;
    tx.commit().await.map_err(database)?;
    signals.events_appended();
    if for_a_driver {
        signals.work_available();
    }
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn publish(
        &self,
        name: &str,
        source: &str,
        by: &Actor,
        at: Timestamp,
    ) -> Result<Published, StoreError> {
        let sha256 = sha256_hex(source.as_bytes());
        let mut tx = self.begin().await?;
        // Nodes that start together publish the same folder: one at a time per name.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("runbook:{name}"))
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        let latest = sqlx::query(
            "SELECT * FROM runbook_versions WHERE name = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database)?
        .map(|row| runbook_version(&row))
        .transpose()?;
        if let Some(latest) = latest.as_ref().filter(|latest| latest.sha256 == sha256) {
            return Ok(Published::Unchanged(latest.clone()));
        }
        let version = RunbookVersion {
            name: name.to_owned(),
            version: latest.map_or(1, |latest| latest.version + 1),
            sha256,
            source: source.to_owned(),
            published_by: by.clone(),
            published_at: at,
        };
        sqlx::query(
            "INSERT INTO runbook_versions (name, version, sha256, source, published_by, published_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&version.name)
        .bind(i64::from(version.version))
        .bind(&version.sha256)
        .bind(&version.source)
        .bind(version.published_by.as_str())
        .bind(format_timestamp(version.published_at))
        .execute(&mut *tx)
        .await
        .map_err(database)?;
        append_events(&mut tx, &[published_event(&version)]).await?;
        tx.commit().await.map_err(database)?;
        self.signals.events_appended();
        Ok(Published::New(version))
    }

    async fn runbook_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<RunbookVersion>, StoreError> {
        sqlx::query(
            "SELECT * FROM runbook_versions WHERE name = $1 AND ($2::bigint IS NULL OR version = $2)
             ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .bind(version.map(i64::from))
        .fetch_optional(&self.pool)
        .await
        .map_err(database)?
        .map(|row| runbook_version(&row))
        .transpose()
    }

    async fn runbook_names(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT DISTINCT name FROM runbook_versions ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(database)
    }

    async fn runbook_versions(&self, name: &str) -> Result<Vec<RunbookVersion>, StoreError> {
        sqlx::query("SELECT * FROM runbook_versions WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(database)?
            .iter()
            .map(runbook_version)
            .collect()
    }

    async fn enabled_user(&self, name: &str) -> Result<bool, StoreError> {
        let found: Option<bool> = sqlx::query_scalar("SELECT disabled FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(database)?;
        Ok(found == Some(false))
    }

    async fn create_run(&self, new: NewRun) -> Result<(), StoreError> {
        let run = &new.run;
        let id = run.id.to_string();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO runs (id, runbook, version, sha256, mode, status, phase, started_by, commander, params,
                               lock_key, created_at, updated_at, finished_at, lease_owner, lease_expires_at, revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, 0)",
        )
        .bind(&id)
        .bind(&run.runbook)
        .bind(i64::from(run.version))
        .bind(&run.sha256)
        .bind(run.mode.as_str())
        .bind(run.status.as_str())
        .bind(run.phase.as_str())
        .bind(run.started_by.as_str())
        .bind(run.commander.as_str())
        .bind(json_to(&run.params))
        .bind(&run.lock_key)
        .bind(format_timestamp(run.created_at))
        .bind(format_timestamp(run.updated_at))
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            if is_unique_violation(&error)
                && let Some(key) = &run.lock_key
            {
                // The failed statement ended the transaction: ask outside it who holds the key.
                drop(tx);
                let holder: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM runs WHERE lock_key = $1 AND status IN ('running', 'waiting', 'needs_attention')",
                )
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(database)?;
                return match holder {
                    Some(holder) => {
                        Err(StoreError::LockHeld { key: key.clone(), run_id: uuid(&holder)? })
                    }
                    // The holder finished in between: the caller may simply try again.
                    None => Err(StoreError::Conflict),
                };
            }
            return Err(database(error));
        }
        let steps: Vec<_> = new.steps.iter().map(|step| (id.clone(), step)).collect();
        upsert_steps(&mut tx, &steps).await?;
        for assignment in &new.assignments {
            sqlx::query(
                "INSERT INTO assignments (run_id, role, person) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(&assignment.role)
            .bind(assignment.person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        }
        notify(&mut tx, WORK, &id).await?;
        append_events(&mut tx, std::slice::from_ref(&new.event)).await?;
        tx.commit().await.map_err(database)?;
        self.signals.events_appended();
        self.signals.work_available();
        Ok(())
    }

    async fn run(&self, id: Uuid) -> Result<Option<RunSnapshot>, StoreError> {
        let key = id.to_string();
        // One snapshot of the whole run, however many nodes write it meanwhile.
        let mut tx = self.snapshot().await?;
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(database)?
        else {
            return Ok(None);
        };
        let run = run_record(&row)?;
        let steps = sqlx::query(
            "SELECT * FROM run_steps WHERE run_id = $1 ORDER BY phase = 'rollback', position",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await
        .map_err(database)?
        .iter()
        .map(step_state)
        .collect::<Result<_, StoreError>>()?;
        let attempts =
            sqlx::query("SELECT * FROM step_attempts WHERE run_id = $1 ORDER BY step_id, number")
                .bind(&key)
                .fetch_all(&mut *tx)
                .await
                .map_err(database)?
                .iter()
                .map(attempt)
                .collect::<Result<_, StoreError>>()?;
        let votes = sqlx::query("SELECT * FROM votes WHERE run_id = $1 ORDER BY at, id")
            .bind(&key)
            .fetch_all(&mut *tx)
            .await
            .map_err(database)?
            .iter()
            .map(vote)
            .collect::<Result<_, StoreError>>()?;
        let assignments = sqlx::query(
            "SELECT role, person FROM assignments WHERE run_id = $1 ORDER BY role, person",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await
        .map_err(database)?
        .iter()
        .map(assignment)
        .collect::<Result<_, StoreError>>()?;
        let notes = sqlx::query("SELECT * FROM notes WHERE run_id = $1 ORDER BY at, id")
            .bind(&key)
            .fetch_all(&mut *tx)
            .await
            .map_err(database)?
            .iter()
            .map(note)
            .collect::<Result<_, StoreError>>()?;
        tx.commit().await.map_err(database)?;
        Ok(Some(RunSnapshot { run, steps, attempts, votes, assignments, notes }))
    }

    async fn run_status(&self, id: Uuid) -> Result<Option<RunStatus>, StoreError> {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(database)?;
        status.as_deref().map(name).transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM runs
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR runbook = $2)
               AND ($3::text IS NULL OR mode = $3) AND ($4::text IS NULL OR created_at >= $4)
               AND ($5::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = $5))
             ORDER BY created_at DESC, id DESC LIMIT $6",
        )
        .bind(filter.status.map(RunStatus::as_str))
        .bind(&filter.runbook)
        .bind(filter.mode.map(RunMode::as_str))
        .bind(filter.since.map(format_timestamp))
        .bind(filter.before.map(|id| id.to_string()))
        .bind(i64::from(filter.limit.unwrap_or(u32::MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(database)?
        .iter()
        .map(run_record)
        .collect()
    }

    async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM runs GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(database)?;
        rows.into_iter()
            .map(|(status, count)| Ok((name(&status)?, u64::try_from(count).unwrap_or(0))))
            .collect()
    }

    async fn find_run(&self, id_prefix: &str) -> Result<Vec<Uuid>, StoreError> {
        let pattern = format!("{}%", id_prefix.replace(['%', '_', '\\'], ""));
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE id LIKE $1 ORDER BY created_at DESC LIMIT 10",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        ids.iter().map(|id| uuid(id)).collect()
    }

    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let queued = self.commits.send(QueuedCommit { run_id, transition, done }).await;
        match queued {
            Ok(()) => outcome.await.unwrap_or_else(|_| {
                Err(StoreError::Database("the commit queue stopped".to_owned()))
            }),
            Err(tokio::sync::mpsc::error::SendError(queued)) => {
                commit_alone(&self.pool, &self.signals, run_id, &queued.transition).await
            }
        }
    }

    async fn acquire_lease(
        &self,
        run_id: Uuid,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Two nodes taking over the same run both reach this row; the second waits for the
        // first's row lock, re-reads the row and finds the lease taken.
        let updated = sqlx::query(
            "UPDATE runs SET lease_owner = $1, lease_expires_at = $2
             WHERE id = $3 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at < $4)",
        )
        .bind(&lease.owner)
        .bind(format_timestamp(lease.expires_at))
        .bind(run_id.to_string())
        .bind(format_timestamp(now))
        .execute(&self.pool)
        .await
        .map_err(database)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn renew_lease(&self, run_id: Uuid, lease: &Lease) -> Result<bool, StoreError> {
        let updated =
            sqlx::query("UPDATE runs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3")
                .bind(format_timestamp(lease.expires_at))
                .bind(run_id.to_string())
                .bind(&lease.owner)
                .execute(&self.pool)
                .await
                .map_err(database)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn release_lease(&self, run_id: Uuid, owner: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let released = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
        )
        .bind(run_id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(database)?;
        if released.rows_affected() == 1 {
            notify(&mut tx, WORK, &run_id.to_string()).await?;
        }
        tx.commit().await.map_err(database)?;
        self.signals.work_available();
        Ok(())
    }

    async fn runs_needing_a_driver(&self, now: Timestamp) -> Result<Vec<Uuid>, StoreError> {
        // Only candidates: several nodes may see the same run, and `acquire_lease` is the
        // claim exactly one of them wins.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs
             WHERE status IN ('running', 'waiting') AND (lease_owner IS NULL OR lease_expires_at < $1)
               AND (status = 'running'
                    OR EXISTS (SELECT 1 FROM run_steps s
                               WHERE s.run_id = runs.id AND s.status = 'waiting' AND s.deadline < $1))
             ORDER BY created_at",
        )
        .bind(format_timestamp(now))
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        ids.iter().map(|id| uuid(id)).collect()
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_events(&mut tx, &events).await?;
        tx.commit().await.map_err(database)?;
        self.signals.events_appended();
        Ok(())
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        sqlx::query(
            "SELECT seq, body, prev_hash, hash FROM audit_events
             WHERE ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR actor = $2)
               AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR at >= $4)
               AND ($5::text IS NULL OR at < $5) AND seq > $6
             ORDER BY seq LIMIT $7",
        )
        .bind(filter.run_id.map(|id| id.to_string()))
        .bind(filter.actor.as_ref().map(Actor::as_str))
        .bind(&filter.action)
        .bind(filter.since.map(format_timestamp))
        .bind(filter.until.map(format_timestamp))
        .bind(filter.after_seq.unwrap_or(0))
        .bind(i64::from(filter.limit.unwrap_or(u32::MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(database)?
        .iter()
        .map(audit_event)
        .collect()
    }

    async fn latest_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM audit_events")
            .fetch_one(&self.pool)
            .await
            .map_err(database)?;
        Ok(seq.unwrap_or(0))
    }

    async fn notification_cursor(&self, target: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT after_seq FROM notification_cursors WHERE target = $1")
            .bind(target)
            .fetch_optional(&self.pool)
            .await
            .map_err(database)
    }

    async fn set_notification_cursor(
        &self,
        target: &str,
        after_seq: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notification_cursors (target, after_seq) VALUES ($1, $2)
             ON CONFLICT (target) DO UPDATE
             SET after_seq = greatest(notification_cursors.after_seq, excluded.after_seq)",
        )
        .bind(target)
        .bind(after_seq)
        .execute(&self.pool)
        .await
        .map_err(database)?;
        Ok(())
    }

    async fn claim_notification_target(
        &self,
        target: &str,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let claimed = sqlx::query(
            "INSERT INTO notification_cursors (target, after_seq, owner, owner_expires_at)
             VALUES ($1, (SELECT coalesce(max(seq), 0) FROM audit_events), $2, $3)
             ON CONFLICT (target) DO UPDATE SET owner = excluded.owner, owner_expires_at = excluded.owner_expires_at
             WHERE notification_cursors.owner IS NULL OR notification_cursors.owner = excluded.owner
                OR notification_cursors.owner_expires_at < $4",
        )
        .bind(target)
        .bind(&lease.owner)
        .bind(format_timestamp(lease.expires_at))
        .bind(format_timestamp(now))
        .execute(&self.pool)
        .await
        .map_err(database)?;
        Ok(claimed.rows_affected() == 1)
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

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let forget_before = format_timestamp(node.last_seen - chrono::Duration::days(1));
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO nodes (id, address, started_at, last_seen) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, last_seen = excluded.last_seen",
        )
        .bind(&node.id)
        .bind(&node.address)
        .bind(format_timestamp(node.started_at))
        .bind(format_timestamp(node.last_seen))
        .execute(&mut *tx)
        .await
        .map_err(database)?;
        sqlx::query("DELETE FROM nodes WHERE last_seen < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        tx.commit().await.map_err(database)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        sqlx::query("SELECT * FROM nodes ORDER BY started_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(database)?
            .iter()
            .map(node)
            .collect()
    }

    fn changes(&self) -> Changes {
        self.signals.subscribe()
    }
}
