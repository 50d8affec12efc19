//! Topics: the named streams of one log, in one id space.

use super::invalid::Invalid;

/// A topic's name: 1 to 64 characters of `A-Z a-z 0-9 _ . : -`, case-sensitive. `.`
/// separates levels by convention (`orders.eu`). The character set keeps names safe in a
/// URL path, a log line, an SSE `data:` record and storage's packed rows (no `,`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    /// The longest accepted name, in characters.
    pub const MAX_LEN: usize = 64;

    /// The topic of facts posted without one (`POST /facts`), and of every fact stored
    /// before topics existed.
    pub const DEFAULT: &'static str = "default";

    /// Parses a topic name.
    ///
    /// # Errors
    /// [`Invalid`] naming what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "topic name must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
        if !name.chars().all(allowed) {
            return Err(Invalid::new(
                "topic name may contain only A-Z a-z 0-9 _ . : -",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The topic `default`.
    pub fn default_topic() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The topics a reader asked for (`?topic=`, repeatable): at least one, at most
/// [`TopicSet::MAX`], each once, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSet {
    names: Vec<String>,
    /// The names as a JSON array, the form the storage queries take.
    json: String,
}

impl TopicSet {
    /// The most topics one request may name.
    pub const MAX: usize = 32;

    /// A set of these names, or `None` (every topic) when there are none.
    ///
    /// # Errors
    /// [`Invalid`] when there are more than [`Self::MAX`] different names.
    pub fn new(names: Vec<TopicName>) -> Result<Option<Self>, Invalid> {
        let mut names: Vec<String> = names.into_iter().map(|n| n.0).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() > Self::MAX {
            return Err(Invalid(format!(
                "at most {} topics may be given",
                Self::MAX
            )));
        }
        if names.is_empty() {
            return Ok(None);
        }
        // A JSON array of strings of a safe character set: written by hand, it cannot fail.
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let json = format!("[{}]", quoted.join(","));
        Ok(Some(Self { names, json }))
    }

    /// Whether a fact of `topic` is wanted.
    pub fn contains(&self, topic: &str) -> bool {
        self.names
            .binary_search_by(|n| n.as_str().cmp(topic))
            .is_ok()
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The one topic, when the set holds exactly one.
    pub fn single(&self) -> Option<&str> {
        match self.names.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The names as a JSON array.
    pub fn names_json(&self) -> &str {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["default", "orders.eu", "chat:lobby-1_x", &"t".repeat(64)] {
            assert_eq!(TopicName::parse(ok).map(|t| t.0).ok().as_deref(), Some(ok));
        }
        for bad in [
            "",
            &"t".repeat(65),
            "a b",
            "a/b",
            "a,b",
            "é",
            "a\nb",
            "a%2Fb",
        ] {
            assert!(TopicName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn topic_sets() {
        let name = |n: &str| TopicName::parse(n).expect("valid");
        assert_eq!(TopicSet::new(vec![]), Ok(None));
        let set = TopicSet::new(vec![name("b"), name("a"), name("b")])
            .expect("valid")
            .expect("a set");
        assert_eq!(set.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(set.names_json(), r#"["a","b"]"#);
        assert!(set.contains("a") && set.contains("b") && !set.contains("c"));
        assert_eq!(set.single(), None);
        let many: Vec<TopicName> = (0..33).map(|i| name(&format!("t{i}"))).collect();
        assert!(TopicSet::new(many).is_err());
        let repeated: Vec<TopicName> = (0..40).map(|_| name("same")).collect();
        assert_eq!(
            TopicSet::new(repeated)
                .expect("one name")
                .expect("a set")
                .single(),
            Some("same")
        );
    }
}
