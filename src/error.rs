//! The one error type of the HTTP layer and how each failure becomes a status and a JSON
//! body `{"error": "..."}`.
//!
//! Every variant's status is decided in one `match` ([`AppError::status`]). Details of our
//! own faults (5xx) are logged with their cause and never sent: the client gets a short
//! sentence. Errors that poem or poem-openapi raise themselves (unknown route, a parameter
//! that does not parse, a wrong content type) are turned into the same JSON shape by
//! [`json_error_response`], which the route tree installs as its catch-all.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed: bad JSON, a bad event name, a bad start position.
    #[error("{0}")]
    BadRequest(String),
    /// A publish token is configured and the request did not present it.
    #[error("a valid `Authorization: Bearer <token>` header is required to publish")]
    Unauthorized,
    /// No such fact.
    #[error("no fact with id {0}")]
    NotFound(i64),
    /// The body is larger than `--max-body-bytes`.
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is neither JSON nor a form.
    #[error(
        "unsupported content type {0:?}: send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType(String),
    /// Too many open event streams (`--max-subscribers`).
    #[error("too many open event streams; retry later")]
    TooManySubscribers,
    /// The database cannot take the request now (disk full, read-only, locked past its
    /// timeout). Nothing was written.
    #[error("the log cannot take writes right now: {0}")]
    Unavailable(String),
    /// The server is shutting down and no longer takes writes.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Our own fault; the cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManySubscribers | Self::Unavailable(_) | Self::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for [`AppError::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        crate::storage::classify(err)
    }
}

impl poem::error::ResponseError for AppError {
    fn status(&self) -> StatusCode {
        AppError::status(self)
    }

    fn as_response(&self) -> Response {
        match self {
            Self::Internal(cause) => {
                tracing::error!(cause = format!("{cause:#}"), "request failed");
            }
            Self::Unavailable(cause) => tracing::warn!(%cause, "database unavailable"),
            Self::ShuttingDown => tracing::debug!("refused: shutting down"),
            // The client's mistake (or a full house): worth a warning, not an error.
            _ => tracing::warn!(status = self.status().as_u16(), error = %self, "request refused"),
        }
        let mut response = json_error(self.status(), &self.to_string());
        match self {
            // Tell clients (and the browser's EventSource, which retries on its own) when
            // to come back rather than letting them hammer a full or locked server.
            Self::TooManySubscribers | Self::Unavailable(_) | Self::ShuttingDown => {
                response
                    .headers_mut()
                    .insert("retry-after", poem::http::HeaderValue::from_static("5"));
            }
            Self::Unauthorized => {
                response.headers_mut().insert(
                    "www-authenticate",
                    poem::http::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response
    }
}

/// A response with `status` and the body `{"error": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message });
    (status, poem::web::Json(body)).into_response()
}

/// The route tree's catch-all: any error not already turned into a response, ours or
/// poem's, becomes the JSON error shape with its own status.
pub async fn json_error_response(err: poem::Error) -> Response {
    if err.is::<AppError>() {
        return err.into_response();
    }
    let status = err.status();
    let message = if status.is_server_error() {
        tracing::error!(cause = %err, "request failed");
        "internal error".to_string()
    } else {
        let message = describe(&err);
        // Unknown paths (a browser's /favicon.ico) are routine; other mistakes are not.
        if status == StatusCode::NOT_FOUND {
            tracing::debug!(status = status.as_u16(), error = %message, "request refused");
        } else {
            tracing::warn!(status = status.as_u16(), error = %message, "request refused");
        }
        message
    };
    json_error(status, &message)
}

/// The message for a client error raised by poem itself, worded for a person.
fn describe(err: &poem::Error) -> String {
    match err.status() {
        StatusCode::NOT_FOUND => "no such endpoint".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_string(),
        _ => err.to_string(),
    }
}
