//! A stream's place in the fan-out (`fanout.rs`): which groups it has read, and what it
//! is handed next.

use std::future::poll_fn;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use super::group::Group;
use super::shared::Shared;
use crate::domain::TopicSet;

/// What [`Subscription::recv`] hands a stream.
#[derive(Debug)]
pub enum Received {
    /// The next group that holds a fact the stream wants.
    Group(Arc<Group>),
    /// Groups with facts the stream wants left the buffer before it read them: it must
    /// catch up from the database. Reading on gives the groups published from now on.
    Lagged,
    /// The notifier closed at shutdown and the stream has read everything buffered.
    Closed,
}

/// A stream's place in the fan-out: it is woken by groups that hold a fact of its topics
/// (by every group, when it follows every topic). Dropping it unregisters the stream.
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<RwLock<Shared>>,
    waker: Arc<AtomicWaker>,
    id: u64,
    /// The sequence number of the next group to read.
    next_seq: u64,
    /// Boxed: most streams follow every topic, and every byte here is kept by every idle
    /// stream.
    topics: Option<Box<TopicSet>>,
}

impl Subscription {
    /// A subscription registered as `id` with `waker`, reading from the group numbered
    /// `next_seq` on.
    pub(super) fn new(
        shared: Arc<RwLock<Shared>>,
        waker: Arc<AtomicWaker>,
        id: u64,
        next_seq: u64,
        topics: Option<TopicSet>,
    ) -> Self {
        Self {
            shared,
            waker,
            id,
            next_seq,
            topics: topics.map(Box::new),
        }
    }
}

impl Subscription {
    /// The topics this subscription follows; `None` for every topic.
    pub fn topics(&self) -> Option<&TopicSet> {
        self.topics.as_deref()
    }

    /// Waits for the next group with a fact of the subscription's topics.
    pub async fn recv(&mut self) -> Received {
        poll_fn(|cx| {
            // Registered before looking, so that a group published in between wakes us.
            self.waker.register(cx.waker());
            self.try_recv().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    /// The next group with a fact of the subscription's topics, if one is already there.
    pub fn try_recv(&mut self) -> Option<Received> {
        let shared = self.shared.read().unwrap_or_else(PoisonError::into_inner);
        let end = shared.end_seq();
        if self.next_seq < shared.gap_end {
            // Facts were deleted before this instance could publish them: only the
            // database can tell the stream whether it wanted any.
            self.next_seq = end;
            return Some(Received::Lagged);
        }
        if self.next_seq < shared.first_seq {
            // Groups left the buffer unread. A topic stream has missed something only if
            // one of them held a fact of its topics; if not, it reads on from the oldest.
            let missed = match self.topics.as_deref() {
                None => true,
                Some(set) => set.names().any(|topic| {
                    shared
                        .dropped
                        .get(topic)
                        .is_some_and(|&seq| seq >= self.next_seq)
                }),
            };
            if missed {
                self.next_seq = end;
                return Some(Received::Lagged);
            }
            self.next_seq = shared.first_seq;
        }
        while self.next_seq < end {
            let index = usize::try_from(self.next_seq - shared.first_seq).unwrap_or(usize::MAX);
            self.next_seq += 1;
            if let Some(group) = shared.groups.get(index) {
                if group.touches(self.topics.as_deref()) {
                    return Some(Received::Group(Arc::clone(group)));
                }
            }
        }
        shared.closed.then_some(Received::Closed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut shared = self.shared.write().unwrap_or_else(PoisonError::into_inner);
        shared.listeners.remove(self.id, self.topics.as_deref());
    }
}
