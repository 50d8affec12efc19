//! Logging: `tracing` to stderr, filtered by `RUST_LOG`, as text or JSON (`--log-format`).
//!
//! The levels mean: `error`, our own fault (a 500, a failed writer); `warn`, a client's
//! mistake or the database refusing a write; `info`, start and stop; `debug`, one line per
//! request with its request id (`RUST_LOG=factlog=debug`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "factlog=info,poem=warn,sqlx=warn,warn";

/// Installs the global subscriber. Safe to call more than once (tests do): later calls
/// leave the first in place.
pub fn init(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Span fields (the request id) go into the line's own object.
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
