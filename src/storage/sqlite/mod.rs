//! SQLite: the default engine, one file served by one factlog process.
//!
//! Two kinds of connection:
//! - one read-write connection, owned by the writer through [`Appender`]: nothing else
//!   writes;
//! - a small pool of read-only connections for the API and the streams ([`Reader`]). In
//!   WAL mode readers never block the writer and the writer never blocks readers.

mod appender;
mod backup;
mod classify;
mod connect;
mod reader;
mod topics;

pub use appender::Appender;
pub use backup::{Copied, backup};
pub use connect::{migrate, open};
pub use reader::Reader;
