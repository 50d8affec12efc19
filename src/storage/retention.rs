//! Retention: which facts the log keeps (`--retain-facts`, `--retain-age`), and when the
//! writer deletes the rest.
//!
//! The writer owns deletion (it is SQLite's only writer, so deleting never fights an
//! append for the lock). It deletes in small steps ([`Schedule::batch`]), each its own
//! transaction that also records the highest deleted id, and runs a step between groups,
//! never inside one: an append waits behind at most one step. Which facts a step deletes
//! is the engines' (`trim`): always a prefix of the log.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::Retention;

/// The most facts one step deletes, unless the group before it appended more (then as
/// many as it appended, so that deleting keeps pace): small enough that an append queued
/// behind it waits little.
const BATCH: i64 = 1024;

/// Under load, how often the writer looks for facts outside the bounds: a fact outside
/// them is gone within about this long.
const PERIOD: Duration = Duration::from_secs(1);

/// With `--retain-facts`, a step is due as soon as this many facts are beyond the bound,
/// without waiting for the period: at a high rate a period's facts would be many times
/// the bound, and the file would grow to hold them. Several batches, so that the steps
/// come in short runs, one after each of a few groups, rather than one every few groups:
/// the same deletes cost less that way (see `docs/performance.md`).
const EXCESS: i64 = 8 * BATCH;

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
    /// How many facts the last group appended.
    last_group: i64,
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
            last_group: 0,
            through: 0,
            last: now,
        }
    }

    /// The bounds.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// The most facts the next step may delete.
    pub fn batch(&self) -> i64 {
        BATCH.max(self.last_group)
    }

    /// A group of `facts` ending with `newest_id` was committed; says whether a step is
    /// due after it.
    pub fn appended(&mut self, facts: usize, newest_id: i64, now: Instant) -> bool {
        self.appended = true;
        self.last_group = i64::try_from(facts).unwrap_or(i64::MAX);
        let excess = self.retention.keep_ids().map_or(0, |keep| {
            newest_id.saturating_sub(keep).saturating_sub(self.through)
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
        self.last_group = 0;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(through: i64, more: bool) -> Trimmed {
        Trimmed {
            deleted: 1,
            through,
            more,
            kept_at: None,
        }
    }

    #[test]
    fn a_step_follows_a_group_once_enough_is_beyond_the_count_bound() {
        let mut schedule = Schedule::new(Retention {
            facts: Some(100),
            age: None,
        });
        let start = Instant::now();
        // Due at once after start: the bounds may have been narrowed.
        assert!(schedule.appended(10, 10, start));
        schedule.done(Some(&trimmed(0, false)), start);
        // Within the period, only an excess of a whole batch makes it due.
        assert!(!schedule.appended(10, 100 + EXCESS - 1, start));
        assert!(schedule.appended(10, 100 + EXCESS, start));
        // A group larger than a batch is deleted in one step as large.
        assert!(schedule.appended(5000, 100 + EXCESS, start));
        assert_eq!(schedule.batch(), 5000);
        schedule.done(Some(&trimmed(BATCH, true)), start);
        // More is beyond the bounds: due at once, idle or not.
        assert_eq!(schedule.batch(), BATCH);
        assert!(schedule.idle_due() <= start);
        schedule.done(Some(&trimmed(2 * BATCH, false)), start);
        // Idle, with nothing appended since: nothing can be due before the idle period.
        assert_eq!(schedule.idle_due(), start + IDLE_PERIOD);
        assert!(schedule.appended(1, 2 * BATCH + 101, start + PERIOD));
    }

    #[test]
    fn the_idle_writer_wakes_when_the_oldest_fact_reaches_the_age_bound() {
        let start = Instant::now();
        let mut schedule = Schedule::new(Retention {
            facts: None,
            age: Some(Duration::from_secs(30)),
        });
        let kept_at = (Utc::now() - chrono::Duration::seconds(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let step = Trimmed {
            kept_at: Some(kept_at),
            ..trimmed(0, false)
        };
        schedule.done(Some(&step), start);
        let wake = schedule.idle_due() - start;
        assert!(
            wake > Duration::from_secs(15) && wake <= Duration::from_secs(20),
            "{wake:?}"
        );
        // A failed step is tried again after a period.
        schedule.done(None, start);
        assert_eq!(schedule.idle_due(), start + PERIOD);
    }
}
