//! The ceiling: poem, the HTTP stack factlog uses, answering `POST /fact` with a trivial
//! JSON reply and fanning pre-rendered frames out to `GET /events`, with no storage at all.
//! What factlog reaches is stated as a fraction of what this reaches in the same run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use poem::web::{Data, Json};
use poem::{Body, EndpointExt as _, Response, Route, get, handler, post};
use tokio::sync::broadcast;

struct Ceiling {
    /// The next id, locked while its frame is sent so that ids go out in order.
    next_id: Mutex<u64>,
    last_id: AtomicU64,
    frames: broadcast::Sender<Bytes>,
}

/// Serves the ceiling on `listen` until killed; prints the address it bound to stderr.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let (frames, _) = broadcast::channel(1024);
    let state = std::sync::Arc::new(Ceiling {
        next_id: Mutex::new(1),
        last_id: AtomicU64::new(0),
        frames,
    });
    let routes = Route::new()
        .at("/fact", post(append))
        .at("/events", get(events))
        .at("/status", get(status))
        .data(state);
    let acceptor = TcpListener::bind(listen).into_acceptor().await?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    if let Some(addr) = addr {
        eprintln!("ceiling listening on http://{addr}");
    }
    poem::Server::new_with_acceptor(acceptor)
        .run(routes)
        .await?;
    Ok(())
}

#[handler]
async fn append(
    state: Data<&std::sync::Arc<Ceiling>>,
    Json(fact): Json<serde_json::Value>,
) -> Response {
    let id = {
        let mut next = state.next_id.lock().unwrap_or_else(PoisonError::into_inner);
        let id = *next;
        *next += 1;
        let _ = state
            .frames
            .send(Bytes::from(format!("id: {id}\ndata: {fact}\n\n")));
        id
    };
    state.last_id.store(id, Ordering::Relaxed);
    Response::builder()
        .status(poem::http::StatusCode::CREATED)
        .content_type("application/json")
        .body(format!("{{\"id\":{id}}}"))
}

#[handler]
fn events(state: Data<&std::sync::Arc<Ceiling>>) -> Response {
    let mut frames = state.frames.subscribe();
    let body = async_stream::stream! {
        yield Bytes::from_static(b"retry: 2000\n\n");
        loop {
            match frames.recv().await {
                // Frames that are ready together are written together, as factlog does.
                Ok(frame) => {
                    let mut ready = BytesMut::from(&frame[..]);
                    while ready.len() < 64 * 1024 {
                        match frames.try_recv() {
                            Ok(frame) => ready.extend_from_slice(&frame),
                            Err(_) => break,
                        }
                    }
                    yield ready.freeze();
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    Response::builder()
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_bytes_stream(body.map(Ok::<_, std::io::Error>)))
}

#[handler]
fn status(state: Data<&std::sync::Arc<Ceiling>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "last_id": state.last_id.load(Ordering::Relaxed) }))
}
