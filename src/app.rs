//! Start-up and shutdown, in a fixed order.
//!
//! [`App::build`] opens and migrates the database, reads the newest id, starts the writer,
//! builds the routes and binds, so that [`App::local_addr`] is known before serving (port
//! 0 and the tests need it). [`App::run`] serves until the shutdown token fires, then:
//! streams end (they watch the token), the server stops accepting and finishes requests in
//! flight, the writer commits what is queued and stops, and the database is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use poem::listener::{Acceptor as _, Listener as _, TcpAcceptor, TcpListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::notifier::Notifier;
use crate::storage::writer::{self, WriterHandle};
use crate::storage::{Opened, Storage};

/// How long requests in flight get to finish after shutdown starts. Streams end at once;
/// this only bounds a slow POST or a stuck client.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every request handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Read access to the log.
    pub storage: Storage,
    /// The way to append.
    pub writer: WriterHandle,
    /// Fan-out, newest id, stream count.
    pub notifier: Arc<Notifier>,
    /// The command line.
    pub config: Arc<Config>,
    /// The identity of this log.
    pub log_id: Arc<str>,
    /// Fires when the server is stopping; streams end on it.
    pub shutdown: CancellationToken,
}

/// A built, bound, not yet serving factlog.
pub struct App {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    state: AppState,
    writer_task: JoinHandle<()>,
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
        let Opened {
            storage,
            writer: writer_conn,
            newest_id,
        } = Storage::open(&config.database_url, config.sync).await?;
        let log_id = storage.log_id().await.context("cannot read the log's id")?;
        let notifier = Notifier::new(newest_id, config.max_subscribers);
        let (writer, writer_task) = writer::spawn(writer_conn, Arc::clone(&notifier));

        let acceptor = TcpListener::bind(config.listen)
            .into_acceptor()
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .context("the listener has no address")?;
        tracing::info!(
            addr = %local_addr,
            database = %config.database_url,
            newest_id,
            %log_id,
            "factlog listening on http://{local_addr}"
        );
        Ok(Self {
            acceptor,
            local_addr,
            state: AppState {
                storage,
                writer,
                notifier,
                config: Arc::new(config),
                log_id: log_id.into(),
                shutdown: CancellationToken::new(),
            },
            writer_task,
        })
    }

    /// The address actually bound (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops in order (see the module comment).
    ///
    /// # Errors
    /// When the server fails while serving.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            acceptor,
            state,
            writer_task,
            ..
        } = self;
        let storage = state.storage.clone();
        // Streams watch a child token, so they end as soon as shutdown starts.
        let streams_stop = state.shutdown.clone();
        let routes = crate::routes::build(state);
        let stop_streams = shutdown.clone();
        tokio::spawn(async move {
            stop_streams.cancelled().await;
            streams_stop.cancel();
        });
        let served = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(routes, shutdown.cancelled_owned(), Some(SHUTDOWN_GRACE))
            .await;
        // The route tree held every WriterHandle; with it gone the writer drains its queue
        // and stops. A connection still open past the grace period may hold one a moment
        // longer, hence the bound.
        match tokio::time::timeout(SHUTDOWN_GRACE, writer_task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(cause = %err, "the writer task failed"),
            Err(_) => tracing::warn!("the writer did not stop in time"),
        }
        storage.close().await;
        tracing::info!("stopped");
        served.context("the HTTP server failed")
    }
}
