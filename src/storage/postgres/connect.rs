//! Opening a PostgreSQL log: creating the database if it is missing, migrating it, and the
//! connections each part of an instance uses.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use factlog_postgres as queries;
use sqlx::migrate::Migrate as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::Notify;

use super::appender::Appender;
use super::follower::Follower;
use super::reader::Reader;
use crate::config::SyncLevel;
use crate::storage::migrate;
use crate::storage::model::redact;

/// Connections for the API and the streams' replays.
const READ_CONNECTIONS: u32 = 8;

/// How long a request waits for a connection, or the writer for the counter row's lock
/// (another transaction appending and not committing), before it fails with 503.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the PostgreSQL database at `url`, creating it if missing, and migrates it;
/// returns its readers, its appender, its follower and the newest id handed out.
///
/// # Errors
/// When the server cannot be reached, the database cannot be created, or it holds a schema
/// this build does not know; the message names which.
pub async fn open(url: &str, sync: SyncLevel) -> anyhow::Result<(Reader, Appender, Follower, i64)> {
    let shown = redact(url);
    let base = PgConnectOptions::from_str(url)
        .with_context(|| format!("{shown} is not a valid postgres:// database URL"))?
        .log_statements(tracing::log::LevelFilter::Trace);
    // The readers plan every statement for the log as it is now: a prepared statement's
    // generic plan, made while the log was small, would otherwise go on scanning it whole
    // once it is large. Planning these short statements costs microseconds. (The writer
    // only calls `factlog_append`, whose plans are safe to keep and costly to remake.)
    let reading = base
        .clone()
        .options([("plan_cache_mode", "force_custom_plan")]);
    create_if_missing(&base)
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;

    let pool = PgPoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(WAIT_TIMEOUT)
        .connect_with(reading.clone().application_name("factlog"))
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    // Several instances starting together is fine: sqlx migrates under an advisory lock.
    let migrated = async {
        let mut conn = pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        let applied = conn.list_applied_migrations().await?;
        let started = migrate::announce(&queries::MIGRATOR, &applied);
        queries::MIGRATOR.run(&mut *conn).await?;
        migrate::done(started);
        Ok::<_, sqlx::migrate::MigrateError>(())
    };
    migrated
        .await
        .with_context(|| format!("cannot migrate the database {shown}"))?;

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
