//! Reading a PostgreSQL log: the API's pages and the streams' replays.

use factlog_postgres::{self as queries, FactRow};
use sqlx::Connection as _;
use sqlx::postgres::PgPool;

use super::classify::classify;
use crate::domain::{EventFilter, FactRecord};
use crate::storage::model::StorageError;
use crate::storage::page::FramePage;

/// Read access to a PostgreSQL log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reader {
    pool: PgPool,
}

/// A row of the queries crate as the domain's record.
pub fn record(row: FactRow) -> FactRecord {
    FactRecord {
        id: row.id,
        event: row.event,
        fact: row.fact,
        created_at: row.created_at,
    }
}

/// The filter as the queries take it: the names as a JSON array (`None`: every fact), and
/// whether facts stored without a type pass.
pub fn filter_params(filter: Option<&EventFilter>) -> (Option<&str>, bool) {
    filter.map_or((None, true), |f| {
        (Some(f.names_json()), f.includes_untyped())
    })
}

/// Every read fails with [`StorageError`] when the database cannot be read. The methods
/// mean what SQLite's do (`storage/sqlite.rs`).
impl Reader {
    /// Reads through this pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Up to `limit` facts after `after` that the filter passes, oldest first.
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        filter: Option<&EventFilter>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let (names, untyped) = filter_params(filter);
        let rows = queries::read_after(&self.pool, after, names, untyped, limit)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// A stream's next replay page (see [`FramePage`]).
    pub async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        filter: Option<&EventFilter>,
        max_bytes: usize,
    ) -> Result<FramePage, StorageError> {
        let (names, untyped) = filter_params(filter);
        let packed = queries::read_packed(&self.pool, after, names, untyped, rows)
            .await
            .map_err(classify)?;
        FramePage::render(packed.as_deref(), rows, max_bytes)
    }

    /// Up to `limit` facts before `before`, newest first.
    pub async fn read_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let rows = queries::read_before(&self.pool, before, limit)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// The id `offset` places from the newest fact the filter passes.
    pub async fn nth_newest(
        &self,
        filter: Option<&EventFilter>,
        offset: i64,
    ) -> Result<Option<i64>, StorageError> {
        let (names, untyped) = filter_params(filter);
        queries::nth_newest(&self.pool, names, untyped, offset)
            .await
            .map_err(classify)
    }

    /// The newest id handed out: the counter `factlog_append` advances, not `max(id)`,
    /// which deleting the newest facts would take back.
    pub async fn newest_id(&self) -> Result<i64, StorageError> {
        queries::newest_id(&self.pool).await.map_err(classify)
    }

    /// One fact by id.
    pub async fn get(&self, id: i64) -> Result<Option<FactRecord>, StorageError> {
        let row = queries::get(&self.pool, id).await.map_err(classify)?;
        Ok(row.map(record))
    }

    /// The UUID made when this log was created.
    pub async fn log_id(&self) -> Result<String, StorageError> {
        queries::log_id(&self.pool).await.map_err(classify)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        conn.ping().await.map_err(classify)
    }

    /// Closes the read connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
