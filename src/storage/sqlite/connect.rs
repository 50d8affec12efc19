//! Opening a SQLite log: creating the file if it is missing, migrating it, and its
//! connections.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::ConnectOptions as _;
use sqlx::migrate::Migrate as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::appender::Appender;
use super::reader::Reader;
use crate::config::SyncLevel;
use crate::storage::migrate;

/// How long a statement waits for a lock held by someone else (another process with the
/// file open, a backup) before the request fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections for the API and the streams. SQLite reads are CPU-bound, so more
/// connections than cores buys little; a few let a slow page not hold up the rest.
const READ_CONNECTIONS: u32 = 4;

/// How much of the database file each reader maps into memory rather than reading page by
/// page. A topic's facts are scattered over the file (a rare topic's, one to a page), and
/// reading a page copies all of it out of the system's cache for the one fact wanted;
/// mapped, it is not copied. The writer does not map the file: a failed write must stay an
/// error, and an I/O error on a mapped page would be a signal instead.
const READ_MAP_BYTES: &str = "1073741824";

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
    let migrator = sqlx::migrate!();
    let migrated = async {
        writer.ensure_migrations_table().await?;
        let applied = writer.list_applied_migrations().await?;
        let started = migrate::announce(&migrator, &applied);
        migrator.run(&mut writer).await?;
        migrate::done(started);
        Ok::<_, sqlx::migrate::MigrateError>(())
    };
    migrated
        .await
        .with_context(|| format!("cannot migrate the database {url}"))?;

    let pool = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .min_connections(1)
        .connect_with(base.read_only(true).pragma("mmap_size", READ_MAP_BYTES))
        .await
        .with_context(|| format!("cannot open the database {url} for reading"))?;
    let reader = Reader::new(pool);
    let newest_id = reader
        .newest_id()
        .await
        .with_context(|| format!("cannot read the database {url}"))?;
    Ok((reader, Appender::new(writer, sync), newest_id))
}
