//! Reading stored text back into engine types, shared by the SQL stores: a value that does
//! not read back is reported as corrupt data, never a panic.

use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use steady_engine::run::{Actor, Timestamp};
use steady_engine::store::StoreError;
use uuid::Uuid;

pub(crate) use steady_engine::engine::now;

/// A column of a stored row, whatever the database holds it: a column that is missing or of
/// another type is `Corrupt`, never a panic. Both schemas keep the same shapes.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                column_of(self, column)
            }
            fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                column_of(self, column)
            }
            fn integer(&self, column: &str) -> Result<i64, StoreError> {
                column_of(self, column)
            }
            fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
                column_of(self, column)
            }
            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                column_of(self, column)
            }
        }
    };
}
columns_of!(sqlx::sqlite::SqliteRow);
columns_of!(sqlx::postgres::PgRow);

fn column_of<'r, R, T>(row: &'r R, column: &str) -> Result<T, StoreError>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    row.try_get(column).map_err(|error| StoreError::Corrupt(format!("column `{column}`: {error}")))
}

pub(crate) fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{text}`"))
}

pub(crate) fn timestamp(text: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| corrupt("timestamp", text))
}

pub(crate) fn optional_timestamp(text: Option<String>) -> Result<Option<Timestamp>, StoreError> {
    text.as_deref().map(timestamp).transpose()
}

pub(crate) fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| corrupt("id", text))
}

pub(crate) fn unsigned(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt("count", &value.to_string()))
}

/// Who did something, stored as `user:…`, `local:…` or `steady`.
pub(crate) fn actor(text: &str) -> Result<Actor, StoreError> {
    text.parse().map_err(|_| corrupt("actor", text))
}

/// A closed set of names (statuses, modes, phases) stored as text.
pub(crate) fn name<T: FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| corrupt("name", text))
}

pub(crate) fn json_from<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt("JSON", text))
}

pub(crate) fn json_to(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
