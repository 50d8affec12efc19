//! The one access check of every route that reads or writes the log: it finds the token a
//! request presents, has [`Policy`] identify the caller, and answers each route's question
//! ("may it read these topics?", "may it publish to this one?") with the status the
//! specification gives: `401` with `WWW-Authenticate: Bearer` when a token is needed and
//! none came, `401` with `error="invalid_token"` for a token that is not valid (never taken
//! for no token), `403` with `error="insufficient_scope"` when it does not grant.
//!
//! Where a token is read from, first found wins: `Authorization: Bearer`; the cookie
//! `factlog_token`; `?access_token=` on a GET. An append reads only the header: a browser
//! attaches cookies to another site's form post, and a URL is not a place for a
//! credential that writes. A token is never written to a log line, a response or an error
//! text (the edge redacts `access_token` from the URLs it logs).

use std::borrow::Cow;
use std::sync::Arc;

use poem::http::{Method, header};
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::auth::{Caller, Denied, Policy};
use crate::domain::{TopicName, TopicSet};
use crate::http::error::AppError;
use crate::http::state::AppState;

/// The cookie a same-site page's token is read from.
pub const COOKIE: &str = "factlog_token";
/// The query parameter a cross-site `EventSource`'s token is read from.
pub const QUERY: &str = "access_token";

/// The names of the security schemes in the OpenAPI document.
const BEARER_SCHEME: &str = "bearerToken";
const COOKIE_SCHEME: &str = "cookieToken";
const QUERY_SCHEME: &str = "queryToken";

/// A reading caller, for the routes that read the log, event streams included: the
/// OpenAPI operations take it as a parameter, which also declares the three ways of
/// presenting a token.
#[derive(Debug)]
pub struct ReadAccess {
    policy: Arc<Policy>,
    caller: Caller,
}

impl ReadAccess {
    /// Identifies the caller of `req` from the token it presents in any of the three
    /// places.
    ///
    /// # Errors
    /// `401` for a presented token that is not valid.
    pub fn of(req: &Request, state: &AppState) -> Result<Self, AppError> {
        let policy = Arc::clone(&state.policy);
        let token = policy
            .checks_tokens()
            .then(|| presented_for_reading(req))
            .flatten();
        let caller = identify(&policy, token.as_deref())?;
        Ok(Self { policy, caller })
    }

    /// Refuses unless the caller may read every topic of `topics` (every topic at all,
    /// when `None`).
    ///
    /// # Errors
    /// `401` or `403`, naming the first topic refused.
    pub fn require(&self, topics: Option<&TopicSet>) -> Result<(), AppError> {
        match topics {
            None => self
                .policy
                .may_read_every_topic(&self.caller)
                .map_err(|denied| {
                    refusal(
                        denied,
                        &self.caller,
                        "to read every topic at once (this needs `*`)",
                    )
                }),
            Some(set) => set.names().try_for_each(|topic| self.require_topic(topic)),
        }
    }

    /// Refuses unless the caller may read `topic`.
    ///
    /// # Errors
    /// `401` or `403`.
    pub fn require_topic(&self, topic: &str) -> Result<(), AppError> {
        self.policy
            .may_read(&self.caller, topic)
            .map_err(|denied| refusal(denied, &self.caller, &format!("to read topic {topic:?}")))
    }

    /// Whether the caller may read `topic`.
    pub fn may_read(&self, topic: &str) -> bool {
        self.policy.may_read(&self.caller, topic).is_ok()
    }

    /// Whether the caller may read any topic at all.
    pub fn may_read_some(&self) -> bool {
        self.policy.may_read_some(&self.caller)
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl<'a> ApiExtractor<'a> for ReadAccess {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_bearer(registry);
        registry.create_security_scheme(
            COOKIE_SCHEME,
            api_key(
                "cookie",
                COOKIE,
                "The token in a cookie, for a same-site page (`EventSource` with `withCredentials`). Reads only.",
            ),
        );
        registry.create_security_scheme(
            QUERY_SCHEME,
            api_key(
                "query",
                QUERY,
                "The token in the URL of a GET, for a cross-site `EventSource`, which cannot send headers. Reads only; never logged.",
            ),
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME, COOKIE_SCHEME, QUERY_SCHEME]
    }

    /// Public topics need no token.
    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let state = req
            .data::<AppState>()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AppState is not installed")))?;
        Ok(Self::of(req, state)?)
    }
}

/// The caller of a publishing route, identified by the publishing guard before the body
/// was read (see [`check_publish`]); the operations take it as a parameter, which also
/// declares the bearer scheme.
#[derive(Debug)]
pub struct Publisher(pub Caller);

impl<'a> ApiExtractor<'a> for Publisher {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_bearer(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME]
    }

    /// A server without `--publish-token` or `--jwt-key` takes appends from anyone.
    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let caller = req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("the publishing guard did not run"))
        })?;
        Ok(Self(caller))
    }
}

/// The publishing guard's check: the `Authorization` header's token must grant publishing
/// to the route's topic (`default` for `POST /facts`). Keeps the caller in the request for
/// [`Publisher`].
///
/// # Errors
/// `401` or `403`.
pub fn check_publish(req: &mut Request) -> Result<(), AppError> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AppState is not installed")))?;
    let policy = &state.policy;
    let caller = if policy.checks_tokens() {
        let token = bearer(req);
        let caller = identify(policy, token)?;
        let topic = publishing_topic(req.uri().path());
        let topic = topic.as_ref();
        policy.may_publish(&caller, topic).map_err(|denied| {
            refusal(denied, &caller, &format!("to publish to topic {topic:?}"))
        })?;
        caller
    } else {
        Caller::anyone()
    };
    req.extensions_mut().insert(caller);
    Ok(())
}

/// The topic a publishing route appends to, read from its path as the route will read it
/// (percent-decoded): `/topics/{topic}/facts`, or `default` for `/facts` and `/fact`.
/// (poem-openapi names the route's path parameters by position, which a guard should not
/// depend on.) A name that is not one matches no grant but `*`; the route then refuses it
/// with a 400, having written nothing.
fn publishing_topic(path: &str) -> Cow<'_, str> {
    path.strip_prefix("/topics/")
        .and_then(|rest| rest.strip_suffix("/facts"))
        .map_or(Cow::Borrowed(TopicName::DEFAULT), |raw| {
            percent_encoding::percent_decode_str(raw).decode_utf8_lossy()
        })
}

/// The caller that presented `token`.
fn identify(policy: &Policy, token: Option<&[u8]>) -> Result<Caller, AppError> {
    policy.identify(token).map_err(AppError::InvalidToken)
}

/// The `401` or `403` for a denied request; `what` says what was asked ("to read topic
/// x"). A refusal of a token names its `sub` (quoted: it is the issuer's text), so that
/// the log says whose grants fell short.
fn refusal(denied: Denied, caller: &Caller, what: &str) -> AppError {
    match denied {
        Denied::NeedsToken => AppError::TokenRequired(what.to_owned()),
        Denied::NotGranted => AppError::NotGranted(match caller.sub() {
            Some(sub) => format!("{what} (token of {sub:?})"),
            None => what.to_owned(),
        }),
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme name in any case, RFC 9110).
/// Another scheme (a proxy's `Basic`) is not a token; `Bearer` with nothing after it is an
/// empty one, which is refused rather than taken for no token.
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)?
        .as_bytes()
        .trim_ascii();
    let (scheme, token) = value.split_at_checked(6)?;
    (scheme.eq_ignore_ascii_case(b"bearer") && (token.is_empty() || token[0] == b' '))
        .then(|| token.trim_ascii())
}

/// The token a read presents, from the first place that has one.
fn presented_for_reading(req: &Request) -> Option<Vec<u8>> {
    if let Some(token) = bearer(req) {
        return Some(token.to_vec());
    }
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let (name, value) = pair.trim_ascii().split_at_checked(COOKIE.len() + 1)?;
            (name.strip_suffix(b"=")? == COOKIE.as_bytes()).then_some(value)
        });
    if let Some(value) = cookie {
        // RFC 6265 allows a cookie value in double quotes.
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        return Some(value.to_vec());
    }
    if req.method() != Method::GET {
        return None;
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix(QUERY)?.strip_prefix('=')?;
        Some(percent_encoding::percent_decode_str(value).collect())
    })
}

fn register_bearer(registry: &mut Registry) {
    registry.create_security_scheme(
        BEARER_SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some(
                "A JSON Web Token (`factlog.subscribe` and `factlog.publish` grants), or the static --publish-token for appends. The only way to present a token to append.",
            ),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
}

fn api_key(
    key_in: &'static str,
    name: &'static str,
    description: &'static str,
) -> MetaSecurityScheme {
    MetaSecurityScheme {
        ty: "apiKey",
        description: Some(description),
        name: Some(name),
        key_in: Some(key_in),
        scheme: None,
        bearer_format: None,
        flows: None,
        openid_connect_url: None,
    }
}
