//! Which PostgreSQL errors mean "not now" rather than "our fault".

use sqlx::postgres::PgDatabaseError;

use crate::storage::model::StorageError;

/// Sorts a database error into "the database cannot take this now" (no connection, out of
/// resources such as a full disk or too many connections, the server shutting down or in
/// recovery, a lock not had in time, a read-only server) and our own fault.
pub fn classify(err: sqlx::Error) -> StorageError {
    let unavailable = match &err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|pg| is_unavailable(pg.code())),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        _ => false,
    };
    if unavailable {
        StorageError::Unavailable(err.to_string())
    } else {
        StorageError::Internal(err.into())
    }
}

/// Whether a SQLSTATE means "not now".
fn is_unavailable(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || code.starts_with("57P") // admin or crash shutdown, cannot connect now
        || code == "55P03" // lock_not_available: `lock_timeout` passed
        || code == "57014" // query_canceled
        || code == "25006" // read_only_sql_transaction: a standby, or a read-only server
        || code == "40001" // serialization_failure
        || code == "40P01" // deadlock_detected
}
