//! SQLite: the default engine, one file served by one factlog process.
//!
//! Two kinds of connection:
//! - one read-write connection, owned by the writer through [`Appender`]: nothing else
//!   writes;
//! - a small pool of read-only connections for the API and the streams ([`Reader`]). In
//!   WAL mode readers never block the writer and the writer never blocks readers.
//!
//! Readers show only ids at or below the durable watermark (`durable.rs`).

mod appender;
mod backup;
mod classify;
mod connect;
mod durable;
mod reader;
mod status;
mod topics;

pub use appender::Appender;
pub use backup::{Copied, backup};
pub use connect::{migrate, open};
pub use durable::{WalSync, Watermark};
pub use reader::Reader;
