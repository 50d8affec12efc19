//! A fact on its way into the log, and a fact stored in it.

use bytes::BytesMut;

use super::event::EventName;
use super::frame::{self, Format};
use super::key::IdempotencyKey;
use super::topic::TopicName;

/// A fact to append, already validated: what the HTTP layer hands the writer.
#[derive(Debug)]
pub struct NewFact {
    /// The topic it belongs to.
    pub topic: TopicName,
    /// Its SSE event type, if any.
    pub event: Option<EventName>,
    /// The fact as compact JSON text: no line break, so it fits one `data:` line.
    pub fact: String,
    /// The publisher's idempotency key, if any; scoped to the topic.
    pub key: Option<IdempotencyKey>,
}

/// A stored fact, as the JSON API returns it and as the streams render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRecord {
    /// Position in the log; also the SSE event id.
    pub id: i64,
    /// The topic it belongs to.
    pub topic: String,
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

    /// Appends this fact's SSE frame in `format` to `buf` (see [`frame::fact`]).
    pub fn render_frame(&self, buf: &mut BytesMut, format: Format) {
        frame::fact(
            buf,
            format,
            &frame::Fields {
                id: self.id,
                topic: &self.topic,
                event: self.event.as_deref(),
                created_at: &self.created_at,
                fact: &self.fact,
            },
        );
    }

    /// Whether this record holds what `new` would append: the same topic, event type and
    /// fact (as compact JSON text). A retry with the same idempotency key must match.
    pub fn matches(&self, new: &NewFact) -> bool {
        self.topic == new.topic.as_str()
            && self.event.as_deref() == new.event.as_ref().map(EventName::as_str)
            && self.fact == new.fact
    }
}
