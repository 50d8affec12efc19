//! SSE event types: the name a fact is posted with, and the filter a stream asks for.

use super::invalid::Invalid;

/// The SSE event type of a fact, as given in `?event=`: 1 to 64 characters of
/// `A-Z a-z 0-9 _ . : -`. The character set keeps names safe to write on an `event:` line
/// (no CR, LF, NUL or space), free of the `,` that storage's replay pages separate fields
/// with, and readable in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

impl EventName {
    /// The longest accepted name, in characters.
    pub const MAX_LEN: usize = 64;

    /// The type of a fact posted without one: what the SSE specification calls an event
    /// without an `event:` line, and what `?event=` filters select such facts by.
    pub const DEFAULT: &'static str = "message";

    /// Parses an event name.
    ///
    /// # Errors
    /// [`Invalid`] naming what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "event name must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
        if !name.chars().all(allowed) {
            return Err(Invalid::new(
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

/// The event types a stream asked for with `?event=` (repeatable). A fact stored without a
/// type passes when [`EventName::DEFAULT`] is among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    names: Vec<String>,
    /// The names as a JSON array, the form the storage queries take.
    json: String,
    /// Whether facts stored without a type pass.
    untyped: bool,
}

impl EventFilter {
    /// The most `event=` parameters one stream may give.
    pub const MAX_NAMES: usize = 64;

    /// A filter of these names, or `None` (every fact) when there are none.
    ///
    /// # Errors
    /// [`Invalid`] when there are more than [`Self::MAX_NAMES`] names.
    pub fn new(names: Vec<EventName>) -> Result<Option<Self>, Invalid> {
        if names.len() > Self::MAX_NAMES {
            return Err(Invalid(format!(
                "at most {} event filters may be given",
                Self::MAX_NAMES
            )));
        }
        if names.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = names.into_iter().map(|n| n.0).collect();
        let untyped = names.iter().any(|n| n == EventName::DEFAULT);
        // A JSON array of strings of a safe character set: written by hand, it cannot fail.
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let json = format!("[{}]", quoted.join(","));
        Ok(Some(Self {
            names,
            json,
            untyped,
        }))
    }

    /// Whether a fact of this stored type (`None`: posted without one) passes.
    pub fn matches(&self, event: Option<&str>) -> bool {
        match event {
            None => self.untyped,
            Some(event) => self.names.iter().any(|n| n == event),
        }
    }

    /// The names as a JSON array: a fact whose stored type is one of them passes.
    pub fn names_json(&self) -> &str {
        &self.json
    }

    /// Whether facts stored without a type pass (the filter names
    /// [`EventName::DEFAULT`]).
    pub fn includes_untyped(&self) -> bool {
        self.untyped
    }
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
            "a,b",
        ] {
            assert!(EventName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn filters() {
        let name = |n: &str| EventName::parse(n).expect("valid");
        assert_eq!(EventFilter::new(vec![]), Ok(None));
        let typed = EventFilter::new(vec![name("a"), name("b")])
            .expect("valid")
            .expect("a filter");
        assert_eq!(typed.names_json(), r#"["a","b"]"#);
        assert!(typed.matches(Some("b")) && !typed.matches(Some("c")));
        assert!(!typed.matches(None) && !typed.includes_untyped());
        let plain = EventFilter::new(vec![name("message")])
            .expect("valid")
            .expect("a filter");
        assert!(plain.matches(None) && plain.matches(Some("message")));
        assert!(plain.includes_untyped());
        assert!(EventFilter::new(vec![name("a"); 65]).is_err());
    }
}
