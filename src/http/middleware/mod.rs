//! The layers around the routes. Each concern is a file of its own:
//!
//! - [`edge`]: the outermost layer of every request (request id, same-origin
//!   pass-through, access log, the log line of every refusal, the response count);
//! - [`body_limit`]: reads a publishing route's body within `--max-body-bytes`.
//!
//! The publishing routes run the access check (`http/access.rs`) and then [`body_limit`]
//! in one layer ([`publishing`]): every layer's future holds the request and the future
//! inside it and is copied as it starts, so on the hottest route each layer costs.

pub mod body_limit;
pub mod edge;

use poem::{Endpoint, EndpointExt as _};

use crate::http::access;

/// The guard of the publishing routes: the token (401, 403) before anything is read, then
/// the body within its limit (413).
pub fn publishing(ep: impl Endpoint + 'static) -> impl Endpoint {
    ep.around(|ep, mut req| async move {
        access::check_publish(&mut req)?;
        body_limit::read(&mut req).await?;
        ep.call(req).await
    })
}
