//! `application/x-www-form-urlencoded` text: form bodies and query strings.

use std::borrow::Cow;

use super::invalid::Invalid;

/// Decodes an `application/x-www-form-urlencoded` text (a form body or a query string)
/// into its pairs, in order. `+` is a space; percent escapes must decode to UTF-8.
///
/// # Errors
/// [`Invalid`] when a name or value is not valid UTF-8 once decoded.
pub fn parse_urlencoded(raw: &[u8]) -> Result<Vec<(String, String)>, Invalid> {
    let decode = |part: &[u8]| -> Result<String, Invalid> {
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
            .map_err(|_| Invalid::new("form or query text is not valid UTF-8"))
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
    fn urlencoded() {
        let pairs = parse_urlencoded(b"info=a+b%21&source=&x&&info=2").ok();
        let expected = [("info", "a b!"), ("source", ""), ("x", ""), ("info", "2")]
            .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(pairs.as_deref(), Some(&expected[..]));
        assert!(parse_urlencoded(b"a=%ff").is_err());
    }
}
