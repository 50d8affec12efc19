//! factlog's integration tests: one binary, each module one behaviour, every test against
//! a real server on a free port over a temporary SQLite file.

mod events;
mod faults;
mod helpers;
mod operations;
mod post_facts;
mod read_facts;
mod resume;
mod shutdown;
