//! A posted JSON body turned into the text that is stored: compact, the keys in the order
//! posted, numbers as 64-bit integers or doubles. Written straight from the parser's
//! events, without building a `serde_json::Value` tree only to write it out again; the
//! output is exactly what `serde_json::to_string` of that tree would be, byte for byte.
//!
//! The one case a stream cannot reproduce is an object with a repeated key: the tree keeps
//! the last value, in the first one's place. Such a body is parsed again into the tree.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The stored text of the JSON value `bytes`.
///
/// # Errors
/// serde_json's error for what is not one JSON value (invalid UTF-8, trailing garbage,
/// nesting deeper than 128).
pub fn compact(bytes: &[u8]) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut repeated = false;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let streamed = Write {
        out: &mut out,
        repeated: &mut repeated,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if repeated {
        let value: Value = serde_json::from_slice(bytes)?;
        return serde_json::to_string(&value);
    }
    streamed?;
    // Only whole strings and serde_json's own output were written.
    String::from_utf8(out).map_err(|e| de::Error::custom(e.utf8_error()))
}

/// Writes the value it is handed to `out`, as serde_json writes a `Value`.
struct Write<'a> {
    out: &'a mut Vec<u8>,
    /// Set when an object repeats a key: the output is then not the tree's.
    repeated: &'a mut bool,
}

impl Write<'_> {
    fn scalar<T: serde::Serialize + ?Sized, E: de::Error>(self, value: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, value).map_err(E::custom)
    }

    fn reborrow(&mut self) -> Write<'_> {
        Write {
            out: self.out,
            repeated: self.repeated,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Write<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Write<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(&v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // Finite: serde_json refuses a number out of a double's range.
        self.scalar(&v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            // The comma goes before the element is written, and is taken back at the end.
            let before = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if seq.next_element_seed(self.reborrow())?.is_none() {
                self.out.truncate(before);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut keys = Keys::default();
        let mut first = true;
        while let Some(key) = map.next_key_seed(Key)? {
            if !first {
                self.out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *self.out, &*key).map_err(de::Error::custom)?;
            if !keys.insert(key) {
                *self.repeated = true;
                return Err(de::Error::custom("a repeated key"));
            }
            self.out.push(b':');
            map.next_value_seed(self.reborrow())?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// The keys of one object so far: a list while the object is short (most are, and a list
/// costs no hashing), a set once it is long (so that an object of many keys costs no more
/// than the tree did).
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    /// The longest list.
    const FEW: usize = 16;

    /// Adds `key`; false when the object had it already.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&key) {
                return false;
            }
            if self.few.len() < Self::FEW {
                self.few.push(key);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(key)
    }
}

/// An object's key, borrowed from the body unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::compact;

    /// What the stored text was before: the tree, written out.
    fn through_tree(body: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(body).expect("valid JSON");
        serde_json::to_string(&value).expect("serializable")
    }

    #[test]
    fn writes_what_the_tree_would() {
        for body in [
            "null",
            " true ",
            "false",
            "0",
            "-0",
            "-0.0",
            "1.0",
            "1e2",
            "1E-7",
            "12345678901234567890",
            "-9223372036854775808",
            "123456789012345678901234567890",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
            r#""""#,
            r#""caf\u00e9 \ud83d\ude00 \" \\ \/ \b\f\n\r\t \u0001""#,
            "[]",
            "[ ]",
            "{}",
            "{ }",
            "[1, [2, [3, []]], {}]",
            r#" { "b" : 1 , "a" : [ true , null ] , "c" : { "d" : "e" } } "#,
            r#"{"k\u0065y": 1, "key2": {"x": [{}]}}"#,
            r#"{"a": 1, "b": 2, "a": 3}"#,
            r#"[{"a": 1}, {"a": 2, "a": {"a": 1}}]"#,
            r#"{"\u0061": 1, "a": 2}"#,
        ] {
            assert_eq!(
                compact(body.as_bytes()).ok(),
                Some(through_tree(body)),
                "{body}"
            );
        }
    }

    #[test]
    fn a_long_object_as_through_the_tree() {
        let keys: Vec<String> = (0..5000).map(|i| format!("\"k{i}\":{i}")).collect();
        let long = format!("{{{}}}", keys.join(","));
        assert_eq!(compact(long.as_bytes()).ok(), Some(through_tree(&long)));
        let repeated = format!("{{{},\"k4999\":0}}", keys.join(","));
        assert_eq!(
            compact(repeated.as_bytes()).ok(),
            Some(through_tree(&repeated))
        );
    }

    #[test]
    fn refuses_what_the_tree_refuses() {
        let deep = "[".repeat(129) + &"]".repeat(129);
        for body in ["", "{", "[1,]", "{\"a\":}", "1 2", "nul", "\"\\x\"", &deep] {
            let tree = serde_json::from_str::<serde_json::Value>(body).err();
            let streamed = compact(body.as_bytes()).err();
            assert_eq!(
                streamed.map(|e| e.to_string()),
                tree.map(|e| e.to_string()),
                "{body}"
            );
        }
        assert!(compact(b"\"\xff\"").is_err());
    }

    proptest! {
        /// Text made of JSON's own characters, valid or not: the same text, or the same
        /// refusal, as through the tree.
        #[test]
        fn json_like_text_as_through_the_tree(body in r#"[\[\]{}:, "a\\u0-9.eE+\-ntrufls]{0,40}"#) {
            let tree = serde_json::from_str::<serde_json::Value>(&body)
                .and_then(|v| serde_json::to_string(&v));
            prop_assert_eq!(
                compact(body.as_bytes()).map_err(|e| e.to_string()),
                tree.map_err(|e| e.to_string())
            );
        }
    }
}
