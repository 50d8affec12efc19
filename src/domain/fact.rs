//! A fact on its way into the log, and a fact stored in it.

use bytes::BytesMut;

use super::event::EventName;
use super::frame;
use super::key::IdempotencyKey;

/// A fact to append, already validated: what the HTTP layer hands the writer.
#[derive(Debug)]
pub struct NewFact {
    /// Its SSE event type, if any.
    pub event: Option<EventName>,
    /// The fact as compact JSON text: no line break, so it fits one `data:` line.
    pub fact: String,
    /// The publisher's idempotency key, if any.
    pub key: Option<IdempotencyKey>,
}

/// A stored fact, as the JSON API returns it and as the streams render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRecord {
    /// Position in the log; also the SSE event id.
    pub id: i64,
    /// The SSE event type; `None` for a fact posted without one.
    pub event: Option<String>,
    /// The fact as compact JSON text.
    pub fact: String,
    /// RFC 3339 UTC time its group was committed.
    pub created_at: String,
}

impl FactRecord {
    /// The SSE event type as a client sees it: [`EventName::DEFAULT`] when it has none.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or(EventName::DEFAULT)
    }

    /// Appends this fact's SSE frame to `buf` (see [`frame::fact`]).
    pub fn render_frame(&self, buf: &mut BytesMut) {
        frame::fact(buf, self.id, self.event.as_deref(), &self.fact);
    }
}
