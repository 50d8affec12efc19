//! The boundary every caller of storage goes through: open a log, read it ([`Storage`]),
//! append to it ([`Appender`], the writer's), and with PostgreSQL follow it
//! ([`Follower`]). The database URL's scheme picks the engine; nothing above this file
//! knows which one answers.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::migrate::SchemaMode;
use super::model::{Appended, Bounds, Publish, Selection, StorageError, TopicSummary, redact};
use super::page::FramePage;
use super::retention::Trimmed;
use super::{postgres, sqlite};
use crate::config::SyncLevel;
use crate::domain::frame::Format;
use crate::domain::{FactRecord, NewFact, Retention};

/// Read access to the log. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A SQLite file.
    Sqlite(sqlite::Reader),
    /// A PostgreSQL database.
    Postgres(postgres::Reader),
}

/// What appends: the engine's write connection, owned by the writer.
#[derive(Debug)]
pub enum Appender {
    /// SQLite's one read-write connection.
    Sqlite(sqlite::Appender),
    /// PostgreSQL's writer connection.
    Postgres(Box<postgres::Appender>),
}

/// With PostgreSQL, what keeps this instance's streams up with the shared log; start it
/// with [`Follower::spawn`]. SQLite has none: its writer is the log's only source.
pub struct Follower(postgres::Follower);

/// An opened log.
pub struct Opened {
    /// Read access for the API and the streams.
    pub storage: Storage,
    /// What the writer appends with.
    pub appender: Appender,
    /// With PostgreSQL, the follower.
    pub follower: Option<Follower>,
    /// The newest id the log has handed out, 0 when none.
    pub newest_id: i64,
}

/// The two engines, told apart by a database URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite:...`: one instance, one file.
    Sqlite,
    /// `postgres://...` or `postgresql://...`: shared by several instances.
    Postgres,
}

impl Engine {
    /// The engine `url` names.
    ///
    /// # Errors
    /// When the URL is neither.
    pub fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            anyhow::bail!(
                "{} is neither a sqlite:// nor a postgres:// database URL",
                redact(url)
            )
        }
    }
}

/// Opens the database at `url`, `sqlite://...` or `postgres://...` (also
/// `postgresql://`); with [`SchemaMode::Migrate`] it is created if missing and migrated.
///
/// # Errors
/// When the database cannot be opened, created or migrated, or its schema is not this
/// build's; the message names which.
pub async fn open(url: &str, sync: SyncLevel, mode: SchemaMode) -> anyhow::Result<Opened> {
    match Engine::of(url)? {
        Engine::Sqlite => {
            let (reader, appender, newest_id) = sqlite::open(url, sync, mode).await?;
            Ok(Opened {
                storage: Storage::Sqlite(reader),
                appender: Appender::Sqlite(appender),
                follower: None,
                newest_id,
            })
        }
        Engine::Postgres => {
            let (reader, appender, follower, newest_id) = postgres::open(url, sync, mode).await?;
            Ok(Opened {
                storage: Storage::Postgres(reader),
                appender: Appender::Postgres(Box::new(appender)),
                follower: Some(Follower(follower)),
                newest_id,
            })
        }
    }
}

/// `factlog migrate`: creates the database at `url` if missing and applies pending
/// migrations; returns the schema version it is at now.
///
/// # Errors
/// As [`open`].
pub async fn migrate(url: &str) -> anyhow::Result<i64> {
    match Engine::of(url)? {
        Engine::Sqlite => sqlite::migrate(url).await,
        Engine::Postgres => postgres::migrate(url).await,
    }
}

/// `factlog backup`: a consistent copy of the SQLite log at `url`, taken while servers go
/// on appending, into the new file `out`.
///
/// # Errors
/// With PostgreSQL (its own tools back it up), or when the copy cannot be made.
pub async fn backup(url: &str, out: &std::path::Path) -> anyhow::Result<sqlite::Copied> {
    match Engine::of(url)? {
        Engine::Sqlite => sqlite::backup(url, out).await,
        Engine::Postgres => anyhow::bail!(
            "factlog backup copies SQLite logs; back a PostgreSQL log up with its own tools (pg_dump --format=custom, or continuous archiving)"
        ),
    }
}

/// Every read fails with [`StorageError`] when the database cannot be read.
impl Storage {
    /// Up to `limit` facts with an id larger than `after` of the selected topics (event
    /// types are not filtered here), oldest first.
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        selection: &Selection<'_>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        match self {
            Self::Sqlite(db) => db.read_after(after, limit, selection).await,
            Self::Postgres(db) => db.read_after(after, limit, selection).await,
        }
    }

    /// A stream's next replay page: up to `rows` selected facts after `after`, rendered
    /// into SSE frames in `format`, stopping after the frame that reaches `max_bytes` (see
    /// [`FramePage`]), with the log's bounds as of the same read.
    pub async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        selection: &Selection<'_>,
        format: Format,
        max_bytes: usize,
    ) -> Result<FramePage, StorageError> {
        match self {
            Self::Sqlite(db) => {
                db.read_frames(after, rows, selection, format, max_bytes)
                    .await
            }
            Self::Postgres(db) => {
                db.read_frames(after, rows, selection, format, max_bytes)
                    .await
            }
        }
    }

    /// Up to `limit` facts with an id smaller than `before` of the selected topics, oldest
    /// first: the page just before a position, for reading the log backwards.
    pub async fn read_before(
        &self,
        before: i64,
        limit: i64,
        selection: &Selection<'_>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let mut rows = match self {
            Self::Sqlite(db) => db.read_before(before, limit, selection).await?,
            Self::Postgres(db) => db.read_before(before, limit, selection).await?,
        };
        rows.reverse();
        Ok(rows)
    }

    /// The position just before the newest `n` selected facts, so that reading after it
    /// yields exactly those; 0 when the log holds fewer.
    pub async fn position_before_tail(
        &self,
        n: i64,
        selection: &Selection<'_>,
    ) -> Result<i64, StorageError> {
        if n == 0 {
            return self.newest_id().await;
        }
        let nth_newest = match self {
            Self::Sqlite(db) => db.nth_newest(selection, n - 1).await?,
            Self::Postgres(db) => db.nth_newest(selection, n - 1).await?,
        };
        Ok(nth_newest.map_or(0, |id| id - 1))
    }

    /// Up to `limit` topics named after `after` (`""`: from the first), by name.
    pub async fn topics(&self, after: &str, limit: i64) -> Result<Vec<TopicSummary>, StorageError> {
        match self {
            Self::Sqlite(db) => db.topics(after, limit).await,
            Self::Postgres(db) => db.topics(after, limit).await,
        }
    }

    /// One topic's summary; `None` when it has no facts.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicSummary>, StorageError> {
        match self {
            Self::Sqlite(db) => db.topic(name).await,
            Self::Postgres(db) => db.topic(name).await,
        }
    }

    /// The newest id the log has handed out, 0 when none: from where ids are handed out,
    /// so deleting facts never takes it back.
    pub async fn newest_id(&self) -> Result<i64, StorageError> {
        match self {
            Self::Sqlite(db) => db.newest_id().await,
            Self::Postgres(db) => db.newest_id().await,
        }
    }

    /// Where the log starts and ends, in one read.
    pub async fn bounds(&self) -> Result<Bounds, StorageError> {
        match self {
            Self::Sqlite(db) => db.bounds().await,
            Self::Postgres(db) => db.bounds().await,
        }
    }

    /// The database's size on disk, in bytes.
    pub async fn size_bytes(&self) -> Result<i64, StorageError> {
        match self {
            Self::Sqlite(db) => db.size_bytes().await,
            Self::Postgres(db) => db.size_bytes().await,
        }
    }

    /// One fact by id.
    pub async fn get(&self, id: i64) -> Result<Option<FactRecord>, StorageError> {
        match self {
            Self::Sqlite(db) => db.get(id).await,
            Self::Postgres(db) => db.get(id).await,
        }
    }

    /// The UUID made when this log was created.
    pub async fn log_id(&self) -> Result<String, StorageError> {
        match self {
            Self::Sqlite(db) => db.log_id().await,
            Self::Postgres(db) => db.log_id().await,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
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

impl Appender {
    /// Appends the facts in one transaction and returns what became of each, in order
    /// (`Created`, or `Existing` for a key already used on the topic); the new facts' ids
    /// increase in row order. A (topic, key) must not repeat among the rows.
    ///
    /// # Errors
    /// When the database refuses the group; nothing of it is written then.
    pub async fn append(&mut self, rows: &[&NewFact]) -> Result<Vec<Appended>, StorageError> {
        match self {
            Self::Sqlite(db) => db.append(rows),
            Self::Postgres(db) => db.append(rows).await,
        }
    }

    /// One step of retention: deletes at most `batch` of the oldest facts outside
    /// `retention`'s bounds (a prefix of the log) and records the highest deleted id in
    /// the same transaction.
    ///
    /// # Errors
    /// When the database refuses; nothing is deleted then.
    pub async fn trim(
        &mut self,
        retention: &Retention,
        batch: i64,
    ) -> Result<Trimmed, StorageError> {
        match self {
            Self::Sqlite(db) => db.trim(retention, batch),
            Self::Postgres(db) => db.trim(retention, batch).await,
        }
    }

    /// Hands facts this appender just committed, and that are durable, to this
    /// instance's streams (and with SQLite, to its readers).
    pub fn publish(&self, streams: &dyn Publish, inserted: &[FactRecord]) {
        match self {
            Self::Sqlite(db) => db.publish(streams, inserted),
            Self::Postgres(db) => db.publish(streams, inserted),
        }
    }

    /// With SQLite and `--sync full`, what makes its commits durable and the watermark
    /// that says which are (taken once, by the writer for its syncer; see
    /// `sqlite/durable.rs`). `None` when a commit is durable when it returns.
    pub fn durability(&mut self) -> Option<(sqlite::WalSync, sqlite::Watermark)> {
        match self {
            Self::Sqlite(db) => db.durability(),
            Self::Postgres(_) => None,
        }
    }

    /// Closes the write connection, after the last commit.
    pub async fn close(self) {
        match self {
            Self::Sqlite(db) => db.close(),
            Self::Postgres(db) => db.close().await,
        }
    }
}

impl Follower {
    /// Starts following the shared log into `streams` until `shutdown` fires.
    pub fn spawn(self, streams: Arc<dyn Publish>, shutdown: CancellationToken) -> JoinHandle<()> {
        self.0.spawn(streams, shutdown)
    }
}
