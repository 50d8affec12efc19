//! The route tree and the order of its middleware, outermost first:
//!
//! 1. The edge (`middleware/edge.rs`): request id, same-origin pass-through, access log,
//!    the log line of every refusal, the response count.
//! 2. The JSON error catch-all, inside the edge so error responses get the request id and
//!    are logged and counted with their status.
//! 3. CORS.
//! 4. The routes: every one an operation of the API (`api/`), and so in its description,
//!    but the description itself (`/openapi.json`, `/docs`). The publishing guard
//!    (`middleware::publishing`: token, then body size) sits on the POST operations only.
//!
//! No compression or buffering middleware: SSE frames must reach the socket as written.
//!
//! With `--metrics-listen`, [`metrics_only`] is what that address serves.

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::header;
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt as _, IntoEndpoint as _, Request, Response, Route, get};
use poem_openapi::OpenApi as _;

use super::error::json_error_response;
use super::middleware::edge::{RouteNames, edge};
use super::state::AppState;
use super::{api, ops};

/// Builds the whole service over `state`.
pub fn build(state: AppState) -> impl Endpoint<Output = Response> {
    let api = api::service();
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let cors = cors(&state.config.cors_origins);
    let metrics = Arc::clone(&state.metrics);
    let templates = api::Api::meta();
    let routes = Arc::new(RouteNames::new(
        templates
            .iter()
            .flat_map(|api| api.paths.iter().map(|path| path.path.as_str())),
    ));
    let front = Front {
        api: api.into_endpoint(),
        // Under routes of their own, which name them in the request metrics.
        spec: Route::new().at("/openapi.json", spec).boxed(),
        docs: Route::new().nest("/docs", docs).boxed(),
    };
    // The edge goes over a boxed inner tree: see `middleware/edge.rs`.
    let inner = front
        .with(cors)
        .data(state)
        .catch_all_error(json_error_response)
        .boxed();
    inner.around(move |next, req| edge(next, req, Arc::clone(&metrics), Arc::clone(&routes)))
}

/// The API's operations and, beside them, its description. Every operation's request goes
/// straight to the API's own routes: nesting the API under a `Route` at `/` would rebuild
/// each request's URI and move its future through two more layers, on every POST.
struct Front {
    api: BoxEndpoint<'static, Response>,
    spec: BoxEndpoint<'static, Response>,
    docs: BoxEndpoint<'static, Response>,
}

impl Endpoint for Front {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        if path == "/openapi.json" {
            self.spec.call(req).await
        } else if path == "/docs" || path.starts_with("/docs/") {
            self.docs.call(req).await
        } else {
            self.api.call(req).await
        }
    }
}

/// What the address of `--metrics-listen` serves: `GET /metrics`, and for anything else
/// the JSON 404. No edge: a scrape is not one of the service's requests.
pub fn metrics_only(state: AppState) -> impl Endpoint<Output = Response> {
    Route::new()
        .at("/metrics", get(ops::metrics_endpoint))
        .data(state)
        .catch_all_error(json_error_response)
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
