//! The only module that names SQL (with the `factlog-postgres` crate, which holds
//! PostgreSQL's checked queries for the reason given there). It opens and migrates the
//! database, reads the log for the API and the streams, and hands the writer what it
//! appends with.
//!
//! Two engines stand behind one narrow boundary (append a group, read after an id, the
//! newest id, an idempotency lookup), so the HTTP layer never knows which it talks to:
//!
//! - [`sqlite`], the default: one file, one factlog process.
//! - [`postgres`]: one database shared by any number of factlog instances and by other
//!   programs that publish through SQL. Each instance follows the shared log (see
//!   [`postgres::Follower`]).
//!
//! The database URL's scheme picks the engine.

pub mod postgres;
pub mod sqlite;
pub mod writer;

use bytes::Bytes;
use sqlx::postgres::PgDatabaseError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SyncLevel;
use crate::domain::{EventFilter, FactRecord};
use crate::error::AppError;
use crate::notifier::Notifier;

/// Read access to the log. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A SQLite file.
    Sqlite(sqlite::Reader),
    /// A PostgreSQL database.
    Postgres(postgres::Reader),
}

/// What [`Storage::open`] hands back: the readers, what the writer appends with, and what
/// the start-up log line reports.
pub struct Opened {
    /// Read access for the API and the streams.
    pub storage: Storage,
    /// What appends; give it to [`writer::spawn`].
    pub appender: writer::Appender,
    /// With PostgreSQL, what keeps this instance's notifier up with the shared log; start
    /// it with [`Follow::spawn`].
    pub follow: Option<Follow>,
    /// The newest id in the log, 0 when it is empty.
    pub newest_id: i64,
}

/// The part of an opened database that runs beside the writer: nothing for SQLite (the
/// writer is the only source of facts), the follower for PostgreSQL.
pub struct Follow(postgres::Follower);

impl Follow {
    /// Starts following the shared log into `notifier` until `shutdown` fires.
    pub fn spawn(
        self,
        notifier: std::sync::Arc<Notifier>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        self.0.spawn(notifier, shutdown)
    }
}

impl Storage {
    /// Opens (creating if missing) and migrates the database at `url`: `sqlite://...` or
    /// `postgres://...` (also `postgresql://`).
    ///
    /// # Errors
    /// When the database cannot be opened, created or migrated; the message names which.
    pub async fn open(url: &str, sync: SyncLevel) -> anyhow::Result<Opened> {
        if url.starts_with("sqlite:") {
            sqlite::open(url, sync).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::open(url, sync).await
        } else {
            anyhow::bail!(
                "{} is neither a sqlite:// nor a postgres:// database URL",
                redact(url)
            )
        }
    }

    /// Up to `limit` facts with an id larger than `after`, oldest first, only those of the
    /// filter's event types when there is one.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        filter: Option<&EventFilter>,
    ) -> Result<Vec<FactRecord>, AppError> {
        let names = filter.map(EventFilter::as_json);
        match self {
            Self::Sqlite(db) => db.read_after(after, limit, names).await,
            Self::Postgres(db) => db.read_after(after, limit, names).await,
        }
    }

    /// The next page of a stream's replay: the SSE frames of up to `rows` facts after
    /// `after` (of the filter's types), oldest first, back to back.
    ///
    /// The database renders the frames and joins them into one string, so a page is one
    /// row for sqlx to carry across instead of one per fact: that hand-over, not the
    /// database, was most of a replay's cost. The frame text must match
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
        match self {
            Self::Sqlite(db) => db.read_frames(after, rows, names).await,
            Self::Postgres(db) => db.read_frames(after, rows, names).await,
        }
    }

    /// Up to `limit` facts with an id smaller than `before`, oldest first: the page just
    /// before a position, for reading the log backwards.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn read_before(&self, before: i64, limit: i64) -> Result<Vec<FactRecord>, AppError> {
        let mut rows = match self {
            Self::Sqlite(db) => db.read_before(before, limit).await?,
            Self::Postgres(db) => db.read_before(before, limit).await?,
        };
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
        let nth_newest = match self {
            Self::Sqlite(db) => db.nth_newest(names, n - 1).await?,
            Self::Postgres(db) => db.nth_newest(names, n - 1).await?,
        };
        Ok(nth_newest.map_or(0, |id| id - 1))
    }

    /// The newest id in the log, 0 when it is empty.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn newest_id(&self) -> Result<i64, AppError> {
        match self {
            Self::Sqlite(db) => db.newest_id().await,
            Self::Postgres(db) => db.newest_id().await,
        }
    }

    /// One fact by id.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn get(&self, id: i64) -> Result<Option<FactRecord>, AppError> {
        match self {
            Self::Sqlite(db) => db.get(id).await,
            Self::Postgres(db) => db.get(id).await,
        }
    }

    /// The UUID made when this log was created.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn log_id(&self) -> Result<String, AppError> {
        match self {
            Self::Sqlite(db) => db.log_id().await,
            Self::Postgres(db) => db.log_id().await,
        }
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// When it does not.
    pub async fn ping(&self) -> Result<(), AppError> {
        match self {
            Self::Sqlite(db) => db.ping().await,
            Self::Postgres(db) => db.ping().await,
        }
    }

    /// Closes the read connections.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::Postgres(db) => db.close().await,
        }
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

impl FramePage {
    /// A page from what the database rendered: the frames (`None` for no facts), the last
    /// id and the count.
    fn new(frames: Option<String>, last_id: i64, count: i64) -> Self {
        Self {
            frames: Bytes::from(frames.unwrap_or_default().into_bytes()),
            last_id,
            count,
        }
    }
}

/// `url` with its password, if any, replaced by `***`: database URLs go to logs and error
/// messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, and this one has one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Sorts a database error into "the database cannot take this now" (503: full, read-only,
/// locked past the timeout, an I/O error, no connection to be had, the server going down)
/// and our own fault (500).
pub fn classify(err: sqlx::Error) -> AppError {
    match &err {
        sqlx::Error::Database(db) => {
            let unavailable = match db.try_downcast_ref::<PgDatabaseError>() {
                Some(pg) => postgres::is_unavailable(pg.code()),
                None => sqlite::is_unavailable(db.code().as_deref()),
            };
            if unavailable {
                AppError::Unavailable(db.message().to_owned())
            } else {
                AppError::Internal(err.into())
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            AppError::Unavailable(err.to_string())
        }
        _ => AppError::Internal(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("postgres://factlog:s3cret@db:5432/facts"),
            "postgres://factlog:***@db:5432/facts"
        );
        assert_eq!(redact("postgres://db/facts"), "postgres://db/facts");
        assert_eq!(redact("sqlite://facts.db"), "sqlite://facts.db");
    }
}
