//! The fan-out itself: the buffer of recent groups, who is woken for what, the newest id,
//! and the open-stream count. A stream's side of it is `subscription.rs`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::count::{StreamCount, StreamGuard};
use super::group::Group;
use super::shared::Shared;
use super::subscription::Subscription;
use crate::domain::{FactRecord, TopicSet};
use crate::storage::Publish;

/// How many committed groups the fan-out keeps for streams that are a little behind. The
/// memory it holds is bounded by this many groups' frames (a group is at most the writer's
/// limit).
pub const BUFFERED_GROUPS: usize = 1024;

/// The fan-out, the newest id and the open-stream count. Shared as `Arc<Notifier>`.
#[derive(Debug)]
pub struct Notifier {
    /// Written by publishers, read by streams. Publishing holds it for the check against
    /// `newest_id` and the push, so that they are one step for each publisher.
    /// Shared with every subscription, which reads it.
    shared: Arc<RwLock<Shared>>,
    newest_id: AtomicI64,
    streams: Arc<StreamCount>,
}

impl Notifier {
    /// A notifier for a log whose newest id is `newest_id`, allowing `max_streams` open
    /// streams.
    pub fn new(newest_id: i64, max_streams: usize) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::default(),
            newest_id: AtomicI64::new(newest_id),
            streams: StreamCount::new(max_streams),
        })
    }

    fn publish_from(&self, records: &[FactRecord], how: How) -> bool {
        // Nothing inside can panic halfway through an update, so a poisoned lock guards
        // nothing broken.
        let mut shared = self.shared.write().unwrap_or_else(PoisonError::into_inner);
        let newest = self.newest_id.load(Ordering::Acquire);
        let fresh = &records[records.partition_point(|r| r.id <= newest)..];
        let Some(first) = fresh.first() else {
            return true;
        };
        if how == How::Next && first.id != newest + 1 {
            return false;
        }
        let group = Arc::new(Group::render(fresh));
        let Some(last) = group.last_id() else {
            return true;
        };
        // Raise the newest id before the group is seen: a stream never sends an id that
        // `/status` or the reset check would call "beyond the newest".
        self.newest_id.store(last, Ordering::Release);
        if shared.closed {
            return true;
        }
        if shared.groups.len() == BUFFERED_GROUPS {
            if let Some(dropped) = shared.groups.pop_front() {
                let seq = shared.first_seq;
                shared.first_seq += 1;
                for topic in dropped.topics() {
                    shared.dropped.insert(Arc::clone(topic), seq);
                }
            }
        }
        if how == How::AfterGap {
            // Every stream, whatever its topics: any of them may have missed a fact.
            shared.listeners.wake_all();
        } else {
            shared.listeners.wake(group.topics());
        }
        shared.groups.push_back(group);
        if how == How::AfterGap {
            shared.gap_end = shared.end_seq();
        }
        true
    }

    /// Starts listening for the groups of `topics` (of every topic when `None`); `None`
    /// once the notifier is closed. Subscribe before reading the backlog, so that nothing
    /// committed in between is missed.
    pub fn subscribe(self: &Arc<Self>, topics: Option<TopicSet>) -> Option<Subscription> {
        let mut shared = self.shared.write().unwrap_or_else(PoisonError::into_inner);
        if shared.closed {
            return None;
        }
        let (id, waker) = shared.listeners.add(topics.as_ref());
        Some(Subscription::new(
            Arc::clone(&self.shared),
            waker,
            id,
            shared.end_seq(),
            topics,
        ))
    }

    /// Ends the fan-out, at shutdown: every stream receives what is already buffered, then
    /// learns that the notifier is closed and ends. Streams end this way rather than by
    /// each watching a shutdown signal, which would be polled on every one of their
    /// wake-ups.
    pub fn close(&self) {
        let mut shared = self.shared.write().unwrap_or_else(PoisonError::into_inner);
        shared.closed = true;
        shared.listeners.wake_all();
    }

    /// The newest id published, 0 for an empty log.
    pub fn newest_id(&self) -> i64 {
        self.newest_id.load(Ordering::Acquire)
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.streams.open()
    }

    /// Counts a new stream, or refuses it when `--max-subscribers` are open. The stream
    /// is uncounted when the returned guard drops.
    pub fn open_stream(&self) -> Option<StreamGuard> {
        self.streams.try_open()
    }
}

/// How [`Notifier::publish_from`] publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Whatever came before is published or never will be.
    InOrder,
    /// Only if the facts directly follow the newest published.
    Next,
    /// Facts before these were deleted unpublished.
    AfterGap,
}

impl Publish for Notifier {
    fn publish(&self, records: &[FactRecord]) {
        self.publish_from(records, How::InOrder);
    }

    fn publish_next(&self, records: &[FactRecord]) -> bool {
        self.publish_from(records, How::Next)
    }

    fn publish_after_gap(&self, records: &[FactRecord]) {
        self.publish_from(records, How::AfterGap);
    }

    fn newest_id(&self) -> i64 {
        Notifier::newest_id(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::subscription::Received;
    use super::*;
    use crate::domain::TopicName;

    fn record(id: i64, topic: &str) -> FactRecord {
        FactRecord {
            id,
            topic: topic.to_owned(),
            event: None,
            fact: id.to_string(),
            created_at: String::new(),
        }
    }

    fn topics(names: &[&str]) -> Option<TopicSet> {
        let names = names
            .iter()
            .map(|n| TopicName::parse(n).expect("valid"))
            .collect();
        TopicSet::new(names).expect("valid")
    }

    fn ids(received: Option<Received>) -> Vec<i64> {
        match received {
            Some(Received::Group(group)) => group
                .frames_after(0, None, None, crate::domain::frame::Format::Fact)
                .map(|frames| {
                    String::from_utf8_lossy(&frames)
                        .lines()
                        .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            other => panic!("expected a group, got {other:?}"),
        }
    }

    #[test]
    fn publishing_never_repeats_or_skips_an_id() {
        let notifier = Notifier::new(2, 10);
        let mut live = notifier.subscribe(None).expect("open");
        // A gap before the group: refused.
        assert!(!notifier.publish_next(&[record(4, "a")]));
        assert_eq!(notifier.newest_id(), 2);
        // What was published already is dropped; the rest goes out.
        notifier.publish(&[record(2, "a"), record(3, "a")]);
        assert!(notifier.publish_next(&[record(3, "a"), record(4, "a")]));
        assert!(notifier.publish_next(&[record(4, "a")]));
        assert_eq!(ids(live.try_recv()), [3]);
        assert_eq!(ids(live.try_recv()), [4]);
        assert!(live.try_recv().is_none());
        assert_eq!(notifier.newest_id(), 4);
        // Closed: what was sent is still received, then the end; no new subscriber.
        notifier.publish(&[record(5, "a")]);
        notifier.close();
        notifier.publish(&[record(6, "a")]);
        assert_eq!(notifier.newest_id(), 6);
        assert_eq!(ids(live.try_recv()), [5]);
        assert!(matches!(live.try_recv(), Some(Received::Closed)));
        assert!(notifier.subscribe(None).is_none());
    }

    #[test]
    fn a_stream_receives_only_groups_of_its_topics() {
        let notifier = Notifier::new(0, 10);
        let mut a = notifier.subscribe(topics(&["a"])).expect("open");
        let mut ab = notifier.subscribe(topics(&["a", "b"])).expect("open");
        let mut all = notifier.subscribe(None).expect("open");
        notifier.publish(&[record(1, "b")]);
        notifier.publish(&[record(2, "a"), record(3, "c")]);
        notifier.publish(&[record(4, "c")]);
        assert_eq!(ids(a.try_recv()), [2, 3]);
        assert!(a.try_recv().is_none());
        assert_eq!(ids(ab.try_recv()), [1]);
        assert_eq!(ids(ab.try_recv()), [2, 3]);
        assert!(ab.try_recv().is_none());
        for expected in [[1].as_slice(), &[2, 3], &[4]] {
            assert_eq!(ids(all.try_recv()), expected);
        }
        drop(a);
        drop(ab);
        let shared = notifier.shared.read().expect("not poisoned");
        assert_eq!(
            shared.listeners.topic_listeners(),
            0,
            "dropped streams are unregistered"
        );
    }

    #[test]
    fn only_a_missed_group_of_its_own_topics_makes_a_stream_lag() {
        let notifier = Notifier::new(0, 10);
        let mut quiet = notifier.subscribe(topics(&["quiet"])).expect("open");
        let mut busy = notifier.subscribe(topics(&["busy"])).expect("open");
        let groups = i64::try_from(BUFFERED_GROUPS).expect("small") + 10;
        for id in 1..=groups {
            notifier.publish(&[record(id, "busy")]);
        }
        // The quiet stream missed nothing it wanted: it reads on.
        assert!(quiet.try_recv().is_none());
        notifier.publish(&[record(groups + 1, "quiet")]);
        assert_eq!(ids(quiet.try_recv()), [groups + 1]);
        // The busy one did: it catches up from the database, then reads on.
        assert!(matches!(busy.try_recv(), Some(Received::Lagged)));
        assert!(busy.try_recv().is_none());
        notifier.publish(&[record(groups + 2, "busy")]);
        assert_eq!(ids(busy.try_recv()), [groups + 2]);
    }

    #[test]
    fn a_gap_sends_every_stream_behind_it_to_the_database() {
        let notifier = Notifier::new(0, 10);
        let mut a = notifier.subscribe(topics(&["a"])).expect("open");
        let mut all = notifier.subscribe(None).expect("open");
        notifier.publish(&[record(1, "a")]);
        notifier.publish_after_gap(&[record(5, "b")]);
        assert_eq!(notifier.newest_id(), 5);
        // Whether or not the gap held facts of their topics, both catch up first.
        assert!(matches!(a.try_recv(), Some(Received::Lagged)));
        assert!(matches!(all.try_recv(), Some(Received::Lagged)));
        assert!(all.try_recv().is_none());
        // A stream opened after the gap, and those past it, read on as usual.
        let mut late = notifier.subscribe(None).expect("open");
        notifier.publish(&[record(6, "a")]);
        assert_eq!(ids(late.try_recv()), [6]);
        assert_eq!(ids(a.try_recv()), [6]);
    }
}
