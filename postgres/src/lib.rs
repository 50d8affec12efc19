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
//! An event filter is passed as a JSON array of type names (`None` for every fact), and a
//! group to append as the JSON array `factlog_append` takes; see the migration.

use sqlx::PgExecutor;
use sqlx::migrate::Migrator;

/// The PostgreSQL schema, from `migrations/postgres/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The channel `factlog_append` notifies after each commit, with the newest id.
pub const CHANNEL: &str = "factlog";

/// A stored fact.
#[derive(Debug, Clone)]
pub struct Fact {
    /// Position in the log.
    pub id: i64,
    /// The SSE event type; `None` for a plain `message`.
    pub event: Option<String>,
    /// The fact as compact JSON text.
    pub fact: String,
    /// RFC 3339 UTC time of its append.
    pub created_at: String,
}

/// One element of an appended group.
#[derive(Debug)]
pub struct Appended {
    /// The record: new, or the one an earlier append made under the same key.
    pub fact: Fact,
    /// Whether the record was already in the log (or made earlier in the same group).
    pub existed: bool,
}

/// Frames rendered by the database; see the main crate's `Storage::read_frames`.
#[derive(Debug)]
pub struct FramePage {
    /// The frames back to back; `None` when the page is empty.
    pub frames: Option<String>,
    /// The id of the last fact in the page (0 when none).
    pub last_id: i64,
    /// How many facts the page holds.
    pub count: i64,
}

/// Appends a group in one statement, and so in one transaction when `conn` is not in
/// one already; returns one element per input element, in input order.
///
/// # Errors
/// When the database refuses; nothing of the group is written then.
pub async fn append(conn: impl PgExecutor<'_>, batch: &str) -> Result<Vec<Appended>, sqlx::Error> {
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
        .map(|r| Appended {
            fact: Fact {
                id: r.id,
                event: r.event,
                fact: r.fact,
                created_at: r.created_at,
            },
            existed: r.existed,
        })
        .collect())
}

/// Up to `limit` facts after `after` of the filter's types, oldest first.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_after(
    conn: impl PgExecutor<'_>,
    after: i64,
    names: Option<&str>,
    limit: i64,
) -> Result<Vec<Fact>, sqlx::Error> {
    sqlx::query_as!(
        Fact,
        r#"SELECT id, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts
           WHERE id > $1
             AND ($2::text IS NULL
                  OR coalesce(event, 'message') IN (SELECT json_array_elements_text($2::text::json)))
           ORDER BY id
           LIMIT $3"#,
        after,
        names,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The SSE frames of up to `rows` facts after `after` of the filter's types, joined into
/// one string by the database.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_frames(
    conn: impl PgExecutor<'_>,
    after: i64,
    names: Option<&str>,
    rows: i64,
) -> Result<FramePage, sqlx::Error> {
    sqlx::query_as!(
        FramePage,
        r#"SELECT string_agg(
                    'id: ' || id || E'\n'
                    || CASE WHEN event IS NULL THEN '' ELSE 'event: ' || event || E'\n' END
                    || 'data: ' || fact || E'\n\n',
                    '' ORDER BY id) AS frames,
                  coalesce(max(id), 0) AS "last_id!",
                  count(id) AS "count!"
           FROM (SELECT id, event, fact
                 FROM facts
                 WHERE id > $1
                   AND ($2::text IS NULL
                        OR coalesce(event, 'message') IN (SELECT json_array_elements_text($2::text::json)))
                 ORDER BY id
                 LIMIT $3) AS page"#,
        after,
        names,
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
) -> Result<Vec<Fact>, sqlx::Error> {
    sqlx::query_as!(
        Fact,
        r#"SELECT id, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts WHERE id < $1 ORDER BY id DESC LIMIT $2"#,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The id of the fact `offset` places from the newest (0: the newest) of the filter's
/// types, if the log holds that many.
///
/// # Errors
/// When the database cannot be read.
pub async fn nth_newest(
    conn: impl PgExecutor<'_>,
    names: Option<&str>,
    offset: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id FROM facts
           WHERE ($1::text IS NULL
                  OR coalesce(event, 'message') IN (SELECT json_array_elements_text($1::text::json)))
           ORDER BY id DESC
           LIMIT 1 OFFSET $2"#,
        names,
        offset
    )
    .fetch_optional(conn)
    .await
}

/// The newest id in the log, 0 when it is empty.
///
/// # Errors
/// When the database cannot be read.
pub async fn newest_id(conn: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT coalesce(max(id), 0) AS "id!" FROM facts"#)
        .fetch_one(conn)
        .await
}

/// One fact by id.
///
/// # Errors
/// When the database cannot be read.
pub async fn get(conn: impl PgExecutor<'_>, id: i64) -> Result<Option<Fact>, sqlx::Error> {
    sqlx::query_as!(
        Fact,
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
