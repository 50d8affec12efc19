//! Positions in the log, and where an event stream starts.

use super::invalid::Invalid;

/// Parses a position in the log (`Last-Event-ID`, `lastEventId`, `after`) or a count
/// (`tail`): a non-negative integer of 1 to 19 ASCII digits that fits an `i64`. Nothing
/// else is accepted: no sign, no spaces, no fraction, since browsers can be made to send
/// any header value.
///
/// # Errors
/// [`Invalid`] naming `what` was wrong.
pub fn parse_position(what: &str, raw: &[u8]) -> Result<i64, Invalid> {
    let bad = || {
        Invalid(format!(
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
    /// [`Invalid`] when the value that wins, or any other given, is malformed.
    pub fn resolve(
        header: Option<&[u8]>,
        last_event_id: Option<&str>,
        after: Option<&str>,
        tail: Option<&str>,
    ) -> Result<Self, Invalid> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
