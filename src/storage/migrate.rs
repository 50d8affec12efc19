//! The schema: migrations applied on start (announced: start-up never reads the whole log,
//! except once, when a migration may, and an operator watching a slow start should read
//! why), or, with `--no-migrate`, only checked; and a database newer than this build,
//! refused in one line that names the release it needs.

use std::time::Instant;

use sqlx::migrate::{AppliedMigration, Migrator};

/// What start-up may do to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Create the database if missing and apply pending migrations (the default).
    Migrate,
    /// Touch nothing: fail when a migration is pending (`--no-migrate`, for roles without
    /// the right to change the schema).
    Check,
}

/// The database's schema against this build's migrations.
#[derive(Debug)]
pub struct SchemaState {
    /// Migrations this build has and the database has not, as `<version> <description>`.
    pending: Vec<String>,
    /// The newest version the database has and this build does not know.
    unknown: Option<i64>,
    /// The newest version this build knows.
    known: i64,
}

impl SchemaState {
    /// Compares what the database has applied with what `migrator` holds.
    ///
    /// # Errors
    /// When a migration this build knows was applied with different contents (an edited
    /// migration file): no start is safe then.
    pub fn of(migrator: &Migrator, applied: &[AppliedMigration]) -> anyhow::Result<Self> {
        let ups = || {
            migrator
                .iter()
                .filter(|m| m.migration_type.is_up_migration())
        };
        for migration in ups() {
            if let Some(done) = applied.iter().find(|a| a.version == migration.version)
                && done.checksum != migration.checksum
            {
                anyhow::bail!(
                    "schema version {} in the database differs from this build's migration {} {}: the migration file was edited after it was applied",
                    done.version,
                    migration.version,
                    migration.description
                );
            }
        }
        let pending = ups()
            .filter(|m| applied.iter().all(|a| a.version != m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        let unknown = applied
            .iter()
            .map(|a| a.version)
            .filter(|&v| ups().all(|m| m.version != v))
            .max();
        let known = ups().map(|m| m.version).max().unwrap_or(0);
        Ok(Self {
            pending,
            unknown,
            known,
        })
    }

    /// The newest schema version the database has that this build does not know; read
    /// which release introduced it and pass it to [`SchemaState::newer_than_this_build`].
    pub fn unknown_version(&self) -> Option<i64> {
        self.unknown
    }

    /// The one-line refusal of a database migrated by a newer factlog.
    pub fn newer_than_this_build(&self, version: i64, release: Option<&str>) -> anyhow::Error {
        let needs = match release {
            Some(release) => format!("factlog {release} or newer"),
            None => "a newer factlog".to_owned(),
        };
        anyhow::anyhow!(
            "the database has schema version {version}, which needs {needs}; this is factlog {} (schema versions up to {}): run a newer factlog, or restore the backup taken before the upgrade",
            env!("CARGO_PKG_VERSION"),
            self.known
        )
    }

    /// Fails when a migration is pending: what `--no-migrate` needs.
    ///
    /// # Errors
    /// Names the pending migrations and the command that applies them.
    pub fn require_current(&self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "the database's schema is behind this build (not applied: {}) and --no-migrate forbids applying it: run `factlog migrate` with a role that may change the schema, then start again",
            self.pending.join(", ")
        )
    }

    /// Says which migrations are about to run, when the database already had some (a new
    /// database's are instant and not worth a line); returns when they started.
    pub fn announce(&self, applied: &[AppliedMigration]) -> Option<Instant> {
        if applied.is_empty() || self.pending.is_empty() {
            return None;
        }
        tracing::info!(
            migrations = %self.pending.join(", "),
            "migrating the database; on a large log this reads every fact once"
        );
        Some(Instant::now())
    }

    /// The newest schema version this build knows: the database's after migrating.
    pub fn known_version(&self) -> i64 {
        self.known
    }
}

/// Says that the announced migrations are done.
pub fn done(started: Option<Instant>) {
    if let Some(started) = started {
        tracing::info!(elapsed = ?started.elapsed(), "migrated the database");
    }
}
