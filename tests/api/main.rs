//! factlog's integration tests: one binary, each module one behaviour, every test against
//! a real server on a free port over a temporary SQLite file (or, in `postgres.rs`, a
//! PostgreSQL database of its own).

mod events;
mod faults;
mod helpers;
mod operations;
#[path = "../support/pg.rs"]
mod pg;
mod post_facts;
mod postgres;
mod read_facts;
mod resume;
mod shutdown;
