//! The command line. Every flag also reads an environment variable; the doc comment of
//! each field is its `--help` line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How hard a commit tries to reach the disk before a POST is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncLevel {
    /// An acknowledged fact survives power loss (SQLite: the write-ahead log is synced
    /// after each commit, before anyone sees the facts; PostgreSQL `synchronous_commit=on`).
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

/// The one algorithm JSON Web Tokens are accepted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlg {
    /// HMAC with SHA-256: the key is a shared secret.
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256: the key is a PEM public key.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256: the key is a PEM public key.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519: the key is a PEM public key.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// factlog: an append-only log of JSON facts, served over HTTP and Server-Sent Events.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to serve on (port 0 picks a free port; the start-up log line says which).
    #[arg(long, env = "FACTLOG_LISTEN", default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,

    /// Serve `GET /metrics` on this address (plain HTTP, nothing else on it) instead of on
    /// --listen, which then answers 404 there: metrics can be kept private.
    #[arg(long, env = "FACTLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Where the log lives: a sqlite:// file (one instance) or a postgres:// database
    /// (shared by several instances); created if missing and migrated on start (unless
    /// --no-migrate).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://facts.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Start without touching the schema, for a role without the right to change it: the
    /// database must exist and be migrated already (`factlog migrate`), or the start fails.
    #[arg(long, env = "FACTLOG_NO_MIGRATE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_migrate: bool,

    /// The `retry:` hint, in milliseconds, sent first on every event stream.
    #[arg(long, env = "FACTLOG_RETRY_MS", default_value_t = 2000)]
    pub retry_ms: u64,

    /// Idle event streams get a `: keep-alive` comment this often, in seconds.
    #[arg(long, env = "FACTLOG_KEEP_ALIVE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_alive_secs: u64,

    /// A static token that may publish to every topic: `Authorization: Bearer <token>`.
    /// With it (or with --jwt-key), publishing needs a token.
    #[arg(long, env = "FACTLOG_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// A key that verifies JSON Web Tokens (repeat the flag, or comma-separate in the
    /// variable, to accept several while rotating): for HS256 the secret, or @/path to
    /// read it from a file; for RS256, ES256 and EdDSA the path of a PEM public key. With
    /// it, publishing needs a token.
    #[arg(
        long = "jwt-key",
        env = "FACTLOG_JWT_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_keys: Vec<String>,

    /// The one algorithm tokens are accepted with; a token's own `alg` header never
    /// chooses.
    #[arg(long, env = "FACTLOG_JWT_ALG", value_enum, ignore_case = true,
          default_value_t = JwtAlg::Hs256)]
    pub jwt_alg: JwtAlg,

    /// When set, a token's `iss` must be this.
    #[arg(long, env = "FACTLOG_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, a token's `aud` must name this.
    #[arg(long, env = "FACTLOG_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds a token's `exp` and `nbf` may be off by, for clocks that differ; a stream
    /// ends this long after its token's `exp`.
    #[arg(long, env = "FACTLOG_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Comma-separated topic patterns anyone may read without a token (a name,
    /// `prefix.*`, or `*` for all); an empty value makes every read need a token.
    #[arg(long, env = "FACTLOG_PUBLIC_TOPICS", default_value = "*")]
    pub public_topics: String,

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

    /// A PEM file of the certificate chain, the server's own first: serve HTTPS, with
    /// HTTP/2 and HTTP/1.1 offered by ALPN. Read again on SIGHUP.
    #[arg(long, env = "FACTLOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// A PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1). Read again on
    /// SIGHUP.
    #[arg(long, env = "FACTLOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Log lines as human-readable text or as JSON objects (one per line).
    #[arg(long, env = "FACTLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// full: an acknowledged fact survives power loss; normal: survives a crash of the
    /// process.
    #[arg(long, env = "FACTLOG_SYNC", value_enum, default_value_t = SyncLevel::Full)]
    pub sync: SyncLevel,

    /// Keep at most this many of the newest facts, deleting older ones; unset, every fact
    /// is kept.
    #[arg(long, env = "FACTLOG_RETAIN_FACTS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_facts: Option<u64>,

    /// Delete facts older than this: seconds, or a number with s, m, h or d (`90s`, `12h`,
    /// `30d`); unset, every fact is kept.
    #[arg(long, env = "FACTLOG_RETAIN_AGE", value_parser = parse_duration)]
    pub retain_age: Option<u64>,
}

/// `factlog migrate`: which database to migrate.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The database, as the server's flag: a sqlite:// file or a postgres:// database;
    /// created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://facts.db",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// `factlog backup`: which log to copy, and where.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The new file to write the copy to; never overwritten.
    pub out: PathBuf,

    /// The log, as the server's flag: a sqlite:// file (PostgreSQL is backed up with its
    /// own tools).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://facts.db",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// `factlog token`: prints a signed token, for trying things out. Production tokens come
/// from the application's own backend.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The key that signs: for HS256 the secret, or @/path to read it from a file; for
    /// RS256, ES256 and EdDSA the path of a PEM private key (PKCS#8). With several, the
    /// first signs.
    #[arg(
        long = "jwt-key",
        env = "FACTLOG_JWT_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        required = true
    )]
    pub jwt_keys: Vec<String>,

    /// The algorithm to sign with.
    #[arg(long, env = "FACTLOG_JWT_ALG", value_enum, ignore_case = true,
          default_value_t = JwtAlg::Hs256)]
    pub jwt_alg: JwtAlg,

    /// The token's `iss`.
    #[arg(long, env = "FACTLOG_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The token's `aud`.
    #[arg(long, env = "FACTLOG_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The token's `sub`: who holds it (logged by the server).
    #[arg(long)]
    pub sub: Option<String>,

    /// Topic patterns it may read (repeat, or comma-separate): a name, `prefix.*`, `*`.
    #[arg(long, value_delimiter = ',')]
    pub subscribe: Vec<String>,

    /// Topic patterns it may publish to (repeat, or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub publish: Vec<String>,

    /// How long it is valid: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`,
    /// `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: u64,
}

/// A duration in seconds, from `90`, `90s`, `15m`, `1h` or `7d`.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&secs| secs > 0)
        .ok_or_else(|| format!("{text:?} is not a positive duration such as 90s, 15m, 1h, 7d"))
}

impl Config {
    /// The defaults of every flag, for a given address and database, ignoring the
    /// environment: what tests and the load generator start from.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        Self {
            listen,
            metrics_listen: None,
            database_url: database_url.into(),
            no_migrate: false,
            retry_ms: 2000,
            keep_alive_secs: 15,
            publish_token: None,
            jwt_keys: Vec::new(),
            jwt_alg: JwtAlg::Hs256,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: 30,
            public_topics: "*".to_owned(),
            cors_origins: Vec::new(),
            max_body_bytes: 65536,
            max_subscribers: 100_000,
            header_timeout_secs: 10,
            max_connections: 20_000,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Text,
            sync: SyncLevel::Full,
            retain_facts: None,
            retain_age: None,
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
    fn ttls_parse() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in ["", "0", "h", "1y", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
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
