//! The count of open streams, with the `--max-subscribers` limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many streams are open, and how many may be.
#[derive(Debug)]
pub struct StreamCount {
    open: AtomicUsize,
    max: usize,
}

impl StreamCount {
    /// A count allowing `max` open streams.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a new stream, or refuses it when the limit is reached. The stream is
    /// uncounted when the returned guard drops.
    pub fn try_open(self: &Arc<Self>) -> Option<StreamGuard> {
        let counted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            });
        counted.ok().map(|_| StreamGuard(Arc::clone(self)))
    }
}

/// One open stream, counted in `/status` until dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<StreamCount>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_limit() {
        let count = StreamCount::new(1);
        let first = count.try_open();
        assert!(first.is_some());
        assert!(count.try_open().is_none());
        drop(first);
        assert_eq!(count.open(), 0);
        assert!(count.try_open().is_some());
    }
}
