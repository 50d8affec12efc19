//! factlog keeps an append-only log of JSON facts in SQLite (or in PostgreSQL, shared by
//! several instances) and serves it over HTTP; clients follow it live over Server-Sent
//! Events and resume after any interruption with `Last-Event-ID`, with no gap and no
//! duplicate.
//!
//! # The life of a fact
//!
//! 1. Our own HTTP/1.1 server ([`http::server`], hyper under poem's routes) hands
//!    `POST /facts` to the edge layer ([`http::middleware::edge`]: request id, access
//!    log), then the publishing guard (the access check of [`http::access`], which has
//!    [`auth`] identify the token and asks whether it may publish to the topic; then the
//!    body within its limit), then the handler (`http/api/facts.rs`), which parses the body, the event name and the
//!    idempotency key into domain types ([`domain`]) and hands the fact to the writer.
//! 2. The writer ([`storage::writer`]), a thread of its own and the only writer in the
//!    process, gathers what is queued into one group and commits it in one transaction
//!    (SQLite's `storage/sqlite.rs`, or PostgreSQL's `factlog_append`). Only when the
//!    commit has returned, durable under `--sync`, does it publish the group and answer
//!    the requests.
//! 3. The notifier ([`notifier`]) renders each fact's SSE frame once (the text of every
//!    frame comes from [`domain::frame`]) and broadcasts the group to every open stream.
//!    With PostgreSQL, what other instances and programs commit reaches it through the
//!    follower (`storage/postgres/follower.rs`), in id order.
//! 4. Each stream (`http/sse/`) first replays the log after its start position, from pages
//!    the database packs into one string and storage renders with the same frame code
//!    (`storage/page.rs`); then it writes the broadcast groups, skipping what it already
//!    sent; if it falls behind the broadcast buffer it goes back to the database. Its ids
//!    strictly increase and nothing is skipped. It was opened only if the same access
//!    check let the caller read its topics, and it ends with `token-expired` when the
//!    caller's token does.
//!
//! [`app`] fixes the start-up and shutdown order.
//!
//! # Layers
//!
//! Imports run downward only, so each concern has one home and a change finds it:
//!
//! 1. leaves, which import nothing of ours: [`domain`] (values and frame text),
//!    [`config`] (the command line), [`metrics`], [`shutdown`]; then [`telemetry`],
//!    [`auth`] (tokens and who may read and write) and [`client`] (`factlog tail` and
//!    `factlog publish`, which speak only the HTTP API);
//! 2. [`storage`]: engines, the writer; committed facts leave it through
//!    [`storage::Publish`];
//! 3. [`notifier`]: the fan-out, which implements `Publish`;
//! 4. [`http`]: server, routes, middleware, JSON API, streams;
//! 5. [`app`], which composes them.
//!
//! Inside a folder, files import their siblings and never the folder's `mod.rs`, which
//! only declares and re-exports. `tests/layers.rs` fails on an import that goes up a layer
//! or closes a cycle.

pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod notifier;
pub mod shutdown;
pub mod storage;
pub mod telemetry;

pub use app::App;
pub use config::Config;
