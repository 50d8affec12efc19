//! Start-up, the accept loop, and shutdown, in a fixed order.
//!
//! [`App::build`] opens and migrates the database, reads the newest id, starts the writer
//! and binds, so that [`App::local_addr`] is known before serving (port 0 and the tests
//! need it). [`App::run`] accepts connections until the shutdown token fires, then: streams
//! end (the notifier closes; replaying ones watch the state's token), connections finish
//! the request in flight and close, the writer commits what is queued and stops, and the
//! database is closed.
//!
//! The accept loop is ours rather than `poem::Server`'s: it serves HTTP/1.1 with hyper
//! directly, which lets it bound how long a client may take to send its request head
//! (`--header-timeout-secs`, against connections that send nothing or trickle a byte at a
//! time) and how many connections are open at once (`--max-connections`), neither of which
//! poem exposes, and it keeps each idle stream's connection smaller (no protocol sniffing,
//! no HTTP/2 state). The routes are poem's as before. HTTP/2 for browsers comes from the
//! reverse proxy in front (see the README).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::{Addr, Endpoint};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::shutdown::Shutdown;
use crate::storage::writer::{self, WriterHandle};
use crate::storage::{Opened, Storage, redact};

/// How long requests in flight get to finish after shutdown starts. Streams end at once;
/// this only bounds a slow POST or a stuck client.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections waiting to be accepted; bursts of thousands of reconnecting browsers (after
/// a deploy, say) queue here instead of being refused.
const LISTEN_BACKLOG: u32 = 4096;

/// The largest request head (request line and headers) accepted. Beyond it: 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The body type poem's responses convert into for hyper.
type ResponseBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;
/// What the service gives hyper for each request.
type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<hyper::Response<ResponseBody>, Infallible>> + Send>>;

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
    /// Fires when the server is stopping; replaying streams and the follower end on it.
    pub shutdown: CancellationToken,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
}

/// A built, bound, not yet serving factlog.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    writer_task: JoinHandle<()>,
    /// With PostgreSQL, the task that follows the shared log.
    follow_task: Option<JoinHandle<()>>,
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
            appender,
            follow,
            newest_id,
        } = Storage::open(&config.database_url, config.sync).await?;
        let log_id = storage.log_id().await.context("cannot read the log's id")?;
        let notifier = Notifier::new(newest_id, config.max_subscribers);
        let metrics = Metrics::new();
        let (writer, writer_task) =
            writer::spawn(appender, Arc::clone(&notifier), Arc::clone(&metrics))
                .context("cannot start the writer's thread")?;
        let shutdown = CancellationToken::new();
        let follow_task = follow.map(|f| f.spawn(Arc::clone(&notifier), shutdown.clone()));

        let listener =
            bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener
            .local_addr()
            .context("the listener has no address")?;
        tracing::info!(
            addr = %local_addr,
            database = %redact(&config.database_url),
            newest_id,
            %log_id,
            "factlog listening on http://{local_addr}"
        );
        Ok(Self {
            listener,
            local_addr,
            state: AppState {
                storage,
                writer,
                notifier,
                config: Arc::new(config),
                log_id: log_id.into(),
                shutdown,
                metrics,
            },
            writer_task,
            follow_task,
        })
    }

    /// The address actually bound (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops in order (see the module comment).
    /// Failures of single connections are logged, not returned: the server goes on.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            listener,
            local_addr,
            state,
            writer_task,
            follow_task,
        } = self;
        let storage = state.storage.clone();
        let config = Arc::clone(&state.config);
        // Streams end as soon as shutdown starts: live ones when the notifier closes,
        // replaying ones when they see the state's token.
        let streams_stop = state.shutdown.clone();
        let notifier = Arc::clone(&state.notifier);

        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(config.header_timeout_secs))
            // A request head larger than this is refused with 431; bodies are read in
            // pieces and bounded by `--max-body-bytes` instead.
            .max_header_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let shared = Arc::new(Shared {
            http,
            routes: crate::routes::build(state),
            local_addr,
            shutdown: shutdown.clone(),
        });
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let connections = TaskTracker::new();
        loop {
            // At the limit, stop accepting: new connections wait in the kernel's backlog
            // until one closes, rather than each costing memory here.
            let slot = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (socket, remote) = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, usually: wait for some to be freed
                        // instead of spinning.
                        tracing::warn!(cause = %err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // No TCP_NODELAY: with Nagle's algorithm the kernel joins the small frames a
            // stream writes while its previous segment is unacknowledged, which halved the
            // server's CPU per delivery in the load generator's fan-out (and the readers'
            // wake-ups), for a delay of at most one acknowledgement: a round trip, or a
            // reader's delayed ACK (up to 40 ms on Linux). Answers to requests are written
            // in one piece, so Nagle never holds them back.
            connections.spawn(Arc::clone(&shared).serve(socket, remote, slot));
        }
        streams_stop.cancel();
        notifier.close();
        drop(listener);
        connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = connections.len(),
                "connections still open after the grace period; closing them"
            );
        }
        // The routes held every WriterHandle; with the connections gone the writer drains
        // its queue and stops. A connection still open past the grace period may hold one
        // a moment longer, hence the bound.
        drop(shared);
        match tokio::time::timeout(SHUTDOWN_GRACE, writer_task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(cause = %err, "the writer failed"),
            Err(_) => tracing::warn!("the writer did not stop in time"),
        }
        // The follower watches the streams' token, which fired above.
        if let Some(task) = follow_task {
            if let Err(err) = task.await {
                tracing::error!(cause = %err, "the follower task failed");
            }
        }
        storage.close().await;
        tracing::info!("stopped");
    }
}

/// Binds the listening socket with a backlog deep enough for reconnect storms.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Restarting must not wait for the old connections' TIME_WAIT to clear.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every connection's task needs, shared behind one pointer: each connection's task is
/// kept for the connection's whole life (an event stream's included), so what it captures
/// is paid for by every idle stream.
struct Shared<E> {
    http: http1::Builder,
    routes: E,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
}

impl<E: Endpoint<Output = poem::Response> + 'static> Shared<E> {
    /// Serves one connection until it closes. On shutdown, the request in flight finishes
    /// (streams end on their own), then the connection closes.
    fn serve(
        self: Arc<Self>,
        socket: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let shared = Arc::clone(&self);
        let service = hyper::service::service_fn(move |req| -> ServiceFuture {
            let shared = Arc::clone(&shared);
            // Boxed, so that what hyper keeps for the connection's life (its slot for the
            // request's future) is a pointer; the future itself is freed once the response
            // exists, which for an event stream is long before the end.
            Box::pin(async move {
                let req = poem::Request::from((
                    req,
                    poem::web::LocalAddr(Addr::SocketAddr(shared.local_addr)),
                    poem::web::RemoteAddr(Addr::SocketAddr(remote)),
                    poem::http::uri::Scheme::HTTP,
                ));
                let response = shared
                    .routes
                    .call(req)
                    .await
                    .unwrap_or_else(|err| err.into_response());
                Ok(hyper::Response::<ResponseBody>::from(response))
            })
        });
        let mut connection = self.http.serve_connection(TokioIo::new(socket), service);
        // The connection is `Unpin`, so the task polls it where it was captured: pinning
        // would move it and store it twice.
        async move {
            let shutdown = Shutdown::new(&self.shutdown);
            let served = tokio::select! {
                served = &mut connection => served,
                () = shutdown => {
                    Pin::new(&mut connection).graceful_shutdown();
                    (&mut connection).await
                }
            };
            if let Err(err) = served {
                // Clients hanging up and header timeouts end up here: not our fault.
                tracing::debug!(cause = %err, "connection ended with an error");
            }
            drop(slot);
        }
    }
}
