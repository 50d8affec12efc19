//! PostgreSQL: one log shared by any number of factlog instances, and by other programs
//! that publish with the SQL function `factlog_publish`.
//!
//! Three things make several instances behave as one:
//!
//! - **Ids follow commit order.** Every append, from any instance or program, goes through
//!   the SQL function `factlog_append` (see `migrations/postgres/`), which takes the
//!   counter row's lock first and holds it until commit. So no reader anywhere can see id
//!   11 while id 10 is still to commit, and "the facts after the last id I have" is always
//!   a complete answer. (A sequence would not do: its values are taken before commit, and
//!   transactions commit in any order.)
//! - **Every instance follows the shared log.** The [`Follower`] reads the facts after
//!   its notifier's newest id and publishes them to this instance's streams, in id order.
//!   It reads when `factlog_append`'s `NOTIFY` says another commit happened, when this
//!   instance's writer asks it to, after its listening connection was lost and made again
//!   (notifications sent meanwhile are gone, the log is not), and once a second in any
//!   case, in case a notification is lost without the connection noticing.
//! - **The writer publishes its own groups only when they come next.** A group this
//!   instance committed goes to its streams at once if it directly follows what they
//!   already have; if anything was committed elsewhere in between, publishing it first
//!   would make streams skip that, so the follower reads both in order instead.
//!
//! The SSE hand-off argument in `sse.rs` holds unchanged: the notifier publishes only
//! committed facts, in id order, with no gap.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use factlog_postgres as queries;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::writer::{Appender, Outcome, Row, rows_json};
use super::{Follow, FramePage, Opened, Storage, redact};
use crate::config::SyncLevel;
use crate::domain::FactRecord;
use crate::error::AppError;
use crate::notifier::Notifier;

/// Connections for the API, the streams' replays and the follower's reads.
const READ_CONNECTIONS: u32 = 8;
/// How long a request waits for a connection, or the writer for the counter row's lock
/// (another transaction appending and not committing), before it fails with 503.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a group's append may take before the writer gives up on its connection (a
/// network that drops packets silently would otherwise hold every POST forever). Its
/// outcome is then unknown, and the POSTs get 503: a retry with the same idempotency key
/// appends the fact once either way.
const APPEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the follower's read may take before it counts its connection as lost.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The follower reads at least this often even when nothing woke it.
const SAFETY_POLL: Duration = Duration::from_secs(1);
/// The most facts the follower reads (and publishes as one group) at a time.
const FOLLOW_PAGE: i64 = 4096;
/// The longest wait between attempts to listen again after the connection was lost.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Read access to a PostgreSQL log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reader {
    pool: PgPool,
}

/// Opens the PostgreSQL database at `url`, creating it if missing, and migrates it.
///
/// # Errors
/// When the server cannot be reached, the database cannot be created, or it holds a schema
/// this build does not know; the message names which.
pub(super) async fn open(url: &str, sync: SyncLevel) -> anyhow::Result<Opened> {
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
    queries::MIGRATOR
        .run(&pool)
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
    let writer = Writer {
        options: base.clone().application_name("factlog writer").options([
            ("synchronous_commit", synchronous_commit),
            ("lock_timeout", lock_timeout.as_str()),
        ]),
        conn: None,
        wake: Arc::clone(&wake),
    };
    // Two: a listener that lost its connection makes a new one while the old one is
    // still being closed.
    let listen = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(WAIT_TIMEOUT)
        .connect_lazy_with(reading.application_name("factlog follower"));

    let reader = Reader { pool };
    let newest_id = reader
        .newest_id()
        .await
        .with_context(|| format!("cannot read the database {shown}"))?;
    Ok(Opened {
        storage: Storage::Postgres(reader),
        appender: Appender::Postgres(Box::new(writer)),
        follow: Some(Follow(Follower { listen, wake })),
        newest_id,
    })
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

fn record(fact: queries::Fact) -> FactRecord {
    FactRecord {
        id: fact.id,
        event: fact.event,
        fact: fact.fact,
        created_at: fact.created_at,
    }
}

impl Reader {
    pub(super) async fn read_after(
        &self,
        after: i64,
        limit: i64,
        names: Option<&str>,
    ) -> Result<Vec<FactRecord>, AppError> {
        let facts = queries::read_after(&self.pool, after, names, limit).await?;
        Ok(facts.into_iter().map(record).collect())
    }

    pub(super) async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        names: Option<&str>,
    ) -> Result<FramePage, AppError> {
        let page = queries::read_frames(&self.pool, after, names, rows).await?;
        Ok(FramePage::new(page.frames, page.last_id, page.count))
    }

    pub(super) async fn read_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<FactRecord>, AppError> {
        let facts = queries::read_before(&self.pool, before, limit).await?;
        Ok(facts.into_iter().map(record).collect())
    }

    pub(super) async fn nth_newest(
        &self,
        names: Option<&str>,
        offset: i64,
    ) -> Result<Option<i64>, AppError> {
        Ok(queries::nth_newest(&self.pool, names, offset).await?)
    }

    pub(super) async fn newest_id(&self) -> Result<i64, AppError> {
        Ok(queries::newest_id(&self.pool).await?)
    }

    pub(super) async fn get(&self, id: i64) -> Result<Option<FactRecord>, AppError> {
        Ok(queries::get(&self.pool, id).await?.map(record))
    }

    pub(super) async fn log_id(&self) -> Result<String, AppError> {
        Ok(queries::log_id(&self.pool).await?)
    }

    pub(super) async fn ping(&self) -> Result<(), AppError> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// The writer's side of PostgreSQL: its own connection, and a way to wake the follower.
///
/// A connection of its own rather than a pool's: a pool checks a connection with a round
/// trip each time it is handed out and again each time it comes back. The writer checks
/// its connection once before each group (a round trip per group, not per fact), so that
/// a connection the server dropped meanwhile (a restart, a failover, an operator's
/// `pg_terminate_backend`) is replaced before a group is sent on it rather than failing
/// that group; after a failed group it makes a new one.
#[derive(Debug)]
pub struct Writer {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    wake: Arc<Notify>,
}

impl Writer {
    /// Appends the rows with one call of `factlog_append`: one statement, so one
    /// transaction, holding the counter row's lock from its first id to its commit.
    pub(super) async fn append(&mut self, rows: &[Row<'_>]) -> Result<Vec<Outcome>, AppError> {
        let batch = rows_json(rows)?;
        let conn = self.connection().await?;
        let appended =
            match tokio::time::timeout(APPEND_TIMEOUT, queries::append(conn, &batch)).await {
                Ok(Ok(appended)) => appended,
                failed => {
                    // Whatever broke, the next group starts on a new connection.
                    self.conn = None;
                    return Err(match failed {
                        Ok(Err(err)) => err.into(),
                        _ => AppError::Unavailable("the database did not answer in time".into()),
                    });
                }
            };
        if appended.len() != rows.len() {
            return Err(AppError::Internal(anyhow::anyhow!(
                "appended {} facts but the database answered for {}",
                rows.len(),
                appended.len()
            )));
        }
        Ok(appended
            .into_iter()
            .map(|a| Outcome {
                record: record(a.fact),
                existed: a.existed,
            })
            .collect())
    }

    /// The connection, checked, made anew if it is missing or broken.
    async fn connection(&mut self) -> Result<&mut PgConnection, AppError> {
        if let Some(mut conn) = self.conn.take() {
            if matches!(
                tokio::time::timeout(WAIT_TIMEOUT, conn.ping()).await,
                Ok(Ok(()))
            ) {
                return Ok(self.conn.insert(conn));
            }
            tracing::info!("the writer's connection was lost; connecting again");
        }
        let conn = tokio::time::timeout(WAIT_TIMEOUT, self.options.connect())
            .await
            .map_err(|_| {
                AppError::Unavailable("cannot connect to the database in time".into())
            })??;
        Ok(self.conn.insert(conn))
    }

    /// Publishes a committed group at once when it directly follows what this instance's
    /// streams have; otherwise facts committed elsewhere come first, and the follower
    /// reads them all in order.
    pub(super) fn publish(&self, notifier: &Notifier, inserted: &[FactRecord]) {
        if !notifier.publish_next(inserted) {
            self.wake.notify_one();
        }
    }

    pub(super) async fn close(self) {
        if let Some(conn) = self.conn {
            if let Err(err) = conn.close().await {
                tracing::warn!(cause = %err, "closing the writer's connection failed");
            }
        }
    }
}

/// Keeps one instance's notifier up with the shared log; see the module comment.
pub struct Follower {
    listen: PgPool,
    wake: Arc<Notify>,
}

/// Why the follower stopped waiting.
enum Wake {
    /// Something may have been committed: read.
    Read,
    /// The listening connection failed: listen again, then read.
    Relisten,
    /// Shutdown.
    Stop,
}

impl Follower {
    /// Starts following until `shutdown` fires.
    pub(super) fn spawn(
        self,
        notifier: Arc<Notifier>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(self.run(notifier, shutdown))
    }

    async fn run(self, notifier: Arc<Notifier>, shutdown: CancellationToken) {
        let mut backoff = SAFETY_POLL / 10;
        'listen: loop {
            // Listen before reading: every commit after this point will wake us, and
            // everything committed before it is in the database for the read below.
            let mut listener = match self.listen().await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(cause = %err, retry_in = ?backoff, "cannot listen for new facts; streams on this instance wait");
                    if pause(&shutdown, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let read =
                    tokio::time::timeout(READ_TIMEOUT, Self::catch_up(&mut listener, &notifier));
                if let Err(err) = read.await.unwrap_or_else(|_| {
                    Err(AppError::Unavailable(
                        "the database did not answer in time".into(),
                    ))
                }) {
                    tracing::warn!(cause = %err, retry_in = ?backoff, "cannot read new facts; streams on this instance wait");
                    if pause(&shutdown, &mut backoff).await {
                        return;
                    }
                    continue 'listen;
                }
                backoff = SAFETY_POLL / 10;
                match self.wait(&mut listener, &notifier, &shutdown).await {
                    Wake::Read => {}
                    Wake::Relisten => continue 'listen,
                    Wake::Stop => return,
                }
            }
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.listen).await?;
        // A lost connection is reported at once (`Ok(None)`), and made again here, where
        // the read that must follow it cannot be forgotten.
        listener.eager_reconnect(false);
        listener.listen(queries::CHANNEL).await?;
        Ok(listener)
    }

    /// Publishes every fact after the notifier's newest id, in order. Reads on the
    /// listening connection itself: no pool to check a connection out of and back in, and
    /// a failure here is a failure of the listener, handled as one.
    async fn catch_up(listener: &mut PgListener, notifier: &Notifier) -> Result<(), AppError> {
        loop {
            let after = notifier.newest_id();
            let facts: Vec<FactRecord> =
                queries::read_after(&mut *listener, after, None, FOLLOW_PAGE)
                    .await?
                    .into_iter()
                    .map(record)
                    .collect();
            let full = i64::try_from(facts.len()).is_ok_and(|n| n == FOLLOW_PAGE);
            // Facts the writer published meanwhile are skipped by the notifier.
            notifier.publish(&facts);
            if !full {
                return Ok(());
            }
        }
    }

    /// Waits until there may be something to read.
    async fn wait(
        &self,
        listener: &mut PgListener,
        notifier: &Notifier,
        shutdown: &CancellationToken,
    ) -> Wake {
        let poll = tokio::time::sleep(SAFETY_POLL);
        tokio::pin!(poll);
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Wake::Stop,
                () = self.wake.notified() => return Wake::Read,
                () = &mut poll => return Wake::Read,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    // The payload is the newest id of that commit. This instance's own
                    // groups usually arrive here already published.
                    let mut newest = notification.payload().parse::<i64>().unwrap_or(i64::MAX);
                    while let Some(more) = listener.next_buffered() {
                        newest = newest.max(more.payload().parse().unwrap_or(i64::MAX));
                    }
                    if newest > notifier.newest_id() {
                        return Wake::Read;
                    }
                }
                Ok(None) => {
                    // The connection was lost; notifications sent meanwhile are gone.
                    tracing::warn!("lost the listening connection; listening again");
                    return match listener.listen(queries::CHANNEL).await {
                        Ok(()) => Wake::Read,
                        Err(_) => Wake::Relisten,
                    };
                }
                Err(err) => {
                    tracing::warn!(cause = %err, "the listening connection failed; listening again");
                    return Wake::Relisten;
                }
            }
        }
    }
}

/// Waits `backoff` (doubling it for next time, up to [`MAX_BACKOFF`]); true on shutdown.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// Whether a PostgreSQL SQLSTATE means "the database cannot take this now": no
/// connection, out of resources (disk full, too many connections), the server shutting
/// down or in recovery, a lock not had in time, a read-only server.
pub(super) fn is_unavailable(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || code.starts_with("57P") // admin or crash shutdown, cannot connect now
        || code == "55P03" // lock_not_available: `lock_timeout` passed
        || code == "57014" // query_canceled
        || code == "25006" // read_only_sql_transaction: a standby, or a read-only server
        || code == "40001" // serialization_failure
        || code == "40P01" // deadlock_detected
}
