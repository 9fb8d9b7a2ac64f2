//! Runs on either database: creating them, reading them back, and their leases. How a
//! transition is stored is `transitions`.

use async_trait::async_trait;
use steady_engine::audit::NewEvent;
use steady_engine::audit::format_timestamp;
use steady_engine::rehearsal::{Rehearsal, RehearsalQuery};
use steady_engine::run::*;
use steady_engine::store::{Filed, Leases, Runs, StoreError};
use uuid::Uuid;

use super::audit::append_events;
use super::transitions::{assign_statements, commit_alone, step_values, upsert_steps};
use super::{Backend, SqlStore, hint_work};
use crate::codec::{Columns, json_to, name, uuid};
use crate::rows::{assignment, attempt, note, run_record, step_state, vote};
use crate::sql::{database, sql};

/// The statuses of an active run, the ones that hold its lock key.
const ACTIVE: &str = "('running', 'waiting', 'needs_attention')";
/// The statuses of a run an alert is added to: a proposal, or an active run.
const OPEN: &str = "('proposed', 'running', 'waiting', 'needs_attention')";

/// Inserts a new run (a proposal included) with its steps, roles and event inside `tx`: false,
/// with nothing written, when a unique index refused the run (its lock key is held, or its
/// subject has a proposal). On PostgreSQL the transaction is then unusable.
async fn insert_run<B: Backend>(
    tx: &mut sqlx::Transaction<'static, B::Db>,
    new: &NewRun,
) -> Result<bool, StoreError> {
    let run = &new.run;
    let id = run.id.to_string();
    let inserted = sql(
        "INSERT INTO runs (id, runbook, version, sha256, mode, status, phase, started_by, commander, params,
                           lock_key, created_at, updated_at, finished_at, lease_owner, lease_expires_at, revision,
                           origin, subject, dry_run_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $17, $18, 0, $14, $15, $16)",
    )
    .bind(&id)
    .bind(&run.runbook)
    .bind(i64::from(run.version))
    .bind(&run.sha256)
    .bind(run.mode.as_str())
    .bind(run.status.as_str())
    .bind(run.phase.as_str())
    .bind(run.started_by.to_string())
    .bind(run.commander.to_string())
    .bind(json_to(&run.params))
    .bind(&run.lock_key)
    .bind(format_timestamp(run.created_at))
    .bind(format_timestamp(run.updated_at))
    .bind(run.origin.as_str())
    .bind(run.subject())
    .bind(run.dry_run.map(|id| id.to_string()))
    // A run created under a lease: one a terminal drives itself (`Engine::start_run_here`).
    .bind(run.lease.as_ref().map(|lease| lease.owner.as_str()))
    .bind(run.lease.as_ref().map(|lease| format_timestamp(lease.expires_at)))
    .insert_unique(&mut **tx)
    .await?;
    if !inserted {
        return Ok(false);
    }
    let steps = new.steps.iter().map(|step| step_values(&id, step)).collect();
    upsert_steps(&mut **tx, steps).await?;
    for statement in assign_statements(&id, &new.assignments) {
        statement.execute(&mut **tx).await?;
    }
    if run.status.is_active() {
        hint_work::<B>(&mut **tx, run.id).await?;
    }
    append_events::<B>(&mut **tx, std::slice::from_ref(&new.event)).await?;
    Ok(true)
}

#[async_trait]
impl<B: Backend> Runs for SqlStore<B> {
    async fn create_run(&self, new: NewRun) -> Result<(), StoreError> {
        let run = &new.run;
        let id = run.id.to_string();
        let mut tx = self.backend.begin().await?;
        if !insert_run::<B>(&mut tx, &new).await? {
            let Some(key) = &run.lock_key else {
                return Err(StoreError::Database(format!("run {id} already exists")));
            };
            // A failed statement ends a PostgreSQL transaction: ask outside it who holds the key.
            drop(tx);
            let holder =
                sql(format!("SELECT id FROM runs WHERE lock_key = $1 AND status IN {ACTIVE}"))
                    .bind(key)
                    .fetch_optional(&mut *self.backend.conn().await?)
                    .await?;
            return match holder {
                Some(holder) => Err(StoreError::LockHeld {
                    key: key.clone(),
                    run_id: uuid(&holder.text("id")?)?,
                }),
                // The holder finished in between: the caller may simply try again.
                None => Err(StoreError::Conflict),
            };
        }
        tx.commit().await.map_err(database)?;
        self.backend.signals().events_appended();
        self.backend.signals().work_available();
        Ok(())
    }

    async fn file_alert(
        &self,
        subject: &str,
        mut event: NewEvent,
        proposal: Option<NewRun>,
        at: Timestamp,
    ) -> Result<Filed, StoreError> {
        // Twice at most: a proposal another node inserted between our look and our insert is
        // found by the second look.
        for _ in 0..3 {
            let mut tx = self.backend.begin().await?;
            let open = sql(format!(
                "SELECT id, status FROM runs WHERE subject = $1 AND status IN {OPEN}
                 ORDER BY status = 'proposed', created_at LIMIT 1"
            ))
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = open {
                let run_id = uuid(&row.text("id")?)?;
                event.run_id = Some(run_id);
                // An alert keeps a proposal alive: it expires counting from its latest alert.
                // A new revision, so that an expiry computed before this alert is refused.
                sql("UPDATE runs SET updated_at = $1, revision = revision + 1
                     WHERE id = $2 AND status = 'proposed'")
                .bind(format_timestamp(at))
                .bind(run_id.to_string())
                .execute(&mut *tx)
                .await?;
                append_events::<B>(&mut tx, std::slice::from_ref(&event)).await?;
                tx.commit().await.map_err(database)?;
                self.backend.signals().events_appended();
                return Ok(Filed::Added(run_id));
            }
            let Some(new) = &proposal else {
                return Ok(Filed::Unmatched);
            };
            if insert_run::<B>(&mut tx, new).await? {
                tx.commit().await.map_err(database)?;
                self.backend.signals().events_appended();
                return Ok(Filed::Proposed(new.run.id));
            }
        }
        Err(StoreError::Conflict)
    }

    async fn take_proposal(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        let lock = sql("SELECT lock_key FROM runs WHERE id = $1")
            .bind(run_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NoSuchRun(run_id))?
            .optional_text("lock_key")?;
        if let Some(key) = lock {
            let holder =
                sql(format!("SELECT id FROM runs WHERE lock_key = $1 AND status IN {ACTIVE}"))
                    .bind(&key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(holder) = holder {
                return Err(StoreError::LockHeld { key, run_id: uuid(&holder.text("id")?)? });
            }
        }
        // Two nodes taking proposals of one key at once on PostgreSQL: the loser's update is
        // refused by the active-lock index, and a retry finds the holder above.
        match commit_alone::<B>(tx, self.backend.signals(), run_id, &transition).await {
            Err(StoreError::Database(message)) if message.contains("runs_active_lock") => {
                Err(StoreError::Conflict)
            }
            other => other,
        }
    }

    async fn run(&self, id: Uuid) -> Result<Option<RunSnapshot>, StoreError> {
        let key = id.to_string();
        // One snapshot of the whole run, however many writers change it meanwhile.
        let mut tx = self.backend.snapshot().await?;
        let Some(row) =
            sql("SELECT * FROM runs WHERE id = $1").bind(&key).fetch_optional(&mut *tx).await?
        else {
            return Ok(None);
        };
        let run = run_record(&row)?;
        let of_run = |text: &'static str| sql(text).bind(key.as_str());
        let steps = of_run(
            "SELECT * FROM run_steps WHERE run_id = $1 ORDER BY phase = 'rollback', parent IS NOT NULL, position",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(step_state)
        .collect::<Result<_, _>>()?;
        let attempts =
            of_run("SELECT * FROM step_attempts WHERE run_id = $1 ORDER BY step_id, number")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(attempt)
                .collect::<Result<_, _>>()?;
        let votes = of_run("SELECT * FROM votes WHERE run_id = $1 ORDER BY at, id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(vote)
            .collect::<Result<_, _>>()?;
        let assignments =
            of_run("SELECT role, person FROM assignments WHERE run_id = $1 ORDER BY role, person")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(assignment)
                .collect::<Result<_, _>>()?;
        let notes = of_run("SELECT * FROM notes WHERE run_id = $1 ORDER BY at, id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(note)
            .collect::<Result<_, _>>()?;
        tx.commit().await.map_err(database)?;
        Ok(Some(RunSnapshot {
            run,
            steps,
            attempts,
            votes,
            assignments,
            notes,
            index: Default::default(),
        }))
    }

    async fn run_record(&self, id: Uuid) -> Result<Option<RunRecord>, StoreError> {
        sql("SELECT * FROM runs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?
            .as_ref()
            .map(run_record)
            .transpose()
    }

    async fn run_status(&self, id: Uuid) -> Result<Option<RunStatus>, StoreError> {
        sql("SELECT status FROM runs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?
            .map(|row| name(&row.text("status")?))
            .transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        sql("SELECT * FROM runs
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND (CAST($2 AS TEXT) IS NULL OR runbook = $2)
               AND (CAST($3 AS TEXT) IS NULL OR mode = $3) AND (CAST($4 AS TEXT) IS NULL OR created_at >= $4)
               AND (CAST($5 AS TEXT) IS NULL
                    OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = $5))
               AND (CAST($7 AS TEXT) IS NULL OR origin = $7) AND (CAST($8 AS BIGINT) IS NULL OR version = $8)
             ORDER BY created_at DESC, id DESC LIMIT $6")
        .bind(filter.status.map(RunStatus::as_str))
        .bind(&filter.runbook)
        .bind(filter.mode.map(RunMode::as_str))
        .bind(filter.since.map(format_timestamp))
        .bind(filter.before.map(|id| id.to_string()))
        .bind(i64::from(filter.limit.unwrap_or(u32::MAX)))
        .bind(filter.origin.map(RunOrigin::as_str))
        .bind(filter.version.map(i64::from))
        .fetch_all(&mut *self.backend.conn().await?)
        .await?
        .iter()
        .map(run_record)
        .collect()
    }

    async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        sql("SELECT status, count(*) AS runs FROM runs GROUP BY status")
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(|row| {
                Ok((name(&row.text("status")?)?, u64::try_from(row.integer("runs")?).unwrap_or(0)))
            })
            .collect()
    }

    async fn find_run(&self, id_prefix: &str) -> Result<Vec<Uuid>, StoreError> {
        // Wildcards and PostgreSQL's escape character typed into a prefix match nothing.
        let pattern = format!("{}%", id_prefix.replace(['%', '_', '\\'], ""));
        sql("SELECT id FROM runs WHERE id LIKE $1 ORDER BY created_at DESC LIMIT 10")
            .bind(pattern)
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(|row| uuid(&row.text("id")?))
            .collect()
    }

    async fn rehearsals(&self, query: &RehearsalQuery) -> Result<Vec<Rehearsal>, StoreError> {
        super::rehearsals::rehearsals(&self.backend, query).await
    }

    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        self.backend.commit(run_id, transition).await
    }
}

#[async_trait]
impl<B: Backend> Leases for SqlStore<B> {
    async fn acquire_lease(
        &self,
        run_id: Uuid,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Two nodes taking over the same run both reach this row; the second waits for the
        // first's row lock, re-reads the row and finds the lease taken.
        let updated = sql("UPDATE runs SET lease_owner = $1, lease_expires_at = $2
             WHERE id = $3 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at < $4)")
        .bind(&lease.owner)
        .bind(format_timestamp(lease.expires_at))
        .bind(run_id.to_string())
        .bind(format_timestamp(now))
        .execute(&mut *self.backend.conn().await?)
        .await?;
        Ok(updated == 1)
    }

    async fn renew_lease(&self, run_id: Uuid, lease: &Lease) -> Result<bool, StoreError> {
        let updated =
            sql("UPDATE runs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3")
                .bind(format_timestamp(lease.expires_at))
                .bind(run_id.to_string())
                .bind(&lease.owner)
                .execute(&mut *self.backend.conn().await?)
                .await?;
        Ok(updated == 1)
    }

    async fn release_lease(&self, run_id: Uuid, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.backend.conn().await?;
        let released = sql(
            "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
        )
        .bind(run_id.to_string())
        .bind(owner)
        .execute(&mut *conn)
        .await?;
        if released == 1 {
            hint_work::<B>(&mut conn, run_id).await?;
        }
        self.backend.signals().work_available();
        Ok(())
    }

    async fn runs_needing_a_driver(&self, now: Timestamp) -> Result<Vec<Uuid>, StoreError> {
        // Only candidates: several nodes may see the same run, and `acquire_lease` is the
        // claim exactly one of them wins.
        sql("SELECT id FROM runs
             WHERE status IN ('running', 'waiting') AND (lease_owner IS NULL OR lease_expires_at < $1)
               AND (status = 'running'
                    OR EXISTS (SELECT 1 FROM run_steps s
                               WHERE s.run_id = runs.id AND s.status = 'waiting' AND s.deadline < $1))
             ORDER BY created_at")
        .bind(format_timestamp(now))
        .fetch_all(&mut *self.backend.conn().await?)
        .await?
        .iter()
        .map(|row| uuid(&row.text("id")?))
        .collect()
    }
}
