//! What crosses the storage boundary whichever engine stands behind it: the outcome of an
//! append, the error every storage call fails with, where committed facts are handed, and
//! the JSON form both engines' append statements take.

use crate::domain::{EventFilter, FactRecord, NewFact, TopicSet};

/// What an append did for one fact.
#[derive(Debug, Clone)]
pub enum Appended {
    /// A new fact was committed.
    Created(FactRecord),
    /// The idempotency key was used before on the topic, for the same fact: this is the
    /// record its first use made.
    Existing(FactRecord),
    /// The idempotency key was used before on the topic for a different fact (another
    /// body or event type): nothing was written; this is the record of its first use.
    Conflict(FactRecord),
}

/// Which facts a read wants: those of these topics (every topic when `None`) and of
/// these event types (every type when `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// The topics.
    pub topics: Option<&'a TopicSet>,
    /// The event types.
    pub events: Option<&'a EventFilter>,
}

/// A topic as `GET /topics` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// Its name.
    pub name: String,
    /// Its oldest fact's id.
    pub first_id: i64,
    /// Its newest fact's id.
    pub last_id: i64,
    /// How many facts it holds.
    pub facts: i64,
}

/// Where the log starts and ends, as of one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The highest id retention has deleted; 0 while nothing has been. Everything at or
    /// below it is gone.
    pub deleted_through: i64,
    /// The oldest kept fact's id; `None` when the log holds none.
    pub first_id: Option<i64>,
    /// The newest id handed out, 0 when none ever was.
    pub last_id: i64,
}

impl Bounds {
    /// Whether a reader that has everything up to `position` would skip deleted facts if
    /// it read on: its position is below the highest deleted id. Position 0 is "from the
    /// start", which never expires: it reads the log from wherever it now begins.
    pub fn expired(&self, position: i64) -> bool {
        position > 0 && position < self.deleted_through
    }
}

/// Everything a storage call can fail with. The causes are for the log: the HTTP layer
/// answers with a sentence of its own and never sends them.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot take the request now: full, read-only, locked past its
    /// timeout, unreachable, shutting down. Nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The writer has stopped: the server is shutting down.
    #[error("the writer has stopped")]
    Stopped,
    /// Anything else: a bug, or a database that is not what this build expects.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl StorageError {
    /// The same error again, for each request of a group that failed as one.
    pub fn repeat(&self) -> Self {
        match self {
            Self::Unavailable(cause) => Self::Unavailable(cause.clone()),
            Self::Stopped => Self::Stopped,
            Self::Internal(cause) => {
                Self::Internal(anyhow::anyhow!("group commit failed: {cause:#}"))
            }
        }
    }
}

/// Where committed facts go once they are durable: this instance's streams (the notifier,
/// in the binary). The writer hands it every group it commits; with PostgreSQL the
/// follower hands it what other instances commit.
///
/// Whoever publishes vouches for the order: facts are handed in increasing id order, and
/// an implementation never hands a stream an id at or below one it already handed.
pub trait Publish: Send + Sync {
    /// Publishes facts of which none between the newest published and the first of these
    /// is still to come (SQLite's writer, the log's only source; PostgreSQL's follower,
    /// which read them in order). Those already published are skipped.
    fn publish(&self, records: &[FactRecord]);

    /// Publishes the facts only if they directly follow the newest published (those
    /// already published are skipped); false, publishing nothing, when there is a gap
    /// before them.
    fn publish_next(&self, records: &[FactRecord]) -> bool;

    /// Publishes facts that follow a gap: facts between the newest published and the
    /// first of these were deleted before they could be published (PostgreSQL's follower,
    /// when another instance's retention outran it). Streams that had not read past the
    /// gap catch up from the database, where they learn what they missed.
    fn publish_after_gap(&self, records: &[FactRecord]);

    /// The newest id published, 0 when nothing was.
    fn newest_id(&self) -> i64;
}

/// The facts as the JSON array of `[topic, event, fact, key]` quadruples that
/// PostgreSQL's append statement takes.
///
/// # Errors
/// Never in practice (every value is a string or null); an error is our own fault.
pub fn rows_json(rows: &[&NewFact]) -> Result<String, StorageError> {
    let quadruples: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.topic.as_str(),
                r.event.as_ref().map(|e| e.as_str()),
                r.fact.as_str(),
                r.key.as_ref().map(|k| k.as_str()),
            )
        })
        .collect();
    serde_json::to_string(&quadruples).map_err(|e| StorageError::Internal(e.into()))
}

/// The selection as the queries take it: the topics and the event types as JSON arrays
/// (`None`: all), and whether facts stored without a type pass.
pub fn selection_params<'a>(selection: &Selection<'a>) -> (Option<&'a str>, Option<&'a str>, bool) {
    let topics = selection.topics.map(TopicSet::names_json);
    let (events, untyped) = selection.events.map_or((None, true), |f| {
        (Some(f.names_json()), f.includes_untyped())
    });
    (topics, events, untyped)
}

/// `url` with its password, if any, replaced by `***`: database URLs go to logs and error
/// messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, and this one has one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("postgres://factlog:s3cret@db:5432/facts"),
            "postgres://factlog:***@db:5432/facts"
        );
        assert_eq!(redact("postgres://db/facts"), "postgres://db/facts");
        assert_eq!(redact("sqlite://facts.db"), "sqlite://facts.db");
    }
}
