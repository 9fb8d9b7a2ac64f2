//! Continuous verification on either database: the periods of `verify` schedules, each
//! claimed by one insert that the primary key lets through once, and one row per runbook
//! saying where its verification stands.

use async_trait::async_trait;
use steady_engine::audit::{NewEvent, format_timestamp};
use steady_engine::store::{StoreError, Verifications};
use steady_engine::verification::{Failure, VerificationSlot, VerificationState};

use super::audit::append_events;
use super::{Backend, SqlStore};
use crate::codec::{Columns, optional_timestamp, timestamp, unsigned, uuid};
use crate::sql::{Statement, database, sql};

/// How long claimed periods are remembered: enough to see which node ran what today.
const SLOTS_KEPT: chrono::Duration = chrono::Duration::days(1);

/// Writes where a runbook's verification stands, replacing what was there: a statement of
/// the transition that ends a verification run, or of [`Verifications::record_verification`].
pub(crate) fn upsert(state: &VerificationState) -> Statement<'_> {
    let failing = state.failing.as_ref();
    sql("INSERT INTO verifications (runbook, version, at, passed, run_id,
                                    failing_since, failing_run_id, failing_step, failing_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (runbook) DO UPDATE SET
             version = excluded.version, at = excluded.at, passed = excluded.passed,
             run_id = excluded.run_id, failing_since = excluded.failing_since,
             failing_run_id = excluded.failing_run_id, failing_step = excluded.failing_step,
             failing_reason = excluded.failing_reason")
    .bind(&state.runbook)
    .bind(i64::from(state.version))
    .bind(format_timestamp(state.at))
    .bind(state.passed)
    .bind(state.run_id.map(|id| id.to_string()))
    .bind(failing.map(|failing| format_timestamp(failing.since)))
    .bind(failing.and_then(|failing| failing.run_id).map(|id| id.to_string()))
    .bind(failing.and_then(|failing| failing.step.as_deref()))
    .bind(failing.map(|failing| failing.reason.as_str()))
}

fn verification_state(row: &impl Columns) -> Result<VerificationState, StoreError> {
    let optional_uuid = |text: Option<String>| text.as_deref().map(uuid).transpose();
    let failing = match optional_timestamp(row.optional_text("failing_since")?)? {
        Some(since) => Some(Failure {
            since,
            run_id: optional_uuid(row.optional_text("failing_run_id")?)?,
            step: row.optional_text("failing_step")?,
            reason: row.optional_text("failing_reason")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(VerificationState {
        runbook: row.text("runbook")?,
        version: unsigned(row.integer("version")?)?,
        at: timestamp(&row.text("at")?)?,
        passed: row.flag("passed")?,
        run_id: optional_uuid(row.optional_text("run_id")?)?,
        failing,
    })
}

#[async_trait]
impl<B: Backend> Verifications for SqlStore<B> {
    async fn claim_verification_slot(&self, slot: &VerificationSlot) -> Result<bool, StoreError> {
        let mut conn = self.backend.conn().await?;
        // A second node inserting the same period waits for the first's row, then finds it.
        let claimed =
            sql("INSERT INTO verification_slots (runbook, slot_start, node, run_id, claimed_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (runbook, slot_start) DO NOTHING")
            .bind(&slot.runbook)
            .bind(format_timestamp(slot.start))
            .bind(&slot.node)
            .bind(slot.run_id.to_string())
            .bind(format_timestamp(slot.claimed_at))
            .execute(&mut *conn)
            .await?
                == 1;
        if claimed {
            sql("DELETE FROM verification_slots WHERE runbook = $1 AND slot_start < $2")
                .bind(&slot.runbook)
                .bind(format_timestamp(slot.start - SLOTS_KEPT))
                .execute(&mut *conn)
                .await?;
        }
        Ok(claimed)
    }

    async fn verification(&self, runbook: &str) -> Result<Option<VerificationState>, StoreError> {
        sql("SELECT * FROM verifications WHERE runbook = $1")
            .bind(runbook)
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?
            .map(|row| verification_state(&row))
            .transpose()
    }

    async fn verifications(&self) -> Result<Vec<VerificationState>, StoreError> {
        sql("SELECT * FROM verifications ORDER BY runbook")
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(verification_state)
            .collect()
    }

    async fn record_verification(
        &self,
        state: &VerificationState,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        upsert(state).execute(&mut *tx).await?;
        append_events::<B>(&mut tx, &events).await?;
        tx.commit().await.map_err(database)?;
        self.backend.signals().events_appended();
        Ok(())
    }
}
