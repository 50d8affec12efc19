//! The one owner of the text factlog writes on event streams.
//!
//! A fact reaches a client either live, in a group the notifier renders once for every
//! stream, or replayed, in a page storage reads for one stream. Both render here, so a
//! fact's frame is the same bytes whichever way it arrives (a test compares them), and so
//! are the stream's own lines: `retry:`, `reset` and the keep-alive comment.

use bytes::{BufMut as _, Bytes, BytesMut};

/// The comment an idle stream gets every `--keep-alive-secs`.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Appends the frame of one fact to `buf`: `id:`, then `event:` when it has a type, then
/// `data:` and a blank line. The fact is compact JSON, so it never holds a line break and
/// always fits one `data:` line; every `\n\n` in rendered frames ends a frame.
pub fn fact(buf: &mut BytesMut, id: i64, event: Option<&str>, fact: &str) {
    let mut digits = itoa::Buffer::new();
    buf.reserve(fact.len() + 40);
    buf.put_slice(b"id: ");
    buf.put_slice(digits.format(id).as_bytes());
    if let Some(event) = event {
        buf.put_slice(b"\nevent: ");
        buf.put_slice(event.as_bytes());
    }
    buf.put_slice(b"\ndata: ");
    buf.put_slice(fact.as_bytes());
    buf.put_slice(b"\n\n");
}

/// What every stream starts with: the reconnection delay a client should use.
pub fn retry(milliseconds: u64) -> Bytes {
    Bytes::from(format!("retry: {milliseconds}\n\n"))
}

/// The event that tells a client its position is not one this log issued: clear what it
/// shows and rebuild from what follows. `last_id` is the newest id of the log.
pub fn reset(last_id: i64) -> Bytes {
    Bytes::from(format!("event: reset\ndata: {{\"last_id\":{last_id}}}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mut buf = BytesMut::new();
        fact(&mut buf, 7, None, r#"{"a":"b\nc"}"#);
        assert_eq!(&buf[..], b"id: 7\ndata: {\"a\":\"b\\nc\"}\n\n");
        buf.clear();
        fact(&mut buf, 7, Some("x.y"), r#"{"a":"b\nc"}"#);
        assert_eq!(&buf[..], b"id: 7\nevent: x.y\ndata: {\"a\":\"b\\nc\"}\n\n");
        assert_eq!(&retry(2000)[..], b"retry: 2000\n\n");
        assert_eq!(&reset(9)[..], b"event: reset\ndata: {\"last_id\":9}\n\n");
    }
}
