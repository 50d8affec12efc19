//! The `Idempotency-Key` a publisher may send.

use super::invalid::Invalid;

/// An `Idempotency-Key` header: 1 to 200 visible ASCII characters (`!` to `~`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest accepted key, in characters.
    pub const MAX_LEN: usize = 200;

    /// Parses an idempotency key from the header's raw bytes: a header that is not valid
    /// text is refused here like any other bad key, never taken for "no key".
    ///
    /// # Errors
    /// [`Invalid`] when it is empty, too long or not visible ASCII.
    pub fn parse(raw: &[u8]) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "Idempotency-Key must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(Invalid::new(
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

#[cfg(test)]
mod tests {
    use super::*;

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
            b"caf\xc3\xa9",
            b"a\x7f",
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
