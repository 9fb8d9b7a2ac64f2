//! The store written once for both databases: [`SqlStore`] implements every store trait over
//! a [`Backend`], which supplies only what really differs: how a write transaction and a read
//! snapshot begin, how a transition is committed (PostgreSQL groups them), how the audit chain
//! is verified, and a few statements of its own dialect.
//!
//! - [`runs`]: runs and their transitions, including the guard and row writes group commit
//!   reuses.
//! - [`audit`]: appending to the hash chain and reading it back.
//! - [`rehearsals`]: what a runbook's succeeded live runs and drills measured.
//! - [`accounts`]: users, sessions, tokens and the sign-in throttle.
//! - [`verifications`]: the periods of `verify` schedules and where each verification stands.

use std::future::Future;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use steady_engine::accounts::GlobalRole;
use steady_engine::audit::{Verification, format_timestamp};
use steady_engine::run::{Actor, Lease, RunbookVersion, Timestamp, Transition};
use steady_engine::store::{
    ChangeSignals, Changes, Cluster, NodeRecord, Notifications, People, Published, Runbooks,
    StoreError, next_version, published_event,
};
use uuid::Uuid;

use crate::codec::Columns;
use crate::rows::{node, runbook_version};
use crate::sql::{Connection, database, sql};

mod accounts;
pub(crate) mod audit;
mod rehearsals;
pub(crate) mod runs;
pub(crate) mod transitions;
mod verifications;

/// A Steady database: the engine's store traits (and `Accounts`) on one of the backends,
/// [`SqliteStore`](crate::SqliteStore) or [`PostgresStore`](crate::PostgresStore).
#[derive(Debug, Clone)]
pub struct SqlStore<B> {
    pub(crate) backend: B,
}

/// What differs between the databases. Statements given as constants use `$1`-style
/// placeholders; `None` where the database needs nothing.
pub(crate) trait Backend: Send + Sync + std::fmt::Debug + 'static {
    type Db: sqlx::Database<Connection: Connection>;

    /// Serialises publishing one runbook name until commit, binding the name as `$1`.
    const LOCK_RUNBOOK_NAME: Option<&'static str>;
    /// Serialises appends to the audit chain until commit.
    const LOCK_AUDIT_CHAIN: Option<&'static str>;
    /// Tells every node, at commit, that events were appended up to `seq` `$1`.
    const NOTIFY_EVENTS: Option<&'static str>;
    /// Tells every node, at commit, that run `$1` may need a driver.
    const NOTIFY_WORK: Option<&'static str>;
    /// Appended to a `SELECT` whose rows the transaction must lock until commit.
    const FOR_UPDATE: &'static str;

    /// Reads and single-statement writes go through this pool.
    fn pool(&self) -> &sqlx::Pool<Self::Db>;

    /// This process's change hints.
    fn signals(&self) -> &ChangeSignals;

    /// A pooled connection, for reads and single-statement writes.
    fn conn(&self) -> impl Future<Output = Result<PoolConnection<Self::Db>, StoreError>> + Send {
        async { self.pool().acquire().await.map_err(database) }
    }

    /// A transaction for a write that reads before it writes.
    fn begin(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, StoreError>> + Send;

    /// A transaction that reads one snapshot of the whole database.
    fn snapshot(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, StoreError>> + Send;

    /// Applies a transition, as [`transitions::commit_alone`] does or several at once.
    fn commit(
        &self,
        run_id: Uuid,
        transition: Transition,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Recomputes the whole audit chain in `seq` order.
    fn verify_audit(&self) -> impl Future<Output = Result<Verification, StoreError>> + Send;
}

/// A connection of a backend's database.
pub(crate) type Conn<B> = <<B as Backend>::Db as sqlx::Database>::Connection;

/// Tells other nodes, at commit, that a run may need a driver.
pub(crate) async fn hint_work<B: Backend>(
    conn: &mut Conn<B>,
    run_id: Uuid,
) -> Result<(), StoreError> {
    if let Some(notify) = B::NOTIFY_WORK {
        sql(notify).bind(run_id.to_string()).execute(conn).await?;
    }
    Ok(())
}

#[async_trait]
impl<B: Backend> Runbooks for SqlStore<B> {
    async fn publish_with_message(
        &self,
        name: &str,
        source: &str,
        by: &Actor,
        at: Timestamp,
        message: Option<&str>,
        tests: Option<&str>,
    ) -> Result<Published, StoreError> {
        let mut tx = self.backend.begin().await?;
        // Nodes that start together publish the same folder: one at a time per name.
        if let Some(lock) = B::LOCK_RUNBOOK_NAME {
            sql(lock).bind(name).execute(&mut *tx).await?;
        }
        let latest =
            sql("SELECT * FROM runbook_versions WHERE name = $1 ORDER BY version DESC LIMIT 1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| runbook_version(&row))
                .transpose()?;
        let version = match next_version(latest.as_ref(), name, source, by, at, message, tests) {
            Published::New(version) => version,
            unchanged => return Ok(unchanged),
        };
        sql("INSERT INTO runbook_versions
               (name, version, sha256, source, published_by, published_at, message, tests)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&version.name)
        .bind(i64::from(version.version))
        .bind(&version.sha256)
        .bind(&version.source)
        .bind(version.published_by.to_string())
        .bind(format_timestamp(version.published_at))
        .bind(version.message.as_deref())
        .bind(version.tests.as_deref())
        .execute(&mut *tx)
        .await?;
        audit::append_events::<B>(&mut tx, &[published_event(&version)]).await?;
        tx.commit().await.map_err(database)?;
        self.backend.signals().events_appended();
        Ok(Published::New(version))
    }

    async fn runbook_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<RunbookVersion>, StoreError> {
        sql("SELECT * FROM runbook_versions
             WHERE name = $1 AND (CAST($2 AS BIGINT) IS NULL OR version = $2)
             ORDER BY version DESC LIMIT 1")
        .bind(name)
        .bind(version.map(i64::from))
        .fetch_optional(&mut *self.backend.conn().await?)
        .await?
        .map(|row| runbook_version(&row))
        .transpose()
    }

    async fn runbook_names(&self) -> Result<Vec<String>, StoreError> {
        sql("SELECT DISTINCT name FROM runbook_versions ORDER BY name")
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(|row| row.text("name"))
            .collect()
    }

    async fn runbook_versions(&self, name: &str) -> Result<Vec<RunbookVersion>, StoreError> {
        sql("SELECT * FROM runbook_versions WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(runbook_version)
            .collect()
    }
}

#[async_trait]
impl<B: Backend> People for SqlStore<B> {
    async fn enabled_user(&self, name: &str) -> Result<bool, StoreError> {
        let found = sql("SELECT disabled, roles FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?;
        let Some(row) = found else { return Ok(false) };
        let trigger =
            row.text("roles")?.split(',').any(|role| role == GlobalRole::Trigger.as_str());
        Ok(!row.flag("disabled")? && !trigger)
    }
}

#[async_trait]
impl<B: Backend> Notifications for SqlStore<B> {
    async fn notification_cursor(&self, target: &str) -> Result<Option<i64>, StoreError> {
        sql("SELECT after_seq FROM notification_cursors WHERE target = $1")
            .bind(target)
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?
            .map(|row| row.integer("after_seq"))
            .transpose()
    }

    async fn set_notification_cursor(
        &self,
        target: &str,
        after_seq: i64,
    ) -> Result<(), StoreError> {
        sql("INSERT INTO notification_cursors (target, after_seq) VALUES ($1, $2)
             ON CONFLICT (target) DO UPDATE SET after_seq = CASE
                 WHEN excluded.after_seq > notification_cursors.after_seq THEN excluded.after_seq
                 ELSE notification_cursors.after_seq END")
        .bind(target)
        .bind(after_seq)
        .execute(&mut *self.backend.conn().await?)
        .await?;
        Ok(())
    }

    async fn claim_notification_target(
        &self,
        target: &str,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let claimed = sql("INSERT INTO notification_cursors (target, after_seq, owner, owner_expires_at)
             VALUES ($1, (SELECT coalesce(max(seq), 0) FROM audit_events), $2, $3)
             ON CONFLICT (target) DO UPDATE SET owner = excluded.owner, owner_expires_at = excluded.owner_expires_at
             WHERE notification_cursors.owner IS NULL OR notification_cursors.owner = excluded.owner
                OR notification_cursors.owner_expires_at < $4")
        .bind(target)
        .bind(&lease.owner)
        .bind(format_timestamp(lease.expires_at))
        .bind(format_timestamp(now))
        .execute(&mut *self.backend.conn().await?)
        .await?;
        Ok(claimed == 1)
    }
}

#[async_trait]
impl<B: Backend> Cluster for SqlStore<B> {
    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let forget_before = format_timestamp(node.last_seen - chrono::Duration::days(1));
        let mut tx = self.backend.begin().await?;
        sql("INSERT INTO nodes (id, address, started_at, last_seen) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, last_seen = excluded.last_seen")
        .bind(&node.id)
        .bind(&node.address)
        .bind(format_timestamp(node.started_at))
        .bind(format_timestamp(node.last_seen))
        .execute(&mut *tx)
        .await?;
        sql("DELETE FROM nodes WHERE last_seen < $1").bind(forget_before).execute(&mut *tx).await?;
        tx.commit().await.map_err(database)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        sql("SELECT * FROM nodes ORDER BY started_at, id")
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(node)
            .collect()
    }

    fn changes(&self) -> Changes {
        self.backend.signals().subscribe()
    }
}
