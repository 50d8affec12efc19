//! `GET /events` and `GET /topics/{topic}/events`: the stream contract.
//!
//! - `handler.rs`: the request: its query, where the stream starts (`reset` when the
//!   position is not one this log issued), the subscription and the response.
//! - `stream.rs`: the stream itself: replay from the database, then live from the
//!   notifier, with the hand-off between them that loses and repeats nothing.
//!
//! Every byte of frame text comes from [`crate::domain::frame`].

mod handler;
mod stream;

pub use handler::{events, topic_events};
