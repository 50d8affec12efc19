//! The facts: publishing (`POST /topics/{topic}/facts`, and `POST /facts`, alias `POST
//! /fact`, for the topic `default`; what they do is in `publish.rs`) and reading (`GET
//! /facts`, of every topic or those of `?topic=`, `GET /topics/{topic}/facts`, `GET
//! /facts/{id}`). One OpenAPI block, because the description keeps one entry per path.
//! Handlers turn inputs into domain types first and hold no SQL.

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param};

use super::body::FactBody;
use super::params::{EventParam, KeyHeader, TopicsParam};
use super::publish;
use super::record::{Direct, Fact};
use crate::domain::{TopicName, TopicSet};
use crate::http::access::{Publisher, ReadAccess};
use crate::http::error::AppError;
use crate::http::middleware::publishing;
use crate::http::state::AppState;
use crate::storage::Selection;

/// Publishing and reading facts.
pub struct FactsApi;

/// A page of the log.
#[derive(Debug, Object, serde::Serialize)]
struct FactPage {
    /// The facts, oldest first.
    facts: Vec<Fact>,
    /// Pass as `after` for the next page; null at the end of the log.
    next: Option<i64>,
    /// Pass as `before` for the page before this one; null at the start of the log.
    prev: Option<i64>,
}

/// The answer to `GET /facts/{id}`.
#[derive(Debug, ApiResponse)]
enum GetResponse {
    /// The fact.
    #[oai(status = 200)]
    Found(Direct<Fact>),
}

#[OpenApi]
impl FactsApi {
    /// Append a fact to a topic.
    ///
    /// The body is any JSON value (or a form, stored as an object of its fields). The
    /// answer comes once the fact is committed under `--sync`. Errors: 400 malformed body,
    /// topic or event name, 401 missing or invalid token, 403 not granted, 413 body too large, 415 other
    /// content types, 422 the idempotency key was used on this topic for another fact, 503
    /// the database cannot take the write (nothing is written).
    ///
    /// With `--publish-token` or `--jwt-key`, it needs `Authorization: Bearer` with the
    /// static token or a token whose `factlog.publish` grants the topic (401 without a
    /// valid one, 403 when it does not grant).
    #[oai(
        path = "/topics/:topic/facts",
        method = "post",
        transform = "publishing"
    )]
    async fn post_topic_fact(
        &self,
        state: Data<&AppState>,
        publisher: Publisher,
        /// The topic: 1 to 64 characters of `A-Z a-z 0-9 _ . : -`. It exists once it
        /// holds a fact.
        topic: param::Path<String>,
        /// The SSE event type: 1 to 64 characters of `A-Z a-z 0-9 _ . : -`. Without it the
        /// fact is a plain `message`.
        event: EventParam,
        /// A retried POST with the same key on the same topic appends nothing and answers
        /// 200 with the first record (up to 200 visible ASCII characters); the same key
        /// with another fact is refused with 422.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: FactBody,
    ) -> poem::Result<publish::PostResponse> {
        let topic = TopicName::parse(&topic.0).map_err(AppError::from)?;
        // Boxed: the operation's future is moved through every layer of the router, so
        // it is kept small.
        Box::pin(publish::append(
            &state,
            &publisher.0,
            topic,
            event,
            idempotency_key,
            body,
        ))
        .await
    }

    /// Append a fact to the topic `default`.
    ///
    /// Everything as for `POST /topics/{topic}/facts`.
    #[oai(path = "/facts", method = "post", transform = "publishing")]
    async fn post_facts(
        &self,
        state: Data<&AppState>,
        publisher: Publisher,
        /// The SSE event type.
        event: EventParam,
        /// Idempotency key, as for `POST /topics/{topic}/facts`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: FactBody,
    ) -> poem::Result<publish::PostResponse> {
        let topic = TopicName::default_topic();
        Box::pin(publish::append(
            &state,
            &publisher.0,
            topic,
            event,
            idempotency_key,
            body,
        ))
        .await
    }

    /// Append a fact to the topic `default` (the tutorial's path; same as `POST /facts`).
    #[oai(path = "/fact", method = "post", transform = "publishing")]
    async fn post_fact(
        &self,
        state: Data<&AppState>,
        publisher: Publisher,
        /// The SSE event type.
        event: EventParam,
        /// Idempotency key, as for `POST /topics/{topic}/facts`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: FactBody,
    ) -> poem::Result<publish::PostResponse> {
        let topic = TopicName::default_topic();
        Box::pin(publish::append(
            &state,
            &publisher.0,
            topic,
            event,
            idempotency_key,
            body,
        ))
        .await
    }

    /// Read a page of the log.
    ///
    /// Facts with an id larger than `after` (default 0), oldest first; or, with `before`,
    /// the page just before that id (for reading backwards). With `topic` (repeatable, at
    /// most 32), only the facts of those topics. An `after` below the highest id deleted
    /// by retention is answered 410 with `first_id`, where the kept log starts (`0`, the
    /// start, never is).
    #[oai(path = "/facts", method = "get")]
    async fn list_facts(
        &self,
        state: Data<&AppState>,
        access: ReadAccess,
        /// Only the facts of these topics.
        topic: TopicsParam,
        /// Start after this id.
        #[oai(validator(minimum(value = "0")))]
        after: param::Query<Option<i64>>,
        /// End before this id (reads backwards from it); cannot be combined with `after`.
        #[oai(validator(minimum(value = "0")))]
        before: param::Query<Option<i64>>,
        /// Facts per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: param::Query<Option<i64>>,
    ) -> poem::Result<Direct<FactPage>> {
        access.require(topic.0.as_ref())?;
        page(&state, topic.0.as_ref(), after.0, before.0, limit.0).await
    }

    /// Read a page of one topic.
    ///
    /// As `GET /facts?topic={topic}`.
    #[oai(path = "/topics/:topic/facts", method = "get")]
    async fn list_topic_facts(
        &self,
        state: Data<&AppState>,
        access: ReadAccess,
        /// The topic.
        topic: param::Path<String>,
        /// Start after this id.
        #[oai(validator(minimum(value = "0")))]
        after: param::Query<Option<i64>>,
        /// End before this id (reads backwards from it); cannot be combined with `after`.
        #[oai(validator(minimum(value = "0")))]
        before: param::Query<Option<i64>>,
        /// Facts per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: param::Query<Option<i64>>,
    ) -> poem::Result<Direct<FactPage>> {
        let topic = TopicName::parse(&topic.0).map_err(AppError::from)?;
        let topics = TopicSet::new(vec![topic]).map_err(AppError::from)?;
        access.require(topics.as_ref())?;
        page(&state, topics.as_ref(), after.0, before.0, limit.0).await
    }

    /// Read one fact.
    ///
    /// A fact of a topic the caller may not read is answered as one that does not exist
    /// (404), so that a guessed id tells nothing. A fact deleted by retention: 410.
    #[oai(path = "/facts/:id", method = "get")]
    async fn get_fact(
        &self,
        state: Data<&AppState>,
        access: ReadAccess,
        /// The fact's id.
        id: param::Path<i64>,
    ) -> poem::Result<GetResponse> {
        let Some(record) = state.storage.get(id.0).await.map_err(AppError::from)? else {
            // Read after the fact was not found: the highest deleted id only rises, so
            // if it covers the id now, the fact was deleted, not never there.
            let bounds = state.storage.bounds().await.map_err(AppError::from)?;
            if id.0 > 0 && id.0 <= bounds.deleted_through {
                return Err(AppError::Gone {
                    message: format!("fact {} was deleted (retention)", id.0),
                    first_id: bounds.first_id,
                }
                .into());
            }
            return Err(AppError::NotFound(id.0).into());
        };
        if !access.may_read(&record.topic) {
            return Err(AppError::NotFound(id.0).into());
        }
        Ok(GetResponse::Found(Direct(record.try_into()?)))
    }
}

/// A page of the facts of `topics` (every topic when `None`).
async fn page(
    state: &AppState,
    topics: Option<&TopicSet>,
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
) -> poem::Result<Direct<FactPage>> {
    let selection = Selection {
        topics,
        events: None,
    };
    let limit = limit.unwrap_or(100);
    // Validated to 1..=1000, so the conversion cannot fail.
    let page_len = usize::try_from(limit).unwrap_or(100);
    // One more than asked tells whether the log goes on in that direction.
    let (mut records, next, prev) = match (after, before) {
        (Some(_), Some(_)) => {
            return Err(AppError::bad_request("give either after or before, not both").into());
        }
        (after, None) => {
            let after = after.unwrap_or(0);
            let mut records = state
                .storage
                .read_after(after, limit + 1, &selection)
                .await
                .map_err(AppError::from)?;
            // Read after the page: the highest deleted id only rises, so if it is not
            // past `after` now, nothing after `after` was deleted when the page was read.
            if after > 0 {
                let bounds = state.storage.bounds().await.map_err(AppError::from)?;
                if bounds.expired(after) {
                    return Err(AppError::Gone {
                        message: format!(
                            "facts after id {after} were deleted (retention); the log now starts at first_id (read from after=0 to get the kept log)"
                        ),
                        first_id: bounds.first_id,
                    }
                    .into());
                }
            }
            let more = records.len() > page_len;
            records.truncate(page_len);
            let next = records.last().map(|r| r.id).filter(|_| more);
            (records, next, None)
        }
        (None, Some(before)) => {
            let mut records = state
                .storage
                .read_before(before, limit + 1, &selection)
                .await
                .map_err(AppError::from)?;
            let more = records.len() > page_len;
            if more {
                records.remove(0);
            }
            let prev = records.first().map(|r| r.id).filter(|_| more);
            let next = records.last().map(|r| r.id);
            (records, next, prev)
        }
    };
    let facts = records
        .drain(..)
        .map(Fact::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Direct(FactPage { facts, next, prev }))
}
