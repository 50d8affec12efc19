//! Migrations, announced. Start-up never reads the whole log, except once: a migration
//! may (adding topics builds an index over every fact). An operator watching a slow start
//! should read why, and how long it took.

use std::time::Instant;

use sqlx::migrate::{AppliedMigration, Migrator};

/// Says which migrations are about to run, when the database already had some (a new
/// database's are instant and not worth a line); returns when they started.
pub fn announce(migrator: &Migrator, applied: &[AppliedMigration]) -> Option<Instant> {
    if applied.is_empty() {
        return None;
    }
    let pending: Vec<String> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .filter(|m| applied.iter().all(|a| a.version != m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if pending.is_empty() {
        return None;
    }
    tracing::info!(
        migrations = %pending.join(", "),
        "migrating the database; on a large log this reads every fact once"
    );
    Some(Instant::now())
}

/// Says that the announced migrations are done.
pub fn done(started: Option<Instant>) {
    if let Some(started) = started {
        tracing::info!(elapsed = ?started.elapsed(), "migrated the database");
    }
}
