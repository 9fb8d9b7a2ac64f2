//! What rehearsals measured, on either database: a runbook's succeeded live runs and drills
//! (every version) with how long each run and, when asked, each of its main steps and branches
//! took, in one statement. Durations are worked out here from the stored instants, which both
//! databases keep as text; the arithmetic on them is the engine's (`steady_engine::rehearsal`).

use steady_engine::audit::format_timestamp;
use steady_engine::rehearsal::{Rehearsal, RehearsalQuery, RehearsedStep};
use steady_engine::run::StepStatus;
use steady_engine::store::StoreError;

use super::Backend;
use crate::codec::{Columns, name, optional_timestamp, timestamp, unsigned, uuid};
use crate::sql::sql;

/// The rehearsals themselves, newest first: bounded, so that a page reading them stays fast
/// however many runs the runbook has had.
const REHEARSALS: &str = "SELECT id, mode, version, created_at, finished_at FROM runs
     WHERE runbook = $1 AND status = 'succeeded' AND mode IN ('live', 'drill')
       AND finished_at IS NOT NULL AND (CAST($2 AS TEXT) IS NULL OR created_at < $2)
     ORDER BY created_at DESC, id DESC LIMIT $3";

/// With their main steps and branches that passed (fan-out items are left out: their ids
/// name an index, not a host): when each began — its first attempt, or when it started or
/// began to wait for people — and when it ended. A run with no such step is still one row.
fn with_steps() -> String {
    format!(
        "WITH rehearsals AS ({REHEARSALS})
         SELECT r.id, r.mode, r.version, r.created_at, r.finished_at,
                s.step_id, s.status AS step_status, s.started_at AS step_started_at,
                s.finished_at AS step_finished_at,
                (SELECT min(a.started_at) FROM step_attempts a
                 WHERE a.run_id = s.run_id AND a.step_id = s.step_id) AS first_attempt_at
         FROM rehearsals r
         LEFT JOIN run_steps s ON s.run_id = r.id AND s.phase = 'main' AND s.item IS NULL
              AND s.status IN ('succeeded', 'approved', 'skipped')
         ORDER BY r.created_at DESC, r.id DESC"
    )
}

pub(crate) async fn rehearsals<B: Backend>(
    backend: &B,
    query: &RehearsalQuery,
) -> Result<Vec<Rehearsal>, StoreError> {
    let text = if query.steps { with_steps() } else { REHEARSALS.to_owned() };
    let rows = sql(text)
        .bind(query.runbook.as_str())
        .bind(query.before.map(format_timestamp))
        .bind(i64::from(query.limit))
        .fetch_all(&mut *backend.conn().await?)
        .await?;
    let mut rehearsals: Vec<Rehearsal> = Vec::new();
    for row in &rows {
        let id = uuid(&row.text("id")?)?;
        if rehearsals.last().is_none_or(|last| last.run_id != id) {
            rehearsals.push(Rehearsal {
                run_id: id,
                mode: name(&row.text("mode")?)?,
                version: unsigned(row.integer("version")?)?,
                started_at: timestamp(&row.text("created_at")?)?,
                finished_at: timestamp(&row.text("finished_at")?)?,
                steps: Vec::new(),
            });
        }
        if !query.steps {
            continue;
        }
        let Some(step_id) = row.optional_text("step_id")? else { continue };
        let status: StepStatus = name(&row.text("step_status")?)?;
        let took = if status == StepStatus::Skipped {
            None
        } else {
            let began = [
                optional_timestamp(row.optional_text("first_attempt_at")?)?,
                optional_timestamp(row.optional_text("step_started_at")?)?,
            ]
            .into_iter()
            .flatten()
            .min();
            let ended = optional_timestamp(row.optional_text("step_finished_at")?)?;
            // A step without both instants (none Steady writes) is no sample.
            match (began, ended) {
                (Some(began), Some(ended)) => Some((ended - began).to_std().unwrap_or_default()),
                _ => continue,
            }
        };
        if let Some(rehearsal) = rehearsals.last_mut() {
            rehearsal.steps.push(RehearsedStep { step_id, took });
        }
    }
    Ok(rehearsals)
}
