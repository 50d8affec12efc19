//! The `factlog` binary: parse the command line, start logging, build the app, and serve
//! until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser as _;
use factlog::{App, Config, telemetry};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than the system allocator; see the README's "Performance" section.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(telemetry::DEFAULT_FILTER);

    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => {
            // One line naming the problem and its causes; no panic, no backtrace.
            tracing::error!("cannot start: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await;
    ExitCode::SUCCESS
}

/// Cancels `shutdown` on the first SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes).
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(cause = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
