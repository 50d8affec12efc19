//! What the log keeps: `--retain-facts` and `--retain-age` (the writer's
//! `storage::retention` deletes the rest).

use std::fmt;
use std::time::Duration;

/// What the log keeps. With neither bound, everything (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// At most this many of the newest facts.
    pub facts: Option<u64>,
    /// Only facts younger than this.
    pub age: Option<Duration>,
}

impl Retention {
    /// Whether anything is ever deleted.
    pub fn is_on(&self) -> bool {
        self.facts.is_some() || self.age.is_some()
    }

    /// The count bound as the number of ids to keep below the newest (a bound beyond
    /// what an id can count keeps everything).
    pub fn keep_ids(&self) -> Option<i64> {
        self.facts.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.facts, self.age) {
            (None, None) => f.write_str("keeps every fact"),
            (Some(n), None) => write!(f, "keeps the newest {n} facts"),
            (None, Some(age)) => write!(f, "keeps facts for {}s", age.as_secs()),
            (Some(n), Some(age)) => write!(
                f,
                "keeps the newest {n} facts, none older than {}s",
                age.as_secs()
            ),
        }
    }
}
