//! PostgreSQL: one log shared by any number of factlog instances, and by other programs
//! that publish with the SQL function `factlog_publish`. Its checked queries are in the
//! `factlog-postgres` crate (for the reason given there), its schema and SQL functions in
//! `migrations/postgres/`.
//!
//! Three things make several instances behave as one:
//!
//! - **Ids follow commit order.** Every append, from any instance or program, goes through
//!   the SQL function `factlog_append`, which takes the counter row's lock first and holds
//!   it until commit. So no reader anywhere can see id 11 while id 10 is still to commit,
//!   and "the facts after the last id I have" is always a complete answer. (A sequence
//!   would not do: its values are taken before commit, and transactions commit in any
//!   order.)
//! - **Every instance follows the shared log** ([`Follower`], in `follower.rs`): it reads
//!   the facts after its streams' newest id and publishes them, in id order. It reads when
//!   `factlog_append`'s `NOTIFY` says another commit happened, when this instance's writer
//!   asks it to, after its listening connection was lost and made again (notifications
//!   sent meanwhile are gone, the log is not), and once a second in any case, in case a
//!   notification is lost without the connection noticing.
//! - **The writer publishes its own groups only when they come next** ([`Appender`]): a
//!   group this instance committed goes to its streams at once if it directly follows what
//!   they already have; if anything was committed elsewhere in between, publishing it
//!   first would make streams skip that, so the follower reads both in order instead.
//!
//! The streams' hand-off argument (`http/sse/stream.rs`) holds unchanged: what is
//! published is committed, in id order, with no gap.

mod appender;
mod classify;
mod connect;
mod follower;
mod reader;

pub use appender::Appender;
pub use connect::{migrate, open};
pub use follower::Follower;
pub use reader::Reader;
