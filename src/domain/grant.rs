//! Who may read and write which topics: the patterns of `--public-topics` and of a
//! token's grants, and what a caller may do with them.

use super::invalid::Invalid;
use super::topic::TopicName;

/// One pattern of topics: a topic name, `prefix.*` (every topic whose name starts with
/// `prefix.`), or `*` (every topic).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Every topic.
    All,
    /// The topic of this name.
    Exact(String),
    /// Every topic whose name starts with this, which ends with `.`.
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, Invalid> {
        if text == "*" {
            return Ok(Self::All);
        }
        let wrong = || {
            Invalid(format!(
                "topic pattern {text:?} is not a topic name, `prefix.*` or `*`"
            ))
        };
        match text.strip_suffix(".*") {
            // The prefix is itself a name, so `a.*` matches `a.b` but not `a` or `ab`.
            Some(prefix) => TopicName::parse(prefix)
                .map(|_| Self::Prefix(format!("{prefix}.")))
                .map_err(|_| wrong()),
            None => TopicName::parse(text)
                .map(|name| Self::Exact(name.as_str().to_owned()))
                .map_err(|_| wrong()),
        }
    }

    fn matches(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Exact(name) => name == topic,
            Self::Prefix(prefix) => topic.starts_with(prefix.as_str()),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// A set of topic patterns; empty, it matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(Vec<Pattern>);

/// The most patterns one list may hold: a token is sent with every request, and a list
/// longer than this is a mistake rather than a grant.
const MAX_PATTERNS: usize = 256;

impl Patterns {
    /// Parses a list of patterns.
    ///
    /// # Errors
    /// [`Invalid`] naming the first pattern that is not one, or a list that is too long.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, Invalid> {
        if items.len() > MAX_PATTERNS {
            return Err(Invalid(format!(
                "at most {MAX_PATTERNS} topic patterns may be given"
            )));
        }
        items
            .iter()
            .map(|item| Pattern::parse(item.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Parses a comma-separated list (`--public-topics`); an empty text is an empty list.
    ///
    /// # Errors
    /// As [`Patterns::parse`].
    pub fn parse_list(text: &str) -> Result<Self, Invalid> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect();
        Self::parse(&items)
    }

    /// Every topic.
    pub fn all() -> Self {
        Self(vec![Pattern::All])
    }

    /// Whether a pattern matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.0.iter().any(|p| p.matches(topic))
    }

    /// Whether the patterns hold `*`: only they match every topic, including those not
    /// created yet, which reading every topic at once needs.
    pub fn matches_every_topic(&self) -> bool {
        self.0.contains(&Pattern::All)
    }
}

/// The patterns as `--public-topics` takes them: comma-separated.
impl std::fmt::Display for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, pattern) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{pattern}")?;
        }
        Ok(())
    }
}

/// What a token grants: the topics its holder may publish to and read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The topics it may publish to.
    pub publish: Patterns,
    /// The topics it may read.
    pub subscribe: Patterns,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_prefixes_and_everything() {
        let p = Patterns::parse(&["orders.*", "news", "a.b.*"]).expect("valid");
        for yes in ["orders.eu", "orders.eu.paris", "news", "a.b.c"] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in ["orders", "ordersx", "news.x", "newsy", "a.b", "a.bc"] {
            assert!(!p.matches(no), "{no}");
        }
        assert!(!p.matches_every_topic());
        let all = Patterns::parse(&["*"]).expect("valid");
        assert!(all.matches("anything") && all.matches_every_topic());
        assert_eq!(all, Patterns::all());
        assert!(!Patterns::default().matches("x"));
        assert_eq!(p.to_string(), "orders.*,news,a.b.*");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a*", "*.a", "a.*.*", "a b", ".*", "a,b", "**", "a.**"] {
            assert!(Patterns::parse(&[bad]).is_err(), "{bad:?} accepted");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("t{i}")).collect();
        assert!(Patterns::parse(&many).is_err());
    }

    #[test]
    fn lists_are_comma_separated() {
        assert_eq!(
            Patterns::parse_list("").expect("valid"),
            Patterns::default()
        );
        assert_eq!(
            Patterns::parse_list(" , ").expect("valid"),
            Patterns::default()
        );
        let p = Patterns::parse_list("news.*, weather").expect("valid");
        assert!(p.matches("news.eu") && p.matches("weather") && !p.matches("orders"));
        assert!(Patterns::parse_list("news.*,a b").is_err());
    }
}
