//! The request side of `GET /events` and `GET /topics/{topic}/events`.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use futures_util::StreamExt as _;
use poem::http::{HeaderValue, header};
use poem::{Body, Request, Response};
use tokio::time::Instant;

use super::stream::Stream;
use crate::domain::frame::{self, Format};
use crate::domain::{EventFilter, EventName, StartPosition, TopicName, TopicSet, parse_urlencoded};
use crate::http::access::ReadAccess;
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::storage::Selection;

/// What the query string of a stream may say.
#[derive(Debug, Default)]
struct EventsQuery {
    last_event_id: Option<String>,
    after: Option<String>,
    tail: Option<String>,
    format: Option<String>,
    events: Vec<EventName>,
    topics: Vec<TopicName>,
}

impl EventsQuery {
    fn parse(query: &str) -> Result<Self, AppError> {
        let mut parsed = Self::default();
        for (name, value) in parse_urlencoded(query.as_bytes())? {
            let slot = match name.as_str() {
                "lastEventId" => &mut parsed.last_event_id,
                "after" => &mut parsed.after,
                "tail" => &mut parsed.tail,
                "format" => &mut parsed.format,
                "event" => {
                    let event = EventName::parse(&value)?;
                    if !parsed.events.contains(&event) {
                        parsed.events.push(event);
                    }
                    continue;
                }
                "topic" => {
                    parsed.topics.push(TopicName::parse(&value)?);
                    continue;
                }
                // Unknown parameters (cache busters, tracking) are ignored.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(AppError::bad_request(format!(
                    "{name} is given more than once"
                )));
            }
        }
        Ok(parsed)
    }

    /// `?format=`: the fact itself (the default), or the whole record.
    fn format(&self) -> Result<Format, AppError> {
        match self.format.as_deref() {
            None | Some("fact") => Ok(Format::Fact),
            Some("record") => Ok(Format::Record),
            Some(_) => Err(AppError::bad_request("format must be fact or record")),
        }
    }
}

/// `GET /events`: the log as Server-Sent Events (the facts of `?topic=`, or of every
/// topic), from the requested start, then live, for the caller `access`. The whole query
/// is read here, at once: a repeated position is refused, unknown names are ignored.
///
/// # Errors
/// `400` for a bad query, `401`/`403` when the caller may not read the topics, `503` over
/// `--max-subscribers` or while shutting down.
pub async fn events(
    req: &Request,
    state: &AppState,
    access: ReadAccess,
) -> Result<Response, AppError> {
    let query = EventsQuery::parse(req.uri().query().unwrap_or_default())?;
    let topics = TopicSet::new(query.topics.clone())?;
    open(req, state, access, query, topics).await
}

/// `GET /topics/{topic}/events`: `GET /events?topic={topic}`.
///
/// # Errors
/// As [`events`]; `400` also when the query names topics too.
pub async fn topic_events(
    req: &Request,
    topic: &str,
    state: &AppState,
    access: ReadAccess,
) -> Result<Response, AppError> {
    let query = EventsQuery::parse(req.uri().query().unwrap_or_default())?;
    if !query.topics.is_empty() {
        return Err(AppError::bad_request(
            "give the topics either in the path or as ?topic=, not both",
        ));
    }
    let topics = TopicSet::new(vec![TopicName::parse(topic)?])?;
    open(req, state, access, query, topics).await
}

/// Opens a stream of `topics` (every topic when `None`).
async fn open(
    req: &Request,
    state: &AppState,
    access: ReadAccess,
    query: EventsQuery,
    topics: Option<TopicSet>,
) -> Result<Response, AppError> {
    access.require(topics.as_ref())?;
    let caller = access.caller();
    if let Some(sub) = caller.sub() {
        tracing::debug!(sub = ?sub, "stream opened");
    }
    // The stream ends when the token does (see `stream.rs`): its deadline, on the
    // runtime's clock.
    let expires = caller.expires.map(|at| {
        Instant::now()
            + at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
    });
    let start = StartPosition::resolve(
        req.headers()
            .get("last-event-id")
            .map(HeaderValue::as_bytes),
        query.last_event_id.as_deref(),
        query.after.as_deref(),
        query.tail.as_deref(),
    )?;
    let format = query.format()?;
    let filter = EventFilter::new(query.events)?;

    let guard = state
        .notifier
        .open_stream()
        .ok_or(AppError::TooManySubscribers)?;
    // Subscribe before the first read of the database: see `stream.rs`.
    let live = state
        .notifier
        .subscribe(topics)
        .ok_or(AppError::ShuttingDown)?;
    let selection = Selection {
        topics: live.topics(),
        events: filter.as_ref(),
    };

    let (cursor, reset) = match start {
        StartPosition::Beginning => (0, None),
        StartPosition::Tail(n) => (
            state.storage.position_before_tail(n, &selection).await?,
            None,
        ),
        StartPosition::After(id) => {
            // An id this log never issued: the database was replaced or wiped while the
            // client was away. The notifier's newest id can trail a commit by a moment,
            // so ask the database before calling it a reset.
            if id > state.notifier.newest_id() && id > state.storage.newest_id().await? {
                let last_id = state.notifier.newest_id();
                tracing::info!(
                    requested = id,
                    last_id,
                    "stream position beyond the log; sending reset"
                );
                (0, Some(last_id))
            } else {
                (id, None)
            }
        }
    };

    let mut opening = BytesMut::new();
    opening.extend_from_slice(&frame::retry(state.config.retry_ms));
    if let Some(last_id) = reset {
        opening.extend_from_slice(&frame::reset_unknown(last_id));
    }

    let stream = Stream::new(state, filter, format, cursor, expires);
    let body = stream.run(opening.freeze(), live, guard);

    Ok(Response::builder()
        .content_type("text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(body.map(Ok::<_, std::io::Error>))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = EventsQuery::parse("lastEventId=5&event=a&event=b&event=a&x=1").expect("valid");
        assert_eq!(q.last_event_id.as_deref(), Some("5"));
        assert_eq!(q.events.len(), 2);
        assert!(EventsQuery::parse("tail=1&tail=2").is_err());
        assert!(EventsQuery::parse("event=a%0Ab").is_err());
        assert!(EventsQuery::parse("event=").is_err());
        let q = EventsQuery::parse("topic=a&topic=b.c&format=record").expect("valid");
        assert_eq!(q.topics.len(), 2);
        assert_eq!(q.format().ok(), Some(Format::Record));
        assert!(EventsQuery::parse("topic=a%2Fb").is_err());
        assert!(
            EventsQuery::parse("format=xml")
                .expect("parses")
                .format()
                .is_err()
        );
    }
}
