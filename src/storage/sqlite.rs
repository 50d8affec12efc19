//! SQLite: the default engine, one file served by one factlog process.
//!
//! Two kinds of connection:
//! - one read-write connection, owned by the writer through [`Appender`]: nothing else
//!   writes;
//! - a small pool of read-only connections for the API and the streams ([`Reader`]). In
//!   WAL mode readers never block the writer and the writer never blocks readers.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _};

use super::model::{Appended, StorageError, rows_json};
use super::page::FramePage;
use crate::config::SyncLevel;
use crate::domain::{EventFilter, FactRecord, NewFact};

/// How long a statement waits for a lock held by someone else (another process with the
/// file open, a backup) before the request fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections for the API and the streams. SQLite reads are CPU-bound, so more
/// connections than cores buys little; a few let a slow page not hold up the rest.
const READ_CONNECTIONS: u32 = 4;

/// Read access to a SQLite log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reader {
    pool: SqlitePool,
}

/// The writer's side: the one read-write connection.
#[derive(Debug)]
pub struct Appender {
    conn: SqliteConnection,
}

/// Opens (creating if missing) and migrates the SQLite database at `url`; returns its
/// readers, its appender and the newest id it has handed out.
///
/// # Errors
/// When the file cannot be opened or created, is not a SQLite database, or holds a
/// schema this build does not know; the message names which.
pub async fn open(url: &str, sync: SyncLevel) -> anyhow::Result<(Reader, Appender, i64)> {
    let base = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("{url} is not a valid sqlite:// database URL"))?
        .busy_timeout(BUSY_TIMEOUT)
        .log_statements(tracing::log::LevelFilter::Trace);

    let synchronous = match sync {
        SyncLevel::Full => SqliteSynchronous::Full,
        SyncLevel::Normal => SqliteSynchronous::Normal,
    };
    let mut writer = base
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .connect()
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    sqlx::migrate!()
        .run(&mut writer)
        .await
        .with_context(|| format!("cannot migrate the database {url}"))?;

    let pool = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .min_connections(1)
        .connect_with(base.read_only(true))
        .await
        .with_context(|| format!("cannot open the database {url} for reading"))?;
    let reader = Reader { pool };
    let newest_id = reader
        .newest_id()
        .await
        .with_context(|| format!("cannot read the database {url}"))?;
    Ok((reader, Appender { conn: writer }, newest_id))
}

/// The filter as the queries take it: the names as a JSON array (`NULL`: every fact), and
/// whether facts stored without a type pass.
fn filter_params(filter: Option<&EventFilter>) -> (Option<&str>, bool) {
    filter.map_or((None, true), |f| {
        (Some(f.names_json()), f.includes_untyped())
    })
}

/// Every read fails with [`StorageError`] when the database cannot be read.
impl Reader {
    /// Up to `limit` facts with an id larger than `after`, oldest first, only those the
    /// filter passes when there is one.
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        filter: Option<&EventFilter>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let (names, untyped) = filter_params(filter);
        sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at
               FROM facts
               WHERE id > ?1
                 AND (?2 IS NULL OR event IN (SELECT value FROM json_each(?2))
                      OR (event IS NULL AND ?3))
               ORDER BY id
               LIMIT ?4"#,
            after,
            names,
            untyped,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    /// A stream's next replay page: up to `rows` facts after `after` that the filter
    /// passes, rendered, stopping after the frame that reaches `max_bytes` (see
    /// [`FramePage`]).
    pub async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        filter: Option<&EventFilter>,
        max_bytes: usize,
    ) -> Result<FramePage, StorageError> {
        let (names, untyped) = filter_params(filter);
        let packed = sqlx::query_scalar!(
            r#"SELECT group_concat(id || ',' || coalesce(event, '') || ',' || fact || char(10),
                                   '' ORDER BY id) AS "packed: String"
               FROM (SELECT id, event, fact
                     FROM facts
                     WHERE id > ?1
                       AND (?2 IS NULL OR event IN (SELECT value FROM json_each(?2))
                            OR (event IS NULL AND ?3))
                     ORDER BY id
                     LIMIT ?4)"#,
            after,
            names,
            untyped,
            rows
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        FramePage::render(packed.as_deref(), rows, max_bytes)
    }

    /// Up to `limit` facts with an id smaller than `before`, newest first.
    pub async fn read_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<FactRecord>, StorageError> {
        sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at
               FROM facts WHERE id < ?1 ORDER BY id DESC LIMIT ?2"#,
            before,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    /// The id of the fact `offset` places from the newest (0: the newest) that the filter
    /// passes, if the log holds that many.
    pub async fn nth_newest(
        &self,
        filter: Option<&EventFilter>,
        offset: i64,
    ) -> Result<Option<i64>, StorageError> {
        let (names, untyped) = filter_params(filter);
        sqlx::query_scalar!(
            r#"SELECT id AS "id!: i64" FROM facts
               WHERE (?1 IS NULL OR event IN (SELECT value FROM json_each(?1))
                      OR (event IS NULL AND ?2))
               ORDER BY id DESC
               LIMIT 1 OFFSET ?3"#,
            names,
            untyped,
            offset
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)
    }

    /// The newest id the log has handed out, 0 when it never has. Read from where
    /// AUTOINCREMENT keeps it, not from the facts: with the newest facts deleted, `max(id)`
    /// would go back, and every client ahead of it would be told its position is unknown.
    pub async fn newest_id(&self) -> Result<i64, StorageError> {
        sqlx::query_scalar!(
            r#"SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0)
                   AS "id!: i64""#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    /// One fact by id.
    pub async fn get(&self, id: i64) -> Result<Option<FactRecord>, StorageError> {
        sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at FROM facts WHERE id = ?1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)
    }

    /// The UUID made when this log was created.
    pub async fn log_id(&self) -> Result<String, StorageError> {
        sqlx::query_scalar!("SELECT log_id FROM log_meta LIMIT 1")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        conn.ping().await.map_err(classify)
    }

    /// Closes the read connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Appender {
    /// Appends the facts in one statement, and so in one transaction; returns what became
    /// of each, in order. The new facts' ids increase in row order. Keys must not repeat
    /// among the rows (the writer sees to it).
    ///
    /// # Errors
    /// When the database refuses the statement; nothing of it is written then.
    pub async fn append(&mut self, rows: &[&NewFact]) -> Result<Vec<Appended>, StorageError> {
        // Nothing else writes, so the key lookup cannot be raced by another append.
        let existing = self.lookup_keys(rows).await?;
        let fresh: Vec<&NewFact> = rows
            .iter()
            .copied()
            .filter(|r| {
                r.key
                    .as_ref()
                    .is_none_or(|k| !existing.contains_key(k.as_str()))
            })
            .collect();
        let mut inserted = Vec::new();
        if !fresh.is_empty() {
            let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            let rows_json = rows_json(&fresh)?;
            // One statement for the whole group: every statement costs a round trip to
            // sqlx's connection thread, so one per fact would cost several times more.
            // `json_each` yields the rows in array order, and AUTOINCREMENT gives each
            // inserted row the next id in turn (one statement, one writer), so the n-th
            // row gets the n-th of the last `n` ids. Asking for just the last id, rather
            // than `RETURNING id`, spares sqlx a message per row.
            //
            // No BEGIN/COMMIT around it: a single statement is its own transaction,
            // committed (and synced under `--sync`) when it finishes, which `execute`
            // waits for; the explicit pair would only add two more round trips.
            let done = sqlx::query!(
                r#"INSERT INTO facts (event, fact, created_at, idempotency_key)
                   SELECT value ->> 0, value ->> 1, ?1, value ->> 2
                   FROM json_each(?2)
                   ORDER BY key"#,
                created_at,
                rows_json
            )
            .execute(&mut self.conn)
            .await
            .map_err(classify)?;
            let count = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
            if i64::try_from(done.rows_affected()).ok() != Some(count) {
                return Err(StorageError::Internal(anyhow::anyhow!(
                    "inserted {} facts but the database says {}",
                    fresh.len(),
                    done.rows_affected()
                )));
            }
            let first = done.last_insert_rowid() - count + 1;
            inserted = fresh
                .iter()
                .zip(first..)
                .map(|(row, id)| FactRecord {
                    id,
                    event: row.event.as_ref().map(|e| e.as_str().to_owned()),
                    fact: row.fact.clone(),
                    created_at: created_at.clone(),
                })
                .collect();
        }
        let mut inserted = inserted.into_iter();
        rows.iter()
            .map(
                |row| match row.key.as_ref().and_then(|k| existing.get(k.as_str())) {
                    Some(record) => Ok(Appended::Existing(record.clone())),
                    None => inserted.next().map(Appended::Created).ok_or_else(|| {
                        StorageError::Internal(anyhow::anyhow!("an inserted row is missing"))
                    }),
                },
            )
            .collect()
    }

    /// The records already in the log under the rows' idempotency keys.
    async fn lookup_keys(
        &mut self,
        rows: &[&NewFact],
    ) -> Result<HashMap<String, FactRecord>, StorageError> {
        let keys: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.key.as_ref().map(|k| k.as_str()))
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let keys_json =
            serde_json::to_string(&keys).map_err(|e| StorageError::Internal(e.into()))?;
        let found = sqlx::query!(
            r#"SELECT id AS "id!: i64", event, fact, created_at,
                      idempotency_key AS "key!: String"
               FROM facts
               WHERE idempotency_key IS NOT NULL
                 AND idempotency_key IN (SELECT value FROM json_each(?1))"#,
            keys_json
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(classify)?;
        Ok(found
            .into_iter()
            .map(|r| {
                let record = FactRecord {
                    id: r.id,
                    event: r.event,
                    fact: r.fact,
                    created_at: r.created_at,
                };
                (r.key, record)
            })
            .collect())
    }

    /// Closes the connection, after the writer's last commit.
    pub async fn close(self) {
        if let Err(err) = self.conn.close().await {
            tracing::warn!(cause = %err, "closing the writer's connection failed");
        }
    }
}

/// Sorts a database error into "the database cannot take this now" (busy or locked past
/// the timeout, read-only, an I/O error, full, cannot be opened; no connection to be had)
/// and our own fault.
fn classify(err: sqlx::Error) -> StorageError {
    // SQLite's primary result codes (the low byte of an extended code).
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    let unavailable = match &err {
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            matches!(
                primary,
                Some(BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN)
            )
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        _ => false,
    };
    if unavailable {
        StorageError::Unavailable(err.to_string())
    } else {
        StorageError::Internal(err.into())
    }
}
