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
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Policy;
use crate::config::Config;
use crate::domain::Retention;
use crate::http::server::{self, Limits};
use crate::http::{AppState, routes};
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::storage::writer::{self, WriterHandle};
use crate::storage::{self, Follower, Opened, Storage, redact};

/// How long requests in flight get to finish after shutdown starts. Streams end at once;
/// this only bounds a slow POST or a stuck client.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A built, bound, not yet serving factlog.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
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
        // Before the database: a key that cannot be read stops the start at once.
        let policy = Policy::from_config(&config)?;
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
        } = storage::open(&config.database_url, config.sync).await?;
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
        tracing::info!(
            addr = %local_addr,
            database = %redact(&config.database_url),
            newest_id,
            %log_id,
            access = ?policy.describe(),
            retention = %retention,
            "factlog listening on http://{local_addr}"
        );
        Ok(Self {
            listener,
            local_addr,
            config: Arc::new(config),
            policy: Arc::new(policy),
            storage,
            writer,
            writer_task,
            follower,
            notifier,
            metrics,
            log_id: log_id.into(),
        })
    }

    /// The address actually bound (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops in order (see the module comment).
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            listener,
            local_addr: _,
            config,
            policy,
            storage,
            writer,
            writer_task,
            follower,
            notifier,
            metrics,
            log_id,
        } = self;
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
        let routes = routes::build(AppState {
            storage: storage.clone(),
            writer,
            notifier: Arc::clone(&notifier),
            config,
            policy,
            log_id,
            shutdown: shutdown.clone(),
            metrics,
        });
        let connections = server::accept_until(listener, routes, limits, &shutdown).await;

        // Live streams end when the fan-out closes; replaying ones saw the token.
        notifier.close();
        let open = connections.drain(SHUTDOWN_GRACE).await;
        if open > 0 {
            tracing::warn!(
                open,
                "connections still open after the grace period; closing them"
            );
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
