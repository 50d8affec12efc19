//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default: start/stop and problems;
//! `RUST_LOG=factlog=debug` adds one line per request).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "factlog=info,poem=warn,sqlx=warn,warn";

/// Installs the global subscriber. Safe to call more than once (tests do): later calls
/// leave the first in place.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
