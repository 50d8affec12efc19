//! The single writer: every append in the process funnels into this one task, which owns
//! the only read-write connection and therefore the order of the log.
//!
//! It takes whatever is queued (up to [`MAX_BATCH_FACTS`] facts or [`MAX_BATCH_BYTES`]
//! bytes), writes the whole group with one `INSERT` in one transaction, and only after the
//! commit has returned (on disk under `--sync`) does it publish the group to the notifier
//! and answer each waiting request. A request is therefore never answered for a fact that
//! is not durable, and a stream never sees a fact that is not committed.
//!
//! Group commit is what makes `--sync full` affordable: one fsync covers every fact that
//! arrived while the previous group was being written.
//!
//! Shutdown is the mpsc drop trick: when the HTTP server has stopped, every
//! [`WriterHandle`] is gone, `recv` drains what is left and returns `None`, and the task
//! ends after its last commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::{EventName, FactRecord, IdempotencyKey};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::notifier::Notifier;

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

/// Starts the writer over `conn`, publishing each committed group to `notifier` and
/// counting it in `metrics`.
pub fn spawn(
    conn: SqliteConnection,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
) -> (WriterHandle, JoinHandle<()>) {
    let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
    let task = tokio::spawn(run(conn, jobs, notifier, metrics));
    (WriterHandle { queue }, task)
}

async fn run(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Job>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
) {
    let mut held_over: Option<Job> = None;
    loop {
        let first = match held_over.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        // Let the request tasks that are ready to run enqueue their facts first: a yield
        // costs microseconds and makes the group, and so what its commit and fsync are
        // shared by, larger (17 facts to 28 on average with 64 publishers).
        tokio::task::yield_now().await;
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
        commit_group(&mut conn, batch, &notifier, &metrics).await;
    }
    if let Err(err) = conn.close().await {
        tracing::warn!(cause = %err, "closing the writer's connection failed");
    }
    tracing::debug!("writer stopped");
}

/// Where a job's answer comes from.
enum Source {
    /// A record already in the log under the job's idempotency key.
    Existing(FactRecord),
    /// The n-th fact inserted by this group.
    Inserted(usize),
    /// The job's key was first used by another job of this group, which inserted the
    /// n-th fact.
    InsertedEarlier(usize),
}

#[tracing::instrument(level = "debug", skip_all, fields(facts = batch.len()))]
async fn commit_group(
    conn: &mut SqliteConnection,
    batch: Vec<Job>,
    notifier: &Notifier,
    metrics: &Metrics,
) {
    let started = Instant::now();
    match write_group(conn, &batch).await {
        Ok((sources, inserted)) => {
            if !inserted.is_empty() {
                metrics.committed(inserted.len(), started.elapsed().as_secs_f64());
            }
            notifier.publish(&inserted);
            for (job, source) in batch.into_iter().zip(sources) {
                let answer = match source {
                    Source::Existing(record) => Appended::Existing(record),
                    Source::Inserted(i) => Appended::Created(inserted[i].clone()),
                    Source::InsertedEarlier(i) => Appended::Existing(inserted[i].clone()),
                };
                // The requester may have gone away; the fact is committed all the same.
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(err) => {
            tracing::warn!(cause = %err, facts = batch.len(), "group commit failed; nothing written");
            for job in batch {
                let _ = job.reply.send(Err(share(&err)));
            }
        }
    }
}

/// One group's error, repeated to each of its requests.
fn share(err: &AppError) -> AppError {
    match err {
        AppError::Unavailable(message) => AppError::Unavailable(message.clone()),
        other => AppError::Internal(anyhow::anyhow!("group commit failed: {other:#}")),
    }
}

/// Writes the group in one transaction and returns where each job's answer comes from,
/// with the records inserted, in id order.
async fn write_group(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<(Vec<Source>, Vec<FactRecord>), AppError> {
    let existing = lookup_keys(conn, batch).await?;

    // Decide each job's fate before writing: a known key answers with its record, a key
    // repeated inside this group answers with the fact its first use inserts.
    let mut sources = Vec::with_capacity(batch.len());
    let mut rows: Vec<(Option<&str>, &str, Option<&str>)> = Vec::with_capacity(batch.len());
    let mut new_keys: HashMap<&str, usize> = HashMap::new();
    for job in batch {
        let key = job.fact.key.as_ref().map(IdempotencyKey::as_str);
        if let Some(record) = key.and_then(|k| existing.get(k)) {
            sources.push(Source::Existing(record.clone()));
            continue;
        }
        if let Some(&row) = key.and_then(|k| new_keys.get(k)) {
            sources.push(Source::InsertedEarlier(row));
            continue;
        }
        if let Some(k) = key {
            new_keys.insert(k, rows.len());
        }
        sources.push(Source::Inserted(rows.len()));
        rows.push((
            job.fact.event.as_ref().map(EventName::as_str),
            &job.fact.fact,
            key,
        ));
    }
    if rows.is_empty() {
        return Ok((sources, Vec::new()));
    }

    let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let rows_json = serde_json::to_string(&rows).map_err(|e| AppError::Internal(e.into()))?;
    // One statement for the whole group: every statement costs a round trip to sqlx's
    // connection thread, so one per fact would cost several times more. `json_each`
    // yields the rows in array order, and AUTOINCREMENT gives each inserted row the next
    // id in turn (one statement, one writer), so the n-th row gets the n-th of the last
    // `n` ids. Asking for just the last id, rather than `RETURNING id`, spares sqlx a
    // message per row.
    //
    // No BEGIN/COMMIT around it: a single statement is its own transaction, committed
    // (and synced under `--sync`) when it finishes, which `execute` waits for; the
    // explicit pair would only add two more round trips. Nothing else writes, so the key
    // lookup above cannot be raced.
    let done = sqlx::query!(
        r#"INSERT INTO facts (event, fact, created_at, idempotency_key)
           SELECT value ->> 0, value ->> 1, ?1, value ->> 2
           FROM json_each(?2)
           ORDER BY key"#,
        created_at,
        rows_json
    )
    .execute(&mut *conn)
    .await?;

    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    if i64::try_from(done.rows_affected()).ok() != Some(count) {
        return Err(AppError::Internal(anyhow::anyhow!(
            "inserted {} facts but the database says {}",
            rows.len(),
            done.rows_affected()
        )));
    }
    let first = done.last_insert_rowid() - count + 1;
    let inserted: Vec<FactRecord> = rows
        .iter()
        .zip(first..)
        .map(|((event, fact, _), id)| FactRecord {
            id,
            event: event.map(str::to_owned),
            fact: (*fact).to_owned(),
            created_at: created_at.clone(),
        })
        .collect();
    Ok((sources, inserted))
}

/// The records already in the log under the group's idempotency keys.
async fn lookup_keys(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<HashMap<String, FactRecord>, AppError> {
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|job| job.fact.key.as_ref().map(IdempotencyKey::as_str))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let keys_json = serde_json::to_string(&keys).map_err(|e| AppError::Internal(e.into()))?;
    let rows = sqlx::query!(
        r#"SELECT id AS "id!: i64", event, fact, created_at, idempotency_key AS "key!: String"
           FROM facts
           WHERE idempotency_key IS NOT NULL
             AND idempotency_key IN (SELECT value FROM json_each(?1))"#,
        keys_json
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let record = FactRecord {
                id: r.id,
                event: r.event,
                fact: r.fact,
                created_at: r.created_at,
            };
            (r.key, record)
        })
        .collect())
}
