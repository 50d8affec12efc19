//! The only module that names SQL. It opens and migrates the SQLite file, reads the log
//! for the API and the streams, and hands the writer its own connection.
//!
//! The boundary is narrow on purpose (append a batch, read after an id, the newest id, an
//! idempotency lookup) so that another engine can stand behind it without the HTTP layer
//! noticing.
//!
//! Two kinds of connection:
//! - one read-write connection, owned by the [`writer`] task: nothing else writes;
//! - a small pool of read-only connections for the API and the streams. In WAL mode
//!   readers never block the writer and the writer never blocks readers.

pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _};

use crate::config::SyncLevel;
use crate::domain::{EventFilter, FactRecord};
use crate::error::AppError;

/// How long a statement waits for a lock held by someone else (another process with the
/// file open, a backup) before the request fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections for the API and the streams. SQLite reads are CPU-bound, so more
/// connections than cores buys little; a few let a slow page not hold up the rest.
const READ_CONNECTIONS: u32 = 4;

/// Read access to the log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    pool: SqlitePool,
}

/// What [`Storage::open`] hands back: the readers, the writer's connection and what the
/// start-up log line reports.
pub struct Opened {
    /// Read access for the API and the streams.
    pub storage: Storage,
    /// The one read-write connection; give it to [`writer::spawn`].
    pub writer: SqliteConnection,
    /// The newest id in the log, 0 when it is empty.
    pub newest_id: i64,
}

impl Storage {
    /// Opens (creating if missing) and migrates the database at `url`.
    ///
    /// # Errors
    /// When the file cannot be opened or created, is not a SQLite database, or holds a
    /// schema this build does not know; the message names which.
    pub async fn open(url: &str, sync: SyncLevel) -> anyhow::Result<Opened> {
        if !url.starts_with("sqlite:") {
            anyhow::bail!("{url} is not a sqlite:// database URL (the only kind supported)");
        }
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
        let storage = Self { pool };
        let newest_id = storage
            .newest_id()
            .await
            .with_context(|| format!("cannot read the database {url}"))?;
        Ok(Opened {
            storage,
            writer,
            newest_id,
        })
    }

    /// Up to `limit` facts with an id larger than `after`, oldest first, only those of the
    /// filter's event types when there is one.
    ///
    /// # Errors
    /// When the database cannot be read.
    #[tracing::instrument(level = "trace", skip(self, filter))]
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        filter: Option<&EventFilter>,
    ) -> Result<Vec<FactRecord>, AppError> {
        let names = filter.map(EventFilter::as_json);
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
    /// for sqlx to carry across from its connection thread instead of one per fact: that
    /// hand-over, not SQLite, was most of a replay's cost. The frame text must match
    /// [`FactRecord::render_frame`], which renders live facts; a test checks both.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        filter: Option<&EventFilter>,
    ) -> Result<FramePage, AppError> {
        let names = filter.map(EventFilter::as_json);
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
        Ok(FramePage {
            frames: Bytes::from(page.frames.unwrap_or_default().into_bytes()),
            last_id: page.last_id,
            count: page.count,
        })
    }

    /// Up to `limit` facts with an id smaller than `before`, oldest first: the page just
    /// before a position, for reading the log backwards.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn read_before(&self, before: i64, limit: i64) -> Result<Vec<FactRecord>, AppError> {
        let mut rows = sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", event, fact, created_at
               FROM facts WHERE id < ?1 ORDER BY id DESC LIMIT ?2"#,
            before,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// The position just before the newest `n` facts (of the filter's types), so that
    /// reading after it yields exactly those; 0 when the log holds fewer.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn position_before_tail(
        &self,
        n: i64,
        filter: Option<&EventFilter>,
    ) -> Result<i64, AppError> {
        if n == 0 {
            return self.newest_id().await;
        }
        let names = filter.map(EventFilter::as_json);
        let offset = n - 1;
        let nth_newest = sqlx::query_scalar!(
            r#"SELECT id AS "id!: i64" FROM facts
               WHERE (?1 IS NULL OR coalesce(event, 'message') IN (SELECT value FROM json_each(?1)))
               ORDER BY id DESC
               LIMIT 1 OFFSET ?2"#,
            names,
            offset
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(nth_newest.map_or(0, |id| id - 1))
    }

    /// The newest id in the log, 0 when it is empty.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn newest_id(&self) -> Result<i64, AppError> {
        let id = sqlx::query_scalar!(r#"SELECT coalesce(max(id), 0) AS "id!: i64" FROM facts"#)
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// One fact by id.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn get(&self, id: i64) -> Result<Option<FactRecord>, AppError> {
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
    pub async fn log_id(&self) -> Result<String, AppError> {
        let id = sqlx::query_scalar!("SELECT log_id FROM log_meta LIMIT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// When it does not.
    pub async fn ping(&self) -> Result<(), AppError> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Closes the read connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A page of rendered frames; see [`Storage::read_frames`].
#[derive(Debug)]
pub struct FramePage {
    /// The frames, back to back; empty when there were no facts.
    pub frames: Bytes,
    /// The id of the last fact in the page (0 when none).
    pub last_id: i64,
    /// How many facts the page holds.
    pub count: i64,
}

/// Sorts a database error into "the database cannot take this now" (503: full, read-only,
/// locked past the busy timeout, an I/O error, no connection to be had) and our own fault
/// (500).
pub fn classify(err: sqlx::Error) -> AppError {
    // SQLite's primary result codes (the low byte of an extended code).
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    match &err {
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match code {
                Some(BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN) => {
                    AppError::Unavailable(db.message().to_owned())
                }
                _ => AppError::Internal(err.into()),
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            AppError::Unavailable(err.to_string())
        }
        _ => AppError::Internal(err.into()),
    }
}
