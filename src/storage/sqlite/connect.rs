//! Opening a SQLite log: creating the file if it is missing, migrating it, and its
//! connections.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrate as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};

use super::appender::Appender;
use super::durable::{WalSync, Watermark};
use super::reader::Reader;
use crate::config::SyncLevel;
use crate::storage::migrate::{self, SchemaMode, SchemaState};

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

/// Opens the SQLite database at `url` (with [`SchemaMode::Migrate`], creating it if
/// missing and migrating it); returns its readers, its appender and the newest id it has
/// handed out.
///
/// # Errors
/// When the file cannot be opened or created, is not a SQLite database, or holds a
/// schema this build does not know (or, with [`SchemaMode::Check`], is behind it); the
/// message names which.
pub async fn open(
    url: &str,
    sync: SyncLevel,
    mode: SchemaMode,
) -> anyhow::Result<(Reader, Appender, i64)> {
    if in_memory(url) {
        anyhow::bail!(
            "{url} is an in-memory database: factlog keeps its log in a file (sqlite://PATH)"
        );
    }
    let base = options(url)?;
    let db_file = base.get_filename().to_owned();
    // sqlx's connection creates and migrates the file; the writer's own connection is
    // opened before it closes, so the write-ahead log stays the same file throughout.
    let mut schema = base
        .clone()
        .create_if_missing(mode == SchemaMode::Migrate)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .with_context(|| match mode {
            SchemaMode::Migrate => format!("cannot open the database {url}"),
            SchemaMode::Check => format!(
                "cannot open the database {url} (with --no-migrate it must exist: `factlog migrate` creates it)"
            ),
        })?;
    prepare_schema(&mut schema, url, mode).await?;

    let pool = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .min_connections(1)
        .connect_with(base.read_only(true).pragma("mmap_size", READ_MAP_BYTES))
        .await
        .with_context(|| format!("cannot open the database {url} for reading"))?;
    let writer =
        open_writer(&db_file).with_context(|| format!("cannot open the database {url}"))?;
    schema
        .close()
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let wal = match sync {
        SyncLevel::Full => Some(WalSync::open(&db_file).with_context(|| {
            format!(
                "cannot sync the database {} and its write-ahead log (--sync full needs a database file)",
                db_file.display()
            )
        })?),
        SyncLevel::Normal => None,
    };
    // Everything in the file is durable now (`WalSync::open` synced it): readers may show
    // all of it.
    let newest_id = writer
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0)",
            [],
            |row| row.get::<_, i64>(0),
        )
        .with_context(|| format!("cannot read the database {url}"))?;
    let watermark = Watermark::new(newest_id);
    let reader = Reader::new(pool, watermark.clone());
    Ok((reader, Appender::new(writer, watermark, wal), newest_id))
}

/// Whether `url` names an in-memory database (`sqlite::memory:`, `?mode=memory`): one that
/// would be gone at the next start, and that the writer's own connection could not share.
fn in_memory(url: &str) -> bool {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    path.ends_with(":memory:") || query.split('&').any(|pair| pair == "mode=memory")
}

/// The writer's connection to the migrated file at `path`. NORMAL under either `--sync`:
/// a commit does not wait for the disk. With `--sync full` the syncer makes each commit
/// durable before anyone sees it (`durable.rs`).
fn open_writer(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// `factlog migrate`: creates the database at `url` if missing and applies pending
/// migrations; returns the schema version it is at now.
///
/// # Errors
/// As [`open`].
pub async fn migrate(url: &str) -> anyhow::Result<i64> {
    let mut conn = options(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let state = prepare_schema(&mut conn, url, SchemaMode::Migrate).await?;
    conn.close().await?;
    Ok(state.known_version())
}

/// The options every connection to `url` starts from.
pub(super) fn options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)
        .with_context(|| format!("{url} is not a valid sqlite:// database URL"))?
        .busy_timeout(BUSY_TIMEOUT)
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Migrates the schema, or with [`SchemaMode::Check`] checks that it is current; refuses a
/// schema newer than this build's.
async fn prepare_schema(
    conn: &mut SqliteConnection,
    url: &str,
    mode: SchemaMode,
) -> anyhow::Result<SchemaState> {
    let migrator = sqlx::migrate!();
    if mode == SchemaMode::Migrate {
        conn.ensure_migrations_table()
            .await
            .with_context(|| format!("cannot migrate the database {url}"))?;
    }
    let applied = conn.list_applied_migrations().await.with_context(|| {
        format!("cannot read the schema of {url} (a new database needs `factlog migrate` first)")
    })?;
    let state = SchemaState::of(&migrator, &applied)?;
    if let Some(version) = state.unknown_version() {
        // Written by the newer release's own migration; any failure to read it only makes
        // the message vaguer.
        let release = sqlx::query_scalar!(
            "SELECT factlog_version FROM schema_versions WHERE version = ?",
            version
        )
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten();
        return Err(state.newer_than_this_build(version, release.as_deref()));
    }
    match mode {
        SchemaMode::Check => state.require_current()?,
        SchemaMode::Migrate => {
            let started = state.announce(&applied);
            migrator
                .run(&mut *conn)
                .await
                .with_context(|| format!("cannot migrate the database {url}"))?;
            migrate::done(started);
        }
    }
    Ok(state)
}
