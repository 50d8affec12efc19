//! Appending to a SQLite log: the writer's one read-write connection.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;

use super::classify::classify;
use crate::domain::{FactRecord, NewFact};
use crate::storage::model::{Appended, StorageError, rows_json};

/// The writer's side: the one read-write connection.
#[derive(Debug)]
pub struct Appender {
    conn: SqliteConnection,
}

/// The records already in the log, by (topic, idempotency key).
type Known = HashMap<(String, String), FactRecord>;

impl Appender {
    /// Appends through `conn`, which must be the only connection that writes.
    pub fn new(conn: SqliteConnection) -> Self {
        Self { conn }
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
            // committed (and synced under `--sync`) when it finishes, which `execute`
            // waits for; the explicit pair would only add two more round trips.
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

    /// Closes the connection, after the writer's last commit.
    pub async fn close(self) {
        if let Err(err) = self.conn.close().await {
            tracing::warn!(cause = %err, "closing the writer's connection failed");
        }
    }
}
