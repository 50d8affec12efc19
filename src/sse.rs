//! `GET /events`: the stream contract.
//!
//! A stream is one `async_stream` loop with two modes:
//!
//! 1. **Replay**: read the log from the database after the cursor, a page at a time
//!    (never the whole log into memory), until a page comes back short.
//! 2. **Live**: write each group the notifier broadcasts, skipping ids at or below the
//!    cursor.
//!
//! The hand-off between them is where such services lose or repeat events, so the order
//! of operations matters:
//!
//! - The stream **subscribes to the notifier before it reads anything** from the database.
//!   Every group committed after the subscription is in the channel; every group
//!   committed before it is visible to the replay's reads (the writer publishes only
//!   after its commit returns). So there is no gap, only an overlap.
//! - The overlap is removed by the **cursor**: the id of the newest fact already
//!   considered. A live group's facts at or below it are skipped, so nothing is sent
//!   twice, and ids on a stream strictly increase.
//! - A stream that falls more than the notifier's buffer behind (a slow reader, a burst)
//!   is told `Lagged` by the channel. It then **goes back to replay** from its cursor,
//!   with the subscription still held, so the same argument applies again. A slow reader
//!   is never dropped and never skips a fact.
//!
//! The stream is pulled by the connection: nothing is read or rendered for a reader until
//! its socket takes the previous chunk, so a stalled reader holds at most one page of
//! frames, plus its place in the shared broadcast buffer.
//!
//! Frames are pre-rendered bytes written with `Body::from_bytes_stream`, so the text on the
//! wire is exactly ours (poem's `SSE` type writes a bare `:` for keep-alive and renders
//! every event per stream). Each chunk is handed to the connection as soon as it exists:
//! no compression or buffering middleware sits on this route.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use poem::http::{HeaderValue, header};
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::domain::{EventFilter, EventName, StartPosition, parse_urlencoded};
use crate::error::AppError;
use crate::notifier::{Batch, StreamGuard};
use crate::storage::Storage;

/// Rows per replay read at first: small, so the first event comes quickly.
const FIRST_PAGE: i64 = 128;
/// Rows per replay read once a stream is catching up a long way. Bounds what one stream
/// holds in memory (with facts at most `--max-body-bytes` each).
const MAX_PAGE: i64 = 1024;

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
    // Subscribe before the first read of the database: see the module comment.
    let live = state.notifier.subscribe();

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
    opening.extend_from_slice(format!("retry: {}\n\n", state.config.retry_ms).as_bytes());
    if let Some(last_id) = reset {
        opening.extend_from_slice(
            format!("event: reset\ndata: {{\"last_id\":{last_id}}}\n\n").as_bytes(),
        );
    }

    let stream = Stream {
        storage: state.storage.clone(),
        filter,
        cursor,
        keep_alive: Duration::from_secs(state.config.keep_alive_secs),
        shutdown: state.shutdown.clone(),
    };
    let body = stream.run(opening.freeze(), live, guard);

    Ok(Response::builder()
        .content_type("text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(body.map(Ok::<_, std::io::Error>))))
}

/// One stream's state, moved into its body.
struct Stream {
    storage: Storage,
    filter: Option<EventFilter>,
    /// The newest id already considered (sent, or skipped by the filter).
    cursor: i64,
    keep_alive: Duration,
    shutdown: CancellationToken,
}

/// What woke a live stream.
enum Wake {
    Group(Arc<Batch>),
    Lagged,
    KeepAlive,
    Stop,
}

impl Stream {
    fn run(
        mut self,
        opening: Bytes,
        mut live: broadcast::Receiver<Arc<Batch>>,
        guard: StreamGuard,
    ) -> impl futures_util::Stream<Item = Bytes> + Send {
        async_stream::stream! {
            // Held for the life of the body: the stream is counted until the connection
            // drops it.
            let _guard = guard;
            yield opening;
            let mut replaying = true;
            let mut page = FIRST_PAGE;
            let keep_alive = tokio::time::sleep(self.keep_alive);
            tokio::pin!(keep_alive);
            loop {
                // A long replay never waits on the notifier, so it checks for shutdown itself.
                if self.shutdown.is_cancelled() {
                    break;
                }
                if replaying {
                    match self.replay_page(page).await {
                        Ok((frames, more)) => {
                            replaying = more;
                            page = (page * 2).min(MAX_PAGE);
                            if let Some(frames) = frames {
                                yield frames;
                                keep_alive.as_mut().reset(Instant::now() + self.keep_alive);
                            }
                        }
                        Err(err) => {
                            // End the stream: the client reconnects with its Last-Event-ID
                            // and loses nothing.
                            tracing::warn!(cause = %err, "replay failed; ending the stream");
                            break;
                        }
                    }
                    continue;
                }
                let wake = tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => Wake::Stop,
                    received = live.recv() => match received {
                        Ok(group) => Wake::Group(group),
                        Err(RecvError::Lagged(_)) => Wake::Lagged,
                        Err(RecvError::Closed) => Wake::Stop,
                    },
                    () = &mut keep_alive => Wake::KeepAlive,
                };
                let frames = match wake {
                    Wake::Stop => break,
                    Wake::Lagged => {
                        // Fell behind the shared buffer: catch up from the database. The
                        // subscription is kept, so the hand-off argument holds again.
                        replaying = true;
                        page = MAX_PAGE;
                        continue;
                    }
                    Wake::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
                    Wake::Group(group) => {
                        let frames = group.frames_after(self.cursor, self.filter.as_ref());
                        self.cursor = self.cursor.max(group.last_id().unwrap_or(0));
                        match frames {
                            Some(frames) => frames,
                            None => continue,
                        }
                    }
                };
                yield frames;
                keep_alive.as_mut().reset(Instant::now() + self.keep_alive);
            }
        }
    }

    /// Reads and renders the next page after the cursor; says whether more may follow.
    async fn replay_page(&mut self, limit: i64) -> Result<(Option<Bytes>, bool), AppError> {
        let records = self
            .storage
            .read_after(self.cursor, limit, self.filter.as_ref())
            .await?;
        let more = i64::try_from(records.len()).unwrap_or(i64::MAX) >= limit;
        let Some(last) = records.last() else {
            return Ok((None, false));
        };
        self.cursor = last.id;
        let mut frames = BytesMut::new();
        for record in &records {
            record.render_frame(&mut frames);
        }
        Ok((Some(frames.freeze()), more))
    }
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
