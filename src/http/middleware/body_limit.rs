//! Reads a publishing route's body within `--max-body-bytes` (413 beyond it), whatever its
//! framing: `Content-Length` is not trusted to be present, nor to be true. A content type
//! that is not valid text is refused here (415) rather than taken for none.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use poem::Request;
use poem::http::header;

use crate::http::error::AppError;
use crate::http::state::AppState;

/// Reads the body into memory within the limit, and puts it back in the request for the
/// handler to parse.
///
/// # Errors
/// [`AppError::PayloadTooLarge`], or [`AppError::BadRequest`] when the body cannot be read.
pub async fn read(req: &mut Request) -> Result<(), AppError> {
    let limit = req
        .data::<AppState>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AppState is not installed")))?
        .config
        .max_body_bytes;
    // poem reads the content type as text and takes a value that is not for none; say
    // what it is instead.
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        if content_type.to_str().is_err() {
            let shown = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
            return Err(AppError::UnsupportedMediaType(shown));
        }
    }
    if let Some(declared) = req.headers().get(header::CONTENT_LENGTH) {
        // hyper has already refused a malformed length; this only spares reading a body
        // that announces itself too large.
        let declared = declared
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| AppError::bad_request("Content-Length is not a number"))?;
        if declared > limit as u64 {
            return Err(AppError::PayloadTooLarge(limit));
        }
    }
    // Read with http-body's `Limited` rather than poem's `into_bytes_limit`, whose future
    // carries a buffer that every layer above this one copies.
    let body: BoxBody<Bytes, std::io::Error> = req.take_body().into();
    let collected = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.is::<LengthLimitError>() {
            AppError::PayloadTooLarge(limit)
        } else {
            AppError::bad_request(format!("could not read the body: {e}"))
        }
    })?;
    req.set_body(collected.to_bytes());
    Ok(())
}
