//! Reading a PostgreSQL log: the API's pages and the streams' replays.

use factlog_postgres::{self as queries, FactRow, TopicRow};
use sqlx::Connection as _;
use sqlx::postgres::PgPool;

use super::classify::classify;
use crate::domain::FactRecord;
use crate::domain::frame::Format;
use crate::storage::model::{Bounds, Selection, StorageError, TopicSummary, selection_params};
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
        topic: row.topic,
        event: row.event,
        fact: row.fact,
        created_at: row.created_at,
    }
}

fn summary(row: TopicRow) -> TopicSummary {
    TopicSummary {
        name: row.name,
        first_id: row.first_id,
        last_id: row.last_id,
        facts: row.facts,
    }
}

/// Every read fails with [`StorageError`] when the database cannot be read. The methods
/// mean what SQLite's do (`storage/sqlite/reader.rs`).
impl Reader {
    /// Reads through this pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Up to `limit` facts after `after` of the selected topics, oldest first.
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        selection: &Selection<'_>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let rows = match selection_params(selection).0 {
            None => queries::read_after(&self.pool, after, limit).await,
            Some(topics) => queries::read_after_topics(&self.pool, after, topics, limit).await,
        };
        Ok(rows.map_err(classify)?.into_iter().map(record).collect())
    }

    /// A stream's next replay page (see [`FramePage`]).
    pub async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        selection: &Selection<'_>,
        format: Format,
        max_bytes: usize,
    ) -> Result<FramePage, StorageError> {
        let (topics, events, untyped) = selection_params(selection);
        let packed = match topics {
            None => queries::read_packed(&self.pool, after, events, untyped, rows).await,
            Some(topics) => {
                queries::read_packed_topics(&self.pool, after, topics, events, untyped, rows).await
            }
        };
        let packed = packed.map_err(classify)?;
        let bounds = Bounds {
            deleted_through: packed.deleted_through,
            first_id: packed.first_id,
            last_id: packed.last_id,
        };
        FramePage::render(packed.packed.as_deref(), bounds, rows, max_bytes, format)
    }

    /// Up to `limit` facts before `before` of the selected topics, newest first.
    pub async fn read_before(
        &self,
        before: i64,
        limit: i64,
        selection: &Selection<'_>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let rows = match selection_params(selection).0 {
            None => queries::read_before(&self.pool, before, limit).await,
            Some(topics) => queries::read_before_topics(&self.pool, before, topics, limit).await,
        };
        Ok(rows.map_err(classify)?.into_iter().map(record).collect())
    }

    /// The id `offset` places from the newest selected fact.
    pub async fn nth_newest(
        &self,
        selection: &Selection<'_>,
        offset: i64,
    ) -> Result<Option<i64>, StorageError> {
        let (topics, events, untyped) = selection_params(selection);
        match topics {
            None => queries::nth_newest(&self.pool, events, untyped, offset).await,
            Some(topics) => {
                queries::nth_newest_topics(&self.pool, topics, events, untyped, offset).await
            }
        }
        .map_err(classify)
    }

    /// Up to `limit` topics named after `after`, by name.
    pub async fn topics(&self, after: &str, limit: i64) -> Result<Vec<TopicSummary>, StorageError> {
        let rows = queries::topics(&self.pool, after, limit)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(summary).collect())
    }

    /// One topic's summary; `None` when it has no facts.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicSummary>, StorageError> {
        let row = queries::topic(&self.pool, name).await.map_err(classify)?;
        Ok(row.map(summary))
    }

    /// The newest id handed out: the counter `factlog_append` advances, not `max(id)`,
    /// which deleting the newest facts would take back.
    pub async fn newest_id(&self) -> Result<i64, StorageError> {
        queries::newest_id(&self.pool).await.map_err(classify)
    }

    /// Where the log starts and ends, in one read.
    pub async fn bounds(&self) -> Result<Bounds, StorageError> {
        let row = queries::bounds(&self.pool).await.map_err(classify)?;
        Ok(Bounds {
            deleted_through: row.deleted_through,
            first_id: row.first_id,
            last_id: row.last_id,
        })
    }

    /// The database's size on disk, in bytes.
    pub async fn size_bytes(&self) -> Result<i64, StorageError> {
        queries::size_bytes(&self.pool).await.map_err(classify)
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
