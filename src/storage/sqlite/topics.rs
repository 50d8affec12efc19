//! A SQLite log's topics, as `GET /topics` lists them: read from the topic index.

use super::classify::classify;
use super::reader::Reader;
use crate::storage::model::{StorageError, TopicSummary};

/// Every read fails with [`StorageError`] when the database cannot be read.
impl Reader {
    /// Up to `limit` topics named after `after`, by name. Each name is one seek in the
    /// topic index, its first and last ids one more each; its count reads its part of the
    /// index.
    pub async fn topics(&self, after: &str, limit: i64) -> Result<Vec<TopicSummary>, StorageError> {
        let durable = self.watermark.get();
        sqlx::query_as!(
            TopicSummary,
            r#"WITH RECURSIVE names(name) AS (
                   SELECT (SELECT topic FROM facts WHERE topic > ?1 AND id <= ?3
                           ORDER BY topic LIMIT 1)
                   UNION ALL
                   SELECT (SELECT topic FROM facts WHERE topic > names.name AND id <= ?3
                           ORDER BY topic LIMIT 1)
                   FROM names WHERE names.name IS NOT NULL)
               SELECT name AS "name!: String",
                      (SELECT min(id) FROM facts WHERE topic = names.name AND id <= ?3)
                          AS "first_id!: i64",
                      (SELECT max(id) FROM facts WHERE topic = names.name AND id <= ?3)
                          AS "last_id!: i64",
                      (SELECT count(*) FROM facts WHERE topic = names.name AND id <= ?3)
                          AS "facts!: i64"
               FROM names WHERE name IS NOT NULL
               LIMIT ?2"#,
            after,
            limit,
            durable
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    /// One topic's summary; `None` when it has no facts.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicSummary>, StorageError> {
        let durable = self.watermark.get();
        let summary = sqlx::query_as!(
            TopicSummary,
            r#"SELECT ?1 AS "name!: String", min(id) AS "first_id!: i64",
                      max(id) AS "last_id!: i64", count(*) AS "facts!: i64"
               FROM facts WHERE topic = ?1 AND id <= ?2
               HAVING count(*) > 0"#,
            name,
            durable
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(summary)
    }
}
