//! The values that cross factlog's boundary, parsed once at the edge so that holding one
//! proves it is valid: topics, topic patterns and grants, event names and filters,
//! idempotency keys, positions in the log, what the log keeps, facts to append and stored
//! facts, and (in
//! [`frame`]) the text of every SSE frame.
//!
//! The bottom layer: nothing here imports another module of this crate, touches the
//! network or the database. Each parser fails with [`Invalid`], which says in words for a
//! person what was wrong.

pub mod frame;

mod event;
mod fact;
mod form;
mod grant;
mod invalid;
mod key;
mod position;
mod retention;
mod topic;

pub use event::{EventFilter, EventName};
pub use fact::{FactRecord, NewFact};
pub use form::parse_urlencoded;
pub use grant::{Grants, Patterns};
pub use invalid::Invalid;
pub use key::IdempotencyKey;
pub use position::{StartPosition, parse_position};
pub use retention::Retention;
pub use topic::{TopicName, TopicSet};
