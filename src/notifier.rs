//! The in-process fan-out of committed facts to open streams.
//!
//! After each group commit the writer hands the new records to the notifier (through
//! [`Publish`]), which renders every fact's SSE frame exactly once, into one buffer per
//! group, and broadcasts that [`Group`] to every stream. A stream that writes the whole
//! group sends one zero-copy slice of that buffer: no per-subscriber rendering, no
//! per-subscriber copy.
//!
//! The broadcast keeps only the last [`BUFFERED_GROUPS`] groups. A stream that falls
//! further behind is told so by the channel (`Lagged`) and catches up from the database
//! (see `http/sse/stream.rs`): being slow never costs a reader a fact, and never costs the
//! server more memory than this buffer. Publishing never waits for a reader.
//!
//! The notifier is the one place that decides what this instance's streams see, in what
//! order: it keeps the newest id published and never publishes an id at or below it, so
//! every stream's live feed strictly increases even when two sources publish (with
//! PostgreSQL, the writer and the follower; see `storage/postgres/`).
//!
//! It also keeps the count of open streams, with the `--max-subscribers` limit.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;

use crate::domain::{EventFilter, FactRecord};
use crate::storage::Publish;

/// How many committed groups the fan-out keeps for streams that are a little behind. The
/// memory it holds is bounded by this many groups' frames (a group is at most the writer's
/// limit).
pub const BUFFERED_GROUPS: usize = 1024;

/// One committed group's facts, rendered.
#[derive(Debug)]
pub struct Group {
    /// Every fact's frame, back to back, in id order.
    frames: Bytes,
    /// Each fact's id, type, and where its frame ends in `frames`.
    facts: Vec<Rendered>,
}

/// Where one fact of a [`Group`] is.
#[derive(Debug)]
struct Rendered {
    id: i64,
    event: Option<Box<str>>,
    end: usize,
}

impl Group {
    /// Renders these records, which must be in increasing id order.
    pub fn render(records: &[FactRecord]) -> Self {
        let mut buf = BytesMut::new();
        let facts = records
            .iter()
            .map(|record| {
                record.render_frame(&mut buf);
                Rendered {
                    id: record.id,
                    event: record.event.as_deref().map(Box::from),
                    end: buf.len(),
                }
            })
            .collect();
        Self {
            frames: buf.freeze(),
            facts,
        }
    }

    /// The newest id in this group.
    pub fn last_id(&self) -> Option<i64> {
        self.facts.last().map(|f| f.id)
    }

    /// The frames of the facts after `cursor` that pass `filter`, ready to write; `None`
    /// when there are none. Without a filter this is a slice of the shared buffer.
    pub fn frames_after(&self, cursor: i64, filter: Option<&EventFilter>) -> Option<Bytes> {
        let first = self.facts.partition_point(|f| f.id <= cursor);
        if first == self.facts.len() {
            return None;
        }
        let start_of = |i: usize| if i == 0 { 0 } else { self.facts[i - 1].end };
        let Some(filter) = filter else {
            return Some(self.frames.slice(start_of(first)..));
        };
        let mut out = BytesMut::new();
        for (i, fact) in self.facts.iter().enumerate().skip(first) {
            if filter.matches(fact.event.as_deref()) {
                out.extend_from_slice(&self.frames[start_of(i)..fact.end]);
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }
}

/// The fan-out, the newest id and the open-stream count. Shared as `Arc<Notifier>`.
#[derive(Debug)]
pub struct Notifier {
    /// The fan-out; `None` once closed for shutdown. The lock is held while publishing, so
    /// that the check against `newest_id` and the broadcast are one step for each
    /// publisher.
    sender: Mutex<Option<broadcast::Sender<Arc<Group>>>>,
    newest_id: AtomicI64,
    open_streams: AtomicUsize,
    max_streams: usize,
}

impl Notifier {
    /// A notifier for a log whose newest id is `newest_id`, allowing `max_streams` open
    /// streams.
    pub fn new(newest_id: i64, max_streams: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BUFFERED_GROUPS);
        Arc::new(Self {
            sender: Mutex::new(Some(sender)),
            newest_id: AtomicI64::new(newest_id),
            open_streams: AtomicUsize::new(0),
            max_streams,
        })
    }

    fn publish_from(&self, records: &[FactRecord], only_next: bool) -> bool {
        // Nothing inside can panic halfway through an update, so a poisoned lock guards
        // nothing broken.
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = self.newest_id.load(Ordering::Acquire);
        let fresh = &records[records.partition_point(|r| r.id <= newest)..];
        let Some(first) = fresh.first() else {
            return true;
        };
        if only_next && first.id != newest + 1 {
            return false;
        }
        let group = Group::render(fresh);
        if let Some(last) = group.last_id() {
            // Raise the newest id before the broadcast: a stream never sends an id that
            // `/status` or the reset check would call "beyond the newest".
            self.newest_id.store(last, Ordering::Release);
            // An error only means no stream is listening right now; `None`, that the
            // server is stopping and the streams have ended.
            if let Some(sender) = sender.as_ref() {
                let _ = sender.send(Arc::new(group));
            }
        }
        true
    }

    /// Starts listening; `None` once the notifier is closed. Subscribe before reading the
    /// backlog, so that nothing committed in between is missed.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Group>>> {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        sender.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Ends the fan-out, at shutdown: every stream receives what is already buffered, then
    /// learns that the channel is closed and ends. Streams end this way rather than by each
    /// watching a shutdown signal, which would be polled on every one of their wake-ups.
    pub fn close(&self) {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// The newest id published, 0 for an empty log.
    pub fn newest_id(&self) -> i64 {
        self.newest_id.load(Ordering::Acquire)
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// Counts a new stream, or refuses it when `--max-subscribers` are open. The stream
    /// is uncounted when the returned guard drops.
    pub fn open_stream(self: &Arc<Self>) -> Option<StreamGuard> {
        let counted = self
            .open_streams
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max_streams).then_some(n + 1)
            });
        counted.ok().map(|_| StreamGuard(Arc::clone(self)))
    }
}

impl Publish for Notifier {
    fn publish(&self, records: &[FactRecord]) {
        self.publish_from(records, false);
    }

    fn publish_next(&self, records: &[FactRecord]) -> bool {
        self.publish_from(records, true)
    }

    fn newest_id(&self) -> i64 {
        Notifier::newest_id(self)
    }
}

/// One open stream, counted in `/status` until dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<Notifier>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventName;

    fn record(id: i64, event: Option<&str>) -> FactRecord {
        FactRecord {
            id,
            event: event.map(str::to_owned),
            fact: id.to_string(),
            created_at: String::new(),
        }
    }

    #[test]
    fn frames_after_cursor_and_filter() {
        let group = Group::render(&[record(3, None), record(4, Some("a")), record(5, None)]);
        let all = group.frames_after(0, None);
        assert_eq!(
            all.as_deref(),
            Some(&b"id: 3\ndata: 3\n\nid: 4\nevent: a\ndata: 4\n\nid: 5\ndata: 5\n\n"[..])
        );
        assert_eq!(
            group.frames_after(4, None).as_deref(),
            Some(&b"id: 5\ndata: 5\n\n"[..])
        );
        assert_eq!(group.frames_after(5, None), None);
        let only_a = EventFilter::new(vec![EventName::parse("a").expect("valid")])
            .expect("one name")
            .expect("a filter");
        assert_eq!(
            group.frames_after(0, Some(&only_a)).as_deref(),
            Some(&b"id: 4\nevent: a\ndata: 4\n\n"[..])
        );
        assert_eq!(group.frames_after(4, Some(&only_a)), None);
    }

    #[test]
    fn publishing_never_repeats_or_skips_an_id() {
        let notifier = Notifier::new(2, 10);
        let mut live = notifier.subscribe().expect("open");
        // A gap before the group: refused.
        assert!(!notifier.publish_next(&[record(4, None)]));
        assert_eq!(notifier.newest_id(), 2);
        // What was published already is dropped; the rest goes out.
        notifier.publish(&[record(2, None), record(3, None)]);
        assert!(notifier.publish_next(&[record(3, None), record(4, None)]));
        assert!(notifier.publish_next(&[record(4, None)]));
        let ids = |group: Arc<Group>| group.facts.iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(live.try_recv().expect("first group")), [3]);
        assert_eq!(ids(live.try_recv().expect("second group")), [4]);
        assert!(live.try_recv().is_err());
        assert_eq!(notifier.newest_id(), 4);
        // Closed: what was sent is still received, then the end; no new subscriber.
        notifier.publish(&[record(5, None)]);
        notifier.close();
        notifier.publish(&[record(6, None)]);
        assert_eq!(ids(live.try_recv().expect("last group")), [5]);
        assert!(matches!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert!(notifier.subscribe().is_none());
    }

    #[test]
    fn stream_limit() {
        let notifier = Notifier::new(0, 1);
        let first = notifier.open_stream();
        assert!(first.is_some());
        assert!(notifier.open_stream().is_none());
        drop(first);
        assert_eq!(notifier.open_streams(), 0);
        assert!(notifier.open_stream().is_some());
    }
}
