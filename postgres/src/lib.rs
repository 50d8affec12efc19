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
//! Topics and event types to select are passed as JSON arrays of names (`None` for all),
//! with whether facts stored without a type pass; a group to append as the JSON array
//! `factlog_append` takes (see the migrations). A read of several topics reads each with
//! its own limit (`LATERAL`) and sorts only those, rather than every match.

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
    /// Its topic.
    pub topic: String,
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
    /// The record: new, or the one an earlier append made under the same topic and key.
    pub row: FactRow,
    /// Whether the record was already in the log (or made earlier in the same group).
    pub existed: bool,
}

/// A replay page as one row: its facts packed as
/// `<id>,<topic>,<event>,<created_at>,<fact>` lines (`None` when there are none), and the
/// log's bounds read by the same statement, so from the same snapshot.
#[derive(Debug)]
pub struct PackedRow {
    /// The packed facts.
    pub packed: Option<String>,
    /// The highest id retention has deleted (0 while nothing has been).
    pub deleted_through: i64,
    /// The oldest kept fact's id.
    pub first_id: Option<i64>,
    /// The newest id handed out.
    pub last_id: i64,
}

/// The log's bounds, as [`PackedRow`] has them.
#[derive(Debug)]
pub struct BoundsRow {
    /// The highest id retention has deleted (0 while nothing has been).
    pub deleted_through: i64,
    /// The oldest kept fact's id.
    pub first_id: Option<i64>,
    /// The newest id handed out.
    pub last_id: i64,
}

/// What one step of retention did ([`trim`]).
#[derive(Debug)]
pub struct TrimRow {
    /// Whether this connection held the retention lock; without it nothing was done.
    pub held: bool,
    /// The highest deleted id after the step.
    pub through: i64,
    /// Facts this step deleted.
    pub deleted: i64,
    /// Whether every fact the step looked at was deleted, a whole batch of them: more
    /// may be due.
    pub more: bool,
    /// When the oldest kept fact was appended (RFC 3339), if the step looked at it.
    pub kept_at: Option<String>,
}

/// A topic as `GET /topics` lists it.
#[derive(Debug)]
pub struct TopicRow {
    /// Its name.
    pub name: String,
    /// Its oldest fact's id.
    pub first_id: i64,
    /// Its newest fact's id.
    pub last_id: i64,
    /// How many facts it holds.
    pub facts: i64,
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
        r#"SELECT id AS "id!", topic AS "topic!", event, fact AS "fact!",
                  created_at AS "created_at!", existed AS "existed!"
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
                topic: r.topic,
                event: r.event,
                fact: r.fact,
                created_at: r.created_at,
            },
            existed: r.existed,
        })
        .collect())
}

/// Up to `limit` facts after `after`, of every topic, oldest first.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_after(
    conn: impl PgExecutor<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<FactRow>, sqlx::Error> {
    sqlx::query_as!(
        FactRow,
        r#"SELECT id, topic, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts WHERE id > $1 ORDER BY id LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Up to `limit` facts after `after` of the topics named in `topics`, oldest first.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_after_topics(
    conn: impl PgExecutor<'_>,
    after: i64,
    topics: &str,
    limit: i64,
) -> Result<Vec<FactRow>, sqlx::Error> {
    sqlx::query_as!(
        FactRow,
        r#"SELECT f.id AS "id!", f.topic AS "topic!", f.event, f.fact AS "fact!",
                  factlog_time(f.created_at) AS "created_at!"
           FROM json_array_elements_text($2::text::json) AS sel(topic)
           CROSS JOIN LATERAL (SELECT g.id, g.topic, g.event, g.fact, g.created_at
                               FROM facts g
                               WHERE g.topic = sel.topic AND g.id > $1
                               ORDER BY g.id LIMIT $3) AS f
           ORDER BY f.id LIMIT $3"#,
        after,
        topics,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Up to `rows` facts after `after` of the selected event types, of every topic, oldest
/// first, as one string of packed rows `<id>,<topic>,<event>,<created_at>,<fact>` each
/// ended by a line feed (see the main crate's `storage/page.rs`); `None` when there are
/// none.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_packed(
    conn: impl PgExecutor<'_>,
    after: i64,
    events: Option<&str>,
    untyped: bool,
    rows: i64,
) -> Result<PackedRow, sqlx::Error> {
    sqlx::query_as!(
        PackedRow,
        r#"SELECT string_agg(id || ',' || topic || ',' || coalesce(event, '') || ','
                             || factlog_time(created_at) || ',' || fact || E'\n', ''
                             ORDER BY id) AS packed,
                  (SELECT r.deleted_through FROM log_retention r) AS "deleted_through!",
                  (SELECT min(k.id) FROM facts k) AS first_id,
                  (SELECT m.last_id FROM log_meta m) AS "last_id!"
           FROM (SELECT id, topic, event, created_at, fact
                 FROM facts
                 WHERE id > $1
                   AND ($2::text IS NULL
                        OR event IN (SELECT json_array_elements_text($2::text::json))
                        OR (event IS NULL AND $3))
                 ORDER BY id
                 LIMIT $4) AS page"#,
        after,
        events,
        untyped,
        rows
    )
    .fetch_one(conn)
    .await
}

/// [`read_packed`] of the topics named in `topics` only.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_packed_topics(
    conn: impl PgExecutor<'_>,
    after: i64,
    topics: &str,
    events: Option<&str>,
    untyped: bool,
    rows: i64,
) -> Result<PackedRow, sqlx::Error> {
    sqlx::query_as!(
        PackedRow,
        r#"SELECT string_agg(id || ',' || topic || ',' || coalesce(event, '') || ','
                             || factlog_time(created_at) || ',' || fact || E'\n', ''
                             ORDER BY id) AS packed,
                  (SELECT r.deleted_through FROM log_retention r) AS "deleted_through!",
                  (SELECT min(k.id) FROM facts k) AS first_id,
                  (SELECT m.last_id FROM log_meta m) AS "last_id!"
           FROM (SELECT f.id, f.topic, f.event, f.created_at, f.fact
                 FROM json_array_elements_text($2::text::json) AS sel(topic)
                 CROSS JOIN LATERAL (
                     SELECT g.id, g.topic, g.event, g.created_at, g.fact
                     FROM facts g
                     WHERE g.topic = sel.topic AND g.id > $1
                       AND ($3::text IS NULL
                            OR g.event IN (SELECT json_array_elements_text($3::text::json))
                            OR (g.event IS NULL AND $4))
                     ORDER BY g.id LIMIT $5) AS f
                 ORDER BY f.id
                 LIMIT $5) AS page"#,
        after,
        topics,
        events,
        untyped,
        rows
    )
    .fetch_one(conn)
    .await
}

/// Up to `limit` facts before `before`, of every topic, newest first.
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
        r#"SELECT id, topic, event, fact, factlog_time(created_at) AS "created_at!"
           FROM facts WHERE id < $1 ORDER BY id DESC LIMIT $2"#,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Up to `limit` facts before `before` of the topics named in `topics`, newest first.
///
/// # Errors
/// When the database cannot be read.
pub async fn read_before_topics(
    conn: impl PgExecutor<'_>,
    before: i64,
    topics: &str,
    limit: i64,
) -> Result<Vec<FactRow>, sqlx::Error> {
    sqlx::query_as!(
        FactRow,
        r#"SELECT f.id AS "id!", f.topic AS "topic!", f.event, f.fact AS "fact!",
                  factlog_time(f.created_at) AS "created_at!"
           FROM json_array_elements_text($2::text::json) AS sel(topic)
           CROSS JOIN LATERAL (SELECT g.id, g.topic, g.event, g.fact, g.created_at
                               FROM facts g
                               WHERE g.topic = sel.topic AND g.id < $1
                               ORDER BY g.id DESC LIMIT $3) AS f
           ORDER BY f.id DESC LIMIT $3"#,
        before,
        topics,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The id of the fact `offset` places from the newest (0: the newest) of the selected
/// event types, of every topic, if the log holds that many.
///
/// # Errors
/// When the database cannot be read.
pub async fn nth_newest(
    conn: impl PgExecutor<'_>,
    events: Option<&str>,
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
        events,
        untyped,
        offset
    )
    .fetch_optional(conn)
    .await
}

/// [`nth_newest`] among the topics named in `topics` only.
///
/// # Errors
/// When the database cannot be read.
pub async fn nth_newest_topics(
    conn: impl PgExecutor<'_>,
    topics: &str,
    events: Option<&str>,
    untyped: bool,
    offset: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT f.id AS "id!"
           FROM json_array_elements_text($1::text::json) AS sel(topic)
           CROSS JOIN LATERAL (
               SELECT g.id FROM facts g
               WHERE g.topic = sel.topic
                 AND ($2::text IS NULL
                      OR g.event IN (SELECT json_array_elements_text($2::text::json))
                      OR (g.event IS NULL AND $3))
               ORDER BY g.id DESC LIMIT $4::bigint + 1) AS f
           ORDER BY f.id DESC
           LIMIT 1 OFFSET $4"#,
        topics,
        events,
        untyped,
        offset
    )
    .fetch_optional(conn)
    .await
}

/// Up to `limit` topics named after `after`, by name: each name is one index seek, its
/// first and last ids one more each, its count a read of its part of the index.
///
/// # Errors
/// When the database cannot be read.
pub async fn topics(
    conn: impl PgExecutor<'_>,
    after: &str,
    limit: i64,
) -> Result<Vec<TopicRow>, sqlx::Error> {
    sqlx::query_as!(
        TopicRow,
        r#"WITH RECURSIVE names(name) AS (
               SELECT (SELECT min(topic) FROM facts WHERE topic > $1)
               UNION ALL
               SELECT (SELECT min(topic) FROM facts WHERE topic > names.name)
               FROM names WHERE names.name IS NOT NULL)
           SELECT name AS "name!",
                  (SELECT min(id) FROM facts WHERE topic = names.name) AS "first_id!",
                  (SELECT max(id) FROM facts WHERE topic = names.name) AS "last_id!",
                  (SELECT count(*) FROM facts WHERE topic = names.name) AS "facts!"
           FROM names WHERE name IS NOT NULL
           LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}

/// One topic; `None` when it has no facts.
///
/// # Errors
/// When the database cannot be read.
pub async fn topic(conn: impl PgExecutor<'_>, name: &str) -> Result<Option<TopicRow>, sqlx::Error> {
    sqlx::query_as!(
        TopicRow,
        r#"SELECT $1::text AS "name!", min(id) AS "first_id!", max(id) AS "last_id!",
                  count(*) AS "facts!"
           FROM facts WHERE topic = $1
           HAVING count(*) > 0"#,
        name
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

/// The log's bounds, in one read.
///
/// # Errors
/// When the database cannot be read.
pub async fn bounds(conn: impl PgExecutor<'_>) -> Result<BoundsRow, sqlx::Error> {
    sqlx::query_as!(
        BoundsRow,
        r#"SELECT (SELECT r.deleted_through FROM log_retention r) AS "deleted_through!",
                  (SELECT min(k.id) FROM facts k) AS first_id,
                  (SELECT m.last_id FROM log_meta m) AS "last_id!""#
    )
    .fetch_one(conn)
    .await
}

/// The highest id retention has deleted, 0 while nothing has been.
///
/// # Errors
/// When the database cannot be read.
pub async fn deleted_through(conn: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!("SELECT log_retention.deleted_through FROM log_retention LIMIT 1")
        .fetch_one(conn)
        .await
}

/// The database's size on disk, in bytes.
///
/// # Errors
/// When the database cannot be read.
pub async fn size_bytes(conn: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_database_size(current_database()) AS "bytes!""#)
        .fetch_one(conn)
        .await
}

/// One step of retention, in one statement (so one transaction): deletes the oldest facts
/// outside the bounds, at most `batch` of them and only a prefix of the log, and records
/// the highest deleted id in `log_retention`. `keep` is `--retain-facts` and `age_secs`
/// `--retain-age`, each `None` when not set; a fact outside either is deleted.
///
/// Only one instance deletes at a time: the step takes a transaction-level advisory lock,
/// and when another holds it does nothing (`held` is false). Appends are not held up: they
/// lock `log_meta`, which this does not write, and insert rows this does not touch. The
/// watermark only rises (`greatest`), even if a step planned on an older snapshot.
///
/// # Errors
/// When the database refuses; nothing is deleted then.
pub async fn trim(
    conn: impl PgExecutor<'_>,
    batch: i64,
    keep: Option<i64>,
    age_secs: Option<f64>,
) -> Result<TrimRow, sqlx::Error> {
    sqlx::query_as!(
        TrimRow,
        r#"WITH lock(held) AS (SELECT pg_try_advisory_xact_lock(hashtext('factlog.retention'))),
                floor(id) AS (SELECT r.deleted_through FROM log_retention r),
                newest(id) AS (SELECT m.last_id FROM log_meta m),
                -- Without the age bound, only the facts beyond the count bound.
                batch AS (SELECT f.id, f.created_at FROM facts f
                          WHERE (SELECT held FROM lock) AND f.id > (SELECT id FROM floor)
                            AND ($3::float8 IS NOT NULL OR f.id <= (SELECT id FROM newest) - $2)
                          ORDER BY f.id LIMIT $1),
                -- The first fact inside both bounds ends the prefix: times grow with ids,
                -- and should a clock step back, what follows it is kept too.
                kept(id) AS (SELECT min(b.id) FROM batch b
                             WHERE NOT (($2::bigint IS NOT NULL
                                         AND b.id <= (SELECT id FROM newest) - $2)
                                        OR ($3::float8 IS NOT NULL
                                            AND b.created_at < now() - $3 * interval '1 second'))),
                through(id) AS (SELECT coalesce(max(b.id), (SELECT id FROM floor)) FROM batch b
                                WHERE b.id < coalesce((SELECT id FROM kept), 9223372036854775807)),
                deleted AS (DELETE FROM facts f
                            WHERE f.id > (SELECT id FROM floor) AND f.id <= (SELECT id FROM through)
                            RETURNING 1),
                -- Run although nothing reads it, as every data-modifying WITH is.
                moved AS (UPDATE log_retention
                          SET deleted_through = greatest(deleted_through, (SELECT id FROM through))
                          WHERE (SELECT id FROM through) > (SELECT id FROM floor)
                          RETURNING 1)
           SELECT (SELECT held FROM lock) AS "held!",
                  (SELECT id FROM through) AS "through!",
                  (SELECT count(*) FROM deleted) AS "deleted!",
                  (SELECT count(*) FROM batch) = $1 AND (SELECT id FROM kept) IS NULL AS "more!",
                  (SELECT factlog_time(b.created_at) FROM batch b WHERE b.id = (SELECT id FROM kept))
                      AS kept_at"#,
        batch,
        keep,
        age_secs
    )
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
        r#"SELECT id, topic, event, fact, factlog_time(created_at) AS "created_at!"
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

/// The factlog release that introduced schema `version`, as its own migration recorded.
///
/// # Errors
/// When the database cannot be read (a schema older than the table included).
pub async fn schema_release(
    conn: impl PgExecutor<'_>,
    version: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT schema_versions.factlog_version FROM schema_versions WHERE version = $1",
        version
    )
    .fetch_optional(conn)
    .await
}
