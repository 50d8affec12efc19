//! Appending to a SQLite log: the writer's one read-write connection.
//!
//! The connection is rusqlite's, used on the writer's own thread, where the readers' are
//! sqlx's: each sqlx statement is a round trip to a thread of sqlx's own, two wake-ups of
//! two threads, which the writer would pay for every group. Called directly, a statement
//! costs only SQLite's own work, so a group is plainly one prepared insert per fact inside
//! one transaction.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::classify::classify_write;
use super::durable::{WalSync, Watermark};
use crate::domain::{FactRecord, NewFact, Retention};
use crate::storage::model::{Appended, Publish, StorageError};
use crate::storage::retention::Trimmed;

/// The writer's side: the one read-write connection. Its commits never wait for the
/// disk (`synchronous=NORMAL`); with `--sync full` the syncer makes them durable.
#[derive(Debug)]
pub struct Appender {
    conn: Connection,
    /// The newest id the readers may show.
    watermark: Watermark,
    /// With `--sync full`, what makes commits durable, until the writer takes it.
    wal: Option<WalSync>,
}

/// The records already in the log, by (topic, idempotency key).
type Known = HashMap<(String, String), FactRecord>;

impl Appender {
    /// Appends through `conn`, which must be the only connection that writes, showing
    /// readers what `watermark` allows; with `wal`, commits are durable only once it has
    /// synced them.
    pub fn new(conn: Connection, watermark: Watermark, wal: Option<WalSync>) -> Self {
        Self {
            conn,
            watermark,
            wal,
        }
    }

    /// What makes commits durable and the watermark it raises, for the syncer; `None`
    /// with `--sync normal` (or once taken).
    pub fn durability(&mut self) -> Option<(WalSync, Watermark)> {
        self.wal.take().map(|wal| (wal, self.watermark.clone()))
    }

    /// Shows committed facts to the readers and hands them to the streams (with
    /// `--sync normal`, where a commit is all there is).
    pub fn publish(&self, streams: &dyn Publish, inserted: &[FactRecord]) {
        self.watermark.reveal(streams, inserted);
    }

    /// Appends the facts in one transaction; returns what became of each, in order
    /// (`Created`, or `Existing` for a key already used on the topic). The new facts' ids
    /// increase in row order. A (topic, key) must not repeat among the rows (the writer
    /// sees to it).
    ///
    /// # Errors
    /// When the database refuses a statement; nothing of the group is written then.
    pub fn append(&mut self, rows: &[&NewFact]) -> Result<Vec<Appended>, StorageError> {
        // Nothing else writes, so the key lookup cannot be raced by another append.
        let known = self.lookup_keys(rows).map_err(classify_write)?;
        let key_of = |row: &NewFact| {
            row.key
                .as_ref()
                .map(|k| (row.topic.as_str().to_owned(), k.as_str().to_owned()))
        };
        let fresh: Vec<&NewFact> = rows
            .iter()
            .copied()
            .filter(|r| key_of(r).is_none_or(|k| !known.contains_key(&k)))
            .collect();
        let inserted = if fresh.is_empty() {
            Vec::new()
        } else {
            self.insert(&fresh).map_err(classify_write)?
        };
        let mut inserted = inserted.into_iter();
        rows.iter()
            .map(|row| match key_of(row).and_then(|k| known.get(&k)) {
                Some(record) => Ok(Appended::Existing(record.clone())),
                None => inserted.next().map(Appended::Created).ok_or_else(|| {
                    StorageError::Internal(anyhow::anyhow!("an inserted row is missing"))
                }),
            })
            .collect()
    }

    /// Inserts `rows` in one transaction, committed when this returns `Ok`; should any
    /// statement fail, the transaction is rolled back as it is dropped.
    fn insert(&mut self, rows: &[&NewFact]) -> rusqlite::Result<Vec<FactRecord>> {
        let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        // IMMEDIATE: the write lock is taken at BEGIN, so a lock held by another process
        // (a backup, an operator's shell) is waited for there, with the busy timeout.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = Vec::with_capacity(rows.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO facts (topic, event, fact, created_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for row in rows {
                let event = row.event.as_ref().map(|e| e.as_str());
                let key = row.key.as_ref().map(|k| k.as_str());
                insert.execute(params![
                    row.topic.as_str(),
                    event,
                    row.fact,
                    created_at,
                    key
                ])?;
                inserted.push(FactRecord {
                    id: tx.last_insert_rowid(),
                    topic: row.topic.as_str().to_owned(),
                    event: event.map(str::to_owned),
                    fact: row.fact.clone(),
                    created_at: created_at.clone(),
                });
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    /// The records already in the log under the rows' (topic, idempotency key) pairs.
    fn lookup_keys(&mut self, rows: &[&NewFact]) -> rusqlite::Result<Known> {
        let mut known = HashMap::new();
        let mut lookup = self.conn.prepare_cached(
            "SELECT id, event, fact, created_at FROM facts
             WHERE topic = ?1 AND idempotency_key = ?2",
        )?;
        for row in rows {
            let Some(key) = row.key.as_ref() else {
                continue;
            };
            let (topic, key) = (row.topic.as_str(), key.as_str());
            let found = lookup
                .query_row(params![topic, key], |r| {
                    Ok(FactRecord {
                        id: r.get(0)?,
                        topic: topic.to_owned(),
                        event: r.get(1)?,
                        fact: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .optional()?;
            if let Some(record) = found {
                known.insert((topic.to_owned(), key.to_owned()), record);
            }
        }
        Ok(known)
    }

    /// One step of retention: deletes at most `batch` of the oldest facts outside
    /// `retention`'s bounds, and records the highest deleted id in the same transaction.
    ///
    /// # Errors
    /// When the database refuses; nothing is deleted then.
    pub fn trim(&mut self, retention: &Retention, batch: i64) -> Result<Trimmed, StorageError> {
        self.trim_step(retention, batch).map_err(classify_write)
    }

    /// [`Self::trim`], in rusqlite's errors.
    fn trim_step(&mut self, retention: &Retention, batch: i64) -> rusqlite::Result<Trimmed> {
        let keep = retention.keep_ids();
        let cutoff = retention
            .age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true));
        // Planned outside the transaction: nothing else writes, so nothing can change
        // between the plan and the delete (nor what it counts as deletable). The first
        // fact inside both bounds ends the prefix: times grow with ids, and should the
        // clock step back, what follows it is kept too. Times compare as text: every one
        // has the same RFC 3339 form. Without the age bound only the facts beyond the
        // count bound are looked at. The newest fact is the newest durable one: the count
        // bound counts what readers can see, and a fact nobody could see yet is never
        // deleted.
        let newest = self.watermark.get();
        let (floor, through, deletable, more, kept_at) = self
            .conn
            .prepare_cached(
                "WITH floor(id) AS (SELECT deleted_through FROM log_retention),
                  newest(id) AS (SELECT ?4),
                  batch AS (SELECT id, created_at FROM facts
                            WHERE id > (SELECT id FROM floor) AND id <= (SELECT id FROM newest)
                              AND (?3 IS NOT NULL OR id <= (SELECT id FROM newest) - ?2)
                            ORDER BY id LIMIT ?1),
                  kept(id) AS (SELECT min(id) FROM batch
                               WHERE NOT ((?2 IS NOT NULL AND id <= (SELECT id FROM newest) - ?2)
                                          OR (?3 IS NOT NULL AND created_at < ?3)))
             SELECT (SELECT id FROM floor),
                    coalesce((SELECT max(id) FROM batch
                              WHERE id < coalesce((SELECT id FROM kept), 9223372036854775807)),
                             (SELECT id FROM floor)),
                    (SELECT count(*) FROM batch
                     WHERE id < coalesce((SELECT id FROM kept), 9223372036854775807)),
                    (SELECT count(*) FROM batch) = ?1 AND (SELECT id FROM kept) IS NULL,
                    (SELECT created_at FROM batch WHERE id = (SELECT id FROM kept))",
            )?
            .query_row(params![batch, keep, cutoff, newest], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?;
        let mut trimmed = Trimmed {
            deleted: 0,
            through: floor,
            more,
            kept_at,
        };
        if through <= floor {
            return Ok(trimmed);
        }
        // Like an append, the step commits without an fsync: the syncer's next sync makes
        // it durable with the group after it. Should power fail first, recovery keeps
        // neither the delete nor the raised floor (one transaction): the facts are back,
        // and are deleted again. A reader may have been told of a delete that a power cut
        // undid; that costs it nothing, as the facts that come back are older than where
        // it went on from.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("DELETE FROM facts WHERE id > ?1 AND id <= ?2")?
            .execute(params![floor, through])?;
        tx.prepare_cached("UPDATE log_retention SET deleted_through = ?1")?
            .execute(params![through])?;
        tx.commit()?;
        trimmed.deleted = u64::try_from(deletable).unwrap_or(0);
        trimmed.through = through;
        Ok(trimmed)
    }

    /// Closes the connection, after the writer's last commit.
    pub fn close(self) {
        if let Err((_, err)) = self.conn.close() {
            tracing::warn!(cause = %err, "closing the writer's connection failed");
        }
    }
}
