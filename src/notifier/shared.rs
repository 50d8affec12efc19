//! The state the fan-out (`fanout.rs`) and its subscriptions (`subscription.rs`) share:
//! the buffer of recent groups, who listens, and what left the buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::group::Group;
use super::listeners::Listeners;

/// The fan-out's state: written by publishers, read by streams, behind one lock.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The last `BUFFERED_GROUPS` groups, oldest first.
    pub(super) groups: VecDeque<Arc<Group>>,
    /// The sequence number of `groups[0]`; every group published gets the next one.
    pub(super) first_seq: u64,
    /// For each topic, the highest sequence number of a group of it that left the buffer:
    /// a stream that has not read that far has missed a fact it wanted.
    pub(super) dropped: HashMap<Arc<str>, u64>,
    pub(super) listeners: Listeners,
    /// One past the sequence number of the newest group published after a gap: a stream
    /// that has not read past it must catch up from the database (see
    /// `Publish::publish_after_gap`).
    pub(super) gap_end: u64,
    /// Shutdown: streams read what is buffered, then end.
    pub(super) closed: bool,
}

impl Shared {
    /// One past the newest group's sequence number.
    pub(super) fn end_seq(&self) -> u64 {
        self.first_seq + self.groups.len() as u64
    }
}
