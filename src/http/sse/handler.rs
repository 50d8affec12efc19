//! The request side of `GET /events`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt as _;
use poem::http::{HeaderValue, header};
use poem::web::Data;
use poem::{Body, Request, Response, handler};

use super::stream::Stream;
use crate::domain::{EventFilter, EventName, StartPosition, frame, parse_urlencoded};
use crate::http::error::AppError;
use crate::http::state::AppState;

/// What the query string of `GET /events` may say.
#[derive(Debug, Default)]
struct EventsQuery {
    last_event_id: Option<String>,
    after: Option<String>,
    tail: Option<String>,
    events: Vec<EventName>,
}

impl EventsQuery {
    fn parse(query: &str) -> Result<Self, AppError> {
        let mut parsed = Self::default();
        for (name, value) in parse_urlencoded(query.as_bytes())? {
            let slot = match name.as_str() {
                "lastEventId" => &mut parsed.last_event_id,
                "after" => &mut parsed.after,
                "tail" => &mut parsed.tail,
                "event" => {
                    let event = EventName::parse(&value)?;
                    if !parsed.events.contains(&event) {
                        parsed.events.push(event);
                    }
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
}

/// `GET /events`: the log as Server-Sent Events, from the requested start, then live.
#[handler]
pub async fn events(req: &Request, state: Data<&AppState>) -> Result<Response, AppError> {
    let query = EventsQuery::parse(req.uri().query().unwrap_or_default())?;
    let start = StartPosition::resolve(
        req.headers()
            .get("last-event-id")
            .map(HeaderValue::as_bytes),
        query.last_event_id.as_deref(),
        query.after.as_deref(),
        query.tail.as_deref(),
    )?;
    let filter = EventFilter::new(query.events)?;

    let guard = state
        .notifier
        .open_stream()
        .ok_or(AppError::TooManySubscribers)?;
    // Subscribe before the first read of the database: see `stream.rs`.
    let live = state.notifier.subscribe().ok_or(AppError::ShuttingDown)?;

    let (cursor, reset) = match start {
        StartPosition::Beginning => (0, None),
        StartPosition::Tail(n) => (
            state
                .storage
                .position_before_tail(n, filter.as_ref())
                .await?,
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
        opening.extend_from_slice(&frame::reset(last_id));
    }

    let stream = Stream::new(
        state.storage.clone(),
        filter,
        cursor,
        Duration::from_secs(state.config.keep_alive_secs),
        state.shutdown.clone(),
        Arc::clone(&state.metrics),
    );
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
    }
}
