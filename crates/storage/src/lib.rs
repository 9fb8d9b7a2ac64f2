//! Steady's stores: implementations of the engine's `Store` trait on SQL databases.
//!
//! - [`sqlite`]: the embedded default, one file, `sqlite://path`.
//! - `codec`: reading stored text back into engine types.
//!
//! Each backend keeps its own migrations under `migrations/<backend>` at the repository's
//! root, embedded at build time and applied when a store is opened.

mod codec;
pub mod sqlite;

use std::sync::Arc;

use steady_engine::store::{Store, StoreError};

pub use sqlite::SqliteStore;

/// Opens the store a database URL names: `sqlite://path` (created when missing).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        let scheme = url.split(':').next().unwrap_or(url);
        Err(StoreError::Database(format!(
            "unsupported database URL scheme `{scheme}`: use sqlite://PATH"
        )))
    }
}
