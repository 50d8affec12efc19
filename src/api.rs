//! The JSON API, described by OpenAPI from this code: publishing (`POST /facts`, alias
//! `POST /fact`), reading (`GET /facts`, `GET /facts/{id}`) and `GET /status`.
//!
//! Handlers turn inputs into domain types first and hold no SQL: appends go to the writer,
//! reads to [`crate::storage::Storage`].

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use poem::http::header;
use poem::web::Data;
use poem::{Endpoint, EndpointExt as _, Request};
use poem_openapi::payload::{Html, Json, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type as _;
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi, param};
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use crate::app::AppState;
use crate::domain::{EventName, FactRecord, IdempotencyKey, parse_urlencoded};
use crate::error::AppError;
use crate::storage::writer::{Appended, NewFact};

/// The JSON API's operations.
pub struct Api;

/// A stored fact.
#[derive(Debug, Object, serde::Serialize)]
struct Fact {
    /// Position in the log, and the SSE event id.
    id: i64,
    /// The SSE event type; null for a plain `message`.
    event: Option<String>,
    /// The fact as it was posted.
    fact: Value,
    /// When its group was committed (RFC 3339, UTC).
    created_at: String,
}

impl TryFrom<FactRecord> for Fact {
    type Error = AppError;

    fn try_from(record: FactRecord) -> Result<Self, AppError> {
        let fact = serde_json::from_str(&record.fact).map_err(|e| {
            AppError::Internal(anyhow::anyhow!(
                "fact {} holds invalid JSON: {e}",
                record.id
            ))
        })?;
        Ok(Self {
            id: record.id,
            event: record.event,
            fact,
            created_at: record.created_at,
        })
    }
}

/// One fact as a JSON response body, serialized straight from the struct: the body and
/// its schema are `Json<Fact>`'s, but `Json` first builds a `serde_json::Value` of the
/// whole object, cloning the fact into it, on every POST.
#[derive(Debug)]
struct FactJson(Fact);

impl Payload for FactJson {
    const CONTENT_TYPE: &'static str = <Json<Fact> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        Json::<Fact>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        Fact::schema_ref()
    }

    fn register(registry: &mut Registry) {
        Fact::register(registry);
    }
}

impl poem::IntoResponse for FactJson {
    fn into_response(self) -> poem::Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => poem::Response::builder()
                .content_type(Self::CONTENT_TYPE)
                .body(body),
            Err(err) => poem::error::ResponseError::as_response(&AppError::Internal(err.into())),
        }
    }
}

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

/// The service's state.
#[derive(Debug, Object)]
struct Status {
    /// Open SSE streams (the tutorial's field).
    clients: u64,
    /// The newest id, 0 when the log is empty.
    last_id: i64,
    /// The UUID of this log, made when its database was created.
    log_id: String,
}

/// A JSON body: any JSON value.
#[derive(Debug)]
struct JsonFact(Value);

impl Payload for JsonFact {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        Json::<Value>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        Value::schema_ref()
    }
}

impl poem_openapi::payload::ParsePayload for JsonFact {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        let bytes = <Bytes as poem::FromRequest>::from_request(request, body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(AppError::bad_request("the body is empty: send a JSON value").into());
        }
        // serde_json refuses invalid UTF-8, trailing garbage and nesting deeper than 128.
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| AppError::bad_request(format!("the body is not valid JSON: {e}")))?;
        Ok(Self(value))
    }
}

/// A form body: stored as a JSON object of its string fields (a repeated field keeps its
/// last value).
#[derive(Debug)]
struct FormFact(serde_json::Map<String, Value>);

impl Payload for FormFact {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(),
            Ok(m) if m.type_() == "application" && m.subtype() == "x-www-form-urlencoded")
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            additional_properties: Some(Box::new(String::schema_ref())),
            ..MetaSchema::new("object")
        }))
    }

    fn register(_registry: &mut Registry) {}
}

impl poem_openapi::payload::ParsePayload for FormFact {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        let bytes = <Bytes as poem::FromRequest>::from_request(request, body).await?;
        // `curl -d '{...}'` without a content type sends JSON labelled as a form; storing
        // it as a field named `{...}` would help nobody.
        if matches!(
            bytes.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        ) {
            return Err(AppError::bad_request(
                "the body looks like JSON but is labelled as a form: send it with Content-Type: application/json",
            )
            .into());
        }
        let fields = parse_urlencoded(&bytes)?
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        Ok(Self(fields))
    }
}

/// The body of a POST.
#[derive(Debug, ApiRequest)]
enum FactBody {
    /// Any JSON value.
    Json(JsonFact),
    /// A form; stored as an object of its string fields.
    Form(FormFact),
}

/// The answer to a POST.
#[derive(Debug, ApiResponse)]
enum PostResponse {
    /// The fact was appended and is on disk.
    #[oai(status = 201)]
    Created(FactJson, #[oai(header = "Location")] String),
    /// The idempotency key was seen before: nothing was appended; this is the record the
    /// first POST created.
    #[oai(status = 200)]
    AlreadyAppended(FactJson),
}

/// The answer to `GET /facts/{id}`.
#[derive(Debug, ApiResponse)]
enum GetResponse {
    /// The fact.
    #[oai(status = 200)]
    Found(FactJson),
}

#[OpenApi]
impl Api {
    /// Append a fact.
    ///
    /// The body is any JSON value (or a form, stored as an object of its fields). The
    /// answer comes once the fact is committed under `--sync`. Errors: 400 malformed body
    /// or event name, 401 missing or wrong token, 413 body too large, 415 other content
    /// types, 503 the database cannot take the write (nothing is written).
    #[oai(path = "/facts", method = "post", transform = "publish_guard")]
    async fn post_facts(
        &self,
        state: Data<&AppState>,
        /// The SSE event type: 1 to 64 characters of `A-Z a-z 0-9 _ . : -`. Without it the
        /// fact is a plain `message`.
        event: param::Query<Option<String>>,
        /// A retried POST with the same key appends nothing and answers 200 with the first
        /// record (up to 200 visible ASCII characters).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: param::Header<Option<String>>,
        body: FactBody,
    ) -> poem::Result<PostResponse> {
        // Boxed: the operation's future is moved through every layer of the router, so
        // it is kept small.
        Box::pin(append_fact(&state, event.0, idempotency_key.0, body)).await
    }

    /// Append a fact (the tutorial's path; same as `POST /facts`).
    #[oai(path = "/fact", method = "post", transform = "publish_guard")]
    async fn post_fact(
        &self,
        state: Data<&AppState>,
        /// The SSE event type.
        event: param::Query<Option<String>>,
        /// Idempotency key, as for `POST /facts`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: param::Header<Option<String>>,
        body: FactBody,
    ) -> poem::Result<PostResponse> {
        Box::pin(append_fact(&state, event.0, idempotency_key.0, body)).await
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
                    .await?;
                let more = records.len() > page_len;
                records.truncate(page_len);
                let next = records.last().map(|r| r.id).filter(|_| more);
                (records, next, None)
            }
            (None, Some(before)) => {
                let mut records = state.storage.read_before(before, limit + 1).await?;
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
            .await?
            .ok_or(AppError::NotFound(id.0))?;
        Ok(GetResponse::Found(FactJson(record.try_into()?)))
    }

    /// The live page (`GET /`). It lives here because the API is nested at the root.
    #[oai(path = "/", method = "get", hidden)]
    async fn index(&self) -> Html<&'static str> {
        Html(INDEX_HTML)
    }

    /// The service's state: open streams, newest id, and the log's identity.
    #[oai(path = "/status", method = "get")]
    async fn status(&self, state: Data<&AppState>) -> Json<Status> {
        Json(Status {
            clients: u64::try_from(state.notifier.open_streams()).unwrap_or(u64::MAX),
            last_id: state.notifier.newest_id(),
            log_id: state.log_id.to_string(),
        })
    }
}

/// What both publishing operations do.
async fn append_fact(
    state: &AppState,
    event: Option<String>,
    idempotency_key: Option<String>,
    body: FactBody,
) -> poem::Result<PostResponse> {
    let fact = match body {
        FactBody::Json(JsonFact(value)) => value,
        FactBody::Form(FormFact(fields)) => Value::Object(fields),
    };
    let new = NewFact {
        event: event.as_deref().map(EventName::parse).transpose()?,
        fact: serde_json::to_string(&fact).map_err(|e| AppError::Internal(e.into()))?,
        key: idempotency_key
            .as_deref()
            .map(|k| IdempotencyKey::parse(k.as_bytes()))
            .transpose()?,
    };
    Ok(match state.writer.append(new).await? {
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
            PostResponse::Created(FactJson(created), location)
        }
        Appended::Existing(record) => PostResponse::AlreadyAppended(FactJson(record.try_into()?)),
    })
}

/// The live page, built into the binary: no build step, nothing loaded from elsewhere.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// Guards both publishing routes before their body is read: the token (401), then the
/// body size (413). The body is read here, within the limit, whatever its framing:
/// `Content-Length` is not trusted to be present.
fn publish_guard(ep: impl Endpoint + 'static) -> impl Endpoint {
    ep.around(|ep, mut req| async move {
        let state = req
            .data::<AppState>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AppState is not installed")))?;
        if let Some(token) = &state.config.publish_token {
            // The scheme name is case-insensitive (RFC 9110); the token is not.
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
                .map_or(&b""[..], |v| &v[7..]);
            // Constant time, so the comparison does not tell an attacker how much of a
            // guess was right.
            if !bool::from(presented.ct_eq(token.as_bytes())) {
                return Err(AppError::Unauthorized.into());
            }
        }
        // One event type per fact: `?event=a&event=b` is a mistake, not a choice.
        let query = req.uri().query().unwrap_or_default();
        if query.contains("event") {
            let events = parse_urlencoded(query.as_bytes())?
                .into_iter()
                .filter(|(name, _)| name == "event")
                .count();
            if events > 1 {
                return Err(AppError::bad_request("event is given more than once").into());
            }
        }
        let limit = state.config.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(AppError::PayloadTooLarge(limit).into());
        }
        // Read with http-body's `Limited` rather than poem's `into_bytes_limit`, whose
        // future carries a 4 KiB buffer that every layer above this one copies.
        let body: BoxBody<Bytes, std::io::Error> = req.take_body().into();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    AppError::PayloadTooLarge(limit)
                } else {
                    AppError::bad_request(format!("could not read the body: {e}"))
                }
            })?
            .to_bytes();
        req.set_body(body);
        ep.call(req).await
    })
}
