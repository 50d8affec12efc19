//! The `factlog` binary: parse the command line, start logging, build the app, and serve
//! until SIGINT or SIGTERM; or, as `factlog token`, print a signed token.

use std::process::ExitCode;

use clap::Parser;
use factlog::config::TokenArgs;
use factlog::{App, Config, auth, telemetry};
use tokio_util::sync::CancellationToken;

/// factlog: an append-only log of JSON facts, served over HTTP and Server-Sent Events.
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
    /// Print a signed token, for trying the server out (production tokens come from the
    /// application's own backend).
    Token(TokenArgs),
}

/// jemalloc rather than the system allocator; see the README's "Performance" section.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Cli::parse() {
        Cli {
            command: Some(Command::Token(args)),
            ..
        } => {
            return match auth::mint(&args) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("cannot make a token: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Cli { config, .. } => config,
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
