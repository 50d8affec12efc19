//! factlog's test harness, shared by the tests (`tests/`) and the load generator
//! (`examples/load`), and never shipped:
//!
//! - [`app`]: a real server in the test's process, on a free port over a temporary SQLite
//!   file ([`spawn_app`], [`TestApp`]), restarted over the same file as a user would;
//! - [`sse`]: an event-stream reader that splits frames at blank lines and parses them
//!   as the SSE specification does;
//! - [`process`]: the factlog binary as a process, for signals, limits and its log;
//! - [`pg`]: a PostgreSQL database per test, on a throwaway cluster of Debian's
//!   PostgreSQL or on the server of `FACTLOG_TEST_POSTGRES_URL`;
//! - [`token`]: signed and forged tokens for the tests of who may read and write;
//! - [`tls`]: self-signed certificates and the clients that trust them, for HTTPS;
//! - [`nginx`]: Debian's nginx in front of factlog, configured with a README block as
//!   pasted.
//!
//! Everything a test needs is re-exported here: `use factlog_testkit::*;`.

pub mod app;
pub mod nginx;
pub mod pg;
pub mod process;
pub mod sse;
pub mod tls;
pub mod token;

use std::time::Duration;

pub use app::{Stopped, TestApp, all_ids, metric, spawn_app, spawn_https, spawn_with};
pub use process::{Process, factlog_binary, factlog_command, factlog_command_url};
pub use sse::{Event, SseStream, assert_consecutive, parse_event};

/// How long any single wait in a test may take before the test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);
