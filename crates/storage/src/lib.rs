//! Steady's stores: implementations of the engine's `Store` traits (and `Accounts`) on SQL
//! databases, written once for both.
//!
//! - `shared`: [`SqlStore`], every store method written once over a backend.
//! - `sql`: statements with `$1` placeholders and the values bound to them, run on either
//!   database.
//! - `codec` and `rows`: reading stored rows back into engine types.
//! - [`sqlite`]: the embedded default, one file, `sqlite://path`: what differs there.
//! - [`postgres`]: one database for several `steady serve` nodes, `postgres://…`: what
//!   differs there.
//!
//! Each backend keeps its own migrations under `migrations/<backend>` at the repository's
//! root, embedded at build time and applied when a store is opened.

mod codec;
pub mod postgres;
mod rows;
mod shared;
mod sql;
pub mod sqlite;

use std::sync::Arc;

use steady_engine::accounts::Accounts;
use steady_engine::store::{Store, StoreError};

pub use postgres::PostgresStore;
pub use shared::SqlStore;
pub use sqlite::SqliteStore;

/// Opens the store a database URL names: `sqlite://path` (created when missing) or
/// `postgres://user@host/database` (the database must exist).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_database(url).await?.store)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

fn unsupported_scheme(url: &str) -> StoreError {
    let scheme = url.split(':').next().unwrap_or(url);
    StoreError::Database(format!(
        "unsupported database URL scheme `{scheme}`: use sqlite://PATH or postgres://USER@HOST/DATABASE"
    ))
}

/// Writes a consistent copy of the database a URL names to a new file, while it is in use.
/// PostgreSQL has its own tools for that (`pg_dump`, base backups): Steady does not redo them.
pub async fn backup(url: &str, to: &std::path::Path) -> Result<(), StoreError> {
    if url.starts_with("sqlite:") {
        SqliteStore::open(url).await?.backup_to(to).await
    } else if is_postgres(url) {
        Err(StoreError::Database(
            "back a PostgreSQL database up with pg_dump or a base backup (see docs/operations.md)"
                .to_owned(),
        ))
    } else {
        Err(unsupported_scheme(url))
    }
}

/// Both faces of one database: runs and the audit log, and accounts.
#[derive(Debug, Clone)]
pub struct Database {
    pub store: Arc<dyn Store>,
    pub accounts: Arc<dyn Accounts>,
}

/// Opens the database a URL names, for a process that needs accounts too (the server).
pub async fn open_database(url: &str) -> Result<Database, StoreError> {
    if url.starts_with("sqlite:") {
        let sqlite = Arc::new(SqliteStore::open(url).await?);
        Ok(Database { store: sqlite.clone(), accounts: sqlite })
    } else if is_postgres(url) {
        let postgres = Arc::new(PostgresStore::open(url).await?);
        Ok(Database { store: postgres.clone(), accounts: postgres })
    } else {
        Err(unsupported_scheme(url))
    }
}
