//! HTTPS for the load generator: servers started with a certificate are registered here by
//! address, and from then on every connection to them is TLS. Publishers speak HTTP/1.1
//! over it (one request at a time per connection, as before); event streams are HTTP/2
//! streams, as many to a connection as the server was registered with (a browser's tabs
//! share one), or, registered with none, HTTP/1.1 over TLS, one connection each (as most
//! programs' clients do).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

/// A connection to a server: plain TCP, or TLS to a registered server (boxed: a TLS
/// stream is a hundred times larger, and most connections are plain).
pub type Conn = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// How to reach one HTTPS server.
struct Secure {
    http1: TlsConnector,
    h2: TlsConnector,
    /// Streams opened on one HTTP/2 connection before the next is opened; 0 for none
    /// (streams are HTTP/1.1 over TLS).
    streams_per_connection: usize,
    /// The HTTP/2 connection streams are being opened on, and how many it has.
    current: tokio::sync::Mutex<Option<(h2::client::SendRequest<Bytes>, usize)>>,
}

fn registry() -> &'static Mutex<HashMap<SocketAddr, Arc<Secure>>> {
    static SERVERS: OnceLock<Mutex<HashMap<SocketAddr, Arc<Secure>>>> = OnceLock::new();
    SERVERS.get_or_init(Mutex::default)
}

fn lookup(addr: SocketAddr) -> Option<Arc<Secure>> {
    registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&addr)
        .cloned()
}

/// From now on, connections to `addr` are TLS, trusting only `cert_pem`, with
/// `streams_per_connection` event streams on each HTTP/2 connection (0: event streams are
/// HTTP/1.1, a connection each).
pub fn register(
    addr: SocketAddr,
    cert_pem: &[u8],
    streams_per_connection: usize,
) -> anyhow::Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = |alpn: &[u8]| -> anyhow::Result<TlsConnector> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    };
    let secure = Secure {
        http1: connector(b"http/1.1")?,
        h2: connector(b"h2")?,
        streams_per_connection,
        current: tokio::sync::Mutex::new(None),
    };
    registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(addr, Arc::new(secure));
    Ok(())
}

/// Forgets `addr` (its server stopped; the next one there may be plain).
pub fn unregister(addr: SocketAddr) {
    registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&addr);
}

/// Connection number `index` to `addr`, for HTTP/1.1: TLS when `addr` is registered.
pub async fn connect(addr: SocketAddr, index: usize) -> io::Result<Conn> {
    let tcp = crate::client::connect(addr, index).await?;
    match lookup(addr) {
        None => Ok(Either::Left(tcp)),
        Some(secure) => Ok(Either::Right(Box::new(
            secure.http1.connect(server_name(addr), tcp).await?,
        ))),
    }
}

fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// Opens `GET path` as an HTTP/2 stream when `addr` is registered for them; `None`
/// otherwise (the caller opens an HTTP/1.1 stream).
pub async fn open_h2_stream(
    addr: SocketAddr,
    index: usize,
    path: &str,
    last_event_id: Option<&str>,
) -> io::Result<Option<h2::RecvStream>> {
    let Some(secure) = lookup(addr).filter(|secure| secure.streams_per_connection > 0) else {
        return Ok(None);
    };
    let mut request =
        http::Request::get(format!("https://{addr}{path}")).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let request = request.body(()).map_err(io::Error::other)?;
    let sender = {
        let mut current = secure.current.lock().await;
        let full = current
            .as_ref()
            .is_none_or(|(_, streams)| *streams >= secure.streams_per_connection);
        if full {
            let tcp = crate::client::connect(addr, index).await?;
            let tls = secure.h2.connect(server_name(addr), tcp).await?;
            // Windows as large as a browser's, so that flow control is not what limits
            // the rate.
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(6 * 1024 * 1024)
                .initial_connection_window_size(15 * 1024 * 1024)
                .handshake(tls)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(connection);
            *current = Some((sender, 0));
        }
        let (sender, streams) = current.as_mut().ok_or_else(|| io::Error::other("none"))?;
        *streams += 1;
        sender.clone()
    };
    let mut sender = sender.ready().await.map_err(io::Error::other)?;
    let (response, _) = sender
        .send_request(request, true)
        .map_err(io::Error::other)?;
    let response = response.await.map_err(io::Error::other)?;
    if response.status() != 200 {
        return Err(io::Error::other(format!(
            "GET {path} answered {}",
            response.status()
        )));
    }
    Ok(Some(response.into_body()))
}

/// Waits for the next DATA frame of `body`, then takes every one already received, and
/// appends them to `out`; false when the stream ended.
pub async fn read_h2(body: &mut h2::RecvStream, out: &mut Vec<u8>) -> io::Result<bool> {
    use futures_util::FutureExt as _;
    let mut next = body.data().await;
    loop {
        match next {
            None => return Ok(false),
            Some(Err(err)) => return Err(io::Error::other(err)),
            Some(Ok(data)) => {
                out.extend_from_slice(&data);
                // Returned at once, so the server may send more while this is counted.
                let _ = body.flow_control().release_capacity(data.len());
            }
        }
        match body.data().now_or_never() {
            Some(more) => next = more,
            None => return Ok(true),
        }
    }
}
