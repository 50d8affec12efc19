//! factlog's queries for PostgreSQL, and its PostgreSQL migrations.
//!
//! They live in a crate of their own for one reason: sqlx checks the queries of a crate
//! against one database, and the main crate's are checked against SQLite. This crate's
//! `.env` (written by `.ci/sqlx-prepare`) points the check at PostgreSQL; both crates'
//! query data go to the workspace's `.sqlx/`. Everything else about the PostgreSQL
//! backend (the writer, the follower, error handling) is in the main crate's
//! `storage::postgres`.
//!
//! `.sqlx/` names a query's data by a hash of its text alone, so no query here may be
//! worded exactly like one of the SQLite queries.
//!
//! An event filter is passed as a JSON array of stored type names (`None` for every fact)
//! and whether facts stored without a type pass; a group to append as the JSON array
//! `factlog_append` takes (see the migration).

use sqlx::PgExecutor;
use sqlx::migrate::Migrator;

/// The PostgreSQL schema, from `migrations/postgres/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The channel `factlog_append` notifies after each commit, with the newest id.
pub const CHANNEL: &str = "factlog";

/// A stored fact as these queries return it; the main crate turns it into its
/// `FactRecord` at once.
#[derive(Debug, Clone)]
pub struct FactRow {
    /// Position in the log.
    pub id: i64,
    /// The SSE event type; `None` for a fact posted without one.
    pub event: Option<String>,
    /// The fact as compact JSON text.
    pub fact: String,
    /// RFC 3339 UTC time of its append.
    pub created_at: String,
}

/// One element of an appended group.
#[derive(Debug)]
pub struct AppendedRow {
    /// The record: new, or the one an earlier append made under the same key.
    pub row: FactRow,
    /// Whether the record was already in the log (or made earlier in the same group).
    pub existed: bool,
}

/// Appends a group in one statement, and so in one transaction when `conn` is not in
/// one already; returns one element per input element, in input order.
///
/// # Errors
/// When the database refuses; nothing of the group is written then.
pub async fn append(
    conn: impl PgExecutor<'_>,
    batch: &str,
) -> Result<Vec<AppendedRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!", event, fact AS "fact!", created_at AS "created_at!",
                  existed AS "existed!"
           FROM factlog_append($1::text::json)"#,
        batch
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AppendedRow {
            row: FactRow {
                id: r.id,
                event: r.event,
                fact: r.fact,
                created_at: r.created_at,
            },
            existed: r.existed,
        })
        .collect())
}

/// Up to `limit` facts after `after` that the filter passes, oldest first.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_after(
    conn: impl PgExecutor<'_>,
    after: i64,
    names: Option<&str>,
    untyped: bool,
    limit: i64,
) -> Result<Vec<FactRow>, sqlx::Error> {
    sqlx::query_as!(
        FactRow,
        r#"SELECT id, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts
           WHERE id > $1
             AND ($2::text IS NULL
                  OR event IN (SELECT json_array_elements_text($2::text::json))
                  OR (event IS NULL AND $3))
           ORDER BY id
           LIMIT $4"#,
        after,
        names,
        untyped,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Up to `rows` facts after `after` that the filter passes, oldest first, as one string
/// of packed rows `<id>,<event>,<fact>` each ended by a line feed (see the main crate's
/// `storage/page.rs`); `None` when there are none.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_packed(
    conn: impl PgExecutor<'_>,
    after: i64,
    names: Option<&str>,
    untyped: bool,
    rows: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT string_agg(id || ',' || coalesce(event, '') || ',' || fact || E'\n', ''
                             ORDER BY id) AS packed
           FROM (SELECT id, event, fact
                 FROM facts
                 WHERE id > $1
                   AND ($2::text IS NULL
                        OR event IN (SELECT json_array_elements_text($2::text::json))
                        OR (event IS NULL AND $3))
                 ORDER BY id
                 LIMIT $4) AS page"#,
        after,
        names,
        untyped,
        rows
    )
    .fetch_one(conn)
    .await
}

/// Up to `limit` facts before `before`, newest first.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_before(
    conn: impl PgExecutor<'_>,
    before: i64,
    limit: i64,
) -> Result<Vec<FactRow>, sqlx::Error> {
    sqlx::query_as!(
        FactRow,
        r#"SELECT id, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts WHERE id < $1 ORDER BY id DESC LIMIT $2"#,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The id of the fact `offset` places from the newest (0: the newest) that the filter
/// passes, if the log holds that many.
///
/// # Errors
/// When the database cannot be read.
pub async fn nth_newest(
    conn: impl PgExecutor<'_>,
    names: Option<&str>,
    untyped: bool,
    offset: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id FROM facts
           WHERE ($1::text IS NULL
                  OR event IN (SELECT json_array_elements_text($1::text::json))
                  OR (event IS NULL AND $2))
           ORDER BY id DESC
           LIMIT 1 OFFSET $3"#,
        names,
        untyped,
        offset
    )
    .fetch_optional(conn)
    .await
}

/// The newest id handed out (0 when none ever was): the counter `factlog_append`
/// advances, which deleting facts never takes back.
///
/// # Errors
/// When the database cannot be read.
pub async fn newest_id(conn: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!("SELECT log_meta.last_id FROM log_meta LIMIT 1")
        .fetch_one(conn)
        .await
}

/// One fact by id.
///
/// # Errors
/// When the database cannot be read.
pub async fn get(conn: impl PgExecutor<'_>, id: i64) -> Result<Option<FactRow>, sqlx::Error> {
    sqlx::query_as!(
        FactRow,
        r#"SELECT id, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The UUID made when this log was created.
///
/// # Errors
/// When the database cannot be read.
pub async fn log_id(conn: impl PgExecutor<'_>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar!("SELECT log_meta.log_id FROM log_meta LIMIT 1")
        .fetch_one(conn)
        .await
}
