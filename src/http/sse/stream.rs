//! One event stream, written as one `async_stream` loop with two modes:
//!
//! 1. **Replay**: read the log from the database after the cursor, a page at a time
//!    (about [`PAGE_BYTES`] of frames; never the whole log into memory), until a page
//!    says nothing more follows.
//! 2. **Live**: write the groups the notifier broadcasts, every group already waiting in
//!    one write, skipping ids at or below the cursor.
//!
//! The hand-off between them is where such services lose or repeat events, so the order
//! of operations matters:
//!
//! - The stream **subscribes to the notifier before it reads anything** from the database
//!   (the handler does, before building it). Every group committed after the subscription
//!   is in the channel; every group committed before it is visible to the replay's reads
//!   (the writer publishes only after its commit returns). So there is no gap, only an
//!   overlap.
//! - The overlap is removed by the **cursor**: the id of the newest fact already
//!   considered. A live group's facts at or below it are skipped, so nothing is sent
//!   twice, and ids on a stream strictly increase.
//! - A stream that falls more than the notifier's buffer behind (a slow reader, a burst)
//!   is told `Lagged` by the channel. It then **goes back to replay** from its cursor,
//!   with the subscription still held, so the same argument applies again. A slow reader
//!   is never dropped and never skips a fact.
//!
//! With retention, facts may be deleted before a stream reads them. Each replay page is
//! read together with the log's highest deleted id; a cursor below it gets a `reset`
//! (reason `expired`) and the stream goes on from where the log now starts: never a
//! silent gap. A live stream needs no check: it reads groups from memory.
//!
//! A stream opened with a token that expires ends when it does: it sends `token-expired`
//! with its cursor, so the client can resume exactly after a new token is fetched.
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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::frame::{self, Format};
use crate::domain::{EventFilter, TopicSet};
use crate::http::state::AppState;
use crate::metrics::Metrics;
use crate::notifier::{Group, Received, StreamGuard, Subscription};
use crate::storage::{Selection, Storage, StorageError};

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

/// One stream's state, moved into its body.
pub struct Stream {
    storage: Storage,
    /// Boxed: most streams have none, and every byte here is kept by every idle stream.
    filter: Option<Box<EventFilter>>,
    format: Format,
    /// The newest id already considered (sent, or skipped by the filter).
    cursor: i64,
    /// Rows to ask for in the next replay read.
    page_rows: i64,
    keep_alive: Duration,
    /// When the stream's token stops being valid; `None` without a token that expires.
    expires: Option<Instant>,
    /// Ends a replaying stream at shutdown (a live one ends when the notifier closes).
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

/// What woke a live stream.
enum Woken {
    Received(Received),
    KeepAlive,
}

impl Stream {
    /// A stream of the facts after `cursor` that pass `filter`, in `format` (of the topics
    /// its subscription follows). `expires` is when the reader's token stops being valid,
    /// if it does.
    pub fn new(
        state: &AppState,
        filter: Option<EventFilter>,
        format: Format,
        cursor: i64,
        expires: Option<Instant>,
    ) -> Self {
        Self {
            storage: state.storage.clone(),
            filter: filter.map(Box::new),
            format,
            cursor,
            page_rows: FIRST_PAGE,
            keep_alive: Duration::from_secs(state.config.keep_alive_secs),
            expires,
            shutdown: state.shutdown.clone(),
            metrics: Arc::clone(&state.metrics),
        }
    }

    /// The stream's body: `opening`, then the replay, then live groups from `live` (which
    /// must have been subscribed before anything was read, and whose topics are the
    /// stream's). `guard` counts the stream until the body is dropped.
    pub fn run(
        mut self,
        opening: Bytes,
        mut live: Subscription,
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
            // The same timer wakes an idle stream when its token expires: no timer of its
            // own, and nothing checked every second.
            let keep_alive = tokio::time::sleep_until(self.wake_at(last_write + self.keep_alive));
            tokio::pin!(keep_alive);
            loop {
                // At the top of every turn, so that a busy stream, whose timer may never
                // win the `select!` below, ends on time too; what it sent is all before
                // its cursor.
                if self.expires.is_some_and(|at| Instant::now() >= at) {
                    let frame = frame::token_expired(self.cursor);
                    self.metrics.stream_sent(frame.len());
                    yield frame;
                    break;
                }
                if replaying {
                    // Live, a stream ends when the notifier closes at shutdown (below); a
                    // long replay never waits on the notifier, so it checks for shutdown
                    // itself.
                    if self.shutdown.is_cancelled() {
                        break;
                    }
                    // Boxed: the read's future is large, and held inline it would make
                    // every idle stream carry its size for good.
                    match Box::pin(self.replay_page(live.topics())).await {
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
                let woken = tokio::select! {
                    biased;
                    received = live.recv() => Woken::Received(received),
                    () = &mut keep_alive => Woken::KeepAlive,
                };
                let frames = match woken {
                    Woken::Received(Received::Closed) => break,
                    Woken::Received(Received::Lagged) => {
                        // Fell behind the shared buffer: catch up from the database. The
                        // subscription is kept, so the hand-off argument holds again.
                        self.metrics.stream_caught_up();
                        replaying = true;
                        continue;
                    }
                    Woken::KeepAlive => {
                        let due = last_write + self.keep_alive;
                        if Instant::now() < due {
                            keep_alive.as_mut().reset(self.wake_at(due));
                            continue;
                        }
                        keep_alive
                            .as_mut()
                            .reset(self.wake_at(Instant::now() + self.keep_alive));
                        Bytes::from_static(frame::KEEP_ALIVE)
                    }
                    Woken::Received(Received::Group(group)) => {
                        let mut frames = self.take_group(&group, live.topics());
                        // Groups that are already waiting go out in the same write: one
                        // wake-up and one system call for all of them, instead of one each.
                        while frames.as_ref().is_none_or(|f| f.len() < COALESCE_BYTES) {
                            match live.try_recv() {
                                Some(Received::Group(group)) => {
                                    frames = join(frames, self.take_group(&group, live.topics()));
                                }
                                Some(Received::Lagged) => {
                                    self.metrics.stream_caught_up();
                                    replaying = true;
                                    break;
                                }
                                Some(Received::Closed) | None => break,
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

    /// When the timer should next wake the stream: for a keep-alive due at `due`, or
    /// when its token expires, whichever comes first.
    fn wake_at(&self, due: Instant) -> Instant {
        self.expires.map_or(due, |at| at.min(due))
    }

    /// This group's frames that the stream has not sent yet, and moves the cursor past it.
    fn take_group(&mut self, group: &Group, topics: Option<&TopicSet>) -> Option<Bytes> {
        let frames = group.frames_after(self.cursor, topics, self.filter.as_deref(), self.format);
        self.cursor = self.cursor.max(group.last_id().unwrap_or(0));
        frames
    }

    /// Reads the next page after the cursor, rendered; says whether more may follow.
    ///
    /// Only a page that says so ends the replay: going live too early would skip the
    /// facts committed between the cursor and the first live group.
    async fn replay_page(
        &mut self,
        topics: Option<&TopicSet>,
    ) -> Result<(Option<Bytes>, bool), StorageError> {
        let selection = Selection {
            topics,
            events: self.filter.as_deref(),
        };
        let page = self
            .storage
            .read_frames(
                self.cursor,
                self.page_rows,
                &selection,
                self.format,
                PAGE_BYTES,
            )
            .await?;
        // Facts after the cursor were deleted since it was set (a start position older
        // than the kept log, a slow stream between two pages, one catching up after
        // `Lagged`): say so, and go on from where the log now starts. The page was read
        // in the same snapshot as the bounds, so it holds nothing at or below the highest
        // deleted id: its facts are the kept log's, after the reset.
        let reset = page.bounds.expired(self.cursor).then(|| {
            tracing::debug!(
                cursor = self.cursor,
                deleted_through = page.bounds.deleted_through,
                "stream position older than the kept log; sending reset"
            );
            self.metrics.stream_expired();
            self.cursor = page.bounds.deleted_through;
            frame::reset_expired(page.bounds.first_id, page.bounds.last_id)
        });
        if page.rendered == 0 {
            return Ok((reset, false));
        }
        // Size the next page from this one's facts, so that it comes to about PAGE_BYTES.
        let average = (page.frames.len() / page.rendered).max(1);
        self.page_rows = i64::try_from(PAGE_BYTES / average + 1)
            .unwrap_or(MAX_PAGE)
            .clamp(MIN_PAGE, MAX_PAGE);
        self.cursor = page.last_id;
        Ok((join(reset, Some(page.frames)), page.more))
    }
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
