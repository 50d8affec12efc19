//! Appending to a SQLite log: the writer's one read-write connection.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;

use super::classify::classify;
use super::durable::{WalSync, Watermark};
use crate::domain::{FactRecord, NewFact, Retention};
use crate::storage::model::{Appended, Publish, StorageError, rows_json};
use crate::storage::retention::Trimmed;

/// The writer's side: the one read-write connection. Its commits never wait for the
/// disk (`synchronous=NORMAL`); with `--sync full` the syncer makes them durable.
#[derive(Debug)]
pub struct Appender {
    conn: SqliteConnection,
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
    pub fn new(conn: SqliteConnection, watermark: Watermark, wal: Option<WalSync>) -> Self {
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

    /// Appends the facts in one statement, and so in one transaction; returns what became
    /// of each, in order (`Created`, or `Existing` for a key already used on the topic).
    /// The new facts' ids increase in row order. A (topic, key) must not repeat among the
    /// rows (the writer sees to it).
    ///
    /// # Errors
    /// When the database refuses the statement; nothing of it is written then.
    pub async fn append(&mut self, rows: &[&NewFact]) -> Result<Vec<Appended>, StorageError> {
        // Nothing else writes, so the key lookup cannot be raced by another append.
        let known = self.lookup_keys(rows).await?;
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
        let mut inserted = Vec::new();
        if !fresh.is_empty() {
            let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            let rows_json = rows_json(&fresh)?;
            // One statement for the whole group: every statement costs a round trip to
            // sqlx's connection thread, so one per fact would cost several times more.
            // `json_each` yields the rows in array order, and AUTOINCREMENT gives each
            // inserted row the next id in turn (one statement, one writer), so the n-th
            // row gets the n-th of the last `n` ids. Asking for just the last id, rather
            // than `RETURNING id`, spares sqlx a message per row.
            //
            // No BEGIN/COMMIT around it: a single statement is its own transaction,
            // committed when it finishes, which `execute` waits for; the explicit pair
            // would only add two more round trips.
            let done = sqlx::query!(
                r#"INSERT INTO facts (topic, event, fact, created_at, idempotency_key)
                   SELECT value ->> 0, value ->> 1, value ->> 2, ?1, value ->> 3
                   FROM json_each(?2)
                   ORDER BY key"#,
                created_at,
                rows_json
            )
            .execute(&mut self.conn)
            .await
            .map_err(classify)?;
            let count = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
            if i64::try_from(done.rows_affected()).ok() != Some(count) {
                return Err(StorageError::Internal(anyhow::anyhow!(
                    "inserted {} facts but the database says {}",
                    fresh.len(),
                    done.rows_affected()
                )));
            }
            let first = done.last_insert_rowid() - count + 1;
            inserted = fresh
                .iter()
                .zip(first..)
                .map(|(row, id)| FactRecord {
                    id,
                    topic: row.topic.as_str().to_owned(),
                    event: row.event.as_ref().map(|e| e.as_str().to_owned()),
                    fact: row.fact.clone(),
                    created_at: created_at.clone(),
                })
                .collect();
        }
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

    /// The records already in the log under the rows' (topic, idempotency key) pairs.
    async fn lookup_keys(&mut self, rows: &[&NewFact]) -> Result<Known, StorageError> {
        let pairs: Vec<(&str, &str)> = rows
            .iter()
            .filter_map(|r| r.key.as_ref().map(|k| (r.topic.as_str(), k.as_str())))
            .collect();
        if pairs.is_empty() {
            return Ok(HashMap::new());
        }
        let pairs_json =
            serde_json::to_string(&pairs).map_err(|e| StorageError::Internal(e.into()))?;
        let found = sqlx::query!(
            r#"SELECT f.id AS "id!: i64", f.topic AS "topic!: String", f.event,
                      f.fact AS "fact!: String", f.created_at AS "created_at!: String",
                      f.idempotency_key AS "key!: String"
               FROM json_each(?1) AS k
               JOIN facts AS f
                 ON f.topic = k.value ->> 0 AND f.idempotency_key = k.value ->> 1
               WHERE f.idempotency_key IS NOT NULL"#,
            pairs_json
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(classify)?;
        Ok(found
            .into_iter()
            .map(|r| {
                let record = FactRecord {
                    id: r.id,
                    topic: r.topic.clone(),
                    event: r.event,
                    fact: r.fact,
                    created_at: r.created_at,
                };
                ((r.topic, r.key), record)
            })
            .collect())
    }

    /// One step of retention: deletes at most `batch` of the oldest facts outside
    /// `retention`'s bounds, and records the highest deleted id in the same transaction.
    ///
    /// # Errors
    /// When the database refuses; nothing is deleted then.
    pub async fn trim(
        &mut self,
        retention: &Retention,
        batch: i64,
    ) -> Result<Trimmed, StorageError> {
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
        let plan = sqlx::query!(
            r#"WITH floor(id) AS (SELECT deleted_through FROM log_retention),
                    newest(id) AS (SELECT ?4),
                    batch AS (SELECT id, created_at FROM facts
                              WHERE id > (SELECT id FROM floor) AND id <= (SELECT id FROM newest)
                                AND (?3 IS NOT NULL OR id <= (SELECT id FROM newest) - ?2)
                              ORDER BY id LIMIT ?1),
                    kept(id) AS (SELECT min(id) FROM batch
                                 WHERE NOT ((?2 IS NOT NULL AND id <= (SELECT id FROM newest) - ?2)
                                            OR (?3 IS NOT NULL AND created_at < ?3)))
               SELECT (SELECT id FROM floor) AS "floor!: i64",
                      coalesce((SELECT max(id) FROM batch
                                WHERE id < coalesce((SELECT id FROM kept), 9223372036854775807)),
                               (SELECT id FROM floor)) AS "through!: i64",
                      (SELECT count(*) FROM batch
                       WHERE id < coalesce((SELECT id FROM kept), 9223372036854775807))
                          AS "deletable!: i64",
                      (SELECT count(*) FROM batch) = ?1 AND (SELECT id FROM kept) IS NULL
                          AS "more!: bool",
                      (SELECT created_at FROM batch WHERE id = (SELECT id FROM kept))
                          AS "kept_at: String""#,
            batch,
            keep,
            cutoff,
            newest
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(classify)?;
        let mut trimmed = Trimmed {
            deleted: 0,
            through: plan.floor,
            more: plan.more,
            kept_at: plan.kept_at,
        };
        if plan.through <= plan.floor {
            return Ok(trimmed);
        }
        // One round trip for the whole delete: the ids are numbers of our own, so
        // formatting them into the text is safe, and each statement more would be one
        // more wake-up of sqlx's connection thread.
        //
        // Like an append, the step commits without an fsync: the syncer's next sync makes
        // it durable with the group after it. Should power fail first, recovery keeps
        // neither the delete nor the raised floor (one transaction): the facts are back,
        // and are deleted again. A reader may have been told of a delete that a power cut
        // undid; that costs it nothing, as the facts that come back are older than where
        // it went on from.
        let (floor, through) = (plan.floor, plan.through);
        let step = format!(
            "BEGIN; DELETE FROM facts WHERE id > {floor} AND id <= {through}; \
             UPDATE log_retention SET deleted_through = {through}; COMMIT;"
        );
        if let Err(err) = sqlx::raw_sql(&step).execute(&mut self.conn).await {
            // Whichever statement failed, nothing of the step stays, and no transaction
            // is left open.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
            return Err(classify(err));
        }
        trimmed.deleted = u64::try_from(plan.deletable).unwrap_or(0);
        trimmed.through = through;
        Ok(trimmed)
    }

    /// Closes the connection, after the writer's last commit.
    pub async fn close(self) {
        if let Err(err) = self.conn.close().await {
            tracing::warn!(cause = %err, "closing the writer's connection failed");
        }
    }
}
