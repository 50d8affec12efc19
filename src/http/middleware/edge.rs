//! The outermost layer of every request: the request id (every response carries
//! `X-Request-Id`, the caller's own or a UUID, and with debug logging on every log line of
//! the request carries it too), the same-origin pass-through, the access log (one debug
//! line per request with status and duration, its URL without a token), the log line of
//! every refusal and failure (from the [`Logged`] entry the error response carries, so that
//! the cause is logged with the request id and never sent), `Referrer-Policy`, and the
//! response count and request duration for `/metrics`.
//!
//! These are one layer rather than several, over a boxed inner tree: every layer's future
//! holds the request and the future of the layer inside it, so a deep stack makes a large
//! per-request future that is copied as each layer starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::{HeaderValue, Uri, header};
use poem::{Endpoint, IntoResponse as _, Request, Response};
use tracing::Instrument as _;

use crate::http::access;
use crate::http::error::{Level, Logged};
use crate::metrics::{self, Metrics};

/// The longest caller-chosen request id echoed back; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 200;
const X_REQUEST_ID: &str = "x-request-id";

/// The route templates a request's duration is counted under, by the pattern poem's router
/// reports for the route it matched. The API's patterns name path parameters by position
/// (poem-openapi routes `/topics/{topic}/facts` as `/topics/:param0/facts`); the metric
/// uses the template the description shows. Other routes (the description, `/docs`) have
/// no parameters, so their pattern is their name. A request that matched no route counts
/// under [`metrics::NO_ROUTE`]. The values are the routes' own: as few as the routes.
#[derive(Debug)]
pub struct RouteNames {
    by_pattern: HashMap<String, Arc<str>>,
    none: Arc<str>,
}

impl RouteNames {
    /// The names of the API's `templates` (`/topics/{topic}/facts`).
    pub fn new<'a>(templates: impl IntoIterator<Item = &'a str>) -> Self {
        let by_pattern = templates
            .into_iter()
            .map(|template| {
                let mut params = 0;
                let pattern: Vec<String> = template
                    .split('/')
                    .map(|segment| {
                        if segment.starts_with('{') && segment.ends_with('}') {
                            params += 1;
                            format!(":param{}", params - 1)
                        } else {
                            segment.to_owned()
                        }
                    })
                    .collect();
                (pattern.join("/"), Arc::from(template))
            })
            .collect();
        Self {
            by_pattern,
            none: Arc::from(metrics::NO_ROUTE),
        }
    }

    /// The name of the route a response came from.
    fn of(&self, response: &Response) -> Arc<str> {
        match response.data::<PathPattern>().map(|pattern| &*pattern.0) {
            // The root's own pattern: nothing under it matched.
            None | Some("") => Arc::clone(&self.none),
            Some(pattern) => self
                .by_pattern
                .get(pattern)
                .cloned()
                .unwrap_or_else(|| Arc::from(pattern)),
        }
    }
}

/// Serves one request through `next`.
///
/// poem's `RequestId` middleware does the request id too, but always opens an error-level
/// span, which the log subscriber then formats for every request. This opens the span,
/// and keeps what the access log needs, only when debug logging is on.
///
/// # Errors
/// Only what `next` fails with that is not turned into a response.
pub async fn edge<E: Endpoint>(
    next: E,
    mut req: Request,
    metrics: Arc<Metrics>,
    routes: Arc<RouteNames>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
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
        let uri = loggable(req.original_uri());
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
    if let Some(logged) = response.extensions_mut().remove::<Logged>() {
        log_refusal(&logged, &id, response.status().as_u16());
    }
    response.headers_mut().insert(X_REQUEST_ID, id);
    // A page of ours that a token reached by its URL (a link, a bookmark) must not pass
    // that URL to another site as the referrer.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    metrics.responded(response.status());
    metrics.request_took(
        &method,
        routes.of(&response),
        started.elapsed().as_secs_f64(),
    );
    Ok(response)
}

/// One line for a refused or failed request, with its request id and the cause.
fn log_refusal(logged: &Logged, id: &HeaderValue, status: u16) {
    let request_id = String::from_utf8_lossy(id.as_bytes());
    let cause = logged.cause.as_str();
    match logged.level {
        Level::Error => tracing::error!(%request_id, status, cause, "{}", logged.message),
        Level::Warn => tracing::warn!(%request_id, status, cause, "{}", logged.message),
        Level::Debug => tracing::debug!(%request_id, status, cause, "{}", logged.message),
    }
}

/// The URI as the access log writes it: the value of `?access_token=` is a credential, and
/// is replaced.
fn loggable(uri: &Uri) -> String {
    let Some(query) = uri.query().filter(|q| q.contains(access::QUERY)) else {
        return uri.to_string();
    };
    let redacted: Vec<&str> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name == access::QUERY => "access_token=REDACTED",
            _ => pair,
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

/// A browser sends `Origin` on its own page's POSTs too. That is not a cross-origin call,
/// so it must not be refused when `--cors-origin` narrows the list: drop the header when it
/// names the host the request was sent to.
/// HTTP/2 has no `Host` header: the host is the request's authority.
fn drop_same_origin(req: &mut Request) {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|host| host.as_bytes())
        .or_else(|| {
            req.uri()
                .authority()
                .map(|authority| authority.as_str().as_bytes())
        });
    let same = match (req.headers().get(header::ORIGIN), host) {
        (Some(origin), Some(host)) => origin
            .as_bytes()
            .split(|&b| b == b'/')
            .nth(2)
            .is_some_and(|origin_host| origin_host == host),
        _ => false,
    };
    if same {
        req.headers_mut().remove(header::ORIGIN);
    }
}
