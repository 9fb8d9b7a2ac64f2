//! The SQLite store: the embedded default. WAL, `synchronous=FULL`, foreign keys on; every
//! write is one `BEGIN IMMEDIATE` transaction, so writers queue instead of failing midway.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
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

/// A Steady database in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
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
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(database)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(database)?;
        let store = SqliteStore { pool, writer, signals: Arc::default() };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations in `migrations/sqlite` that this database has not seen yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations/sqlite")
            .run(&self.pool)
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
        sqlx::query("VACUUM INTO ?").bind(target).execute(&self.pool).await.map_err(database)?;
        Ok(())
    }

    /// The pool, for tests and tools that must reach under the store (the tamper test).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn begin(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(database)
    }
}

/// A column of a row, or `Corrupt` when it is missing or of another type: never a panic.
pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|error| StoreError::Corrupt(format!("column `{column}`: {error}")))
}

pub(crate) fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

/// Unique-constraint violations are how SQLite says "someone else got there first".
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(crate) async fn append_events(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let last = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(database)?;
    let (mut seq, mut prev_hash) = match last {
        Some(row) => (get::<i64>(&row, "seq")?, get::<String>(&row, "hash")?),
        None => (0, GENESIS.to_owned()),
    };
    let at = now();
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let event = AuditEvent::chain(seq, Uuid::now_v7(), at, &prev_hash, event);
        prev_hash = event.hash.clone();
        stored.push(event);
    }
    // SQLite allows 32766 bound values: 4 a row leaves room for 3000 rows a statement.
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
    Ok(())
}

async fn upsert_step(
    conn: &mut SqliteConnection,
    run_id: &str,
    step: &StepState,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO run_steps (run_id, step_id, phase, position, status, attempt, attempts_before_round,
                                started_at, finished_at, deadline, escalated_to, rendered, note, completed_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (run_id, step_id) DO UPDATE SET
             status = excluded.status, attempt = excluded.attempt,
             attempts_before_round = excluded.attempts_before_round,
             started_at = excluded.started_at, finished_at = excluded.finished_at,
             deadline = excluded.deadline, escalated_to = excluded.escalated_to,
             rendered = excluded.rendered, note = excluded.note, completed_by = excluded.completed_by",
    )
    .bind(run_id)
    .bind(&step.step_id)
    .bind(step.phase.as_str())
    .bind(i64::from(step.position))
    .bind(step.status.as_str())
    .bind(i64::from(step.attempt))
    .bind(i64::from(step.attempts_before_round))
    .bind(step.started_at.map(format_timestamp))
    .bind(step.finished_at.map(format_timestamp))
    .bind(step.deadline.map(format_timestamp))
    .bind(&step.escalated_to)
    .bind(step.rendered.as_ref().map(ToString::to_string))
    .bind(&step.note)
    .bind(step.completed_by.as_ref().map(Actor::as_str))
    .execute(&mut *conn)
    .await
    .map_err(database)?;
    Ok(())
}

async fn upsert_attempt(
    conn: &mut SqliteConnection,
    run_id: &str,
    attempt: &Attempt,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO step_attempts (run_id, step_id, number, status, started_at, finished_at, exit_code,
                                    http_status, final_url, stdout, stderr, stdout_truncated, stderr_truncated, json, error)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (run_id, step_id, number) DO UPDATE SET
             status = excluded.status, started_at = excluded.started_at, finished_at = excluded.finished_at,
             exit_code = excluded.exit_code, http_status = excluded.http_status, final_url = excluded.final_url,
             stdout = excluded.stdout, stderr = excluded.stderr,
             stdout_truncated = excluded.stdout_truncated, stderr_truncated = excluded.stderr_truncated,
             json = excluded.json, error = excluded.error",
    )
    .bind(run_id)
    .bind(&attempt.step_id)
    .bind(i64::from(attempt.number))
    .bind(attempt.status.map(StepStatus::as_str))
    .bind(attempt.started_at.map(format_timestamp))
    .bind(attempt.finished_at.map(format_timestamp))
    .bind(attempt.exit_code)
    .bind(attempt.http_status.map(i64::from))
    .bind(&attempt.final_url)
    .bind(&attempt.stdout)
    .bind(&attempt.stderr)
    .bind(attempt.stdout_truncated)
    .bind(attempt.stderr_truncated)
    .bind(attempt.json.as_ref().map(ToString::to_string))
    .bind(&attempt.error)
    .execute(&mut *conn)
    .await
    .map_err(database)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn publish(
        &self,
        name: &str,
        source: &str,
        by: &Actor,
        at: Timestamp,
    ) -> Result<Published, StoreError> {
        let sha256 = sha256_hex(source.as_bytes());
        let mut tx = self.begin().await?;
        let latest = sqlx::query(
            "SELECT * FROM runbook_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
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
             VALUES (?, ?, ?, ?, ?, ?)",
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
        let row =
            match version {
                Some(version) => {
                    sqlx::query("SELECT * FROM runbook_versions WHERE name = ? AND version = ?")
                        .bind(name)
                        .bind(i64::from(version))
                        .fetch_optional(&self.pool)
                        .await
                }
                None => sqlx::query(
                    "SELECT * FROM runbook_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await,
            }
            .map_err(database)?;
        row.map(|row| runbook_version(&row)).transpose()
    }

    async fn runbook_names(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT DISTINCT name FROM runbook_versions ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(database)
    }

    async fn runbook_versions(&self, name: &str) -> Result<Vec<RunbookVersion>, StoreError> {
        sqlx::query("SELECT * FROM runbook_versions WHERE name = ? ORDER BY version")
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(database)?
            .iter()
            .map(runbook_version)
            .collect()
    }

    async fn enabled_user(&self, name: &str) -> Result<bool, StoreError> {
        let found: Option<bool> = sqlx::query_scalar("SELECT disabled FROM users WHERE name = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, 0)",
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
                let holder = sqlx::query(
                        "SELECT id FROM runs WHERE lock_key = ? AND status IN ('running', 'waiting', 'needs_attention')",
                    )
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(database)?;
                let run_id = uuid(&get::<String>(&holder, "id")?)?;
                return Err(StoreError::LockHeld { key: key.clone(), run_id });
            }
            return Err(database(error));
        }
        for step in &new.steps {
            upsert_step(&mut tx, &id, step).await?;
        }
        for assignment in &new.assignments {
            sqlx::query(
                "INSERT OR IGNORE INTO assignments (run_id, role, person) VALUES (?, ?, ?)",
            )
            .bind(&id)
            .bind(&assignment.role)
            .bind(assignment.person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        }
        append_events(&mut tx, std::slice::from_ref(&new.event)).await?;
        tx.commit().await.map_err(database)?;
        self.signals.events_appended();
        self.signals.work_available();
        Ok(())
    }

    async fn run(&self, id: Uuid) -> Result<Option<RunSnapshot>, StoreError> {
        let key = id.to_string();
        let mut conn = self.pool.acquire().await.map_err(database)?;
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(&key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(database)?
        else {
            return Ok(None);
        };
        let run = run_record(&row)?;
        let steps = sqlx::query(
            "SELECT * FROM run_steps WHERE run_id = ? ORDER BY phase = 'rollback', position",
        )
        .bind(&key)
        .fetch_all(&mut *conn)
        .await
        .map_err(database)?
        .iter()
        .map(step_state)
        .collect::<Result<_, StoreError>>()?;
        let attempts =
            sqlx::query("SELECT * FROM step_attempts WHERE run_id = ? ORDER BY step_id, number")
                .bind(&key)
                .fetch_all(&mut *conn)
                .await
                .map_err(database)?
                .iter()
                .map(attempt)
                .collect::<Result<_, StoreError>>()?;
        let votes = sqlx::query("SELECT * FROM votes WHERE run_id = ? ORDER BY at, id")
            .bind(&key)
            .fetch_all(&mut *conn)
            .await
            .map_err(database)?
            .iter()
            .map(vote)
            .collect::<Result<_, StoreError>>()?;
        let assignments = sqlx::query(
            "SELECT role, person FROM assignments WHERE run_id = ? ORDER BY role, person",
        )
        .bind(&key)
        .fetch_all(&mut *conn)
        .await
        .map_err(database)?
        .iter()
        .map(assignment)
        .collect::<Result<_, StoreError>>()?;
        let notes = sqlx::query("SELECT * FROM notes WHERE run_id = ? ORDER BY at, id")
            .bind(&key)
            .fetch_all(&mut *conn)
            .await
            .map_err(database)?
            .iter()
            .map(note)
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(RunSnapshot { run, steps, attempts, votes, assignments, notes }))
    }

    async fn run_status(&self, id: Uuid) -> Result<Option<RunStatus>, StoreError> {
        sqlx::query("SELECT status FROM runs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(database)?
            .map(|row| name(&get::<String>(&row, "status")?))
            .transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM runs
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR runbook = ?2) AND (?3 IS NULL OR mode = ?3)
               AND (?4 IS NULL OR created_at >= ?4)
               AND (?5 IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?5))
             ORDER BY created_at DESC, id DESC LIMIT ?6",
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
        let pattern = format!("{}%", id_prefix.replace(['%', '_'], ""));
        sqlx::query("SELECT id FROM runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 10")
            .bind(pattern)
            .fetch_all(&self.pool)
            .await
            .map_err(database)?
            .iter()
            .map(|row| uuid(&get::<String>(row, "id")?))
            .collect()
    }

    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        let id = run_id.to_string();
        let mut tx = self.begin().await?;
        let at = format_timestamp(now());
        // One statement both checks that the transition was computed from the current
        // revision (and, for drivers, that the lease is still theirs) and applies the change.
        let updated = match &transition.run {
            Some(change) => sqlx::query(
                "UPDATE runs SET status = ?1, phase = ?2, commander = ?3, finished_at = ?4, updated_at = ?5,
                     revision = revision + 1,
                     lease_owner = CASE WHEN ?6 THEN NULL ELSE lease_owner END,
                     lease_expires_at = CASE WHEN ?6 THEN NULL ELSE lease_expires_at END
                 WHERE id = ?7 AND revision = ?8 AND (?9 IS NULL OR lease_owner = ?9)",
            )
            .bind(change.status.as_str())
            .bind(change.phase.as_str())
            .bind(change.commander.as_str())
            .bind(change.finished_at.map(format_timestamp))
            .bind(&at)
            .bind(change.release_lease),
            None => sqlx::query(
                "UPDATE runs SET updated_at = ?5, revision = revision + 1
                 WHERE id = ?7 AND revision = ?8 AND (?9 IS NULL OR lease_owner = ?9)",
            )
            .bind(None::<&str>)
            .bind(None::<&str>)
            .bind(None::<&str>)
            .bind(None::<&str>)
            .bind(&at)
            .bind(false),
        }
        .bind(&id)
        .bind(transition.revision)
        .bind(&transition.lease_owner)
        .execute(&mut *tx)
        .await
        .map_err(database)?;
        if updated.rows_affected() == 0 {
            let row = sqlx::query("SELECT revision, lease_owner FROM runs WHERE id = ?")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database)?
                .ok_or(StoreError::NoSuchRun(run_id))?;
            let owner = get::<Option<String>>(&row, "lease_owner")?;
            return Err(match &transition.lease_owner {
                Some(expected) if owner.as_deref() != Some(expected.as_str()) => {
                    StoreError::LeaseLost
                }
                _ => StoreError::Conflict,
            });
        }
        for step in &transition.steps {
            upsert_step(&mut tx, &id, step).await?;
        }
        for attempt in &transition.attempts {
            upsert_attempt(&mut tx, &id, attempt).await?;
        }
        for vote in &transition.voided_votes {
            sqlx::query("UPDATE votes SET void = 1 WHERE id = ? AND run_id = ?")
                .bind(vote.to_string())
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        for vote in &transition.votes {
            let inserted = sqlx::query(
                "INSERT INTO votes (id, run_id, step_id, actor, approve, comment, bound, digest, at, void)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(error) if is_unique_violation(&error) => return Err(StoreError::Conflict),
                Err(error) => return Err(database(error)),
            }
        }
        for assignment in &transition.assign {
            sqlx::query(
                "INSERT OR IGNORE INTO assignments (run_id, role, person) VALUES (?, ?, ?)",
            )
            .bind(&id)
            .bind(&assignment.role)
            .bind(assignment.person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        }
        for assignment in &transition.unassign {
            sqlx::query("DELETE FROM assignments WHERE run_id = ? AND role = ? AND person = ?")
                .bind(&id)
                .bind(&assignment.role)
                .bind(assignment.person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        for note in &transition.notes {
            sqlx::query("INSERT INTO notes (id, run_id, step_id, author, text, at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(note.id.to_string())
                .bind(&id)
                .bind(&note.step_id)
                .bind(note.author.as_str())
                .bind(&note.text)
                .bind(format_timestamp(note.at))
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        append_events(&mut tx, &transition.events).await?;
        tx.commit().await.map_err(database)?;
        self.signals.events_appended();
        // A person's change (an answer, a decision) may leave the run for a driver to take.
        if transition.lease_owner.is_none() {
            self.signals.work_available();
        }
        Ok(())
    }

    async fn acquire_lease(
        &self,
        run_id: Uuid,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE runs SET lease_owner = ?1, lease_expires_at = ?2
             WHERE id = ?3 AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_expires_at < ?4)",
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
            sqlx::query("UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?")
                .bind(format_timestamp(lease.expires_at))
                .bind(run_id.to_string())
                .bind(&lease.owner)
                .execute(&self.pool)
                .await
                .map_err(database)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn release_lease(&self, run_id: Uuid, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?")
            .bind(run_id.to_string())
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(database)?;
        self.signals.work_available();
        Ok(())
    }

    async fn runs_needing_a_driver(&self, now: Timestamp) -> Result<Vec<Uuid>, StoreError> {
        let now = format_timestamp(now);
        sqlx::query(
            "SELECT id FROM runs
             WHERE (lease_owner IS NULL OR lease_expires_at < ?1)
               AND (status = 'running'
                    OR (status = 'waiting' AND EXISTS (
                        SELECT 1 FROM run_steps s
                        WHERE s.run_id = runs.id AND s.status = 'waiting' AND s.deadline < ?1)))
             ORDER BY created_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(database)?
        .iter()
        .map(|row| uuid(&get::<String>(row, "id")?))
        .collect()
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
             WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3)
               AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5) AND seq > ?6
             ORDER BY seq LIMIT ?7",
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
        sqlx::query_scalar("SELECT after_seq FROM notification_cursors WHERE target = ?")
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
            "INSERT INTO notification_cursors (target, after_seq) VALUES (?1, ?2)
             ON CONFLICT (target) DO UPDATE SET after_seq = max(after_seq, excluded.after_seq)",
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
             VALUES (?1, (SELECT coalesce(max(seq), 0) FROM audit_events), ?2, ?3)
             ON CONFLICT (target) DO UPDATE SET owner = excluded.owner, owner_expires_at = excluded.owner_expires_at
             WHERE notification_cursors.owner IS NULL OR notification_cursors.owner = excluded.owner
                OR notification_cursors.owner_expires_at < ?4",
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
                     FROM (SELECT seq, prev_hash, hash, body FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?)",
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

    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let forget_before = format_timestamp(node.last_seen - chrono::Duration::days(1));
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO nodes (id, address, started_at, last_seen) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, last_seen = excluded.last_seen",
        )
        .bind(&node.id)
        .bind(&node.address)
        .bind(format_timestamp(node.started_at))
        .bind(format_timestamp(node.last_seen))
        .execute(&mut *tx)
        .await
        .map_err(database)?;
        sqlx::query("DELETE FROM nodes WHERE last_seen < ?")
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
