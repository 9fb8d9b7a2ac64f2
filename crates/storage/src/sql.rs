//! Statements written once for both databases: SQL text with `$1`-style placeholders (which
//! SQLite reads as well as PostgreSQL) and the values bound to them, run on any connection
//! through the small [`Connection`] trait. Keeping the values to the three shapes both schemas
//! store (text, integers, flags) is what lets the shared store code be generic without
//! repeating sqlx's encoding bounds at every use.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use steady_engine::store::StoreError;

use crate::codec::Columns;

/// How many values one batched insert of a database binds at most.
pub(crate) trait BindLimit {
    const MAX_BINDS: usize;
}

/// SQLite would take 32,766, but it resolves each numbered placeholder by searching the ones
/// it has already seen, and so does binding each value by its name: a statement costs time
/// that grows with the square of its placeholders. One insert of a 1,000-step run's 16,000
/// values cost a second of CPU; at most 500 a statement, 45 ms; at most 100, about 10 ms,
/// where the 160 statements' own cost starts to count.
impl BindLimit for sqlx::Sqlite {
    const MAX_BINDS: usize = 100;
}

/// PostgreSQL allows 65,535 and parses placeholders in linear time: large batches keep a
/// group commit's round trips few.
impl BindLimit for sqlx::Postgres {
    const MAX_BINDS: usize = 32_766;
}

/// One value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Integer(Option<i64>),
    Flag(bool),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(text)))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(text: &'a String) -> Self {
        Value::Text(Some(Cow::Borrowed(text)))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Value::Text(Some(Cow::Owned(text)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(text: Option<&'a str>) -> Self {
        Value::Text(text.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(text: &'a Option<String>) -> Self {
        Value::Text(text.as_deref().map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(text: Option<String>) -> Self {
        Value::Text(text.map(Cow::Owned))
    }
}

impl From<i64> for Value<'_> {
    fn from(integer: i64) -> Self {
        Value::Integer(Some(integer))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(integer: Option<i64>) -> Self {
        Value::Integer(integer)
    }
}

impl From<bool> for Value<'_> {
    fn from(flag: bool) -> Self {
        Value::Flag(flag)
    }
}

/// SQL text and the values for its placeholders, in order.
#[derive(Debug, Clone)]
pub(crate) struct Statement<'a> {
    text: Cow<'a, str>,
    values: Vec<Value<'a>>,
}

/// A statement with nothing bound yet.
pub(crate) fn sql<'a>(text: impl Into<Cow<'a, str>>) -> Statement<'a> {
    Statement { text: text.into(), values: Vec::new() }
}

impl<'a> Statement<'a> {
    /// Whether the connection keeps this statement prepared for next time: not a batch of
    /// many rows (a fan-out's thousands of items), whose shape is seldom seen twice and whose
    /// prepared copy would hold megabytes for nothing.
    pub(crate) fn is_cached(&self) -> bool {
        self.values.len() <= MAX_CACHED_BINDS
    }

    /// The SQL text, `$1`-style placeholders in it.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The value of placeholder `$number` (from 1).
    pub(crate) fn value(&self, number: usize) -> Option<&Value<'a>> {
        self.values.get(number.checked_sub(1)?)
    }

    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Value<'a>>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Runs the statement; how many rows it changed.
    pub(crate) async fn execute(self, conn: &mut impl Connection) -> Result<u64, StoreError> {
        conn.execute(self).await.map_err(database)
    }

    /// Runs an insert that a unique index may refuse ("someone else got there first"):
    /// false when it did.
    pub(crate) async fn insert_unique(
        self,
        conn: &mut impl Connection,
    ) -> Result<bool, StoreError> {
        match conn.execute(self).await {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Ok(false),
            Err(error) => Err(database(error)),
        }
    }

    pub(crate) async fn fetch_all<C: Connection>(
        self,
        conn: &mut C,
    ) -> Result<Vec<C::Row>, StoreError> {
        conn.fetch_all(self).await.map_err(database)
    }

    pub(crate) async fn fetch_optional<C: Connection>(
        self,
        conn: &mut C,
    ) -> Result<Option<C::Row>, StoreError> {
        conn.fetch_optional(self).await.map_err(database)
    }

    /// The one row a statement must return (an aggregate, say); none is corrupt data.
    pub(crate) async fn fetch_one<C: Connection>(self, conn: &mut C) -> Result<C::Row, StoreError> {
        self.fetch_optional(conn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a query that returns a row returned none".into()))
    }

    /// Inserts many rows: `head` names the table and columns, `tail` may add an
    /// `ON CONFLICT` clause; as many statements as the bind limit needs. Every row has the
    /// same number of values, one a column.
    pub(crate) async fn insert_rows<C: Connection>(
        conn: &mut C,
        head: &str,
        rows: Vec<Vec<Value<'_>>>,
        tail: &str,
    ) -> Result<(), StoreError> {
        for statement in Statement::inserts(head, rows, tail, C::MAX_BINDS) {
            statement.execute(conn).await?;
        }
        Ok(())
    }

    /// The statements [`insert_rows`](Self::insert_rows) runs, each binding at most
    /// `max_binds` values; none for no rows.
    pub(crate) fn inserts(
        head: &str,
        rows: Vec<Vec<Value<'a>>>,
        tail: &str,
        max_binds: usize,
    ) -> Vec<Statement<'a>> {
        let Some(width) = rows.first().map(Vec::len) else { return Vec::new() };
        let per_statement = (max_binds / width.max(1)).max(1);
        let mut statements = Vec::new();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Value<'a>>> = rows.by_ref().take(per_statement).collect();
            let mut text = String::with_capacity(head.len() + tail.len() + chunk.len() * width * 5);
            text.push_str(head);
            text.push_str(" VALUES ");
            let mut next = 1;
            for (index, row) in chunk.iter().enumerate() {
                text.push_str(if index == 0 { "(" } else { ", (" });
                for column in 0..row.len() {
                    if column > 0 {
                        text.push_str(", ");
                    }
                    text.push('$');
                    text.push_str(&next.to_string());
                    next += 1;
                }
                text.push(')');
            }
            text.push(' ');
            text.push_str(tail);
            let values = chunk.into_iter().flatten().collect();
            statements.push(Statement { text: Cow::Owned(text), values });
        }
        statements
    }
}

/// A database connection (or a transaction, through `&mut *tx`) that runs [`Statement`]s.
/// Implemented for every sqlx connection whose database takes the three value shapes.
pub(crate) trait Connection: Send {
    type Row: Columns + Send;
    /// The most values one statement binds on this database (see [`BindLimit`]).
    const MAX_BINDS: usize;

    fn execute<'c>(&'c mut self, statement: Statement<'c>) -> BoxFuture<'c, sqlx::Result<u64>>;

    fn fetch_all<'c>(
        &'c mut self,
        statement: Statement<'c>,
    ) -> BoxFuture<'c, sqlx::Result<Vec<Self::Row>>>;

    fn fetch_optional<'c>(
        &'c mut self,
        statement: Statement<'c>,
    ) -> BoxFuture<'c, sqlx::Result<Option<Self::Row>>>;
}

/// Statements binding more values than this are prepared for one use, not kept.
const MAX_CACHED_BINDS: usize = 256;

/// The sqlx query for a statement, its values bound.
fn query<'q, DB>(statement: &'q Statement<'_>) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database + sqlx::database::HasStatementCache,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    let persistent = statement.is_cached();
    let mut query = sqlx::query(&statement.text).persistent(persistent);
    for value in &statement.values {
        query = match value {
            Value::Text(text) => query.bind(text.as_deref()),
            Value::Integer(integer) => query.bind(*integer),
            Value::Flag(flag) => query.bind(*flag),
        };
    }
    query
}

impl<C, DB> Connection for C
where
    C: sqlx::Connection<Database = DB>,
    DB: Database<Connection = C, Row: Columns, QueryResult: RowsAffected>
        + BindLimit
        + sqlx::database::HasStatementCache,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    type Row = DB::Row;
    const MAX_BINDS: usize = DB::MAX_BINDS;

    fn execute<'c>(&'c mut self, statement: Statement<'c>) -> BoxFuture<'c, sqlx::Result<u64>> {
        Box::pin(async move {
            let done = query(&statement).execute(self).await?;
            Ok(done.rows_affected())
        })
    }

    fn fetch_all<'c>(
        &'c mut self,
        statement: Statement<'c>,
    ) -> BoxFuture<'c, sqlx::Result<Vec<Self::Row>>> {
        Box::pin(async move { query(&statement).fetch_all(self).await })
    }

    fn fetch_optional<'c>(
        &'c mut self,
        statement: Statement<'c>,
    ) -> BoxFuture<'c, sqlx::Result<Option<Self::Row>>> {
        Box::pin(async move { query(&statement).fetch_optional(self).await })
    }
}

/// Maps a database error to the store's. PostgreSQL's text cannot hold a NUL character
/// (SQLSTATE 22021; 22P05 for text its encoding cannot represent): that is the caller's input,
/// not a failing database. SQLite's error codes are numbers and never match.
pub(crate) fn database<E: std::error::Error + 'static>(error: E) -> StoreError {
    let refused = (&error as &dyn std::error::Error)
        .downcast_ref::<sqlx::Error>()
        .and_then(|error| match error {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        })
        .is_some_and(|code| code == "22021" || code == "22P05");
    if refused {
        return StoreError::Unstorable("text may not contain a NUL character".to_owned());
    }
    StoreError::Database(error.to_string())
}

/// How many rows a statement changed, whichever database ran it.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}
