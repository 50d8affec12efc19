//! The server: the accept loop and each connection's task, over plain TCP (HTTP/1.1) or
//! TLS (HTTP/2 or HTTP/1.1, as ALPN chose).
//!
//! The loop is ours rather than `poem::Server`'s: it serves with hyper directly, which
//! lets it bound how long a client may take to send its request head
//! (`--header-timeout-secs`, against connections that send nothing or trickle a byte at a
//! time) and its TLS handshake, and how many connections are open at once
//! (`--max-connections`), none of which poem exposes; and it keeps each idle plain stream's
//! connection smaller (no protocol sniffing, no HTTP/2 or TLS state). The routes are
//! poem's.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use poem::{Addr, Endpoint};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::shutdown::Cancelled;

/// Connections waiting to be accepted; bursts of thousands of reconnecting browsers (after
/// a deploy, say) queue here instead of being refused.
const LISTEN_BACKLOG: u32 = 4096;

/// The largest request head (request line and headers) accepted. Beyond it: 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Streams one HTTP/2 connection may have open at once; a browser's tabs together rarely
/// come near it, and more wait in the browser until one closes.
const H2_MAX_STREAMS: u32 = 256;

/// What HTTP/2 buffers for one stream beyond what the peer's window lets it send. A
/// stream's body is polled only when there is room, so a stalled reader holds at most this
/// and one chunk; it then falls behind and catches up from the database like any other.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// How often an HTTP/2 connection that has gone quiet is pinged; one that does not answer
/// within the header timeout is closed.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

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
    /// The time a client has to send a whole request head, and to finish a TLS handshake.
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
/// open connection to close once its requests in flight are answered (HTTP/2: GOAWAY), and
/// hands them back to be drained. With `tls`, connections are HTTPS. Failures of single
/// connections are logged, not returned.
pub async fn accept_until<E>(
    listener: TcpListener,
    routes: E,
    limits: Limits,
    tls: Option<TlsAcceptor>,
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
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(limits.header_timeout);
    let shared = Arc::new(Shared {
        http,
        h2,
        routes,
        local_addr,
        handshake_timeout: limits.header_timeout,
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
        // Two tasks of different types, so that a plain connection's task is not as large
        // as a TLS one's.
        match &tls {
            None => connections.spawn(Arc::clone(&shared).serve_plain(socket, remote, slot)),
            Some(tls) => {
                connections.spawn(Arc::clone(&shared).serve_tls(tls.clone(), socket, remote, slot))
            }
        };
    }
    Connections(connections)
}

/// What every connection's task needs, shared behind one pointer: each connection's task is
/// kept for the connection's whole life (an event stream's included), so what it captures
/// is paid for by every idle stream.
struct Shared<E> {
    http: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    routes: E,
    local_addr: SocketAddr,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
}

impl<E: Endpoint<Output = poem::Response> + 'static> Shared<E> {
    /// The service of one connection: each request goes through the routes, and is told
    /// to `asked`, if given.
    fn service(
        self: &Arc<Self>,
        remote: SocketAddr,
        scheme: poem::http::uri::Scheme,
        asked: Option<Arc<Notify>>,
    ) -> impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<ResponseBody>,
        Error = Infallible,
        Future = ServiceFuture,
    > + Clone
    + use<E> {
        let shared = Arc::clone(self);
        hyper::service::service_fn(move |req| -> ServiceFuture {
            if let Some(asked) = &asked {
                asked.notify_one();
            }
            let shared = Arc::clone(&shared);
            let scheme = scheme.clone();
            // Boxed, so that what hyper keeps for the connection's life (its slot for the
            // request's future) is a pointer; the future itself is freed once the response
            // exists, which for an event stream is long before the end.
            Box::pin(async move {
                let req = poem::Request::from((
                    req,
                    poem::web::LocalAddr(Addr::SocketAddr(shared.local_addr)),
                    poem::web::RemoteAddr(Addr::SocketAddr(remote)),
                    scheme,
                ));
                let response = shared
                    .routes
                    .call(req)
                    .await
                    .unwrap_or_else(|err| err.into_response());
                Ok(hyper::Response::<ResponseBody>::from(response))
            })
        })
    }

    /// Serves one plain HTTP/1.1 connection until it closes.
    fn serve_plain(
        self: Arc<Self>,
        socket: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let service = self.service(remote, poem::http::uri::Scheme::HTTP, None);
        let mut connection = self.http.serve_connection(TokioIo::new(socket), service);
        async move {
            drive(&mut connection, &self.shutdown).await;
            drop(slot);
        }
    }

    /// Serves one TLS connection until it closes: the handshake within the header timeout,
    /// then HTTP/2 or HTTP/1.1, whichever ALPN agreed on (HTTP/1.1 when the client named
    /// neither).
    async fn serve_tls(
        self: Arc<Self>,
        tls: TlsAcceptor,
        socket: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) {
        let handshake = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return,
            handshake = tokio::time::timeout(self.handshake_timeout, tls.accept(socket)) => handshake,
        };
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(cause = %err, %remote, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(super::tls::H2);
        let io = TokioIo::new(stream);
        if h2 {
            // hyper bounds no wait for the first request over HTTP/2, so the header
            // timeout is kept here: a connection that opens no stream within it is
            // closed, as an HTTP/1.1 one that sends no request head is. Later, pings find
            // dead peers.
            let asked = Arc::new(Notify::new());
            let service = self.service(
                remote,
                poem::http::uri::Scheme::HTTPS,
                Some(Arc::clone(&asked)),
            );
            let mut connection = self.h2.serve_connection(io, service);
            tokio::select! {
                biased;
                () = asked.notified() => drive(&mut connection, &self.shutdown).await,
                served = &mut connection => {
                    if let Err(err) = served {
                        tracing::debug!(cause = %err, "connection ended with an error");
                    }
                }
                () = tokio::time::sleep(self.handshake_timeout) => {
                    tracing::debug!(%remote, "an HTTP/2 connection opened no stream in time");
                }
                () = self.shutdown.cancelled() => {}
            }
        } else {
            let service = self.service(remote, poem::http::uri::Scheme::HTTPS, None);
            let mut connection = self.http.serve_connection(io, service);
            drive(&mut connection, &self.shutdown).await;
        }
        drop(slot);
    }
}

/// Runs one connection until it closes. On shutdown, the requests in flight finish
/// (streams end on their own), then the connection closes: HTTP/1.1 after the response in
/// flight, HTTP/2 after a GOAWAY that lets the open streams end.
///
/// By reference: the connection is `Unpin`, so it is polled where the task captured it;
/// taken by value (or pinned) it would be moved into this future and stored twice, which
/// every idle stream would pay for.
async fn drive<C>(connection: &mut C, shutdown: &CancellationToken)
where
    C: GracefulConnection + Unpin,
    C::Error: std::fmt::Display,
{
    let served = tokio::select! {
        served = &mut *connection => served,
        () = Cancelled::new(shutdown) => {
            Pin::new(&mut *connection).graceful_shutdown();
            (&mut *connection).await
        }
    };
    if let Err(err) = served {
        // Clients hanging up and header timeouts end up here: not our fault.
        tracing::debug!(cause = %err, "connection ended with an error");
    }
}
