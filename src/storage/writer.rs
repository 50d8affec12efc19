//! The single writer: every append in the process funnels into it, and it owns the
//! process's only write connection. With SQLite that makes it the order of the log; with
//! PostgreSQL, where several instances and other programs append, the order comes from
//! `factlog_append`'s lock (see `storage::postgres`).
//!
//! It takes whatever is queued (up to [`MAX_BATCH_FACTS`] facts or [`MAX_BATCH_BYTES`]
//! bytes), writes the whole group with one statement in one transaction, and only after
//! the commit has returned (on disk under `--sync`) does it publish the group to the
//! notifier and answer each waiting request. A request is therefore never answered for a fact that
//! is not durable, and a stream never sees a fact that is not committed.
//!
//! Group commit is what makes `--sync full` affordable: one fsync covers every fact that
//! arrived while the previous group was being written.
//!
//! The writer is a thread of its own, not a task on the runtime. As a task, each time sqlx
//! woke it with a finished commit it was queued behind whatever the runtime had to do, and
//! with a thousand streams being written to that was a lot: at 200 facts/s to 1,000
//! subscribers a commit took 1.45 ms on average, of which about 0.8 ms was that wait, and
//! the streams got each fact that much later. On its own thread it is woken at once and
//! publishes each group as soon as it is durable: 0.55-0.7 ms per commit, and the load
//! generator's publish-to-receive p99 went from 9-15 ms to 7-11 ms. Its futures (the
//! statement; PostgreSQL's sockets and timers) are driven with the runtime's drivers
//! through [`tokio::runtime::Handle::block_on`].
//!
//! Shutdown is the mpsc drop trick: when the HTTP server has stopped, every
//! [`WriterHandle`] is gone, `recv` drains what is left and returns `None`, and the thread
//! closes the connection after its last commit and ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::{EventName, FactRecord, IdempotencyKey};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::storage::{postgres, sqlite};

/// The most facts committed in one group.
pub const MAX_BATCH_FACTS: usize = 4096;
/// A group is closed once its facts reach this many bytes of JSON (one fact may exceed it).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Appends waiting for the writer; a full queue makes publishers wait (backpressure).
const QUEUE_DEPTH: usize = 8192;

/// A fact to append, already validated.
#[derive(Debug)]
pub struct NewFact {
    /// Its SSE event type, if any.
    pub event: Option<EventName>,
    /// The fact as compact JSON text.
    pub fact: String,
    /// The publisher's idempotency key, if any.
    pub key: Option<IdempotencyKey>,
}

/// What an append did.
#[derive(Debug)]
pub enum Appended {
    /// A new fact was committed.
    Created(FactRecord),
    /// The idempotency key was seen before: this is the record the first POST made.
    Existing(FactRecord),
}

struct Job {
    fact: NewFact,
    reply: oneshot::Sender<Result<Appended, AppError>>,
}

/// Sends appends to the writer. Cheap to clone; the writer stops once every handle is gone.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    queue: mpsc::Sender<Job>,
}

impl WriterHandle {
    /// Appends one fact and waits until its group is committed.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the database refused the group (nothing of it was
    /// written), [`AppError::ShuttingDown`] when the writer has stopped.
    pub async fn append(&self, fact: NewFact) -> Result<Appended, AppError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { fact, reply })
            .await
            .map_err(|_| AppError::ShuttingDown)?;
        answer.await.map_err(|_| AppError::ShuttingDown)?
    }
}

/// Starts the writer over `appender`, publishing each committed group to `notifier` and
/// counting it in `metrics`. The returned task ends once the writer has stopped and its
/// connection is closed.
///
/// # Errors
/// When the writer's thread cannot be started.
pub fn spawn(
    appender: Appender,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WriterHandle, JoinHandle<()>)> {
    let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
    let (stopped, writer_stopped) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("factlog-writer".into())
        .spawn(move || {
            run(&runtime, appender, jobs, &notifier, &metrics);
            let _ = stopped.send(());
        })?;
    let task = tokio::spawn(async move {
        match writer_stopped.await {
            Ok(()) => tracing::debug!("writer stopped"),
            Err(_) => tracing::error!("the writer's thread failed"),
        }
    });
    Ok((WriterHandle { queue }, task))
}

/// The writer's thread: forms groups from the queue, commits and publishes each, and
/// answers its requests.
fn run(
    runtime: &tokio::runtime::Handle,
    mut appender: Appender,
    mut jobs: mpsc::Receiver<Job>,
    notifier: &Notifier,
    metrics: &Metrics,
) {
    let mut held_over: Option<Job> = None;
    let mut concurrent = false;
    loop {
        let first = match held_over.take() {
            Some(job) => job,
            None => match jobs.blocking_recv() {
                Some(job) => job,
                None => break,
            },
        };
        if concurrent {
            // Several publishers are at it: before closing the group, let the runtime
            // run what it has ready (a no-op task queued behind it), which is mostly
            // requests on their way to this queue. The group, and so what its commit and
            // fsync are shared by, is larger; in the load generator, 64 publishers made
            // half as many commits with it. A lone publisher does not wait.
            let _ = runtime.block_on(runtime.spawn(async {}));
        }
        let mut bytes = first.fact.fact.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_FACTS && bytes < MAX_BATCH_BYTES {
            let Ok(job) = jobs.try_recv() else { break };
            bytes += job.fact.fact.len();
            if bytes > MAX_BATCH_BYTES {
                held_over = Some(job);
                break;
            }
            batch.push(job);
        }
        concurrent = batch.len() > 1;
        match runtime.block_on(commit_group(&mut appender, &batch, notifier, metrics)) {
            Ok(answers) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    // The requester may have gone away; the fact is committed all the same.
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(err) => {
                for job in batch {
                    let _ = job.reply.send(Err(share(&err)));
                }
            }
        }
    }
    runtime.block_on(appender.close());
}

/// Where a fact's answer comes from.
enum Source {
    /// The outcome of the n-th row of the group.
    Row(usize),
    /// The job's key was first used by another job of this group, whose row is the n-th.
    Repeat(usize),
}

/// Writes one group and publishes what it added; the answers are in the group's order.
#[tracing::instrument(level = "debug", skip_all, fields(facts = batch.len()))]
async fn commit_group(
    appender: &mut Appender,
    batch: &[Job],
    notifier: &Notifier,
    metrics: &Metrics,
) -> Result<Vec<Appended>, AppError> {
    let started = Instant::now();
    // Decide each fact's row before writing: a key repeated inside the group is written
    // once, by its first use, and its later uses answer with that record.
    let mut sources = Vec::with_capacity(batch.len());
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(batch.len());
    let mut new_keys: HashMap<&str, usize> = HashMap::new();
    for Job { fact, .. } in batch {
        let key = fact.key.as_ref().map(IdempotencyKey::as_str);
        if let Some(&row) = key.and_then(|k| new_keys.get(k)) {
            sources.push(Source::Repeat(row));
            continue;
        }
        if let Some(k) = key {
            new_keys.insert(k, rows.len());
        }
        sources.push(Source::Row(rows.len()));
        rows.push(Row {
            event: fact.event.as_ref().map(EventName::as_str),
            fact: &fact.fact,
            key,
        });
    }
    let outcomes = match appender.append(&rows).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            tracing::warn!(cause = %err, facts = batch.len(), "group commit failed; nothing written");
            return Err(err);
        }
    };
    let answers: Vec<Appended> = sources
        .into_iter()
        .map(|source| match source {
            Source::Row(i) if outcomes[i].existed => Appended::Existing(outcomes[i].record.clone()),
            Source::Row(i) => Appended::Created(outcomes[i].record.clone()),
            Source::Repeat(i) => Appended::Existing(outcomes[i].record.clone()),
        })
        .collect();
    let inserted: Vec<FactRecord> = outcomes
        .into_iter()
        .filter(|o| !o.existed)
        .map(|o| o.record)
        .collect();
    if !inserted.is_empty() {
        metrics.committed(inserted.len(), started.elapsed().as_secs_f64());
        appender.publish(notifier, &inserted);
    }
    Ok(answers)
}

/// One group's error, repeated to each of its requests.
fn share(err: &AppError) -> AppError {
    match err {
        AppError::Unavailable(message) => AppError::Unavailable(message.clone()),
        other => AppError::Internal(anyhow::anyhow!("group commit failed: {other:#}")),
    }
}

/// One fact of a group as the engines append it.
#[derive(Debug)]
pub struct Row<'a> {
    /// Its SSE event type, if any.
    pub event: Option<&'a str>,
    /// The fact as compact JSON text.
    pub fact: &'a str,
    /// The publisher's idempotency key, if any.
    pub key: Option<&'a str>,
}

/// The rows as the JSON array of `[event, fact, key]` triples that both engines' append
/// statements take.
pub(super) fn rows_json<'a>(
    rows: impl IntoIterator<Item = &'a Row<'a>>,
) -> Result<String, AppError> {
    let triples: Vec<_> = rows.into_iter().map(|r| (r.event, r.fact, r.key)).collect();
    serde_json::to_string(&triples).map_err(|e| AppError::Internal(e.into()))
}

/// What became of one [`Row`].
#[derive(Debug)]
pub struct Outcome {
    /// The new record, or the one already in the log under the row's key.
    pub record: FactRecord,
    /// Whether the record was already in the log.
    pub existed: bool,
}

/// What the writer appends with: the engine's write connection.
pub enum Appender {
    /// SQLite's one read-write connection.
    Sqlite(SqliteConnection),
    /// PostgreSQL's writer.
    Postgres(Box<postgres::Writer>),
}

impl Appender {
    /// Appends the rows in one transaction and returns their outcomes in row order; the
    /// new facts' ids increase in row order. Rows of the same key must not repeat.
    async fn append(&mut self, rows: &[Row<'_>]) -> Result<Vec<Outcome>, AppError> {
        match self {
            Self::Sqlite(conn) => sqlite::append(conn, rows).await,
            Self::Postgres(writer) => writer.append(rows).await,
        }
    }

    /// Hands newly committed facts to this instance's streams.
    fn publish(&self, notifier: &Notifier, inserted: &[FactRecord]) {
        match self {
            // This writer is the log's only source: its groups are the log, in order.
            Self::Sqlite(_) => notifier.publish(inserted),
            Self::Postgres(writer) => writer.publish(notifier, inserted),
        }
    }

    async fn close(self) {
        match self {
            Self::Sqlite(conn) => {
                if let Err(err) = conn.close().await {
                    tracing::warn!(cause = %err, "closing the writer's connection failed");
                }
            }
            Self::Postgres(writer) => writer.close().await,
        }
    }
}
