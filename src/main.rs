//! The `factlog` binary: `factlog serve` (or no command) serves the log until SIGINT or
//! SIGTERM; the other commands look after a database or print a token, and exit.

use std::process::ExitCode;

use clap::Parser;
use factlog::client::{self, PublishArgs, TailArgs};
use factlog::config::{BackupArgs, MigrateArgs, TokenArgs};
use factlog::{App, Config, auth, storage, telemetry};
use tokio_util::sync::CancellationToken;

/// factlog: an append-only log of JSON facts, served over HTTP and Server-Sent Events.
///
/// With no command it serves, as `factlog serve` does.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the log (what `factlog` with no command does).
    Serve(Box<Config>),
    /// Create the database if missing, apply pending migrations, and exit (for a role
    /// that may change the schema; servers can then start with --no-migrate).
    Migrate(MigrateArgs),
    /// Copy a SQLite log, while servers go on using it, into a new file.
    Backup(BackupArgs),
    /// Follow a server's log, printing one fact per line; resumes exactly where it
    /// stopped with --state.
    Tail(TailArgs),
    /// Publish a fact, or one fact per line of standard input, each with an idempotency
    /// key: a retry or a rerun never appends twice.
    Publish(PublishArgs),
    /// Print a signed token, for trying the server out (production tokens come from the
    /// application's own backend).
    Token(TokenArgs),
}

/// jemalloc rather than the system allocator; see the README's "Performance" section.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    let config = match command {
        None => config,
        Some(Command::Serve(config)) => *config,
        Some(Command::Migrate(args)) => {
            telemetry::init(telemetry::DEFAULT_FILTER, config.log_format);
            return report(storage::migrate(&args.database_url).await.map(|version| {
                format!(
                    "{}: at schema version {version}",
                    storage::redact(&args.database_url)
                )
            }));
        }
        Some(Command::Backup(args)) => {
            return report(
                storage::backup(&args.database_url, &args.out)
                    .await
                    .map(|copy| {
                        format!(
                            "{} copied into {}: facts up to id {}, {} bytes",
                            storage::redact(&args.database_url),
                            args.out.display(),
                            copy.newest_id,
                            copy.bytes
                        )
                    }),
            );
        }
        Some(Command::Tail(args)) => {
            let stop = CancellationToken::new();
            cancel_on_signal(stop.clone());
            return match client::tail(args, stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("factlog tail: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Publish(args)) => {
            return match client::publish(args).await {
                Ok(published) => {
                    eprintln!(
                        "factlog publish: {} appended, {} already in the log",
                        published.appended, published.already
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("factlog publish: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Token(args)) => {
            return report(anyhow::Context::context(
                auth::mint(&args),
                "cannot make a token",
            ));
        }
    };
    telemetry::init(telemetry::DEFAULT_FILTER, config.log_format);
    // Signals are listened for before anything starts: a SIGTERM that arrives while the
    // database is being opened stops the server as soon as it is up, cleanly, instead of
    // killing it half-started.
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    #[cfg(target_os = "linux")]
    survive_file_size_limit();
    // Every connection is a file descriptor: use all the system allows (the soft limit is
    // often 1,024, far below --max-connections).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(cause = %err, "cannot raise the open file limit"),
    }

    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => {
            // One line naming the problem and its causes; no panic, no backtrace.
            tracing::error!("cannot start: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    app.run(shutdown).await;
    ExitCode::SUCCESS
}

/// Prints what a one-shot command made, or its error in one line; the exit status says
/// which.
fn report(outcome: anyhow::Result<String>) -> ExitCode {
    match outcome {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("factlog: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A write past the file-size limit (`RLIMIT_FSIZE`, `ulimit -f`) raises SIGXFSZ, whose
/// default action kills the process. Handled, the write just fails, and the POST gets the
/// same 503 as on a full disk, with nothing written; posting works again once the limit is
/// raised.
#[cfg(target_os = "linux")]
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGXFSZ is 25 on every Linux architecture tokio runs on.
    const SIGXFSZ: i32 = 25;
    match signal(SignalKind::from_raw(SIGXFSZ)) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    tracing::warn!("a write went past the file-size limit (SIGXFSZ)");
                }
            });
        }
        Err(err) => tracing::warn!(cause = %err, "cannot handle SIGXFSZ"),
    }
}

/// Cancels `shutdown` on the first SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes). The
/// handlers are installed before this returns.
fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    tracing::info!("shutting down");
                    shutdown.cancel();
                });
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(cause = %err, "cannot listen for signals; only Ctrl-C stops the server");
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                });
            }
        }
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
}
