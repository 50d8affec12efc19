//! Reading a SQLite log: the API's pages, the streams' replays (the topic index's
//! summaries are in `topics.rs`, the log's bounds and identity in `status.rs`).
//!
//! A read of one topic is a range of the topic index, already in id order. A read of
//! several merges per-topic reads rather than sorting every match: each topic's `n`-th
//! fact after the cursor is one seek and a short step in the topic index, the smallest of
//! them bounds the page, and only the facts up to that bound are read and sorted, at most
//! `n` per topic. A read of every topic walks the log itself.

use sqlx::Connection as _;
use sqlx::sqlite::SqlitePool;

use super::classify::classify;
use super::durable::Watermark;
use crate::domain::frame::Format;
use crate::domain::{FactRecord, TopicSet};
use crate::storage::model::{Bounds, Selection, StorageError, selection_params};
use crate::storage::page::FramePage;

/// A replay page as one row: the packed facts (see `storage/page.rs`) and the log's
/// bounds as of the same read.
struct Packed {
    packed: Option<String>,
    deleted_through: i64,
    first_id: Option<i64>,
    last_id: i64,
}

/// Read access to a SQLite log. Cheap to clone.
///
/// Every read shows only ids at or below the watermark, read before the statement: a
/// statement's snapshot has every group committed before the watermark was raised past
/// it, and may have newer ones, which it leaves out (`durable.rs`).
#[derive(Clone, Debug)]
pub struct Reader {
    pub(super) pool: SqlitePool,
    pub(super) watermark: Watermark,
}

/// Every read fails with [`StorageError`] when the database cannot be read.
impl Reader {
    /// Reads through this pool of read-only connections, up to `watermark`.
    pub fn new(pool: SqlitePool, watermark: Watermark) -> Self {
        Self { pool, watermark }
    }

    /// Up to `limit` facts with an id larger than `after` of the selected topics (event
    /// types are not filtered here), oldest first.
    pub async fn read_after(
        &self,
        after: i64,
        limit: i64,
        selection: &Selection<'_>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let (topics, _, _) = selection_params(selection);
        let durable = self.watermark.get();
        let rows = match topics {
            None => {
                sqlx::query_as!(
                    FactRecord,
                    r#"SELECT id AS "id!: i64", topic, event, fact, created_at
                       FROM facts WHERE id > ?1 AND id <= ?3 ORDER BY id LIMIT ?2"#,
                    after,
                    limit,
                    durable
                )
                .fetch_all(&self.pool)
                .await
            }
            Some(topics) => {
                sqlx::query_as!(
                    FactRecord,
                    r#"WITH sel(topic) AS (SELECT value FROM json_each(?2)),
                            bound(id) AS (
                                SELECT min((SELECT g.id FROM facts g
                                            WHERE g.topic = sel.topic AND g.id > ?1 AND g.id <= ?4
                                            ORDER BY g.id LIMIT 1 OFFSET ?3 - 1))
                                FROM sel)
                       SELECT id AS "id!: i64", topic AS "topic!: String", event, fact AS "fact!: String",
                              created_at AS "created_at!: String"
                       FROM facts
                       WHERE topic IN (SELECT topic FROM sel) AND id > ?1 AND id <= ?4
                         AND id <= coalesce((SELECT id FROM bound), 9223372036854775807)
                       ORDER BY id LIMIT ?3"#,
                    after,
                    topics,
                    limit,
                    durable
                )
                .fetch_all(&self.pool)
                .await
            }
        };
        rows.map_err(classify)
    }

    /// A stream's next replay page: up to `rows` selected facts after `after`, rendered in
    /// `format`, stopping after the frame that reaches `max_bytes` (see [`FramePage`]).
    pub async fn read_frames(
        &self,
        after: i64,
        rows: i64,
        selection: &Selection<'_>,
        format: Format,
        max_bytes: usize,
    ) -> Result<FramePage, StorageError> {
        let (topics, events, untyped) = selection_params(selection);
        let single = selection.topics.and_then(TopicSet::single);
        let durable = self.watermark.get();
        // `<id>,<topic>,<event>,<created_at>,<fact>` per fact: see `storage/page.rs`. The
        // log's bounds come from the same statement, so from the same snapshot: a delete
        // committed between two pages is either wholly before this read or wholly after.
        let packed =
            match (topics, single) {
                (None, _) => sqlx::query_as!(
                    Packed,
                    r#"SELECT group_concat(id || ',' || topic || ',' || coalesce(event, '') || ','
                                           || created_at || ',' || fact || char(10),
                                           '' ORDER BY id) AS "packed: String",
                              (SELECT deleted_through FROM log_retention) AS "deleted_through!: i64",
                              (SELECT min(id) FROM facts WHERE id <= ?5) AS "first_id: i64",
                              min(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0),
                                  ?5) AS "last_id!: i64"
                       FROM (SELECT id, topic, event, created_at, fact
                             FROM facts
                             WHERE id > ?1 AND id <= ?5
                               AND (?2 IS NULL OR event IN (SELECT value FROM json_each(?2))
                                    OR (event IS NULL AND ?3))
                             ORDER BY id
                             LIMIT ?4)"#,
                    after,
                    events,
                    untyped,
                    rows,
                    durable
                )
                .fetch_one(&self.pool)
                .await,
                // One topic: a range of its index, in id order, with no bound to find and
                // nothing to sort.
                (Some(_), Some(topic)) => sqlx::query_as!(
                    Packed,
                    r#"SELECT group_concat(id || ',' || topic || ',' || coalesce(event, '') || ','
                                           || created_at || ',' || fact || char(10),
                                           '' ORDER BY id) AS "packed: String",
                              (SELECT deleted_through FROM log_retention) AS "deleted_through!: i64",
                              (SELECT min(id) FROM facts WHERE id <= ?6) AS "first_id: i64",
                              min(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0),
                                  ?6) AS "last_id!: i64"
                       FROM (SELECT id, topic, event, created_at, fact
                             FROM facts
                             WHERE topic = ?1 AND id > ?2 AND id <= ?6
                               AND (?3 IS NULL OR event IN (SELECT value FROM json_each(?3))
                                    OR (event IS NULL AND ?4))
                             ORDER BY id
                             LIMIT ?5)"#,
                    topic,
                    after,
                    events,
                    untyped,
                    rows,
                    durable
                )
                .fetch_one(&self.pool)
                .await,
                (Some(topics), None) => {
                    sqlx::query_as!(
                        Packed,
                        r#"WITH sel(topic) AS (SELECT value FROM json_each(?2)),
                            bound(id) AS (
                                SELECT min((SELECT g.id FROM facts g
                                            WHERE g.topic = sel.topic AND g.id > ?1 AND g.id <= ?6
                                              AND (?3 IS NULL
                                                   OR g.event IN (SELECT value FROM json_each(?3))
                                                   OR (g.event IS NULL AND ?4))
                                            ORDER BY g.id LIMIT 1 OFFSET ?5 - 1))
                                FROM sel)
                       SELECT group_concat(id || ',' || topic || ',' || coalesce(event, '') || ','
                                           || created_at || ',' || fact || char(10),
                                           '' ORDER BY id) AS "packed: String",
                              (SELECT deleted_through FROM log_retention) AS "deleted_through!: i64",
                              (SELECT min(id) FROM facts WHERE id <= ?6) AS "first_id: i64",
                              min(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0),
                                  ?6) AS "last_id!: i64"
                       FROM (SELECT id, topic, event, created_at, fact
                             FROM facts
                             WHERE topic IN (SELECT topic FROM sel) AND id > ?1 AND id <= ?6
                               AND id <= coalesce((SELECT id FROM bound), 9223372036854775807)
                               AND (?3 IS NULL OR event IN (SELECT value FROM json_each(?3))
                                    OR (event IS NULL AND ?4))
                             ORDER BY id
                             LIMIT ?5)"#,
                        after,
                        topics,
                        events,
                        untyped,
                        rows,
                        durable
                    )
                    .fetch_one(&self.pool)
                    .await
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

    /// Up to `limit` facts with an id smaller than `before` of the selected topics, newest
    /// first.
    pub async fn read_before(
        &self,
        before: i64,
        limit: i64,
        selection: &Selection<'_>,
    ) -> Result<Vec<FactRecord>, StorageError> {
        let (topics, _, _) = selection_params(selection);
        let durable = self.watermark.get();
        let rows = match topics {
            None => {
                sqlx::query_as!(
                    FactRecord,
                    r#"SELECT id AS "id!: i64", topic, event, fact, created_at
                       FROM facts WHERE id < ?1 AND id <= ?3 ORDER BY id DESC LIMIT ?2"#,
                    before,
                    limit,
                    durable
                )
                .fetch_all(&self.pool)
                .await
            }
            Some(topics) => {
                sqlx::query_as!(
                    FactRecord,
                    r#"WITH sel(topic) AS (SELECT value FROM json_each(?2)),
                            bound(id) AS (
                                SELECT max((SELECT g.id FROM facts g
                                            WHERE g.topic = sel.topic AND g.id < ?1 AND g.id <= ?4
                                            ORDER BY g.id DESC LIMIT 1 OFFSET ?3 - 1))
                                FROM sel)
                       SELECT id AS "id!: i64", topic AS "topic!: String", event, fact AS "fact!: String",
                              created_at AS "created_at!: String"
                       FROM facts
                       WHERE topic IN (SELECT topic FROM sel) AND id < ?1 AND id <= ?4
                         AND id >= coalesce((SELECT id FROM bound), 0)
                       ORDER BY id DESC LIMIT ?3"#,
                    before,
                    topics,
                    limit,
                    durable
                )
                .fetch_all(&self.pool)
                .await
            }
        };
        rows.map_err(classify)
    }

    /// The id of the selected fact `offset` places from the newest (0: the newest), if the
    /// log holds that many.
    pub async fn nth_newest(
        &self,
        selection: &Selection<'_>,
        offset: i64,
    ) -> Result<Option<i64>, StorageError> {
        let (topics, events, untyped) = selection_params(selection);
        let single = selection.topics.and_then(TopicSet::single);
        let durable = self.watermark.get();
        let id = match (topics, single) {
            (None, _) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM facts
                       WHERE id <= ?4
                         AND (?1 IS NULL OR event IN (SELECT value FROM json_each(?1))
                              OR (event IS NULL AND ?2))
                       ORDER BY id DESC
                       LIMIT 1 OFFSET ?3"#,
                    events,
                    untyped,
                    offset,
                    durable
                )
                .fetch_optional(&self.pool)
                .await
            }
            (Some(_), Some(topic)) => {
                sqlx::query_scalar!(
                    r#"SELECT id AS "id!: i64" FROM facts
                       WHERE topic = ?1 AND id <= ?5
                         AND (?2 IS NULL OR event IN (SELECT value FROM json_each(?2))
                              OR (event IS NULL AND ?3))
                       ORDER BY id DESC
                       LIMIT 1 OFFSET ?4"#,
                    topic,
                    events,
                    untyped,
                    offset,
                    durable
                )
                .fetch_optional(&self.pool)
                .await
            }
            (Some(topics), None) => {
                sqlx::query_scalar!(
                    r#"WITH sel(topic) AS (SELECT value FROM json_each(?1)),
                            bound(id) AS (
                                SELECT max((SELECT g.id FROM facts g
                                            WHERE g.topic = sel.topic AND g.id <= ?5
                                              AND (?2 IS NULL
                                                   OR g.event IN (SELECT value FROM json_each(?2))
                                                   OR (g.event IS NULL AND ?3))
                                            ORDER BY g.id DESC LIMIT 1 OFFSET ?4))
                                FROM sel)
                       SELECT id AS "id!: i64" FROM facts
                       WHERE topic IN (SELECT topic FROM sel) AND id <= ?5
                         AND id >= coalesce((SELECT id FROM bound), 0)
                         AND (?2 IS NULL OR event IN (SELECT value FROM json_each(?2))
                              OR (event IS NULL AND ?3))
                       ORDER BY id DESC
                       LIMIT 1 OFFSET ?4"#,
                    topics,
                    events,
                    untyped,
                    offset,
                    durable
                )
                .fetch_optional(&self.pool)
                .await
            }
        };
        id.map_err(classify)
    }

    /// One fact by id.
    pub async fn get(&self, id: i64) -> Result<Option<FactRecord>, StorageError> {
        let durable = self.watermark.get();
        sqlx::query_as!(
            FactRecord,
            r#"SELECT id AS "id!: i64", topic, event, fact, created_at FROM facts
               WHERE id = ?1 AND id <= ?2"#,
            id,
            durable
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)
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
