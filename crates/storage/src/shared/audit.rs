//! The audit chain on either database: appended inside the transaction of the change it
//! records, read back by filter. Verifying it differs per database and lives there.

use async_trait::async_trait;
use steady_engine::audit::{AuditEvent, GENESIS, NewEvent, Verification, format_timestamp};
use steady_engine::run::Actor;
use steady_engine::store::{Audit, AuditFilter, StoreError};
use uuid::Uuid;

use super::{Backend, Conn, SqlStore};
use crate::codec::{Columns, now};
use crate::rows::audit_event;
use crate::sql::{Connection, Statement, Value, database, sql};

/// Appends events to the one chain, inside the caller's transaction. Where the backend locks
/// the chain, the lock is taken as late as possible and held to commit: appends from all nodes
/// queue on it, so each reads the head its predecessor committed and `seq` order is commit
/// order.
pub(crate) async fn append_events<B: Backend>(
    conn: &mut Conn<B>,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    if let Some(lock) = B::LOCK_AUDIT_CHAIN {
        sql(lock).execute(conn).await?;
    }
    let last = sql(CHAIN_HEAD).fetch_optional(&mut *conn).await?;
    let head = match last {
        Some(row) => (row.integer("seq")?, row.text("hash")?),
        None => (0, GENESIS.to_owned()),
    };
    let (statements, seq) = chain_statements(head, events, Conn::<B>::MAX_BINDS);
    for statement in statements {
        statement.execute(&mut *conn).await?;
    }
    if let Some(notify) = B::NOTIFY_EVENTS {
        sql(notify).bind(seq.to_string()).execute(conn).await?;
    }
    Ok(())
}

/// The chain's last `seq` and `hash`; no row while it is empty.
pub(crate) const CHAIN_HEAD: &str = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";

/// The inserts that chain `events` after `head` (its `seq` and `hash`; 0 and [`GENESIS`] for
/// an empty chain), and the `seq` of the last.
pub(crate) fn chain_statements(
    (mut seq, mut prev_hash): (i64, String),
    events: &[NewEvent],
    max_binds: usize,
) -> (Vec<Statement<'static>>, i64) {
    let at = now();
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let event = AuditEvent::chain(seq, Uuid::now_v7(), at, &prev_hash, event);
        rows.push(vec![
            Value::from(event.seq),
            Value::from(event.body()),
            Value::from(event.prev_hash.clone()),
            Value::from(event.hash.clone()),
        ]);
        prev_hash = event.hash;
    }
    let statements = Statement::inserts(
        "INSERT INTO audit_events (seq, body, prev_hash, hash)",
        rows,
        "",
        max_binds,
    );
    (statements, seq)
}

#[async_trait]
impl<B: Backend> Audit for SqlStore<B> {
    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        append_events::<B>(&mut tx, &events).await?;
        tx.commit().await.map_err(database)?;
        self.backend.signals().events_appended();
        Ok(())
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        // Only the fixed word DESC varies in the text; everything the caller gives is bound.
        let order = if filter.newest_first { "DESC" } else { "" };
        let statement = format!(
            "SELECT seq, body, prev_hash, hash FROM audit_events WHERE {}
               AND seq > $7 AND seq < $8 ORDER BY seq {order} LIMIT $9",
            selected(filter)
        );
        bind_filter(sql(statement), filter)
            .bind(filter.after_seq.unwrap_or(0))
            .bind(filter.before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(filter.limit.unwrap_or(u32::MAX)))
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(audit_event)
            .collect()
    }

    async fn count_audit_events(&self, filter: &AuditFilter) -> Result<u64, StoreError> {
        let statement =
            format!("SELECT count(*) AS n FROM audit_events WHERE {}", selected(filter));
        let row =
            bind_filter(sql(statement), filter).fetch_one(&mut *self.backend.conn().await?).await?;
        Ok(u64::try_from(row.integer("n")?).unwrap_or(0))
    }

    async fn latest_seq(&self) -> Result<i64, StoreError> {
        let newest = sql("SELECT max(seq) AS seq FROM audit_events")
            .fetch_one(&mut *self.backend.conn().await?)
            .await?;
        Ok(newest.optional_integer("seq")?.unwrap_or(0))
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        self.backend.verify_audit().await
    }
}

/// What selects events, bound by [`bind_filter`] as `$1` to `$6`. A filter that is not set is
/// written `CAST($N AS TEXT) IS NULL`, true for its NULL; one that is set is written as the
/// plain comparison, so that the database can use the run's index for a run's events (a
/// comparison behind `OR` is one it cannot use, and a run's trail read the whole log).
fn selected(filter: &AuditFilter) -> String {
    let conditions = [
        (filter.run_id.is_some(), "run_id = $1", "CAST($1 AS TEXT) IS NULL"),
        (filter.actor.is_some(), "actor = $2", "CAST($2 AS TEXT) IS NULL"),
        (filter.action.is_some(), "action = $3", "CAST($3 AS TEXT) IS NULL"),
        (filter.since.is_some(), "at >= $4", "CAST($4 AS TEXT) IS NULL"),
        (filter.until.is_some(), "at < $5", "CAST($5 AS TEXT) IS NULL"),
        (filter.run_prefix.is_some(), "run_id LIKE $6", "CAST($6 AS TEXT) IS NULL"),
    ];
    let written: Vec<&str> =
        conditions.iter().map(|&(set, test, unset)| if set { test } else { unset }).collect();
    written.join(" AND ")
}

/// Binds what selects events (`$1` to `$6`), shared by reading and counting them. The prefix
/// is bound with its `%` here; `AuditFilter` promises it holds no wildcard itself.
fn bind_filter<'a>(statement: Statement<'a>, filter: &'a AuditFilter) -> Statement<'a> {
    statement
        .bind(filter.run_id.map(|id| id.to_string()))
        .bind(filter.actor.as_ref().map(Actor::to_string))
        .bind(&filter.action)
        .bind(filter.since.map(format_timestamp))
        .bind(filter.until.map(format_timestamp))
        .bind(filter.run_prefix.as_ref().map(|prefix| format!("{prefix}%")))
}

#[cfg(test)]
mod tests {
    use steady_engine::store::AuditFilter;
    use uuid::Uuid;

    use super::selected;

    /// How SQLite would read the events `filter` selects, in its words.
    fn plan(file: &std::path::Path, filter: &AuditFilter) -> String {
        let connection = rusqlite::Connection::open(file).unwrap();
        let query = format!(
            "EXPLAIN QUERY PLAN SELECT seq, body FROM audit_events WHERE {}
               AND seq > $7 AND seq < $8 ORDER BY seq LIMIT $9",
            selected(filter)
        );
        let mut statement = connection.prepare(&query).unwrap();
        // Unbound parameters are NULL: the plan does not depend on them.
        let mut rows = statement.raw_query();
        let mut details = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            details.push(row.get::<_, String>(3).unwrap());
        }
        details.join("; ")
    }

    #[tokio::test]
    async fn a_runs_trail_is_read_through_the_runs_index_not_the_whole_log() {
        let dir = std::env::temp_dir().join(format!("steady-audit-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("steady.db");
        crate::SqliteStore::open(&format!("sqlite://{}", file.display())).await.unwrap();

        let of_run = AuditFilter { run_id: Some(Uuid::nil()), ..AuditFilter::default() };
        assert!(plan(&file, &of_run).contains("audit_events_run"), "{}", plan(&file, &of_run));
        // The whole log is read in the order it was written, without an index.
        let everything = AuditFilter::default();
        assert!(!plan(&file, &everything).contains("INDEX"), "{}", plan(&file, &everything));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
