//! A SQLite log's bounds and identity, as `/status` and the streams read them.

use super::classify::classify;
use super::reader::Reader;
use crate::storage::model::{Bounds, StorageError};

/// Every read fails with [`StorageError`] when the database cannot be read.
impl Reader {
    /// The newest id the log has handed out and made durable, 0 when it never has. Read
    /// from where AUTOINCREMENT keeps it, not from the facts: with the newest facts
    /// deleted, `max(id)` would go back, and every client ahead of it would be told its
    /// position is unknown.
    pub async fn newest_id(&self) -> Result<i64, StorageError> {
        let durable = self.watermark.get();
        sqlx::query_scalar!(
            r#"SELECT min(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0), ?1)
                   AS "id!: i64""#,
            durable
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    /// Where the log starts and ends, in one read.
    pub async fn bounds(&self) -> Result<Bounds, StorageError> {
        let durable = self.watermark.get();
        sqlx::query_as!(
            Bounds,
            r#"SELECT (SELECT deleted_through FROM log_retention) AS "deleted_through!: i64",
                      (SELECT min(id) FROM facts WHERE id <= ?1) AS "first_id: i64",
                      min(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0), ?1)
                          AS "last_id!: i64""#,
            durable
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    /// The database's size on disk, in bytes (its pages, free ones included; not its
    /// write-ahead log).
    pub async fn size_bytes(&self) -> Result<i64, StorageError> {
        sqlx::query_scalar!(
            r#"SELECT c.page_count * s.page_size AS "bytes!: i64"
               FROM pragma_page_count() AS c, pragma_page_size() AS s"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    /// The UUID made when this log was created.
    pub async fn log_id(&self) -> Result<String, StorageError> {
        sqlx::query_scalar!("SELECT log_id FROM log_meta LIMIT 1")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }
}
