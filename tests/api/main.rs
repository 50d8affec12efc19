//! factlog's integration tests: one binary, each module one behaviour, every test against
//! a real server on a free port over a temporary SQLite file (or, in `postgres/`, a
//! PostgreSQL database of its own). The harness is the `factlog-testkit` crate;
//! `support.rs` holds what several files here check alike.

mod access;
mod backup;
mod bad_posts;
mod cli;
mod clients;
mod durability;
mod edge;
mod events;
mod faults;
mod https;
mod idempotency;
mod migration;
mod nginx;
mod openapi;
mod operations;
mod post_facts;
mod postgres;
mod publish_token;
mod read_facts;
mod resume;
mod retention;
mod schema;
mod shutdown;
mod slow_readers;
mod support;
mod systemd;
mod token_expiry;
mod tokens;
mod topics;
