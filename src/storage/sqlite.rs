//! SQLite: the default engine, one file served by one factlog process.
//!
//! Two kinds of connection:
//! - one read-write connection, owned by the writer: nothing else writes;
//! - a small pool of read-only connections for the API and the streams. In WAL mode
//!   readers never block the writer and the writer never blocks readers.

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

use super::writer::{Appender, Outcome, Row, rows_json};
use super::{FramePage, Opened};
use crate::config::SyncLevel;
use crate::domain::FactRecord;
use crate::error::AppError;

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

/// Opens (creating if missing) and migrates the SQLite database at `url`.
///
/// # Errors
/// When the file cannot be opened or created, is not a SQLite database, or holds a
/// schema this build does not know; the message names which.
pub(super) async fn open(url: &str, sync: SyncLevel) -> anyhow::Result<Opened> {
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
    Ok(Opened {
        storage: super::Storage::Sqlite(reader),
        appender: Appender::Sqlite(writer),
        follow: None,
        newest_id,
    })
}

impl Reader {
    /// Up to `limit` facts with an id larger than `after`, oldest first, only those of the
    /// filter's event types when there is one.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn read_after(
        &self,
        after: i64,
        limit: i64,
        names: Option<&str>,
    ) -> Result<Vec<FactRecord>, AppError> {
        // The filter is a JSON array of names; `NULL` means every fact. A plain fact's
        // type is `message`, so `event=message` selects the facts posted without a type.
        let rows = sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at
               FROM facts
               WHERE id > ?1
                 AND (?2 IS NULL OR coalesce(event, 'message') IN (SELECT value FROM json_each(?2)))
               ORDER BY id
               LIMIT ?3"#,
            after,
            names,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The next page of a stream's replay: the SSE frames of up to `rows` facts after
    /// `after` (of the filter's types), oldest first, back to back.
    ///
    /// SQLite renders the frames and joins them into one string, so a page is one row
    /// for sqlx to carry across from its connection thread instead of one per fact (see
    /// [`super::Storage::read_frames`]).
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        names: Option<&str>,
    ) -> Result<FramePage, AppError> {
        let page = sqlx::query!(
            r#"SELECT group_concat(
                        'id: ' || id || char(10)
                        || iif(event IS NULL, '', 'event: ' || event || char(10))
                        || 'data: ' || fact || char(10) || char(10),
                        '' ORDER BY id) AS "frames: String",
                      coalesce(max(id), 0) AS "last_id!: i64",
                      count(id) AS "count!: i64"
               FROM (SELECT id, event, fact
                     FROM facts
                     WHERE id > ?1
                       AND (?2 IS NULL OR coalesce(event, 'message') IN (SELECT value FROM json_each(?2)))
                     ORDER BY id
                     LIMIT ?3)"#,
            after,
            names,
            rows
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(FramePage::new(page.frames, page.last_id, page.count))
    }

    /// Up to `limit` facts with an id smaller than `before`, newest first.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn read_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<FactRecord>, AppError> {
        let rows = sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at
               FROM facts WHERE id < ?1 ORDER BY id DESC LIMIT ?2"#,
            before,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The id of the fact `offset` places from the newest (0: the newest) of the filter's
    /// types, if the log holds that many.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn nth_newest(
        &self,
        names: Option<&str>,
        offset: i64,
    ) -> Result<Option<i64>, AppError> {
        let id = sqlx::query_scalar!(
            r#"SELECT id AS "id!: i64" FROM facts
               WHERE (?1 IS NULL OR coalesce(event, 'message') IN (SELECT value FROM json_each(?1)))
               ORDER BY id DESC
               LIMIT 1 OFFSET ?2"#,
            names,
            offset
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// The newest id in the log, 0 when it is empty.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn newest_id(&self) -> Result<i64, AppError> {
        let id = sqlx::query_scalar!(r#"SELECT coalesce(max(id), 0) AS "id!: i64" FROM facts"#)
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// One fact by id.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn get(&self, id: i64) -> Result<Option<FactRecord>, AppError> {
        let record = sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at FROM facts WHERE id = ?1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(record)
    }

    /// The UUID made when this log was created.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub(super) async fn log_id(&self) -> Result<String, AppError> {
        let id = sqlx::query_scalar!("SELECT log_id FROM log_meta LIMIT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// When it does not.
    pub(super) async fn ping(&self) -> Result<(), AppError> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Closes the read connections.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a SQLite result code means "the database cannot take this now": busy or locked
/// past the timeout, read-only, an I/O error, full, cannot be opened.
pub(super) fn is_unavailable(code: Option<&str>) -> bool {
    // SQLite's primary result codes (the low byte of an extended code).
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    let primary = code.and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff);
    matches!(
        primary,
        Some(BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN)
    )
}

/// Appends the rows in one statement; see [`super::writer::Appender`].
pub(super) async fn append(
    conn: &mut SqliteConnection,
    rows: &[Row<'_>],
) -> Result<Vec<Outcome>, AppError> {
    // Nothing else writes, so the key lookup cannot be raced by another append.
    let existing = lookup_keys(conn, rows).await?;
    let fresh: Vec<&Row<'_>> = rows
        .iter()
        .filter(|r| r.key.is_none_or(|k| !existing.contains_key(k)))
        .collect();
    let mut inserted = Vec::new();
    if !fresh.is_empty() {
        let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let rows_json = rows_json(fresh.iter().copied())?;
        // One statement for the whole group: every statement costs a round trip to sqlx's
        // connection thread, so one per fact would cost several times more. `json_each`
        // yields the rows in array order, and AUTOINCREMENT gives each inserted row the
        // next id in turn (one statement, one writer), so the n-th row gets the n-th of the
        // last `n` ids. Asking for just the last id, rather than `RETURNING id`, spares
        // sqlx a message per row.
        //
        // No BEGIN/COMMIT around it: a single statement is its own transaction, committed
        // (and synced under `--sync`) when it finishes, which `execute` waits for; the
        // explicit pair would only add two more round trips.
        let done = sqlx::query!(
            r#"INSERT INTO facts (event, fact, created_at, idempotency_key)
               SELECT value ->> 0, value ->> 1, ?1, value ->> 2
               FROM json_each(?2)
               ORDER BY key"#,
            created_at,
            rows_json
        )
        .execute(&mut *conn)
        .await?;
        let count = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
        if i64::try_from(done.rows_affected()).ok() != Some(count) {
            return Err(AppError::Internal(anyhow::anyhow!(
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
                event: row.event.map(str::to_owned),
                fact: row.fact.to_owned(),
                created_at: created_at.clone(),
            })
            .collect();
    }
    let mut inserted = inserted.into_iter();
    rows.iter()
        .map(|row| match row.key.and_then(|k| existing.get(k)) {
            Some(record) => Ok(Outcome {
                record: record.clone(),
                existed: true,
            }),
            None => inserted
                .next()
                .map(|record| Outcome {
                    record,
                    existed: false,
                })
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("an inserted row is missing"))),
        })
        .collect()
}

/// The records already in the log under the rows' idempotency keys.
async fn lookup_keys(
    conn: &mut SqliteConnection,
    rows: &[Row<'_>],
) -> Result<HashMap<String, FactRecord>, AppError> {
    let keys: Vec<&str> = rows.iter().filter_map(|r| r.key).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let keys_json = serde_json::to_string(&keys).map_err(|e| AppError::Internal(e.into()))?;
    let found = sqlx::query!(
        r#"SELECT id AS "id!: i64", event, fact, created_at, idempotency_key AS "key!: String"
           FROM facts
           WHERE idempotency_key IS NOT NULL
             AND idempotency_key IN (SELECT value FROM json_each(?1))"#,
        keys_json
    )
    .fetch_all(&mut *conn)
    .await?;
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
