//! The follower: keeps one instance's streams up with the shared log (see the module
//! comment of `storage::postgres`).

use std::sync::Arc;
use std::time::Duration;

use factlog_postgres as queries;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::classify::classify;
use super::reader::record;
use crate::domain::FactRecord;
use crate::storage::model::{Publish, StorageError};

/// The longest the follower's read may take before it counts its connection as lost.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The follower reads at least this often even when nothing woke it.
const SAFETY_POLL: Duration = Duration::from_secs(1);
/// The most facts the follower reads (and publishes as one group) at a time.
const FOLLOW_PAGE: i64 = 4096;
/// The longest wait between attempts to listen again after the connection was lost.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes to this instance's streams what any instance or program commits, in order.
pub struct Follower {
    listen: PgPool,
    /// Woken by this instance's appender when it could not publish its own group.
    wake: Arc<Notify>,
}

/// What the follower does after waiting.
enum Next {
    /// Something may have been committed: read.
    Read,
    /// The listening connection failed: listen again, then read.
    Relisten,
    /// Shutdown.
    Stop,
}

impl Follower {
    /// A follower listening through `listen`, also woken by `wake`.
    pub fn new(listen: PgPool, wake: Arc<Notify>) -> Self {
        Self { listen, wake }
    }

    /// Starts following into `streams` until `shutdown` fires.
    pub fn spawn(self, streams: Arc<dyn Publish>, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(streams, shutdown))
    }

    async fn run(self, streams: Arc<dyn Publish>, shutdown: CancellationToken) {
        let streams = &*streams;
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
                let read = tokio::time::timeout(READ_TIMEOUT, catch_up(&mut listener, streams));
                if let Err(err) = read.await.unwrap_or_else(|_| {
                    Err(StorageError::Unavailable(format!(
                        "the database did not answer within {READ_TIMEOUT:?}"
                    )))
                }) {
                    tracing::warn!(cause = %err, retry_in = ?backoff, "cannot read new facts; streams on this instance wait");
                    if pause(&shutdown, &mut backoff).await {
                        return;
                    }
                    continue 'listen;
                }
                backoff = SAFETY_POLL / 10;
                match self.wait(&mut listener, streams, &shutdown).await {
                    Next::Read => {}
                    Next::Relisten => continue 'listen,
                    Next::Stop => return,
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

    /// Waits until there may be something to read.
    async fn wait(
        &self,
        listener: &mut PgListener,
        streams: &dyn Publish,
        shutdown: &CancellationToken,
    ) -> Next {
        let poll = tokio::time::sleep(SAFETY_POLL);
        tokio::pin!(poll);
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Next::Stop,
                () = self.wake.notified() => return Next::Read,
                () = &mut poll => return Next::Read,
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
                    if newest > streams.newest_id() {
                        return Next::Read;
                    }
                }
                Ok(None) => {
                    // The connection was lost; notifications sent meanwhile are gone.
                    tracing::warn!("lost the listening connection; listening again");
                    return match listener.listen(queries::CHANNEL).await {
                        Ok(()) => Next::Read,
                        Err(_) => Next::Relisten,
                    };
                }
                Err(err) => {
                    tracing::warn!(cause = %err, "the listening connection failed; listening again");
                    return Next::Relisten;
                }
            }
        }
    }
}

/// Publishes every fact after the streams' newest id, in order. Reads on the listening
/// connection itself: no pool to check a connection out of and back in, and a failure
/// here is a failure of the listener, handled as one.
async fn catch_up(listener: &mut PgListener, streams: &dyn Publish) -> Result<(), StorageError> {
    loop {
        let after = streams.newest_id();
        let facts: Vec<FactRecord> = queries::read_after(&mut *listener, after, FOLLOW_PAGE)
            .await
            .map_err(classify)?
            .into_iter()
            .map(record)
            .collect();
        let full = i64::try_from(facts.len()).is_ok_and(|n| n == FOLLOW_PAGE);
        // Ids follow each other, so a first fact that is not the next one may mean that
        // another instance's retention deleted facts this one had not published. The
        // watermark is read after the facts and only rises: if it is not past `after`
        // now, it was not when the facts were read, and nothing was deleted.
        let gap = match facts.first() {
            Some(first) if first.id > after + 1 => {
                queries::deleted_through(&mut *listener)
                    .await
                    .map_err(classify)?
                    > after
            }
            _ => false,
        };
        // Facts the writer published meanwhile are skipped.
        if gap {
            tracing::warn!(
                after,
                first = facts.first().map(|f| f.id),
                "facts were deleted before this instance published them; streams behind catch up from the database"
            );
            streams.publish_after_gap(&facts);
        } else {
            streams.publish(&facts);
        }
        if !full {
            return Ok(());
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
