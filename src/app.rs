//! Start-up and shutdown, in a fixed order; the top layer, composing the others.
//!
//! [`App::build`] opens and migrates the database, reads the newest id, starts the writer
//! and binds, so that [`App::local_addr`] is known before serving (port 0 and the tests
//! need it). [`App::run`] serves until its shutdown token fires, then: the server stops
//! accepting; streams end (live ones when the notifier closes, replaying ones and the
//! follower on the token); connections finish the request in flight and close; the writer
//! commits what is queued and stops; the database is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Policy;
use crate::config::Config;
use crate::domain::Retention;
use crate::http::server::{self, Limits};
use crate::http::tls::Tls;
use crate::http::{AppState, routes};
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::storage::writer::{self, WriterHandle};
use crate::storage::{self, Follower, Opened, SchemaMode, Storage, redact};

/// How long requests in flight get to finish after shutdown starts. Streams end at once;
/// this only bounds a slow POST or a stuck client.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A built, bound, not yet serving factlog.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// With `--metrics-listen`, the address `/metrics` is served on instead.
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    config: Arc<Config>,
    policy: Arc<Policy>,
    storage: Storage,
    writer: WriterHandle,
    writer_task: JoinHandle<()>,
    /// With PostgreSQL, what follows the shared log; started by [`App::run`].
    follower: Option<Follower>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    log_id: Arc<str>,
    /// With `--tls-cert`, the certificate connections are accepted with.
    tls: Option<Arc<Tls>>,
    /// SIGHUP, caught from the start (its default action would stop the process).
    #[cfg(unix)]
    hangups: Option<tokio::signal::unix::Signal>,
}

impl App {
    /// Opens the database, starts the writer and binds the listening socket.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated, or the address cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.publish_token.as_deref() == Some("") {
            anyhow::bail!("--publish-token is empty: give a secret, or leave the flag out");
        }
        // Before the database: a key or certificate that cannot be read stops the start at
        // once.
        let policy = Policy::from_config(&config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            _ => None,
        };
        if !policy.checks_tokens() && !policy.everything_is_public() {
            tracing::warn!(
                "--public-topics narrows what anyone may read, but without --jwt-key no token can grant the rest: only the public topics can be read"
            );
        }
        let Opened {
            storage,
            appender,
            follower,
            newest_id,
        } = storage::open(
            &config.database_url,
            config.sync,
            if config.no_migrate {
                SchemaMode::Check
            } else {
                SchemaMode::Migrate
            },
        )
        .await?;
        let log_id = storage.log_id().await.context("cannot read the log's id")?;
        let notifier = Notifier::new(newest_id, config.max_subscribers);
        let metrics = Metrics::new();
        let retention = Retention {
            facts: config.retain_facts,
            age: config.retain_age.map(Duration::from_secs),
        };
        if retention
            .age
            .is_some_and(|age| age < Duration::from_secs(86_400))
        {
            tracing::warn!(
                "--retain-age is shorter than a day: idempotency keys are forgotten with their facts, so a publisher retrying after that long appends the fact again"
            );
        }
        let (writer, writer_task) = writer::spawn(
            appender,
            Arc::clone(&notifier) as Arc<dyn storage::Publish>,
            retention,
            Arc::clone(&metrics),
        )
        .context("cannot start the writer's thread")?;

        let listener = server::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener
            .local_addr()
            .context("the listener has no address")?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let listener = server::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} for --metrics-listen"))?;
                let bound = listener
                    .local_addr()
                    .context("the listener has no address")?;
                tracing::info!(addr = %bound, "metrics served on http://{bound}/metrics");
                Some((listener, bound))
            }
            None => None,
        };
        #[cfg(unix)]
        let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(err) => {
                tracing::warn!(cause = %err, "cannot listen for SIGHUP");
                None
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(
            addr = %local_addr,
            database = %redact(&config.database_url),
            newest_id,
            %log_id,
            access = ?policy.describe(),
            retention = %retention,
            "factlog listening on {scheme}://{local_addr}"
        );
        Ok(Self {
            listener,
            local_addr,
            metrics_listener,
            config: Arc::new(config),
            policy: Arc::new(policy),
            storage,
            writer,
            writer_task,
            follower,
            notifier,
            metrics,
            log_id: log_id.into(),
            tls,
            #[cfg(unix)]
            hangups,
        })
    }

    /// The address actually bound (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on with `--metrics-listen` (the real port when it
    /// asked for port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until `shutdown` is cancelled, then stops in order (see the module comment).
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            listener,
            local_addr,
            metrics_listener,
            config,
            policy,
            storage,
            writer,
            writer_task,
            follower,
            notifier,
            metrics,
            log_id,
            tls,
            #[cfg(unix)]
            hangups,
        } = self;
        #[cfg(unix)]
        if let Some(hangups) = hangups {
            tokio::spawn(reload_on_hangup(hangups, tls.clone(), shutdown.clone()));
        }
        let follower = follower.map(|f| {
            f.spawn(
                Arc::clone(&notifier) as Arc<dyn storage::Publish>,
                shutdown.clone(),
            )
        });
        let limits = Limits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            max_connections: config.max_connections,
        };
        let state = AppState {
            storage: storage.clone(),
            writer,
            notifier: Arc::clone(&notifier),
            config,
            policy,
            log_id,
            shutdown: shutdown.clone(),
            metrics,
        };
        // Its routes hold a WriterHandle too: it is drained before the writer is awaited.
        let metrics_server = metrics_listener.map(|(listener, _)| {
            let routes = routes::metrics_only(state.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let connections = server::accept_until(listener, routes, limits, None, &shutdown);
                connections.await.drain(SHUTDOWN_GRACE).await
            })
        });
        let routes = routes::build(state);
        let acceptor = tls.as_deref().map(Tls::acceptor);
        // Ready: migrated, bound, and the accept loop starts now (connections made before
        // it wait in the listen queue). A unit with `Type=notify` starts its dependents here.
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tell_systemd(&[
            NotifyState::Ready,
            NotifyState::Status(&format!("serving on {scheme}://{local_addr}")),
        ]);
        let connections = server::accept_until(listener, routes, limits, acceptor, &shutdown).await;

        tell_systemd(&[NotifyState::Stopping]);
        // Live streams end when the fan-out closes; replaying ones saw the token.
        notifier.close();
        let open = connections.drain(SHUTDOWN_GRACE).await;
        if open > 0 {
            tracing::warn!(
                open,
                "connections still open after the grace period; closing them"
            );
        }
        if let Some(task) = metrics_server {
            if let Err(err) = task.await {
                tracing::error!(cause = %err, "the metrics server failed");
            }
        }
        // The routes held every WriterHandle; with the connections gone the writer drains
        // its queue and stops. A connection still open past the grace period may hold one
        // a moment longer, hence the bound.
        match tokio::time::timeout(SHUTDOWN_GRACE, writer_task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(cause = %err, "the writer failed"),
            Err(_) => tracing::warn!("the writer did not stop in time"),
        }
        // The follower watches the token, which has fired.
        if let Some(task) = follower {
            if let Err(err) = task.await {
                tracing::error!(cause = %err, "the follower task failed");
            }
        }
        storage.close().await;
        tracing::info!("stopped");
    }
}

/// Reloads the certificate on every SIGHUP until `shutdown` (open connections keep theirs).
/// Without TLS there is nothing to reload, but the signal is still caught, so that a
/// habitual `kill -HUP` or systemd's `ExecReload` does not stop the server.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            tell_systemd(&[NotifyState::Reloading, now]);
        }
        match &tls {
            None => tracing::info!("SIGHUP: nothing to reload (no --tls-cert)"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: the TLS certificate was reloaded"),
                Err(err) => tracing::error!(
                    cause = format!("{err:#}"),
                    "SIGHUP: the TLS certificate was not reloaded; the one in use stays"
                ),
            },
        }
        tell_systemd(&[NotifyState::Ready]);
    }
}

/// Tells systemd (when it started factlog with `Type=notify`, and so set `NOTIFY_SOCKET`)
/// how the service is doing; without it this does nothing.
fn tell_systemd(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(cause = %err, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
