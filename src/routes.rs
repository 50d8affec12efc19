//! The route tree and the order of its middleware, outermost first:
//!
//! 1. `RequestId`: every response carries `X-Request-Id` (the caller's own, or a UUID) and
//!    the request's log lines carry it too.
//! 2. The JSON error catch-all, inside `RequestId` so error responses get the header.
//! 3. The access log: one debug line per request with status and duration.
//! 4. CORS, after the same-origin pass-through below.
//! 5. The routes. The publish guard (token, body size) sits on the POST operations only.
//!
//! No compression or buffering middleware: SSE frames must reach the socket as written.

use poem::http::{HeaderValue, header};
use poem::middleware::{Cors, RequestId, ReuseId};
use poem::web::Json;
use poem::{Endpoint, EndpointExt as _, IntoResponse as _, Request, Response, Route, get, handler};
use poem_openapi::OpenApiService;
use std::time::Instant;

use crate::api::Api;
use crate::app::AppState;
use crate::error::{AppError, json_error_response};

/// Builds the whole service over `state`.
pub fn build(state: AppState) -> impl Endpoint {
    let api = OpenApiService::new(Api, "factlog", env!("CARGO_PKG_VERSION")).description(
        "An append-only log of JSON facts, followed live over Server-Sent Events (GET /events).",
    );
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let cors = cors(&state.config.cors_origins);
    Route::new()
        .at("/events", get(crate::sse::events))
        .at("/healthz", get(healthz))
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api)
        .with(cors)
        .around(same_origin)
        .around(access_log)
        .data(state)
        .catch_all_error(json_error_response)
        .with(RequestId::default().reuse_id(ReuseId::Use))
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

/// A browser sends `Origin` on its own page's POSTs too. That is not a cross-origin call,
/// so it must not be refused when `--cors-origin` narrows the list: drop the header when it
/// names the host the request was sent to.
async fn same_origin<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
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
    next.call(req).await.map(poem::IntoResponse::into_response)
}

/// One debug line per request, inside `RequestId`'s span so it carries the request id.
async fn access_log<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.original_uri().clone();
    let remote = req.remote_addr().to_string();
    let result = next.call(req).await.map(poem::IntoResponse::into_response);
    let status = match &result {
        Ok(response) => response.status(),
        Err(err) => err.status(),
    };
    if status.is_client_error() {
        tracing::debug!(%method, %uri, %remote, status = status.as_u16(), elapsed = ?started.elapsed(), "request refused");
    } else {
        tracing::debug!(%method, %uri, %remote, status = status.as_u16(), elapsed = ?started.elapsed(), "request");
    }
    result
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
