//! The HTTP layer: everything between the socket and the log.
//!
//! - [`server`]: the accept loop and each connection (hyper, HTTP/1.1).
//! - [`routes`]: the route tree and the order of its middleware.
//! - [`middleware`]: the edge of every request, and the publishing guard.
//! - [`access`]: the one access check of every route that reads or writes the log.
//! - `api/`: the JSON API (publish, read, status) and the live page, described by OpenAPI.
//! - `sse/`: `GET /events`, the stream contract.
//! - `ops.rs`: `/healthz` and `/metrics`.
//! - [`error`]: every failure as a status and a JSON body; causes are logged, not sent.
//! - [`state`]: what every handler can reach.

pub mod access;
mod api;
pub mod error;
pub mod middleware;
mod ops;
pub mod routes;
pub mod server;
mod sse;
pub mod state;
pub mod tls;

pub use state::AppState;
