//! The values that cross factlog's boundary, parsed once at the edge so that holding one
//! proves it is valid: event names, idempotency keys, positions in the log, and the record
//! of a stored fact with its SSE frame.
//!
//! Nothing here touches the network or the database.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::error::AppError;

/// The SSE event type of a fact, as given in `?event=`: 1 to 64 characters of
/// `A-Z a-z 0-9 _ . : -`. The character set keeps names safe to write on an `event:` line
/// (no CR, LF, NUL or space) and readable in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

impl EventName {
    /// The longest accepted name, in characters.
    pub const MAX_LEN: usize = 64;

    /// Parses an event name.
    ///
    /// # Errors
    /// [`AppError::BadRequest`] naming what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, AppError> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(AppError::bad_request(format!(
                "event name must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
        if !name.chars().all(allowed) {
            return Err(AppError::bad_request(
                "event name may contain only A-Z a-z 0-9 _ . : -",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event types a stream asked for with `?event=` (repeatable). A plain fact's type is
/// `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    names: Vec<String>,
    /// The names as a JSON array, the form the storage queries take.
    json: String,
}

impl EventFilter {
    /// The most `event=` parameters one stream may give.
    pub const MAX_NAMES: usize = 64;

    /// A filter of these names, or `None` (every fact) when there are none.
    ///
    /// # Errors
    /// [`AppError::BadRequest`] when there are more than [`Self::MAX_NAMES`] names.
    pub fn new(names: Vec<EventName>) -> Result<Option<Self>, AppError> {
        if names.len() > Self::MAX_NAMES {
            return Err(AppError::bad_request(format!(
                "at most {} event filters may be given",
                Self::MAX_NAMES
            )));
        }
        if names.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = names.into_iter().map(|n| n.0).collect();
        let json = serde_json::to_string(&names).map_err(|e| AppError::Internal(e.into()))?;
        Ok(Some(Self { names, json }))
    }

    /// Whether a fact of this SSE event type passes.
    pub fn matches(&self, event_type: &str) -> bool {
        self.names.iter().any(|n| n == event_type)
    }

    /// The names as a JSON array.
    pub fn as_json(&self) -> &str {
        &self.json
    }
}

/// An `Idempotency-Key` header: 1 to 200 visible ASCII characters (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest accepted key, in characters.
    pub const MAX_LEN: usize = 200;

    /// Parses an idempotency key from the header's raw bytes.
    ///
    /// # Errors
    /// [`AppError::BadRequest`] when it is empty, too long or not visible ASCII.
    pub fn parse(raw: &[u8]) -> Result<Self, AppError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(AppError::bad_request(format!(
                "Idempotency-Key must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(AppError::bad_request(
                "Idempotency-Key may contain only visible ASCII characters",
            ));
        }
        // Every byte is ASCII, so this cannot fail; the lossy form avoids a panic path.
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a position in the log (`Last-Event-ID`, `lastEventId`, `after`) or a count
/// (`tail`): a non-negative integer of 1 to 19 ASCII digits that fits an `i64`. Nothing
/// else is accepted: no sign, no spaces, no fraction, since browsers can be made to send
/// any header value.
///
/// # Errors
/// [`AppError::BadRequest`] naming `what` was wrong.
pub fn parse_position(what: &str, raw: &[u8]) -> Result<i64, AppError> {
    let bad = || {
        AppError::bad_request(format!(
            "{what} must be a non-negative integer of at most 19 digits"
        ))
    };
    if raw.is_empty() || raw.len() > 19 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    raw.iter()
        .try_fold(0i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
        .ok_or_else(bad)
}

/// Where an event stream starts. The first that applies wins: `Last-Event-ID` header,
/// then `lastEventId` / `after` query, then `tail`, then the whole log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// Facts with an id larger than this.
    After(i64),
    /// The newest n facts, then live.
    Tail(i64),
    /// The whole log from the first fact.
    Beginning,
}

impl StartPosition {
    /// Settles the precedence between the `Last-Event-ID` header and the query.
    ///
    /// # Errors
    /// [`AppError::BadRequest`] when the value that wins, or any other given, is malformed.
    pub fn resolve(
        header: Option<&[u8]>,
        last_event_id: Option<&str>,
        after: Option<&str>,
        tail: Option<&str>,
    ) -> Result<Self, AppError> {
        // Every value given is checked, even one that loses, so a typo is never silent.
        let header = header
            .map(|h| parse_position("Last-Event-ID", h))
            .transpose()?;
        let query_id = last_event_id
            .map(|v| parse_position("lastEventId", v.as_bytes()))
            .transpose()?;
        let after = after
            .map(|v| parse_position("after", v.as_bytes()))
            .transpose()?;
        let tail = tail
            .map(|v| parse_position("tail", v.as_bytes()))
            .transpose()?;
        Ok(match (header.or(query_id).or(after), tail) {
            (Some(id), _) => Self::After(id),
            (None, Some(n)) => Self::Tail(n),
            (None, None) => Self::Beginning,
        })
    }
}

/// A stored fact, as the JSON API returns it and as the streams render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRecord {
    /// Position in the log; also the SSE event id.
    pub id: i64,
    /// The SSE event type; `None` for a plain `message`.
    pub event: Option<String>,
    /// The fact as compact JSON text.
    pub fact: String,
    /// RFC 3339 UTC time its group was committed.
    pub created_at: String,
}

impl FactRecord {
    /// The SSE event type as a stream filter sees it: plain facts are `message`.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Appends this fact's SSE frame to `buf`: `id:`, then `event:` when it has one, then
    /// `data:` and a blank line. The JSON is compact, so it never holds a line break and
    /// always fits one `data:` line.
    pub fn render_frame(&self, buf: &mut BytesMut) {
        let mut id = itoa::Buffer::new();
        buf.reserve(self.fact.len() + 40);
        buf.put_slice(b"id: ");
        buf.put_slice(id.format(self.id).as_bytes());
        if let Some(event) = &self.event {
            buf.put_slice(b"\nevent: ");
            buf.put_slice(event.as_bytes());
        }
        buf.put_slice(b"\ndata: ");
        buf.put_slice(self.fact.as_bytes());
        buf.put_slice(b"\n\n");
    }
}

/// Decodes an `application/x-www-form-urlencoded` text (a form body or a query string)
/// into its pairs, in order. `+` is a space; percent escapes must decode to UTF-8.
///
/// # Errors
/// [`AppError::BadRequest`] when a name or value is not valid UTF-8 once decoded.
pub fn parse_urlencoded(raw: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    let decode = |part: &[u8]| -> Result<String, AppError> {
        let spaced: Cow<[u8]> = if part.contains(&b'+') {
            Cow::Owned(
                part.iter()
                    .map(|&b| if b == b'+' { b' ' } else { b })
                    .collect(),
            )
        } else {
            Cow::Borrowed(part)
        };
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(Cow::into_owned)
            .map_err(|_| AppError::bad_request("form or query text is not valid UTF-8"))
    };
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let name = decode(halves.next().unwrap_or_default())?;
            let value = decode(halves.next().unwrap_or_default())?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        for ok in ["a", "user.created", "x:y-z_1", &"e".repeat(64)] {
            assert_eq!(EventName::parse(ok).map(|e| e.0).ok().as_deref(), Some(ok));
        }
        for bad in [
            "",
            &"e".repeat(65),
            "a b",
            "a\nb",
            "a\rb",
            "a\0b",
            "é",
            "a/b",
        ] {
            assert!(EventName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse(b"order-42:retry~!").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 200]).is_ok());
        for bad in [
            &b""[..],
            &[b'k'; 201],
            b"a b",
            b"a\tb",
            b"\xc3\xa9",
            b"a\x7f",
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn positions_are_strict() {
        assert_eq!(parse_position("x", b"0").ok(), Some(0));
        assert_eq!(parse_position("x", b"0042").ok(), Some(42));
        assert_eq!(
            parse_position("x", b"9223372036854775807").ok(),
            Some(i64::MAX)
        );
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1.5",
            b" 1",
            b"1 ",
            b"abc",
            b"1e3",
            b"9223372036854775808",
            b"12345678901234567890",
            b"1\0",
            b"1\r",
        ] {
            assert!(parse_position("x", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn start_position_precedence() {
        let r = StartPosition::resolve;
        assert_eq!(
            r(None, None, None, None).ok(),
            Some(StartPosition::Beginning)
        );
        assert_eq!(
            r(Some(b"5"), Some("7"), Some("9"), Some("1")).ok(),
            Some(StartPosition::After(5))
        );
        assert_eq!(
            r(None, Some("7"), Some("9"), None).ok(),
            Some(StartPosition::After(7))
        );
        assert_eq!(
            r(None, None, Some("9"), None).ok(),
            Some(StartPosition::After(9))
        );
        assert_eq!(
            r(None, None, None, Some("3")).ok(),
            Some(StartPosition::Tail(3))
        );
        assert!(r(Some(b"5"), None, None, Some("x")).is_err());
    }

    #[test]
    fn frames() {
        let mut buf = BytesMut::new();
        let mut record = FactRecord {
            id: 7,
            event: None,
            fact: r#"{"a":"b\nc"}"#.into(),
            created_at: String::new(),
        };
        record.render_frame(&mut buf);
        assert_eq!(&buf[..], b"id: 7\ndata: {\"a\":\"b\\nc\"}\n\n");
        buf.clear();
        record.event = Some("x.y".into());
        record.render_frame(&mut buf);
        assert_eq!(&buf[..], b"id: 7\nevent: x.y\ndata: {\"a\":\"b\\nc\"}\n\n");
    }

    #[test]
    fn urlencoded() {
        let pairs = parse_urlencoded(b"info=a+b%21&source=&x&&info=2").ok();
        let expected = [("info", "a b!"), ("source", ""), ("x", ""), ("info", "2")]
            .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(pairs.as_deref(), Some(&expected[..]));
        assert!(parse_urlencoded(b"a=%ff").is_err());
    }
}
