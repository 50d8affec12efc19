//! Retention: which facts the log keeps (`--retain-facts`, `--retain-age`), and when the
//! writer deletes the rest.
//!
//! The writer owns deletion (it is SQLite's only writer, so deleting never fights an
//! append for the lock). It deletes in steps of at most [`BATCH`] facts, each its own
//! transaction that also records the highest deleted id, and runs a step between groups,
//! never inside one: an append waits behind at most one step. Which facts a step deletes
//! is the engines' (`trim`): always a prefix of the log.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::Retention;

/// The most facts one step deletes: small enough that an append queued behind it waits
/// little, large enough that deleting keeps pace with groups of the largest size.
pub const BATCH: i64 = 4096;

/// Under load, how often the writer looks for facts outside the bounds: a fact outside
/// them is gone within about this long.
const PERIOD: Duration = Duration::from_secs(1);

/// With `--retain-facts`, a step is due as soon as this many facts are beyond the bound,
/// without waiting for the period: at a high rate a period's facts would be many times
/// the bound, and the file would grow to hold them. Large enough that the steps' own
/// commits stay few beside the groups'.
const EXCESS: i64 = BATCH / 2;

/// When idle, the longest the writer goes without looking (the age bound wakes it sooner
/// when the oldest fact is due).
const IDLE_PERIOD: Duration = Duration::from_secs(60);

/// What one step of deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Facts it deleted (0 when another instance holds PostgreSQL's retention lock).
    pub deleted: u64,
    /// The highest deleted id after it.
    pub through: i64,
    /// A whole batch was outside the bounds: more may be.
    pub more: bool,
    /// When the oldest kept fact was appended (RFC 3339), if the step saw it: the age
    /// bound reaches it at this time plus the age.
    pub kept_at: Option<String>,
}

/// When the writer runs its next step: after a group once [`PERIOD`] has passed since the
/// last (at once while more is outside the bounds, or once [`EXCESS`] facts are beyond
/// the count bound), and, idle, when something can have become due: the appends since
/// the last step, the oldest kept fact reaching the age bound, or, at the latest,
/// [`IDLE_PERIOD`] (with PostgreSQL, others append too).
#[derive(Debug)]
pub struct Schedule {
    retention: Retention,
    /// After a group, a step is due once this has passed.
    due: Instant,
    /// When the oldest kept fact reaches the age bound, if that is known (or when a
    /// failed step is tried again).
    age_due: Option<Instant>,
    /// Groups were committed since the last step.
    appended: bool,
    /// The highest deleted id, as of the last step (another instance may have raised it
    /// since: a step then finds less to do than expected, and learns the new one).
    through: i64,
    /// When the last step ran.
    last: Instant,
}

impl Schedule {
    /// The schedule of `retention`; the first step is due at once (the bounds may have
    /// been narrowed since the last run).
    pub fn new(retention: Retention) -> Self {
        let now = Instant::now();
        Self {
            retention,
            due: now,
            age_due: None,
            appended: false,
            through: 0,
            last: now,
        }
    }

    /// The bounds.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// A group ending with `newest_id` was committed; says whether a step is due after
    /// it.
    pub fn appended(&mut self, newest_id: i64, now: Instant) -> bool {
        self.appended = true;
        let excess = self.retention.facts.map_or(0, |keep| {
            newest_id - i64::try_from(keep).unwrap_or(i64::MAX) - self.through
        });
        now >= self.due || excess >= EXCESS
    }

    /// When the idle writer should wake for the next step.
    pub fn idle_due(&self) -> Instant {
        let mut at = self.last + IDLE_PERIOD;
        if self.appended || self.due <= self.last {
            at = at.min(self.due);
        }
        if let Some(age_due) = self.age_due {
            at = at.min(age_due);
        }
        at
    }

    /// Records a step that did `trimmed` (`None`: it failed) and plans the next.
    pub fn done(&mut self, trimmed: Option<&Trimmed>, now: Instant) {
        self.last = now;
        self.appended = false;
        if let Some(t) = trimmed {
            self.through = t.through;
        }
        self.due = if trimmed.is_some_and(|t| t.more) {
            now
        } else {
            now + PERIOD
        };
        self.age_due = match trimmed {
            // Not sooner than a period: with PostgreSQL the time comes from the database's
            // clock, and one behind ours must not make the idle writer spin.
            Some(t) => self
                .until_age_bound(t.kept_at.as_deref())
                .map(|wait| now + wait.max(PERIOD)),
            // A failed step is tried again after a period, idle or not.
            None => Some(now + PERIOD),
        };
    }

    /// How long until the fact appended at `kept_at` is older than the age bound.
    fn until_age_bound(&self, kept_at: Option<&str>) -> Option<Duration> {
        let age = self.retention.age?;
        let at = DateTime::parse_from_rfc3339(kept_at?)
            .ok()?
            .with_timezone(&Utc);
        let expires = at + chrono::Duration::from_std(age).ok()?;
        Some((expires - Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }
}
