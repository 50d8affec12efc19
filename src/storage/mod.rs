//! The log on disk: the only module that names SQL (with the `factlog-postgres` crate,
//! which holds PostgreSQL's checked queries). Above the domain types, below everything
//! else: it never imports the notifier or the HTTP layer; committed facts leave it
//! through the [`Publish`] trait, which the notifier implements.
//!
//! - `engine.rs`: the boundary. [`open`] picks the engine from the URL's scheme and hands
//!   back [`Storage`] (reads), an [`Appender`] (for the writer) and, with PostgreSQL, a
//!   [`Follower`].
//! - `model.rs`, `page.rs`: the engine-neutral types: [`Appended`], [`StorageError`],
//!   [`Publish`], [`Selection`] (topics and event types), and replay pages rendered into
//!   frames ([`FramePage`]); `migrate.rs` applies or checks the schema ([`SchemaMode`])
//!   and refuses one newer than this build.
//! - `sqlite/`: the default engine, one file and one process.
//! - `postgres/`: one database shared by many instances and by programs that publish
//!   through SQL; its follower publishes what others commit.
//! - [`writer`]: the one thread that appends, in groups; `queue.rs`, its queue and the
//!   rule for closing a group; `syncer.rs`, what reveals and answers a committed group
//!   once it is durable; `retention.rs`, what the log keeps and when the writer
//!   deletes the rest.
//!
//! Files here import siblings, never this front door, so the imports stay one-way.

mod engine;
mod migrate;
mod model;
mod page;
mod postgres;
mod queue;
mod retention;
mod sqlite;
mod syncer;
pub mod writer;

pub use engine::{Appender, Engine, Follower, Opened, Storage, backup, migrate, open};
pub use migrate::SchemaMode;
pub use model::{Appended, Bounds, Publish, Selection, StorageError, TopicSummary, redact};
pub use page::FramePage;
pub use sqlite::Copied;
