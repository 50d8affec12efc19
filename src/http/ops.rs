//! What operators and load balancers ask: `GET /healthz` and `GET /metrics`. The API
//! (`api/service.rs`) serves and describes both; with `--metrics-listen`, the metrics are
//! served on that address instead, by [`metrics_endpoint`].

use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Data, Json};
use poem::{IntoResponse as _, Response, handler};

use super::error::{AppError, json_error};
use super::state::AppState;

/// `GET /healthz`: 200 when the database answers, 503 when not. Why not is logged, with
/// the request id; the answer only says that it does not.
pub async fn healthz(state: &AppState) -> Response {
    match state.storage.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(err) => {
            let err = match AppError::from(err) {
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

/// The content type of the metrics text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` on the address of `--metrics-listen`.
#[handler]
pub async fn metrics_endpoint(state: Data<&AppState>) -> Response {
    metrics(&state).await
}

/// `GET /metrics`, in the OpenMetrics text format (which Prometheus reads).
pub async fn metrics(state: &AppState) -> Response {
    // A scrape still answers when the database does not; /healthz says that it does not.
    let database_bytes = match state.storage.size_bytes().await {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the database's size for the metrics");
            None
        }
    };
    match state
        .metrics
        .render(state.notifier.open_streams(), database_bytes)
    {
        Ok(text) => Response::builder()
            .content_type(METRICS_CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-store")
            .body(text),
        Err(err) => {
            tracing::error!(cause = %err, "cannot render the metrics");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics",
            )
        }
    }
}
