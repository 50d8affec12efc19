//! Publishing (`POST /facts`, alias `POST /fact`) and reading (`GET /facts`,
//! `GET /facts/{id}`). Handlers turn inputs into domain types first and hold no SQL:
//! appends go to the writer, reads to [`crate::storage::Storage`].

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, param};
use serde_json::Value;

use super::body::FactBody;
use super::params::{EventParam, KeyHeader};
use super::record::Fact;
use crate::domain::NewFact;
use crate::http::error::AppError;
use crate::http::middleware::publishing;
use crate::http::state::AppState;
use crate::storage::Appended;

/// Publishing and reading facts.
pub struct FactsApi;

/// A page of the log.
#[derive(Debug, Object)]
struct FactPage {
    /// The facts, oldest first.
    facts: Vec<Fact>,
    /// Pass as `after` for the next page; null at the end of the log.
    next: Option<i64>,
    /// Pass as `before` for the page before this one; null at the start of the log.
    prev: Option<i64>,
}

/// The answer to a POST.
#[derive(Debug, ApiResponse)]
enum PostResponse {
    /// The fact was appended and is on disk.
    #[oai(status = 201)]
    Created(Fact, #[oai(header = "Location")] String),
    /// The idempotency key was seen before: nothing was appended; this is the record the
    /// first POST created.
    #[oai(status = 200)]
    AlreadyAppended(Fact),
}

/// The answer to `GET /facts/{id}`.
#[derive(Debug, ApiResponse)]
enum GetResponse {
    /// The fact.
    #[oai(status = 200)]
    Found(Fact),
}

#[OpenApi]
impl FactsApi {
    /// Append a fact.
    ///
    /// The body is any JSON value (or a form, stored as an object of its fields). The
    /// answer comes once the fact is committed under `--sync`. Errors: 400 malformed body
    /// or event name, 401 missing or wrong token, 413 body too large, 415 other content
    /// types, 503 the database cannot take the write (nothing is written).
    #[oai(path = "/facts", method = "post", transform = "publishing")]
    async fn post_facts(
        &self,
        state: Data<&AppState>,
        /// The SSE event type: 1 to 64 characters of `A-Z a-z 0-9 _ . : -`. Without it the
        /// fact is a plain `message`.
        event: EventParam,
        /// A retried POST with the same key appends nothing and answers 200 with the first
        /// record (up to 200 visible ASCII characters).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: FactBody,
    ) -> poem::Result<PostResponse> {
        // Boxed: the operation's future is moved through every layer of the router, so
        // it is kept small.
        Box::pin(append(&state, event, idempotency_key, body)).await
    }

    /// Append a fact (the tutorial's path; same as `POST /facts`).
    #[oai(path = "/fact", method = "post", transform = "publishing")]
    async fn post_fact(
        &self,
        state: Data<&AppState>,
        /// The SSE event type.
        event: EventParam,
        /// Idempotency key, as for `POST /facts`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: FactBody,
    ) -> poem::Result<PostResponse> {
        Box::pin(append(&state, event, idempotency_key, body)).await
    }

    /// Read a page of the log.
    ///
    /// Facts with an id larger than `after` (default 0), oldest first; or, with `before`,
    /// the page just before that id (for reading backwards).
    #[oai(path = "/facts", method = "get")]
    async fn list_facts(
        &self,
        state: Data<&AppState>,
        /// Start after this id.
        #[oai(validator(minimum(value = "0")))]
        after: param::Query<Option<i64>>,
        /// End before this id (reads backwards from it); cannot be combined with `after`.
        #[oai(validator(minimum(value = "0")))]
        before: param::Query<Option<i64>>,
        /// Facts per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: param::Query<Option<i64>>,
    ) -> poem::Result<Json<FactPage>> {
        let limit = limit.0.unwrap_or(100);
        // Validated to 1..=1000 above, so the conversion cannot fail.
        let page_len = usize::try_from(limit).unwrap_or(100);
        // One more than asked tells whether the log goes on in that direction.
        let (mut records, next, prev) = match (after.0, before.0) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_request("give either after or before, not both").into());
            }
            (after, None) => {
                let mut records = state
                    .storage
                    .read_after(after.unwrap_or(0), limit + 1, None)
                    .await
                    .map_err(AppError::from)?;
                let more = records.len() > page_len;
                records.truncate(page_len);
                let next = records.last().map(|r| r.id).filter(|_| more);
                (records, next, None)
            }
            (None, Some(before)) => {
                let mut records = state
                    .storage
                    .read_before(before, limit + 1)
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
        Ok(Json(FactPage { facts, next, prev }))
    }

    /// Read one fact.
    #[oai(path = "/facts/:id", method = "get")]
    async fn get_fact(
        &self,
        state: Data<&AppState>,
        /// The fact's id.
        id: param::Path<i64>,
    ) -> poem::Result<GetResponse> {
        let record = state
            .storage
            .get(id.0)
            .await
            .map_err(AppError::from)?
            .ok_or(AppError::NotFound(id.0))?;
        Ok(GetResponse::Found(record.try_into()?))
    }
}

/// What both publishing operations do.
async fn append(
    state: &AppState,
    event: EventParam,
    key: KeyHeader,
    body: FactBody,
) -> poem::Result<PostResponse> {
    let fact: Value = body.into_value();
    let new = NewFact {
        event: event.0,
        fact: serde_json::to_string(&fact).map_err(|e| AppError::Internal(e.into()))?,
        key: key.0,
    };
    Ok(
        match state.writer.append(new).await.map_err(AppError::from)? {
            Appended::Created(record) => {
                let location = format!("/facts/{}", record.id);
                // The stored text is this value, compacted: answer with the value itself
                // rather than parse the text back.
                let created = Fact {
                    id: record.id,
                    event: record.event,
                    fact,
                    created_at: record.created_at,
                };
                PostResponse::Created(created, location)
            }
            Appended::Existing(record) => PostResponse::AlreadyAppended(record.try_into()?),
        },
    )
}
