//! The one owner of the text factlog writes on event streams.
//!
//! A fact reaches a client either live, in a group the notifier renders once for every
//! stream, or replayed, in a page storage reads for one stream. Both render here, so a
//! fact's frame is the same bytes whichever way it arrives (a test compares them), and so
//! are the stream's own lines: `retry:`, `reset` and the keep-alive comment.

use bytes::{BufMut as _, Bytes, BytesMut};

/// The comment an idle stream gets every `--keep-alive-secs`. No blank line follows it:
/// a blank line ends an event, and clients such as fetch-event-source and httpx-sse hand
/// the application an empty event for each one; the WHATWG parser ignores it either way.
/// Frames are written whole, so a comment never lands inside an event.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n";

/// What a fact's `data:` line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The fact itself, as the tutorial's clients expect.
    Fact,
    /// The whole record: `{"id", "topic", "event", "fact", "created_at"}`, for clients of
    /// several topics that must know where each fact came from, and when.
    Record,
}

/// A stored fact's parts, as a frame shows them.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// Its id.
    pub id: i64,
    /// Its topic.
    pub topic: &'a str,
    /// Its event type, if it has one.
    pub event: Option<&'a str>,
    /// When its group was committed (RFC 3339, UTC).
    pub created_at: &'a str,
    /// The fact, as compact JSON text.
    pub fact: &'a str,
}

/// Appends the frame of one fact to `buf`: `id:`, then `event:` when it has a type, then
/// `data:` and a blank line. The fact is compact JSON and the other fields are of safe
/// character sets (names, digits, an RFC 3339 time), so `data:` never holds a line break
/// and every `\n\n` in rendered frames ends a frame.
pub fn fact(buf: &mut BytesMut, format: Format, fields: &Fields<'_>) {
    let mut digits = itoa::Buffer::new();
    let id = digits.format(fields.id);
    buf.reserve(fields.fact.len() + 40);
    buf.put_slice(b"id: ");
    buf.put_slice(id.as_bytes());
    if let Some(event) = fields.event {
        buf.put_slice(b"\nevent: ");
        buf.put_slice(event.as_bytes());
    }
    buf.put_slice(b"\ndata: ");
    match format {
        Format::Fact => buf.put_slice(fields.fact.as_bytes()),
        Format::Record => {
            // The names and the time need no escaping: their character sets have no `"`
            // or `\`.
            buf.reserve(fields.topic.len() + fields.created_at.len() + 80);
            buf.put_slice(b"{\"id\":");
            buf.put_slice(id.as_bytes());
            buf.put_slice(b",\"topic\":\"");
            buf.put_slice(fields.topic.as_bytes());
            match fields.event {
                Some(event) => {
                    buf.put_slice(b"\",\"event\":\"");
                    buf.put_slice(event.as_bytes());
                    buf.put_slice(b"\",\"fact\":");
                }
                None => buf.put_slice(b"\",\"event\":null,\"fact\":"),
            }
            buf.put_slice(fields.fact.as_bytes());
            buf.put_slice(b",\"created_at\":\"");
            buf.put_slice(fields.created_at.as_bytes());
            buf.put_slice(b"\"}");
        }
    }
    buf.put_slice(b"\n\n");
}

/// What every stream starts with: the reconnection delay a client should use. A WHATWG
/// parser applies the field as soon as it reads the line; no blank line follows it, for the
/// reason the keep-alive comment has none.
pub fn retry(milliseconds: u64) -> Bytes {
    Bytes::from(format!("retry: {milliseconds}\n"))
}

/// The event that tells a client its position is not one this log issued (the database
/// was replaced or wiped): clear what it shows and rebuild from what follows, which is the
/// log from its start. `last_id` is the newest id of the log.
pub fn reset_unknown(last_id: i64) -> Bytes {
    Bytes::from(format!(
        "event: reset\ndata: {{\"reason\":\"unknown\",\"last_id\":{last_id}}}\n\n"
    ))
}

/// The event that tells a client that facts after its position were deleted (retention):
/// clear what it shows and rebuild from what follows, the kept log from `first_id` (null
/// when nothing is kept). `last_id` is the newest id of the log.
pub fn reset_expired(first_id: Option<i64>, last_id: i64) -> Bytes {
    let first_id = first_id.map_or_else(|| "null".to_owned(), |id| id.to_string());
    Bytes::from(format!(
        "event: reset\ndata: {{\"reason\":\"expired\",\"first_id\":{first_id},\"last_id\":{last_id}}}\n\n"
    ))
}

/// The event that ends a stream whose token has expired: the client fetches a new token
/// and resumes after `last_id`, the newest id the stream had reached.
pub fn token_expired(last_id: i64) -> Bytes {
    Bytes::from(format!(
        "event: token-expired\ndata: {{\"last_id\":{last_id}}}\n\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mut fields = Fields {
            id: 7,
            topic: "orders.eu",
            event: None,
            created_at: "2026-11-30T12:00:00.000Z",
            fact: r#"{"a":"b\nc"}"#,
        };
        let mut buf = BytesMut::new();
        fact(&mut buf, Format::Fact, &fields);
        assert_eq!(&buf[..], b"id: 7\ndata: {\"a\":\"b\\nc\"}\n\n");
        buf.clear();
        fields.event = Some("x.y");
        fact(&mut buf, Format::Fact, &fields);
        assert_eq!(&buf[..], b"id: 7\nevent: x.y\ndata: {\"a\":\"b\\nc\"}\n\n");
        assert_eq!(&retry(2000)[..], b"retry: 2000\n");
        assert_eq!(KEEP_ALIVE, b": keep-alive\n");
        assert_eq!(
            &reset_unknown(9)[..],
            b"event: reset\ndata: {\"reason\":\"unknown\",\"last_id\":9}\n\n"
        );
        assert_eq!(
            &reset_expired(Some(5), 9)[..],
            b"event: reset\ndata: {\"reason\":\"expired\",\"first_id\":5,\"last_id\":9}\n\n"
        );
        assert_eq!(
            &reset_expired(None, 9)[..],
            b"event: reset\ndata: {\"reason\":\"expired\",\"first_id\":null,\"last_id\":9}\n\n"
        );
        assert_eq!(
            &token_expired(9)[..],
            b"event: token-expired\ndata: {\"last_id\":9}\n\n"
        );
    }

    #[test]
    fn records_are_json_objects_of_the_whole_record() {
        let mut fields = Fields {
            id: 12,
            topic: "chat.lobby",
            event: None,
            created_at: "2026-11-30T12:00:00.000Z",
            fact: r#"{"text":"hi, \"you\""}"#,
        };
        for event in [None, Some("said")] {
            fields.event = event;
            let mut buf = BytesMut::new();
            fact(&mut buf, Format::Record, &fields);
            let text = std::str::from_utf8(&buf).expect("UTF-8");
            let data = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("a data line");
            let record: serde_json::Value = serde_json::from_str(data).expect("JSON");
            assert_eq!(
                record,
                serde_json::json!({
                    "id": 12, "topic": "chat.lobby", "event": event,
                    "fact": {"text": "hi, \"you\""}, "created_at": "2026-11-30T12:00:00.000Z"
                })
            );
            assert!(text.ends_with("\n\n") && text.matches("\n\n").count() == 1);
        }
    }
}
