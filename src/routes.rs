//! The route tree and the order of its middleware, outermost first:
//!
//! 1. The edge ([`edge`]): the request id (every response carries `X-Request-Id`, the
//!    caller's own or a UUID, and with debug logging on the request's log lines carry it
//!    too), the same-origin pass-through below, the access log (one debug line per request
//!    with status and duration), and the response count for `/metrics`.
//! 2. The JSON error catch-all, inside the edge so error responses get the header and are
//!    logged and counted with their status.
//! 3. CORS.
//! 4. The routes. The publish guard (token, body size) sits on the POST operations only.
//!
//! The edge is one layer rather than three, over a boxed inner tree: every layer's future
//! holds the request and the future of the layer inside it, so a deep stack makes a large
//! per-request future that is copied as each layer starts. With five layers it was 12 KiB;
//! one layer took a POST from 27.7 to 26.3 µs of server CPU in the load generator.
//!
//! No compression or buffering middleware: SSE frames must reach the socket as written.

use poem::http::{HeaderValue, header};
use poem::middleware::Cors;
use poem::web::Json;
use poem::{Endpoint, EndpointExt as _, IntoResponse as _, Request, Response, Route, get, handler};
use poem_openapi::OpenApiService;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

use crate::api::Api;
use crate::app::AppState;
use crate::error::{AppError, json_error_response};
use crate::metrics::Metrics;

/// Builds the whole service over `state`.
pub fn build(state: AppState) -> impl Endpoint<Output = Response> {
    let api = OpenApiService::new(Api, "factlog", env!("CARGO_PKG_VERSION")).description(
        "An append-only log of JSON facts, followed live over Server-Sent Events (GET /events).",
    );
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let cors = cors(&state.config.cors_origins);
    let metrics = Arc::clone(&state.metrics);
    let inner = Route::new()
        .at("/events", get(crate::sse::events))
        .at("/metrics", get(crate::metrics::metrics))
        .at("/healthz", get(healthz))
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api)
        .with(cors)
        .data(state)
        .catch_all_error(json_error_response)
        .boxed();
    inner.around(move |next, req| edge(next, req, Arc::clone(&metrics)))
}

/// Any origin by default; with `--cors-origin`, only those, with credentials allowed so
/// `new EventSource(url, {withCredentials: true})` works.
fn cors(origins: &[String]) -> Cors {
    let cors = Cors::new()
        .expose_headers([header::LOCATION.as_str(), "x-request-id"])
        .max_age(3600);
    if origins.is_empty() {
        cors
    } else {
        cors.allow_origins(origins.iter().map(String::as_str))
            .allow_credentials(true)
    }
}

/// The longest caller-chosen request id echoed back; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 200;

/// The outermost layer (see the module comment).
///
/// poem's `RequestId` middleware does the request id too, but always opens an error-level
/// span, which the log subscriber then formats for every request; measured with the load
/// generator that cost about 10 µs of CPU per POST, a third of an append. This opens the
/// span, and keeps what the access log needs, only when debug logging is on.
async fn edge<E: Endpoint>(
    next: E,
    mut req: Request,
    metrics: Arc<Metrics>,
) -> poem::Result<Response> {
    const X_REQUEST_ID: &str = "x-request-id";
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN)
        .cloned()
        .unwrap_or_else(|| {
            let mut buf = uuid::Uuid::encode_buffer();
            let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("unknown"))
        });
    drop_same_origin(&mut req);
    let span = tracing::debug_span!("request", request_id = ?id);
    let mut response = if span.is_disabled() {
        next.call(req).await?.into_response()
    } else {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.original_uri().clone();
        let remote = req.remote_addr().to_string();
        let response = next
            .call(req)
            .instrument(span.clone())
            .await?
            .into_response();
        let status = response.status();
        span.in_scope(|| {
            if status.is_client_error() {
                tracing::debug!(%method, %uri, %remote, status = status.as_u16(), elapsed = ?started.elapsed(), "request refused");
            } else {
                tracing::debug!(%method, %uri, %remote, status = status.as_u16(), elapsed = ?started.elapsed(), "request");
            }
        });
        response
    };
    response.headers_mut().insert(X_REQUEST_ID, id);
    metrics.responded(response.status());
    Ok(response)
}

/// A browser sends `Origin` on its own page's POSTs too. That is not a cross-origin call,
/// so it must not be refused when `--cors-origin` narrows the list: drop the header when it
/// names the host the request was sent to.
fn drop_same_origin(req: &mut Request) {
    let same = match (
        req.headers().get(header::ORIGIN),
        req.headers().get(header::HOST),
    ) {
        (Some(origin), Some(host)) => origin
            .as_bytes()
            .split(|&b| b == b'/')
            .nth(2)
            .is_some_and(|origin_host| origin_host == host.as_bytes()),
        _ => false,
    };
    if same {
        req.headers_mut().remove(header::ORIGIN);
    }
}

/// `GET /healthz`: 200 when the database answers, 503 when not.
#[handler]
async fn healthz(state: poem::web::Data<&AppState>) -> Response {
    match state.storage.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(err) => {
            let err = match err {
                AppError::Internal(cause) => AppError::Unavailable(format!("{cause:#}")),
                other => other,
            };
            let mut response = poem::error::ResponseError::as_response(&err);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    }
}
