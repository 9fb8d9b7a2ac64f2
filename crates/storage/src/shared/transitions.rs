//! Transitions on either database: the guard that checks and applies a transition's change to
//! the run's row, and the writes of its other rows, which PostgreSQL's group commit reuses for
//! many transitions at once and SQLite's committer runs in one transaction.

use steady_engine::audit::format_timestamp;
use steady_engine::run::*;
use steady_engine::store::{ChangeSignals, StoreError};
use uuid::Uuid;

use super::audit::append_events;
use super::{Backend, hint_work};
use crate::codec::{Columns, now};
use crate::sql::{Connection, Statement, Value, database, sql};

/// Checks a transition's guard and applies its change to the run's row, inside the caller's
/// transaction. When the guard fails (`Conflict`, `LeaseLost`, `NoSuchRun`) nothing was
/// changed, so a group commit can go on with the other transitions of its batch.
pub(crate) async fn guard(
    conn: &mut impl Connection,
    run_id: Uuid,
    transition: &Transition,
) -> Result<(), StoreError> {
    let id = run_id.to_string();
    if guard_statement(&id, transition).execute(&mut *conn).await? == 0 {
        return Err(guard_failure(conn, run_id, transition).await);
    }
    Ok(())
}

/// The one statement that both checks that a transition was computed from the current
/// revision (and, for drivers, that the lease is still theirs) and applies its change to the
/// run's row: it changes no row when the guard fails. The row lock it takes queues concurrent
/// changes to the same run from other nodes.
pub(crate) fn guard_statement<'a>(id: &'a str, transition: &'a Transition) -> Statement<'a> {
    let at = format_timestamp(now());
    let guard = |update: Statement<'a>| {
        update.bind(id).bind(transition.revision).bind(&transition.lease_owner)
    };
    match &transition.run {
        Some(change) => {
            let (lease, taken) = match &change.lease {
                LeaseChange::Keep => ("keep", None),
                LeaseChange::Release => ("release", None),
                LeaseChange::Take(lease) => ("take", Some(lease)),
            };
            let update = sql(
                "UPDATE runs SET status = $1, phase = $2, commander = $3, finished_at = $4, updated_at = $5,
                     revision = revision + 1,
                     lease_owner = CASE $6 WHEN 'release' THEN NULL WHEN 'take' THEN $11 ELSE lease_owner END,
                     lease_expires_at = CASE $6 WHEN 'release' THEN NULL WHEN 'take' THEN $12 ELSE lease_expires_at END,
                     started_by = $7
                 WHERE id = $8 AND revision = $9 AND (CAST($10 AS TEXT) IS NULL OR lease_owner = $10)",
            )
            .bind(change.status.as_str())
            .bind(change.phase.as_str())
            .bind(change.commander.to_string())
            .bind(change.finished_at.map(format_timestamp))
            .bind(at)
            .bind(lease)
            .bind(change.started_by.to_string());
            guard(update)
                .bind(taken.map(|lease| lease.owner.as_str()))
                .bind(taken.map(|lease| format_timestamp(lease.expires_at)))
        }
        None => guard(
            sql("UPDATE runs SET updated_at = $1, revision = revision + 1
                 WHERE id = $2 AND revision = $3 AND (CAST($4 AS TEXT) IS NULL OR lease_owner = $4)")
            .bind(at),
        ),
    }
}

/// Why a transition's guard changed no row: the run is gone, its lease is another's, or it
/// changed since the transition was computed.
pub(crate) async fn guard_failure(
    conn: &mut impl Connection,
    run_id: Uuid,
    transition: &Transition,
) -> StoreError {
    let row = match lease_owner_statement(run_id).fetch_optional(&mut *conn).await {
        Ok(row) => row,
        Err(error) => return error,
    };
    match row.map(|row| row.optional_text("lease_owner")).transpose() {
        Ok(owner) => guard_error(run_id, owner, transition),
        Err(error) => error,
    }
}

/// Reads the lease owner of a run whose guard failed (a `lease_owner` column, one row or none).
pub(crate) fn lease_owner_statement(run_id: Uuid) -> Statement<'static> {
    sql("SELECT lease_owner FROM runs WHERE id = $1").bind(run_id.to_string())
}

/// The error of a failed guard, from the run's lease owner as [`lease_owner_statement`] read
/// it (`None` when the run is gone).
pub(crate) fn guard_error(
    run_id: Uuid,
    owner: Option<Option<String>>,
    transition: &Transition,
) -> StoreError {
    let Some(owner) = owner else { return StoreError::NoSuchRun(run_id) };
    match &transition.lease_owner {
        Some(expected) if owner.as_deref() != Some(expected.as_str()) => StoreError::LeaseLost,
        _ => StoreError::Conflict,
    }
}

/// Writes the rows of transitions whose guards passed, without their audit events: steps and
/// attempts of all of them in a statement each (a batch never holds the same step twice: a
/// second transition of the same run would have failed its revision guard).
pub(crate) async fn write_rows<C: Connection>(
    conn: &mut C,
    transitions: &[(Uuid, &Transition)],
) -> Result<(), StoreError> {
    let ids: Vec<String> = transitions.iter().map(|(run_id, _)| run_id.to_string()).collect();
    for statement in row_statements(transitions, &ids, C::MAX_BINDS) {
        statement.execute(&mut *conn).await?;
    }
    for ((_, transition), id) in transitions.iter().zip(&ids) {
        insert_votes(&mut *conn, id, transition).await?;
    }
    Ok(())
}

/// The statements [`write_rows`] runs; `ids` are the transitions' run ids as text, in order.
pub(crate) fn row_statements<'a>(
    transitions: &'a [(Uuid, &'a Transition)],
    ids: &'a [String],
    max_binds: usize,
) -> Vec<Statement<'a>> {
    let mut steps = Vec::new();
    let mut attempts = Vec::new();
    for ((_, transition), id) in transitions.iter().zip(ids) {
        steps.extend(transition.steps.iter().map(|step| step_values(id, step)));
        attempts.extend(transition.attempts.iter().map(|attempt| attempt_values(id, attempt)));
    }
    let mut statements = Statement::inserts(STEPS_HEAD, steps, STEPS_TAIL, max_binds);
    statements.extend(Statement::inserts(
        "INSERT INTO step_attempts (run_id, step_id, number, status, started_at, finished_at, exit_code,
                                    http_status, final_url, stdout, stderr, stdout_truncated, stderr_truncated, json, error)",
        attempts,
        "ON CONFLICT (run_id, step_id, number) DO UPDATE SET
             status = excluded.status, started_at = excluded.started_at, finished_at = excluded.finished_at,
             exit_code = excluded.exit_code, http_status = excluded.http_status, final_url = excluded.final_url,
             stdout = excluded.stdout, stderr = excluded.stderr,
             stdout_truncated = excluded.stdout_truncated, stderr_truncated = excluded.stderr_truncated,
             json = excluded.json, error = excluded.error",
        max_binds,
    ));
    for ((_, transition), id) in transitions.iter().zip(ids) {
        statements.extend(other_statements(id, transition));
    }
    statements
}

const STEPS_HEAD: &str = "INSERT INTO run_steps (run_id, step_id, phase, position, status, attempt, attempts_before_round,
                                started_at, finished_at, deadline, escalated_to, rendered, note, completed_by,
                                parent, item)";
const STEPS_TAIL: &str = "ON CONFLICT (run_id, step_id) DO UPDATE SET
             status = excluded.status, attempt = excluded.attempt,
             attempts_before_round = excluded.attempts_before_round,
             started_at = excluded.started_at, finished_at = excluded.finished_at,
             deadline = excluded.deadline, escalated_to = excluded.escalated_to,
             rendered = excluded.rendered, note = excluded.note, completed_by = excluded.completed_by";

/// Writes step states (see [`step_values`]), many in one statement.
pub(super) async fn upsert_steps<C: Connection>(
    conn: &mut C,
    rows: Vec<Vec<Value<'_>>>,
) -> Result<(), StoreError> {
    Statement::insert_rows(conn, STEPS_HEAD, rows, STEPS_TAIL).await
}

pub(super) fn step_values<'a>(run_id: &'a str, step: &'a StepState) -> Vec<Value<'a>> {
    vec![
        Value::from(run_id),
        Value::from(&step.step_id),
        Value::from(step.phase.as_str()),
        Value::from(i64::from(step.position)),
        Value::from(step.status.as_str()),
        Value::from(i64::from(step.attempt)),
        Value::from(i64::from(step.attempts_before_round)),
        Value::from(step.started_at.map(format_timestamp)),
        Value::from(step.finished_at.map(format_timestamp)),
        Value::from(step.deadline.map(format_timestamp)),
        Value::from(&step.escalated_to),
        Value::from(step.rendered.as_ref().map(ToString::to_string)),
        Value::from(&step.note),
        Value::from(step.completed_by.as_ref().map(Actor::to_string)),
        Value::from(&step.parent),
        Value::from(step.item.as_ref().map(ToString::to_string)),
    ]
}

fn attempt_values<'a>(run_id: &'a str, attempt: &'a Attempt) -> Vec<Value<'a>> {
    vec![
        Value::from(run_id),
        Value::from(&attempt.step_id),
        Value::from(i64::from(attempt.number)),
        Value::from(attempt.status.map(StepStatus::as_str)),
        Value::from(attempt.started_at.map(format_timestamp)),
        Value::from(attempt.finished_at.map(format_timestamp)),
        Value::from(attempt.exit_code.map(i64::from)),
        Value::from(attempt.http_status.map(i64::from)),
        Value::from(&attempt.final_url),
        Value::from(&attempt.stdout),
        Value::from(&attempt.stderr),
        Value::from(attempt.stdout_truncated),
        Value::from(attempt.stderr_truncated),
        Value::from(attempt.json.as_ref().map(ToString::to_string)),
        Value::from(&attempt.error),
    ]
}

/// Voided votes, assignments and notes: rare, one statement each.
fn other_statements<'a>(id: &'a str, transition: &'a Transition) -> Vec<Statement<'a>> {
    let mut statements = Vec::new();
    for vote in &transition.voided_votes {
        statements.push(
            sql("UPDATE votes SET void = TRUE WHERE id = $1 AND run_id = $2")
                .bind(vote.to_string())
                .bind(id),
        );
    }
    statements.extend(assign_statements(id, &transition.assign));
    for assignment in &transition.unassign {
        statements.push(
            sql("DELETE FROM assignments WHERE run_id = $1 AND role = $2 AND person = $3")
                .bind(id)
                .bind(&assignment.role)
                .bind(assignment.person.to_string()),
        );
    }
    if let Some(state) = &transition.verification {
        statements.push(super::verifications::upsert(state));
    }
    for note in &transition.notes {
        statements.push(
            sql("INSERT INTO notes (id, run_id, step_id, author, text, at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(note.id.to_string())
                .bind(id)
                .bind(&note.step_id)
                .bind(note.author.to_string())
                .bind(&note.text)
                .bind(format_timestamp(note.at)),
        );
    }
    statements
}

/// Inserts a transition's votes, after its voided votes were written. A vote refused by the
/// one-vote index (this person already answered the gate) is a `Conflict`.
pub(crate) async fn insert_votes(
    conn: &mut impl Connection,
    id: &str,
    transition: &Transition,
) -> Result<(), StoreError> {
    for vote in &transition.votes {
        if !vote_statement(id, vote).insert_unique(&mut *conn).await? {
            return Err(StoreError::Conflict);
        }
    }
    Ok(())
}

/// The insert of one vote, which the one-vote index refuses when this person already answered
/// the gate.
pub(crate) fn vote_statement<'a>(id: &'a str, vote: &'a Vote) -> Statement<'a> {
    sql("INSERT INTO votes (id, run_id, step_id, actor, approve, comment, bound, digest, at, void)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
    .bind(vote.id.to_string())
    .bind(id)
    .bind(&vote.step_id)
    .bind(vote.actor.to_string())
    .bind(vote.approve)
    .bind(&vote.comment)
    .bind(vote.bound.to_value().to_string())
    .bind(&vote.digest)
    .bind(format_timestamp(vote.at))
    .bind(vote.void)
}

pub(super) fn assign_statements<'a>(
    id: &'a str,
    assignments: &'a [Assignment],
) -> Vec<Statement<'a>> {
    assignments
        .iter()
        .map(|assignment| {
            sql("INSERT INTO assignments (run_id, role, person) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(&assignment.role)
                .bind(assignment.person.to_string())
        })
        .collect()
}

/// Commits one transition in a transaction of its own, `tx`, which the caller began.
pub(crate) async fn commit_alone<B: Backend>(
    mut tx: sqlx::Transaction<'static, B::Db>,
    signals: &ChangeSignals,
    run_id: Uuid,
    transition: &Transition,
) -> Result<(), StoreError> {
    guard(&mut *tx, run_id, transition).await?;
    write_rows(&mut *tx, &[(run_id, transition)]).await?;
    // A person's change (an answer, a decision) may leave the run for a driver to take.
    let for_a_driver = transition.lease_owner.is_none();
    if for_a_driver {
        hint_work::<B>(&mut tx, run_id).await?;
    }
    append_events::<B>(&mut tx, &transition.events).await?;
    tx.commit().await.map_err(database)?;
    signals.events_appended();
    if for_a_driver {
        signals.work_available();
    }
    Ok(())
}
