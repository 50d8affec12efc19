//! Which SQLite errors mean "not now" rather than "our fault", from either library: the
//! readers' (sqlx) and the writer's (rusqlite).

use crate::storage::model::StorageError;

/// Sorts a readers' error into "the database cannot take this now" (see [`not_now`]; or no
/// connection to be had) and our own fault.
pub fn classify(err: sqlx::Error) -> StorageError {
    let unavailable = match &err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(not_now),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        _ => false,
    };
    if unavailable {
        StorageError::Unavailable(err.to_string())
    } else {
        StorageError::Internal(err.into())
    }
}

/// The same sorting for the writer's errors.
pub fn classify_write(err: rusqlite::Error) -> StorageError {
    let unavailable = match &err {
        rusqlite::Error::SqliteFailure(failure, _) => not_now(failure.extended_code),
        _ => false,
    };
    if unavailable {
        StorageError::Unavailable(err.to_string())
    } else {
        StorageError::Internal(err.into())
    }
}

/// Whether a SQLite result code (extended or primary) means the database cannot take the
/// statement now: busy or locked past the timeout, read-only, an I/O error, full, cannot
/// be opened.
fn not_now(code: i32) -> bool {
    // SQLite's primary result codes: the low byte of an extended code.
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    matches!(
        code & 0xff,
        BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN
    )
}
