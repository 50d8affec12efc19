//! `GET /events`: the stream contract.
//!
//! A stream is one `async_stream` loop with two modes:
//!
//! 1. **Replay**: read the log from the database after the cursor, a page at a time
//!    (about 128 KiB of frames that SQLite renders; never the whole log into memory),
//!    until a page comes back with fewer rows than asked for.
//! 2. **Live**: write the groups the notifier broadcasts, every group already waiting in
//!    one write, skipping ids at or below the cursor.
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
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::domain::{EventFilter, EventName, StartPosition, parse_urlencoded};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::notifier::{Batch, StreamGuard};
use crate::storage::Storage;

/// Rows per replay read at first: few, so that the first event comes quickly.
const FIRST_PAGE: i64 = 128;
/// The fewest rows per replay read once the size of the facts is known.
const MIN_PAGE: i64 = 16;
/// The most rows per replay read.
const MAX_PAGE: i64 = 8192;
/// Bytes of frames per replay read. A stream holds at most one page (plus the frame that
/// crosses this size) while its reader is slow.
const PAGE_BYTES: usize = 128 * 1024;
/// A live stream writes the groups already waiting for it together, up to about this many
/// bytes per write.
const COALESCE_BYTES: usize = 64 * 1024;

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
    opening.extend_from_slice(format!("retry: {}\n\n", state.config.retry_ms).as_bytes());
    if let Some(last_id) = reset {
        opening.extend_from_slice(
            format!("event: reset\ndata: {{\"last_id\":{last_id}}}\n\n").as_bytes(),
        );
    }

    let stream = Stream {
        storage: state.storage.clone(),
        filter: filter.map(Box::new),
        cursor,
        page_rows: FIRST_PAGE,
        keep_alive: Duration::from_secs(state.config.keep_alive_secs),
        shutdown: state.shutdown.clone(),
        metrics: Arc::clone(&state.metrics),
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
    /// Boxed: most streams have none, and every byte here is kept by every idle stream.
    filter: Option<Box<EventFilter>>,
    /// The newest id already considered (sent, or skipped by the filter).
    cursor: i64,
    /// Rows to ask for in the next replay read.
    page_rows: i64,
    keep_alive: Duration,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
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
            self.metrics.stream_sent(opening.len());
            yield opening;
            let mut replaying = true;
            // The keep-alive timer is re-armed only when it fires, not on every write: a
            // timer reset takes the runtime's timer lock, which thousands of busy streams
            // would contend for. `last_write` says whether the stream was idle meanwhile.
            let mut last_write = Instant::now();
            let keep_alive = tokio::time::sleep(self.keep_alive);
            tokio::pin!(keep_alive);
            loop {
                if replaying {
                    // Live, a stream ends when the notifier closes at shutdown (below); a
                    // long replay never waits on the notifier, so it checks for shutdown
                    // itself.
                    if self.shutdown.is_cancelled() {
                        break;
                    }
                    // Boxed: the read's future is large, and held inline it would make
                    // every idle stream carry its size for good.
                    match Box::pin(self.replay_page()).await {
                        Ok((frames, more)) => {
                            replaying = more;
                            if let Some(frames) = frames {
                                self.metrics.stream_sent(frames.len());
                                yield frames;
                                last_write = Instant::now();
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
                        self.metrics.stream_caught_up();
                        replaying = true;
                        continue;
                    }
                    Wake::KeepAlive => {
                        let due = last_write + self.keep_alive;
                        if Instant::now() < due {
                            keep_alive.as_mut().reset(due);
                            continue;
                        }
                        keep_alive.as_mut().reset(Instant::now() + self.keep_alive);
                        Bytes::from_static(b": keep-alive\n\n")
                    }
                    Wake::Group(group) => {
                        let mut frames = self.take_group(&group);
                        // Groups that are already waiting go out in the same write: one
                        // wake-up and one system call for all of them, instead of one each.
                        while frames.as_ref().is_none_or(|f| f.len() < COALESCE_BYTES) {
                            match live.try_recv() {
                                Ok(group) => {
                                    frames = join(frames, self.take_group(&group));
                                }
                                Err(TryRecvError::Lagged(_)) => {
                                    self.metrics.stream_caught_up();
                                    replaying = true;
                                    break;
                                }
                                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                            }
                        }
                        match frames {
                            Some(frames) => frames,
                            None => continue,
                        }
                    }
                };
                self.metrics.stream_sent(frames.len());
                yield frames;
                last_write = Instant::now();
            }
        }
    }

    /// This group's frames that the stream has not sent yet, and moves the cursor past it.
    fn take_group(&mut self, group: &Batch) -> Option<Bytes> {
        let frames = group.frames_after(self.cursor, self.filter.as_deref());
        self.cursor = self.cursor.max(group.last_id().unwrap_or(0));
        frames
    }

    /// Reads the next page after the cursor, rendered; says whether more may follow.
    ///
    /// Only a page with fewer rows than asked for ends the replay: a page cut at
    /// `PAGE_BYTES` says nothing about what follows, and going live too early would skip
    /// the facts committed between the cursor and the first live group.
    async fn replay_page(&mut self) -> Result<(Option<Bytes>, bool), AppError> {
        let asked = self.page_rows;
        let page = self
            .storage
            .read_frames(self.cursor, asked, self.filter.as_deref())
            .await?;
        if page.count == 0 {
            return Ok((None, false));
        }
        // Size the next page from this one's facts, so that it comes to about PAGE_BYTES.
        let average = (page.frames.len() / usize::try_from(page.count).unwrap_or(1)).max(1);
        self.page_rows = i64::try_from(PAGE_BYTES / average + 1)
            .unwrap_or(MAX_PAGE)
            .clamp(MIN_PAGE, MAX_PAGE);
        // A page of facts much larger than the last page's keeps only its first PAGE_BYTES
        // (and the frame that crosses it); the rest is read again next time. What a stream
        // holds while its reader is slow is therefore at most that.
        match cut_at(&page.frames, PAGE_BYTES) {
            Some((kept, last_id)) => {
                self.cursor = last_id;
                Ok((Some(kept), true))
            }
            None => {
                self.cursor = page.last_id;
                Ok((Some(page.frames), page.count >= asked))
            }
        }
    }
}

/// When `frames` is longer than `limit`, the frames up to and including the one that
/// crosses `limit`, and that frame's id. Every `\n\n` in rendered frames ends a frame:
/// facts are compact JSON and event names have no line breaks.
fn cut_at(frames: &Bytes, limit: usize) -> Option<(Bytes, i64)> {
    let from = limit.checked_sub(1)?;
    let end = memchr::memmem::find(frames.get(from..)?, b"\n\n")? + from + 2;
    if end >= frames.len() {
        return None;
    }
    let start = memchr::memmem::rfind(&frames[..end - 2], b"\n\n").map_or(0, |at| at + 2);
    let digits = frames[start..].strip_prefix(b"id: ")?;
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&digits[..len]).ok()?.parse().ok()?;
    Some((frames.slice(..end), id))
}

/// Two optional chunks as one.
fn join(first: Option<Bytes>, second: Option<Bytes>) -> Option<Bytes> {
    match (first, second) {
        (Some(first), Some(second)) => {
            let mut joined = BytesMut::with_capacity(first.len() + second.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&second);
            Some(joined.freeze())
        }
        (first, second) => first.or(second),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_cut_at_a_frame_boundary() {
        let frames = Bytes::from_static(
            b"id: 7\ndata: 1\n\nid: 8\nevent: a\ndata: 22\n\nid: 9\ndata: 3\n\n",
        );
        // The limit falls inside the second frame: keep it whole, and say its id.
        let (kept, last) = cut_at(&frames, 20).expect("cut");
        assert_eq!(
            &kept[..],
            b"id: 7\ndata: 1\n\nid: 8\nevent: a\ndata: 22\n\n"
        );
        assert_eq!(last, 8);
        // The limit falls inside the first frame.
        assert_eq!(cut_at(&frames, 1).map(|(_, id)| id), Some(7));
        // Within the limit, or crossing it only with the last frame: nothing to cut.
        assert!(cut_at(&frames, frames.len()).is_none());
        assert!(cut_at(&frames, frames.len() - 3).is_none());
        assert!(cut_at(&frames, 0).is_none());
    }

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
