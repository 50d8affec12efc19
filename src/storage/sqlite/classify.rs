//! Which SQLite errors mean "not now" rather than "our fault".

use crate::storage::model::StorageError;

/// Sorts a database error into "the database cannot take this now" (busy or locked past
/// the timeout, read-only, an I/O error, full, cannot be opened; no connection to be had)
/// and our own fault.
pub fn classify(err: sqlx::Error) -> StorageError {
    // SQLite's primary result codes (the low byte of an extended code).
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    let unavailable = match &err {
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            matches!(
                primary,
                Some(BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN)
            )
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        _ => false,
    };
    if unavailable {
        StorageError::Unavailable(err.to_string())
    } else {
        StorageError::Internal(err.into())
    }
}
