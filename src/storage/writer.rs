//! The single writer: every append in the process funnels into it, and it owns the
//! process's only write connection. With SQLite that makes it the order of the log; with
//! PostgreSQL, where several instances and other programs append, the order comes from
//! `factlog_append`'s lock (see `storage/postgres/`).
//!
//! It forms a group from what is queued (`queue.rs` states when a group closes) and
//! writes the whole group with one statement in one transaction. Only once the commit is
//! durable under `--sync` is the group published to the streams and each waiting request
//! answered (`syncer.rs`): a request is never answered for a fact that is not durable,
//! and nobody sees a fact before it is. With SQLite and `--sync full` the syncer's thread
//! waits for the disk while the writer commits the next group; otherwise the writer
//! answers itself, after a commit that returned durable.
//!
//! Group commit is what makes `--sync full` affordable: one fsync covers every fact that
//! arrived while the previous group was being written.
//!
//! The writer is a thread of its own, not a task on the runtime: as a task, each time
//! the database woke it with a finished commit it waited behind whatever the runtime had
//! queued (during a fan-out, a thousand streams' writes), and every fact reached the
//! streams that much later. On its own thread it is woken at once, and it can wait for a
//! group to fill with the precision of a thread's park. With SQLite it runs the
//! statements itself (`sqlite/appender.rs`); PostgreSQL's futures (the statement, its
//! sockets and timers) run on the runtime's drivers through
//! [`tokio::runtime::Handle::block_on`].
//!
//! With a retention bound, the writer also deletes the oldest facts, in small steps
//! between groups, and when idle at the time the next step is due (`retention.rs`).
//!
//! Shutdown is the mpsc drop trick: when the HTTP server has stopped, every
//! [`WriterHandle`] is gone, the queue drains and reports that it is closed, and the
//! thread waits for the syncer's last answers, closes the connection and ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::engine::Appender;
use super::model::{Appended, Publish, StorageError};
use super::queue::{GATHER_WINDOW, Job, QUEUE_DEPTH, Waiting, gather};
use super::retention::Schedule;
use super::syncer::{Committed, Syncer};
use crate::domain::{NewFact, Retention};
use crate::metrics::Metrics;

/// Sends appends to the writer. Cheap to clone; the writer stops once every handle is gone.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    // Declared before `_closing`: the last handle's sender is gone before the writer wakes.
    queue: mpsc::Sender<Job>,
    waiting: Arc<Waiting>,
    _closing: Arc<WakeOnClose>,
}

/// Wakes the writer when the last handle is gone: an idle writer with a retention bound
/// parks until its next step is due, and would otherwise notice that it should stop only
/// then, long after shutdown began.
#[derive(Debug)]
struct WakeOnClose(std::thread::Thread);

impl Drop for WakeOnClose {
    fn drop(&mut self) {
        self.0.unpark();
    }
}

impl WriterHandle {
    /// Appends one fact and waits until its group is committed.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the database refused the group (nothing of it
    /// was written), [`StorageError::Stopped`] when the writer has stopped.
    pub async fn append(&self, fact: NewFact) -> Result<Appended, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { fact, reply })
            .await
            .map_err(|_| StorageError::Stopped)?;
        self.waiting
            .sent(self.queue.max_capacity() - self.queue.capacity());
        answer.await.map_err(|_| StorageError::Stopped)?
    }
}

/// Starts the writer over `appender`, publishing each committed group to `streams`,
/// keeping what `retention` says, and counting in `metrics`. The returned task ends once
/// the writer has stopped and its connection is closed.
///
/// # Errors
/// When the writer's thread cannot be started.
pub fn spawn(
    mut appender: Appender,
    streams: Arc<dyn Publish>,
    retention: Retention,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WriterHandle, JoinHandle<()>)> {
    let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
    let (stopped, writer_stopped) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let (started, thread_waiting) = std::sync::mpsc::channel::<Arc<Waiting>>();
    let syncer = match appender.durability() {
        Some((wal, watermark)) => Some(Syncer::spawn(
            wal,
            watermark,
            Arc::clone(&streams),
            Arc::clone(&metrics),
        )?),
        None => None,
    };
    let thread = std::thread::Builder::new()
        .name("factlog-writer".into())
        .spawn(move || {
            let Ok(waiting) = thread_waiting.recv() else {
                return;
            };
            let writer = Writer {
                runtime,
                appender,
                schedule: retention.is_on().then(|| Schedule::new(retention)),
                metrics,
                syncer,
            };
            writer.run(jobs, &waiting, &*streams);
            let _ = stopped.send(());
        })?;
    let task = tokio::spawn(async move {
        match writer_stopped.await {
            Ok(()) => tracing::debug!("writer stopped"),
            Err(_) => tracing::error!("the writer's thread failed"),
        }
    });
    let waiting = Arc::new(Waiting::new(thread.thread().clone()));
    let _ = started.send(Arc::clone(&waiting));
    let closing = Arc::new(WakeOnClose(thread.thread().clone()));
    Ok((
        WriterHandle {
            queue,
            waiting,
            _closing: closing,
        },
        task,
    ))
}

/// The writer's thread and what it owns.
struct Writer {
    runtime: tokio::runtime::Handle,
    appender: Appender,
    /// When the next retention step is due; `None` when the log keeps everything.
    schedule: Option<Schedule>,
    metrics: Arc<Metrics>,
    /// With SQLite and `--sync full`, what makes each group durable and answers it.
    syncer: Option<Syncer>,
}

impl Writer {
    /// Forms groups from the queue, commits and publishes each, and answers its requests;
    /// deletes old facts between groups when a step is due.
    fn run(mut self, mut jobs: mpsc::Receiver<Job>, waiting: &Waiting, streams: &dyn Publish) {
        let mut held_over: Option<Job> = None;
        let mut previous = 1;
        loop {
            let first = match held_over.take() {
                Some(job) => job,
                None => match self.next_job(&mut jobs, waiting) {
                    Some(job) => job,
                    None => break,
                },
            };
            let group = gather(&mut jobs, waiting, first, previous, GATHER_WINDOW);
            held_over = group.held_over;
            previous = group.jobs.len();
            let facts = group.jobs.len();
            if let Some(refusal) = self.syncer.as_ref().and_then(Syncer::refusal) {
                for job in group.jobs {
                    let _ = job.reply.send(Err(refusal.repeat()));
                }
                continue;
            }
            let Some(committed) = commit(&self.runtime, &mut self.appender, group.jobs) else {
                continue;
            };
            let newest_id = committed.inserted.last().map(|record| record.id);
            match &self.syncer {
                Some(syncer) => syncer.send(committed),
                None => committed.settle(&self.metrics, |inserted| {
                    self.appender.publish(streams, inserted);
                }),
            }
            // After the group is answered or handed over, so that none of its requests
            // waits for it.
            if let (Some(schedule), Some(newest_id)) = (self.schedule.as_mut(), newest_id) {
                if schedule.appended(facts, newest_id, Instant::now()) {
                    self.trim();
                }
            }
        }
        // Every answer is sent before the connection closes: closing the last connection
        // removes the write-ahead log the syncer syncs.
        if let Some(syncer) = self.syncer.take() {
            syncer.finish();
        }
        self.runtime.block_on(self.appender.close());
    }

    /// The next job, `None` once every handle is gone. While none is queued, an idle
    /// writer with a retention bound runs its steps when they are due.
    fn next_job(&mut self, jobs: &mut mpsc::Receiver<Job>, waiting: &Waiting) -> Option<Job> {
        if self.schedule.is_none() {
            return jobs.blocking_recv();
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => return Some(job),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            let due = self.schedule.as_ref().map(Schedule::idle_due)?;
            let now = Instant::now();
            if due <= now {
                self.trim();
            } else {
                // Woken by the first append, like a group waiting to fill.
                waiting.wait(jobs, 1, due - now);
            }
        }
    }

    /// One retention step; failures are logged and the step is tried again later.
    fn trim(&mut self) {
        let Some(schedule) = self.schedule.as_mut() else {
            return;
        };
        let trimmed = self
            .runtime
            .block_on(self.appender.trim(schedule.retention(), schedule.batch()));
        match &trimmed {
            Ok(step) if step.deleted > 0 => {
                self.metrics.deleted(step.deleted);
                tracing::debug!(
                    deleted = step.deleted,
                    through = step.through,
                    "deleted facts outside the retention bounds"
                );
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(cause = %err, "deleting old facts failed; trying again shortly");
            }
        }
        schedule.done(trimmed.as_ref().ok(), Instant::now());
    }
}

/// Where a job's answer comes from.
#[derive(Clone, Copy)]
enum Source {
    /// What became of the n-th row of the group.
    Row(usize),
    /// The job's key was first used by another job of this group, whose row is the n-th.
    Repeat(usize),
}

impl Source {
    /// The row whose outcome answers.
    fn row(self) -> usize {
        match self {
            Self::Row(i) | Self::Repeat(i) => i,
        }
    }
}

/// Writes one group; returns its answers and what it added, to be revealed and answered
/// once durable. `None` when the database refused it (its requests are answered then).
fn commit(
    runtime: &tokio::runtime::Handle,
    appender: &mut Appender,
    group: Vec<Job>,
) -> Option<Committed> {
    let started = Instant::now();
    // Decide each fact's row before writing: a (topic, key) repeated inside the group is
    // written once, by its first use, and its later uses answer with that record.
    let mut sources = Vec::with_capacity(group.len());
    let mut rows: Vec<&NewFact> = Vec::with_capacity(group.len());
    let mut first_use: HashMap<(&str, &str), usize> = HashMap::new();
    for Job { fact, .. } in &group {
        let key = fact.key.as_ref().map(|k| (fact.topic.as_str(), k.as_str()));
        if let Some(&row) = key.and_then(|k| first_use.get(&k)) {
            sources.push(Source::Repeat(row));
            continue;
        }
        if let Some(k) = key {
            first_use.insert(k, rows.len());
        }
        sources.push(Source::Row(rows.len()));
        rows.push(fact);
    }
    let outcomes = match runtime.block_on(appender.append(&rows)) {
        Ok(outcomes) => outcomes,
        Err(err) => {
            tracing::warn!(cause = %err, facts = group.len(), "group commit failed; nothing written");
            for job in group {
                let _ = job.reply.send(Err(err.repeat()));
            }
            return None;
        }
    };
    // A key used before answers with its first record if the retry is the same fact, and
    // is refused if it is another (a client reusing a key by mistake must hear of it).
    let answers = sources
        .into_iter()
        .zip(group)
        .map(|(source, job)| {
            let answer = match (source, &outcomes[source.row()]) {
                (Source::Row(_), Appended::Created(record)) => Appended::Created(record.clone()),
                (
                    _,
                    Appended::Created(record)
                    | Appended::Existing(record)
                    | Appended::Conflict(record),
                ) => {
                    if record.matches(&job.fact) {
                        Appended::Existing(record.clone())
                    } else {
                        Appended::Conflict(record.clone())
                    }
                }
            };
            (job.reply, answer)
        })
        .collect();
    let inserted = outcomes
        .into_iter()
        .filter_map(|outcome| match outcome {
            Appended::Created(record) => Some(record),
            Appended::Existing(_) | Appended::Conflict(_) => None,
        })
        .collect();
    Some(Committed {
        answers,
        inserted,
        started,
    })
}
