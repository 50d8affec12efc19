//! Who is woken for what: the streams of every topic, and the streams of each topic.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::task::AtomicWaker;

use crate::domain::TopicSet;

/// The wakers of the open streams, by the topics they follow.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The streams of every topic.
    firehose: HashMap<u64, Arc<AtomicWaker>>,
    /// The streams of each topic (a stream of several topics is in each).
    by_topic: HashMap<Arc<str>, HashMap<u64, Arc<AtomicWaker>>>,
    next: u64,
}

impl Listeners {
    /// Registers a stream of `topics` (every topic when `None`); returns its key and the
    /// waker a publish wakes.
    pub fn add(&mut self, topics: Option<&TopicSet>) -> (u64, Arc<AtomicWaker>) {
        let id = self.next;
        self.next += 1;
        let waker = Arc::new(AtomicWaker::new());
        match topics {
            None => {
                self.firehose.insert(id, Arc::clone(&waker));
            }
            Some(set) => {
                for topic in set.names() {
                    self.by_topic
                        .entry(Arc::from(topic))
                        .or_default()
                        .insert(id, Arc::clone(&waker));
                }
            }
        }
        (id, waker)
    }

    /// Unregisters the stream `add` returned `id` for.
    pub fn remove(&mut self, id: u64, topics: Option<&TopicSet>) {
        match topics {
            None => {
                self.firehose.remove(&id);
            }
            Some(set) => {
                for topic in set.names() {
                    if let Some(listeners) = self.by_topic.get_mut(topic) {
                        listeners.remove(&id);
                        if listeners.is_empty() {
                            self.by_topic.remove(topic);
                        }
                    }
                }
            }
        }
    }

    /// Wakes the streams a group of `topics` concerns: those of every topic, and those of
    /// any of these. A stream of several of them is woken once in effect (a woken waker
    /// holds nothing until its stream waits again).
    pub fn wake(&self, topics: &[Arc<str>]) {
        for waker in self.firehose.values() {
            waker.wake();
        }
        for topic in topics {
            for waker in self
                .by_topic
                .get(topic)
                .into_iter()
                .flat_map(HashMap::values)
            {
                waker.wake();
            }
        }
    }

    /// Wakes every stream.
    pub fn wake_all(&self) {
        let topics = self.by_topic.values().flat_map(HashMap::values);
        for waker in self.firehose.values().chain(topics) {
            waker.wake();
        }
    }

    /// How many streams of single topics are registered, counted once per topic.
    #[cfg(test)]
    pub fn topic_listeners(&self) -> usize {
        self.by_topic.values().map(HashMap::len).sum()
    }
}
