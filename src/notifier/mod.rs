//! The in-process fan-out of committed facts to open streams.
//!
//! After each group commit the writer hands the new records to the notifier (through
//! [`Publish`](crate::storage::Publish)), which renders every fact's SSE frame exactly
//! once, into one buffer per group ([`Group`], `group.rs`), and keeps the group for the
//! streams. A stream that writes the whole group sends one zero-copy slice of that buffer:
//! no per-subscriber rendering, no per-subscriber copy.
//!
//! It routes by topic (`fanout.rs`, `listeners.rs`, `subscription.rs`): a stream is woken only by groups that
//! hold a fact of its topics (a stream of every topic, by every group), so a fact on one
//! topic costs the streams of the others nothing.
//!
//! It keeps only the last [`BUFFERED_GROUPS`] groups. A stream that falls further behind,
//! with facts it wanted among the groups that left, is told so ([`Received::Lagged`]) and
//! catches up from the database (see `http/sse/stream.rs`): being slow never costs a
//! reader a fact, and never costs the server more memory than this buffer. Publishing
//! never waits for a reader.
//!
//! The notifier is the one place that decides what this instance's streams see, in what
//! order: it keeps the newest id published and never publishes an id at or below it, so
//! every stream's live feed strictly increases even when two sources publish (with
//! PostgreSQL, the writer and the follower; see `storage/postgres/`).
//!
//! It also keeps the count of open streams, with the `--max-subscribers` limit.

mod count;
mod fanout;
mod group;
mod listeners;
mod shared;
mod subscription;

pub use count::StreamGuard;
pub use fanout::{BUFFERED_GROUPS, Notifier};
pub use group::Group;
pub use subscription::{Received, Subscription};
