//! The last step of an append: a committed group is made visible (published to the
//! streams, and with SQLite the durable watermark raised) and its requests are answered,
//! in that order, so that a client holding its `201` finds the fact everywhere.
//!
//! With SQLite and `--sync full` that step waits for the disk on a thread of its own, the
//! syncer: the writer commits a group without an fsync and hands it over, the syncer
//! makes the write-ahead log durable (one sync for every group handed over meanwhile)
//! and only then reveals the groups and answers, in commit order. The writer commits the
//! next group while the disk works. Why this is sound is in `sqlite/durable.rs`.
//!
//! An answer that tells of an earlier fact (an idempotent retry's `200`, a reused key's
//! `422`) goes through the same queue: that fact may have been committed by a group still
//! waiting for its sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use super::model::{Appended, Publish, StorageError};
use super::queue::Reply;
use super::sqlite::{WalSync, Watermark};
use crate::domain::FactRecord;
use crate::metrics::Metrics;

/// A committed group on its way to its requesters.
pub struct Committed {
    /// Each request's answer.
    pub answers: Vec<(Reply, Appended)>,
    /// The facts the group added, in id order.
    pub inserted: Vec<FactRecord>,
    /// When the group was started.
    pub started: Instant,
}

impl Committed {
    /// Reveals the group with `reveal` (which publishes it) and answers its requests.
    pub fn settle(self, metrics: &Metrics, reveal: impl FnOnce(&[FactRecord])) {
        if !self.inserted.is_empty() {
            metrics.committed(self.inserted.len(), self.started.elapsed().as_secs_f64());
            reveal(&self.inserted);
        }
        for (reply, answer) in self.answers {
            // The requester may have gone away; the fact is durable all the same.
            let _ = reply.send(Ok(answer));
        }
    }
}

/// The syncer's thread, fed by the writer.
pub struct Syncer {
    queue: mpsc::Sender<Committed>,
    /// A sync failed: nothing committed after it can be vouched for.
    failed: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// Starts the syncer over `wal`, raising `watermark` and publishing to `streams`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(
        mut wal: WalSync,
        watermark: Watermark,
        streams: Arc<dyn Publish>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (queue, groups) = mpsc::channel::<Committed>();
        let failed = Arc::new(AtomicBool::new(false));
        let failed_here = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("factlog-syncer".into())
            .spawn(move || {
                while let Ok(first) = groups.recv() {
                    let mut ready = vec![first];
                    ready.extend(groups.try_iter());
                    if let Err(err) = wal.sync() {
                        // As PostgreSQL does: after a failed sync the system may have
                        // dropped the writes, and a later sync that succeeds would not
                        // say so. Nothing more is acknowledged until a restart, whose
                        // recovery reads what the disk really has.
                        tracing::error!(cause = %err, "syncing the write-ahead log failed; refusing appends until factlog is restarted");
                        failed_here.store(true, Ordering::Release);
                    }
                    for group in ready {
                        if failed_here.load(Ordering::Acquire) {
                            for (reply, _) in group.answers {
                                let _ = reply.send(Err(not_durable()));
                            }
                            continue;
                        }
                        group.settle(&metrics, |inserted| watermark.reveal(&*streams, inserted));
                    }
                }
            })?;
        Ok(Self {
            queue,
            failed,
            thread,
        })
    }

    /// Hands a committed group over, to be answered once it is durable.
    pub fn send(&self, group: Committed) {
        if let Err(mpsc::SendError(group)) = self.queue.send(group) {
            // The thread is gone (it cannot end while this sender lives, unless it
            // panicked): the group's requests hear that nothing is vouched for.
            for (reply, _) in group.answers {
                let _ = reply.send(Err(not_durable()));
            }
        }
    }

    /// Why appends are refused, once a sync has failed.
    pub fn refusal(&self) -> Option<StorageError> {
        self.failed.load(Ordering::Acquire).then(not_durable)
    }

    /// Waits until every group handed over is answered.
    pub fn finish(self) {
        drop(self.queue);
        if self.thread.join().is_err() {
            tracing::error!("the syncer's thread failed");
        }
    }
}

/// The answer to an append that cannot be vouched for: the log could not be synced.
fn not_durable() -> StorageError {
    StorageError::Unavailable(
        "the log could not be synced to disk; factlog must be restarted (an append with an Idempotency-Key can be retried safely)".into(),
    )
}
