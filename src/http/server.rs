//! The HTTP/1.1 server: the accept loop and each connection's task.
//!
//! The loop is ours rather than `poem::Server`'s: it serves HTTP/1.1 with hyper directly,
//! which lets it bound how long a client may take to send its request head
//! (`--header-timeout-secs`, against connections that send nothing or trickle a byte at a
//! time) and how many connections are open at once (`--max-connections`), neither of which
//! poem exposes, and it keeps each idle stream's connection smaller (no protocol sniffing,
//! no HTTP/2 state). The routes are poem's.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::{Addr, Endpoint};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::shutdown::Cancelled;

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

/// Binds the listening socket with a backlog deep enough for reconnect storms.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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

/// The limits every connection is served under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The time a client has to send a whole request head.
    pub header_timeout: Duration,
    /// Open connections at most; more wait in the listen queue.
    pub max_connections: usize,
}

/// The connections still open once the server stopped accepting.
pub struct Connections(TaskTracker);

impl Connections {
    /// Waits up to `grace` for the open connections to finish the request in flight and
    /// close (streams end on their own); returns how many were still open after it.
    pub async fn drain(self, grace: Duration) -> usize {
        self.0.close();
        match tokio::time::timeout(grace, self.0.wait()).await {
            Ok(()) => 0,
            Err(_) => self.0.len(),
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` fires; then stops accepting, tells every
/// open connection to close once its request in flight is answered, and hands them back
/// to be drained. Failures of single connections are logged, not returned.
pub async fn accept_until<E>(
    listener: TcpListener,
    routes: E,
    limits: Limits,
    shutdown: &CancellationToken,
) -> Connections
where
    E: Endpoint<Output = poem::Response> + 'static,
{
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A request head larger than this is refused with 431; bodies are read in pieces
        // and bounded by `--max-body-bytes` instead.
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        http,
        routes,
        local_addr,
        shutdown: shutdown.clone(),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        // stream writes while its previous segment is unacknowledged, which halves the
        // server's CPU per delivery and the readers' wake-ups under fan-out, for a delay of
        // at most one acknowledgement: a round trip, or a reader's delayed ACK. Answers to
        // requests are written in one piece, so Nagle never holds them back.
        connections.spawn(Arc::clone(&shared).serve(socket, remote, slot));
    }
    Connections(connections)
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
            let shutdown = Cancelled::new(&self.shutdown);
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
