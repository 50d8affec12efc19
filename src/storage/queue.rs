//! The writer's queue, and its rule for closing a group ([`gather`]).
//!
//! Requests put their fact in a bounded queue (a full queue makes publishers wait) and the
//! writer's thread takes it out in groups. When it waits for a group to fill, it parks:
//! the runtime's timers count in milliseconds, a thread's park in microseconds. It is
//! woken once, by the append that brings the queue to what it waits for, rather than by
//! every append, which would cost a system call per fact.

use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::sync::oneshot;

use super::model::{Appended, StorageError};
use crate::domain::NewFact;

/// The most facts committed in one group.
pub const MAX_GROUP_FACTS: usize = 4096;
/// A group is closed once its facts reach this many bytes of JSON (one fact may exceed it).
pub const MAX_GROUP_BYTES: usize = 4 << 20;
/// Appends waiting for the writer; a full queue makes publishers wait (backpressure).
pub const QUEUE_DEPTH: usize = 8192;
/// The longest a group waits for facts on their way when several publishers are at it
/// (see [`gather`]): a fraction of what the commit it saves costs.
pub const GATHER_WINDOW: Duration = Duration::from_micros(500);

/// Where one request's answer goes.
pub type Reply = oneshot::Sender<Result<Appended, StorageError>>;

/// One request's fact and where its answer goes.
pub struct Job {
    /// The fact.
    pub fact: NewFact,
    /// Where its answer goes.
    pub reply: Reply,
}

/// How a writer waiting for its group to fill (see [`gather`]) is woken: once, by the
/// append that brings the queue to what it waits for, rather than by every append.
#[derive(Debug)]
pub struct Waiting {
    thread: std::thread::Thread,
    /// How many queued facts the writer waits for; 0 when it is not waiting.
    wanted: AtomicUsize,
}

impl Waiting {
    /// The wake-up of the writer's `thread`.
    pub fn new(thread: std::thread::Thread) -> Self {
        Self {
            thread,
            wanted: AtomicUsize::new(0),
        }
    }

    /// After a send: wakes the writer if the queue now holds what it waits for.
    pub fn sent(&self, queued: usize) {
        // Pairs with the fence in `wait`: either the writer sees this fact in the queue
        // before it parks, or this sees what it wants and unparks it (an unpark before the
        // park makes the park return at once).
        fence(Ordering::SeqCst);
        let wanted = self.wanted.load(Ordering::Relaxed);
        if wanted != 0 && queued >= wanted {
            self.thread.unpark();
        }
    }

    /// Parks the writer until `wanted` facts are queued or `left` has passed.
    pub fn wait(&self, jobs: &mpsc::Receiver<Job>, wanted: usize, left: Duration) {
        self.wanted.store(wanted, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if jobs.len() < wanted {
            std::thread::park_timeout(left);
        }
        self.wanted.store(0, Ordering::Relaxed);
    }
}

/// A group being formed.
pub struct Group {
    /// The group's jobs, in queue order.
    pub jobs: Vec<Job>,
    bytes: usize,
    /// The job that would have taken the group past [`MAX_GROUP_BYTES`]: it starts the next.
    pub held_over: Option<Job>,
    /// Every handle is gone: nothing more will come.
    pub closed: bool,
}

impl Group {
    /// Takes what is queued now, up to the group's limits.
    fn take_queued(&mut self, jobs: &mut mpsc::Receiver<Job>) {
        while !self.full() {
            match jobs.try_recv() {
                Ok(job) => {
                    if self.bytes + job.fact.fact.len() > MAX_GROUP_BYTES {
                        self.held_over = Some(job);
                    } else {
                        self.bytes += job.fact.fact.len();
                        self.jobs.push(job);
                    }
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.held_over.is_some()
            || self.jobs.len() >= MAX_GROUP_FACTS
            || self.bytes >= MAX_GROUP_BYTES
    }
}

/// Forms the next group, starting with `first`. The rule for closing it:
///
/// - It always takes everything already queued, up to [`MAX_GROUP_FACTS`] and
///   [`MAX_GROUP_BYTES`].
/// - After a group of one fact (`previous` is 1: a lone publisher) it closes as soon as
///   the queue is empty: nobody waits.
/// - After a group of `previous` > 1 facts, several publishers are at it, and their next
///   facts are on their way (the answers to the last group have just been sent, or with
///   the syncer are about to be). The group closes once it holds `previous` facts, or
///   once `window` has passed since it was started, whichever comes first: waiting that
///   long lets one commit, and one fsync, cover them, instead of a group of the few that
///   happened to be queued and another for the rest. (The first fact after a burst may
///   wait the window once.)
pub fn gather(
    jobs: &mut mpsc::Receiver<Job>,
    waiting: &Waiting,
    first: Job,
    previous: usize,
    window: Duration,
) -> Group {
    let mut group = Group {
        bytes: first.fact.fact.len(),
        jobs: vec![first],
        held_over: None,
        closed: false,
    };
    group.take_queued(jobs);
    if previous > 1 {
        let deadline = Instant::now() + window;
        while group.jobs.len() < previous && !group.full() && !group.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            waiting.wait(jobs, previous - group.jobs.len(), left);
            group.take_queued(jobs);
        }
    }
    group
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The writer's queue, as the writer makes it, and its wake-up for the current thread.
    fn queue() -> (mpsc::Sender<Job>, mpsc::Receiver<Job>, Arc<Waiting>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let waiting = Arc::new(Waiting::new(std::thread::current()));
        (tx, rx, waiting)
    }

    fn job(bytes: usize) -> Job {
        Job {
            fact: NewFact {
                topic: crate::domain::TopicName::default_topic(),
                event: None,
                fact: "x".repeat(bytes),
                key: None,
            },
            reply: oneshot::channel().0,
        }
    }

    /// Long enough that a test would hang, not pass, if a group waited for it.
    const FOREVER: Duration = Duration::from_secs(3600);

    #[test]
    fn a_lone_publisher_never_waits() {
        let (tx, mut rx, waiting) = queue();
        tx.try_send(job(1)).expect("queued");
        let group = gather(&mut rx, &waiting, job(1), 1, FOREVER);
        assert_eq!(group.jobs.len(), 2, "everything queued is taken");
    }

    #[test]
    fn after_a_larger_group_it_waits_for_as_many_facts() {
        let (tx, mut rx, waiting) = queue();
        tx.try_send(job(1)).expect("queued");
        let sender_waiting = Arc::clone(&waiting);
        let sender = std::thread::spawn(move || {
            for _ in 0..3 {
                tx.blocking_send(job(1)).expect("queued");
                sender_waiting.sent(tx.max_capacity() - tx.capacity());
            }
            tx
        });
        // Four facts came before: the group waits for the ones on their way, woken by the
        // send that brings the queue to them.
        let group = gather(&mut rx, &waiting, job(1), 4, FOREVER);
        assert!(group.jobs.len() >= 4);
        drop(sender.join());
    }

    #[test]
    fn the_window_bounds_the_wait() {
        let (_tx, mut rx, waiting) = queue();
        let group = gather(&mut rx, &waiting, job(1), 64, Duration::from_millis(1));
        assert_eq!(group.jobs.len(), 1);
        assert!(!group.closed);
    }

    #[test]
    fn a_closed_queue_ends_the_wait() {
        let (tx, mut rx, waiting) = queue();
        tx.try_send(job(1)).expect("queued");
        drop(tx);
        let group = gather(&mut rx, &waiting, job(1), 64, FOREVER);
        assert_eq!(group.jobs.len(), 2);
        assert!(group.closed);
    }

    #[test]
    fn limits_close_a_group_and_hold_the_rest_over() {
        let (tx, mut rx, waiting) = queue();
        tx.try_send(job(MAX_GROUP_BYTES / 2)).expect("queued");
        tx.try_send(job(MAX_GROUP_BYTES / 2 + 1)).expect("queued");
        tx.try_send(job(1)).expect("queued");
        let group = gather(&mut rx, &waiting, job(1), 64, FOREVER);
        assert_eq!(group.jobs.len(), 2);
        let held = group.held_over.expect("the fact that did not fit");
        assert_eq!(held.fact.fact.len(), MAX_GROUP_BYTES / 2 + 1);
        // The fact after it is still queued, for the next group.
        assert!(rx.try_recv().is_ok());
    }
}
