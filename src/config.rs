//! The command line. Every flag also reads an environment variable; the doc comment of
//! each field is its `--help` line.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// How hard a commit tries to reach the disk before a POST is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncLevel {
    /// An acknowledged fact survives power loss (SQLite `synchronous=FULL`; PostgreSQL
    /// `synchronous_commit=on`).
    Full,
    /// An acknowledged fact survives a crash of the process (SQLite `synchronous=NORMAL`;
    /// PostgreSQL `synchronous_commit=off`: a crash of the database server may lose the
    /// last moment of facts).
    Normal,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// factlog: an append-only log of JSON facts, served over HTTP and Server-Sent Events.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to serve on (port 0 picks a free port; the start-up log line says which).
    #[arg(long, env = "FACTLOG_LISTEN", default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,

    /// Where the log lives: a sqlite:// file (one instance) or a postgres:// database
    /// (shared by several instances); created if missing and migrated on start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://facts.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// The `retry:` hint, in milliseconds, sent first on every event stream.
    #[arg(long, env = "FACTLOG_RETRY_MS", default_value_t = 2000)]
    pub retry_ms: u64,

    /// Idle event streams get a `: keep-alive` comment this often, in seconds.
    #[arg(long, env = "FACTLOG_KEEP_ALIVE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_alive_secs: u64,

    /// When set, POST needs `Authorization: Bearer <token>`.
    #[arg(long, env = "FACTLOG_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// Origins allowed to call the API from a browser (repeat the flag, or comma-separate
    /// in the variable); any origin when unset.
    #[arg(
        long = "cors-origin",
        env = "FACTLOG_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// POST bodies larger than this many bytes are refused with 413.
    #[arg(long, env = "FACTLOG_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,

    /// Event streams beyond this many are refused with 503.
    #[arg(long, env = "FACTLOG_MAX_SUBSCRIBERS", default_value_t = 100_000)]
    pub max_subscribers: usize,

    /// Seconds a client may take to send a request's head; connections that send nothing,
    /// or trickle it, are closed after this.
    #[arg(long, env = "FACTLOG_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Open connections (streams and requests together) beyond this many wait in the
    /// listen queue until one closes.
    #[arg(long, env = "FACTLOG_MAX_CONNECTIONS", default_value_t = 20_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Log lines as human-readable text or as JSON objects (one per line).
    #[arg(long, env = "FACTLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// full: an acknowledged fact survives power loss; normal: survives a crash of the
    /// process.
    #[arg(long, env = "FACTLOG_SYNC", value_enum, default_value_t = SyncLevel::Full)]
    pub sync: SyncLevel,
}

impl Config {
    /// The defaults of every flag, for a given address and database, ignoring the
    /// environment: what tests and the load generator start from.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        Self {
            listen,
            database_url: database_url.into(),
            retry_ms: 2000,
            keep_alive_secs: 15,
            publish_token: None,
            cors_origins: Vec::new(),
            max_body_bytes: 65536,
            max_subscribers: 100_000,
            header_timeout_secs: 10,
            max_connections: 20_000,
            log_format: LogFormat::Text,
            sync: SyncLevel::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_parse() {
        Config::command().debug_assert();
        let c = Config::parse_from([
            "factlog",
            "--cors-origin",
            "http://a.test,http://b.test",
            "--sync",
            "normal",
        ]);
        assert_eq!(c.cors_origins, ["http://a.test", "http://b.test"]);
        assert_eq!(c.sync, SyncLevel::Normal);
    }

    #[test]
    fn new_matches_the_flag_defaults() {
        let parsed = Config::try_parse_from(["factlog"]);
        if std::env::vars().any(|(k, _)| k.starts_with("FACTLOG_") || k == "DATABASE_URL") {
            return; // the environment sets flags; the comparison would not be fair
        }
        let parsed = parsed.expect("defaults parse");
        let new = Config::new(parsed.listen, parsed.database_url.clone());
        assert_eq!(format!("{parsed:?}"), format!("{new:?}"));
    }
}
