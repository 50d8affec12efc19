//! The writer's side of PostgreSQL: appending with `factlog_append`, and handing what it
//! committed to this instance's streams.

use std::sync::Arc;
use std::time::Duration;

use factlog_postgres as queries;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::Notify;

use super::classify::classify;
use super::reader::record;
use crate::domain::{FactRecord, NewFact, Retention};
use crate::storage::model::{Appended, Publish, StorageError, rows_json};
use crate::storage::retention::Trimmed;

/// The longest a group's append may take before the writer gives up on its connection (a
/// network that drops packets silently would otherwise hold every POST forever). Its
/// outcome is then unknown, and the POSTs get 503: a retry with the same idempotency key
/// appends the fact once either way.
const APPEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The writer's connection, and a way to wake the follower.
///
/// A connection of its own rather than a pool's: a pool checks a connection with a round
/// trip each time it is handed out and again each time it comes back. The appender checks
/// its connection once before each group (a round trip per group, not per fact), so that
/// a connection the server dropped meanwhile (a restart, a failover, an operator's
/// `pg_terminate_backend`) is replaced before a group is sent on it rather than failing
/// that group; after a failed group it makes a new one.
#[derive(Debug)]
pub struct Appender {
    options: PgConnectOptions,
    /// How long a connection may take to be made or checked.
    wait: Duration,
    conn: Option<PgConnection>,
    /// Wakes the follower when a committed group cannot be published at once.
    wake: Arc<Notify>,
}

impl Appender {
    /// An appender connecting with `options` within `wait`, waking the follower through
    /// `wake`.
    pub fn new(options: PgConnectOptions, wait: Duration, wake: Arc<Notify>) -> Self {
        Self {
            options,
            wait,
            conn: None,
            wake,
        }
    }

    /// Appends the facts with one call of `factlog_append`: one statement, so one
    /// transaction, holding the counter row's lock from its first id to its commit.
    ///
    /// # Errors
    /// When the database refuses or does not answer in time; nothing is written then, or
    /// (on a timeout) the outcome is unknown.
    pub async fn append(&mut self, rows: &[&NewFact]) -> Result<Vec<Appended>, StorageError> {
        let batch = rows_json(rows)?;
        let conn = self.connection().await?;
        let appended =
            match tokio::time::timeout(APPEND_TIMEOUT, queries::append(conn, &batch)).await {
                Ok(Ok(appended)) => appended,
                failed => {
                    // Whatever broke, the next group starts on a new connection.
                    self.conn = None;
                    return Err(match failed {
                        Ok(Err(err)) => classify(err),
                        _ => StorageError::Unavailable(format!(
                            "the database did not answer within {APPEND_TIMEOUT:?}"
                        )),
                    });
                }
            };
        if appended.len() != rows.len() {
            return Err(StorageError::Internal(anyhow::anyhow!(
                "appended {} facts but the database answered for {}",
                rows.len(),
                appended.len()
            )));
        }
        Ok(appended
            .into_iter()
            .map(|a| {
                if a.existed {
                    Appended::Existing(record(a.row))
                } else {
                    Appended::Created(record(a.row))
                }
            })
            .collect())
    }

    /// One step of retention (see `factlog_postgres::trim`): nothing when another
    /// instance is deleting at this moment.
    ///
    /// # Errors
    /// When the database refuses or does not answer in time; nothing is deleted then, or
    /// (on a timeout) the step's outcome is unknown, which the next step finds out.
    pub async fn trim(
        &mut self,
        retention: &Retention,
        batch: i64,
    ) -> Result<Trimmed, StorageError> {
        let keep = retention.keep_ids();
        let age = retention.age.map(|age| age.as_secs_f64());
        let conn = self.connection().await?;
        match tokio::time::timeout(APPEND_TIMEOUT, queries::trim(conn, batch, keep, age)).await {
            Ok(Ok(row)) => Ok(Trimmed {
                deleted: u64::try_from(row.deleted).unwrap_or(0),
                through: row.through,
                more: row.more,
                kept_at: row.kept_at,
            }),
            failed => {
                self.conn = None;
                Err(match failed {
                    Ok(Err(err)) => classify(err),
                    _ => StorageError::Unavailable(format!(
                        "the database did not answer within {APPEND_TIMEOUT:?}"
                    )),
                })
            }
        }
    }

    /// The connection, checked, made anew if it is missing or broken.
    async fn connection(&mut self) -> Result<&mut PgConnection, StorageError> {
        if let Some(mut conn) = self.conn.take() {
            if matches!(
                tokio::time::timeout(self.wait, conn.ping()).await,
                Ok(Ok(()))
            ) {
                return Ok(self.conn.insert(conn));
            }
            tracing::info!("the writer's connection was lost; connecting again");
        }
        let conn = tokio::time::timeout(self.wait, self.options.connect())
            .await
            .map_err(|_| {
                StorageError::Unavailable(format!(
                    "cannot connect to the database within {:?}",
                    self.wait
                ))
            })?
            .map_err(classify)?;
        Ok(self.conn.insert(conn))
    }

    /// Publishes a committed group at once when it directly follows what this instance's
    /// streams have; otherwise facts committed elsewhere come first, and the follower
    /// reads them all in order.
    pub fn publish(&self, streams: &dyn Publish, inserted: &[FactRecord]) {
        if !streams.publish_next(inserted) {
            self.wake.notify_one();
        }
    }

    /// Closes the connection, after the writer's last commit.
    pub async fn close(self) {
        if let Some(conn) = self.conn {
            if let Err(err) = conn.close().await {
                tracing::warn!(cause = %err, "closing the writer's connection failed");
            }
        }
    }
}
