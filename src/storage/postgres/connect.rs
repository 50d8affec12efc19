//! Opening a PostgreSQL log: creating the database if it is missing, migrating it, and the
//! connections each part of an instance uses.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use factlog_postgres as queries;
use sqlx::migrate::Migrate as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::Notify;

use super::appender::Appender;
use super::follower::Follower;
use super::reader::Reader;
use crate::config::SyncLevel;
use crate::storage::migrate::{self, SchemaMode, SchemaState};
use crate::storage::model::redact;

/// Connections for the API and the streams' replays.
const READ_CONNECTIONS: u32 = 8;

/// How long a request waits for a connection, or the writer for the counter row's lock
/// (another transaction appending and not committing), before it fails with 503.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the PostgreSQL database at `url` (with [`SchemaMode::Migrate`], creating it if
/// missing and migrating it); returns its readers, its appender, its follower and the
/// newest id handed out.
///
/// # Errors
/// When the server cannot be reached, the database cannot be created, or it holds a schema
/// this build does not know (or, with [`SchemaMode::Check`], is behind it); the message
/// names which.
pub async fn open(
    url: &str,
    sync: SyncLevel,
    mode: SchemaMode,
) -> anyhow::Result<(Reader, Appender, Follower, i64)> {
    let shown = redact(url);
    let base = options(url)?;
    // The readers plan every statement for the log as it is now: a prepared statement's
    // generic plan, made while the log was small, would otherwise go on scanning it whole
    // once it is large. Planning these short statements costs microseconds. (The writer
    // only calls `factlog_append`, whose plans are safe to keep and costly to remake.)
    let reading = base
        .clone()
        .options([("plan_cache_mode", "force_custom_plan")]);
    if mode == SchemaMode::Migrate {
        create_if_missing(&base)
            .await
            .with_context(|| format!("cannot open the database {shown}"))?;
    }

    let pool = PgPoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(WAIT_TIMEOUT)
        .connect_with(reading.clone().application_name("factlog"))
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    let mut conn = pool
        .acquire()
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    prepare_schema(&mut conn, &shown, mode).await?;
    drop(conn);

    let wake = Arc::new(Notify::new());
    // `--sync normal` gives up waiting for the server's WAL flush: an acknowledged fact
    // survives a crash of factlog (as with SQLite), not one of the database server.
    let synchronous_commit = match sync {
        SyncLevel::Full => "on",
        SyncLevel::Normal => "off",
    };
    let lock_timeout = format!("{}ms", WAIT_TIMEOUT.as_millis());
    let appender = Appender::new(
        base.clone().application_name("factlog writer").options([
            ("synchronous_commit", synchronous_commit),
            ("lock_timeout", lock_timeout.as_str()),
        ]),
        WAIT_TIMEOUT,
        Arc::clone(&wake),
    );
    // Two: a listener that lost its connection makes a new one while the old one is
    // still being closed.
    let listen = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(WAIT_TIMEOUT)
        .connect_lazy_with(reading.application_name("factlog follower"));

    let reader = Reader::new(pool);
    let newest_id = reader
        .newest_id()
        .await
        .with_context(|| format!("cannot read the database {shown}"))?;
    Ok((reader, appender, Follower::new(listen, wake), newest_id))
}

/// `factlog migrate`: creates the database at `url` if missing and applies pending
/// migrations; returns the schema version it is at now.
///
/// # Errors
/// As [`open`].
pub async fn migrate(url: &str) -> anyhow::Result<i64> {
    let shown = redact(url);
    let options = options(url)?;
    create_if_missing(&options)
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    let mut conn = options
        .application_name("factlog migrate")
        .connect()
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    let state = prepare_schema(&mut conn, &shown, SchemaMode::Migrate).await?;
    conn.close().await?;
    Ok(state.known_version())
}

/// The options every connection to `url` starts from.
fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .with_context(|| format!("{} is not a valid postgres:// database URL", redact(url)))?
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Migrates the schema, or with [`SchemaMode::Check`] checks that it is current; refuses a
/// schema newer than this build's. Several instances starting together is fine: sqlx
/// migrates under an advisory lock.
async fn prepare_schema(
    conn: &mut PgConnection,
    shown: &str,
    mode: SchemaMode,
) -> anyhow::Result<SchemaState> {
    if mode == SchemaMode::Migrate {
        conn.ensure_migrations_table()
            .await
            .with_context(|| format!("cannot migrate the database {shown}"))?;
    }
    let applied = conn.list_applied_migrations().await.with_context(|| {
        format!("cannot read the schema of {shown} (a new database needs `factlog migrate` first)")
    })?;
    let state = SchemaState::of(&queries::MIGRATOR, &applied)?;
    if let Some(version) = state.unknown_version() {
        // Written by the newer release's own migration; any failure to read it only makes
        // the message vaguer.
        let release = queries::schema_release(&mut *conn, version)
            .await
            .ok()
            .flatten();
        return Err(state.newer_than_this_build(version, release.as_deref()));
    }
    match mode {
        SchemaMode::Check => state.require_current()?,
        SchemaMode::Migrate => {
            let started = state.announce(&applied);
            queries::MIGRATOR
                .run(&mut *conn)
                .await
                .with_context(|| format!("cannot migrate the database {shown}"))?;
            migrate::done(started);
        }
    }
    Ok(state)
}

/// Creates the database when the server says it does not exist. Asking first would need
/// a connection to another database, which a hosted server may not allow.
async fn create_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    /// SQLSTATE `invalid_catalog_name`: the database does not exist.
    const NO_SUCH_DATABASE: &str = "3D000";
    let err = match options.connect().await {
        Ok(conn) => return Ok(conn.close().await?),
        Err(err) => err,
    };
    let missing =
        matches!(&err, sqlx::Error::Database(db) if db.code().as_deref() == Some(NO_SUCH_DATABASE));
    if !missing {
        return Err(err.into());
    }
    let name = options
        .get_database()
        .context("the URL names no database")?
        .to_owned();
    let mut maintenance = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| {
            format!("database {name} does not exist, and cannot connect to create it")
        })?;
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(&create).execute(&mut maintenance).await {
        Ok(_) => tracing::info!(database = %name, "created the database"),
        // Another instance starting at the same moment created it first (42P04
        // duplicate_database, or 23505 unique_violation when the two raced in the catalog).
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P04" | "23505")) => {}
        Err(err) => {
            return Err(err)
                .with_context(|| format!("database {name} does not exist and cannot be created"));
        }
    }
    maintenance.close().await?;
    Ok(())
}
