//! The command-line client in the same binary, for shells and scripts: `factlog tail`
//! follows a server's log as a browser does (resuming after the last id it printed, across
//! drops and restarts, from a state file across its own restarts), and `factlog publish`
//! posts facts with idempotency keys, so that a retry or a rerun never appends twice.
//!
//! It speaks only the public HTTP API, like any other client, and imports nothing of the
//! server: `connection.rs` is how a command reaches the server (URL, token, trusted
//! certificates), `tail.rs` and `publish.rs` the two commands.

mod connection;
mod publish;
mod tail;

pub use connection::ServerArgs;
pub use publish::{PublishArgs, publish};
pub use tail::{TailArgs, tail};
