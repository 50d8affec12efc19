//! factlog keeps an append-only log of JSON facts in SQLite (or in PostgreSQL, shared by
//! several instances) and serves it over HTTP; clients follow it live over Server-Sent
//! Events and resume after any interruption with `Last-Event-ID`, with no gap and no
//! duplicate.
//!
//! # The life of a fact
//!
//! 1. `POST /facts` ([`api`]) checks the token and the body size, parses the body, the
//!    event name and the idempotency key into domain types ([`domain`]), and hands the
//!    fact to the writer.
//! 2. The writer ([`storage::writer`]), the only task in the process that writes,
//!    commits whatever is queued as one group in one transaction. Only when the commit
//!    has returned, durable under `--sync`, are the requests answered.
//! 3. The committed group goes to the notifier ([`notifier`]), which renders each fact's
//!    SSE frame once and broadcasts the group to every open stream. With PostgreSQL, what
//!    other instances and programs commit reaches it through the follower
//!    ([`storage::postgres`]), in id order.
//! 4. Each stream ([`sse`]) first replays the log from the database after its start
//!    position, then writes the broadcast groups, skipping what it already sent; if it
//!    falls behind the broadcast buffer it goes back to the database. Its ids strictly
//!    increase and nothing is skipped.
//!
//! [`app`] fixes the start-up and shutdown order; [`routes`] composes the endpoints and
//! middleware; [`error`] maps every failure to a status and a JSON body; [`metrics`]
//! counts what operators watch.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod notifier;
pub mod routes;
pub mod shutdown;
pub mod sse;
pub mod storage;
pub mod telemetry;

pub use app::{App, AppState};
pub use config::Config;
