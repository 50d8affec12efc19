//! The one error type of the HTTP layer and how each failure becomes a status and a JSON
//! body `{"error": "..."}`.
//!
//! Every variant's status is decided in one `match` ([`AppError::status`]). What a client
//! reads is a sentence for a person; the cause of our own faults and of an unavailable
//! database (the database's own error text, a cause chain) is never sent. It travels
//! with the response as a [`Logged`] entry, which the edge layer logs together with the
//! request id. Errors that poem or poem-openapi raise themselves (unknown route, a
//! parameter that does not parse, a wrong content type) are turned into the same JSON
//! shape by [`json_error_response`], which the route tree installs as its catch-all.

use poem::PathPattern;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};

use crate::auth::Rejected;
use crate::domain::Invalid;
use crate::storage::StorageError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed: bad JSON, a bad event name, a bad start position.
    #[error("{0}")]
    BadRequest(String),
    /// A token is needed for what was asked (the field says what, "to read topic x"), and
    /// none was presented.
    #[error(
        "a token is needed {0}: present it as `Authorization: Bearer <token>` (a read also takes the factlog_token cookie or ?access_token=)"
    )]
    TokenRequired(String),
    /// The presented token is not valid: it is refused, never taken for no token.
    #[error("{0}")]
    InvalidToken(Rejected),
    /// The token is valid but does not grant what was asked (the field says what).
    #[error("the token does not grant what is needed {0}")]
    NotGranted(String),
    /// No such fact.
    #[error("no fact with id {0}")]
    NotFound(i64),
    /// What was asked for was deleted by retention: the fact, or facts after the position
    /// a page starts from. The body carries `first_id`, where the kept log now starts.
    #[error("{message}")]
    Gone {
        /// What was deleted, in words.
        message: String,
        /// The oldest kept fact's id; `None` when the log holds none.
        first_id: Option<i64>,
    },
    /// No such topic: none of its facts is in the log.
    #[error("no topic named {0} (a topic exists once it holds a fact)")]
    NoSuchTopic(String),
    /// The idempotency key was used before on the topic for a different fact.
    #[error(
        "Idempotency-Key was already used on topic {topic} for a different fact (id {id}); nothing was written"
    )]
    KeyConflict {
        /// The topic.
        topic: String,
        /// The fact the key first published.
        id: i64,
    },
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
    /// timeout, unreachable). Nothing was written. The field is the cause, for the log.
    #[error(
        "the database is unavailable right now (full, locked or unreachable); nothing was written, try again shortly"
    )]
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
            Self::TokenRequired(_) | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::NotGranted(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NoSuchTopic(_) => StatusCode::NOT_FOUND,
            Self::Gone { .. } => StatusCode::GONE,
            Self::KeyConflict { .. } => StatusCode::UNPROCESSABLE_ENTITY,
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

    /// What the edge logs about this error.
    fn logged(&self) -> Logged {
        match self {
            Self::Internal(cause) => {
                Logged::new(Level::Error, "request failed", format!("{cause:#}"))
            }
            Self::Unavailable(cause) => {
                Logged::new(Level::Warn, "the database is unavailable", cause.clone())
            }
            Self::ShuttingDown => Logged::new(Level::Debug, REFUSED, self.to_string()),
            // The client's mistake (or a full house): worth a warning, not an error.
            _ => Logged::new(Level::Warn, REFUSED, self.to_string()),
        }
    }
}

impl From<Invalid> for AppError {
    fn from(err: Invalid) -> Self {
        Self::BadRequest(err.0)
    }
}

impl From<StorageError> for AppError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(cause) => Self::Unavailable(cause),
            StorageError::Stopped => Self::ShuttingDown,
            StorageError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl poem::error::ResponseError for AppError {
    fn status(&self) -> StatusCode {
        AppError::status(self)
    }

    fn as_response(&self) -> Response {
        let mut response = match self {
            Self::Gone { first_id, .. } => {
                let body = serde_json::json!({ "error": self.to_string(), "first_id": first_id });
                (self.status(), poem::web::Json(body)).into_response()
            }
            _ => json_error(self.status(), &self.to_string()),
        };
        response.extensions_mut().insert(self.logged());
        match self {
            // Tell clients (and the browser's EventSource, which retries on its own) when
            // to come back rather than letting them hammer a full or locked server.
            Self::TooManySubscribers | Self::Unavailable(_) | Self::ShuttingDown => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // RFC 6750 (3): what a client of a bearer token needs to know.
            Self::TokenRequired(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidToken(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::NotGranted(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
                );
            }
            _ => {}
        }
        response
    }
}

/// How loudly a [`Logged`] entry is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Our own fault.
    Error,
    /// A client's mistake we want to see, or the database refusing.
    Warn,
    /// Routine: an unknown path, a refusal during shutdown.
    Debug,
}

/// The log message of a request refused for the client's own mistake.
const REFUSED: &str = "request refused";

/// What to log about an error response, carried in the response's extensions to the edge
/// layer, which logs it with the request id and removes it. Never sent.
#[derive(Clone, Debug)]
pub struct Logged {
    /// How loudly.
    pub level: Level,
    /// The log line's message.
    pub message: &'static str,
    /// What went wrong, in detail: the error sent, or the cause that is not.
    pub cause: String,
}

impl Logged {
    /// An entry at `level`.
    pub fn new(level: Level, message: &'static str, cause: String) -> Self {
        Self {
            level,
            message,
            cause,
        }
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
    if let Some(app) = err.downcast_ref::<AppError>() {
        // Turning an error into a response replaces the response's extensions with the
        // error's own, so the log entry is put back afterwards.
        let logged = app.logged();
        let mut response = err.into_response();
        response.extensions_mut().insert(logged);
        return response;
    }
    let status = err.status();
    let (message, logged) = if status.is_server_error() {
        let logged = Logged::new(Level::Error, "request failed", err.to_string());
        ("internal error".to_string(), logged)
    } else {
        let message = describe(&err);
        // Unknown paths (a browser's /favicon.ico) are routine; other mistakes are not.
        let level = if status == StatusCode::NOT_FOUND {
            Level::Debug
        } else {
            Level::Warn
        };
        let logged = Logged::new(level, REFUSED, message.clone());
        (message, logged)
    };
    let mut response = json_error(status, &message);
    response.extensions_mut().insert(logged);
    // The route the request matched, for the edge's duration metric (an error turned into
    // a response above keeps it with the error's other extensions).
    if let Some(route) = err.data::<PathPattern>() {
        response.set_data(route.clone());
    }
    response
}

/// The message for a client error raised by poem itself, worded for a person.
fn describe(err: &poem::Error) -> String {
    match err.status() {
        StatusCode::NOT_FOUND => "no such endpoint".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_string(),
        _ => err.to_string(),
    }
}
