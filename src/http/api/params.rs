//! The parameters of a POST that are read from their raw bytes rather than through
//! poem-openapi's text parameters, which skip a value that is not valid UTF-8 as if it
//! were absent: a header or query value that is present but not valid text must be
//! refused, never taken for "none" (an `Idempotency-Key: café` would otherwise append
//! twice). Both declare themselves in the OpenAPI description as the parameters they
//! are. And the parameters of the event streams, which read their query whole and are
//! only declared here ([`QueryDecl`], [`HeaderDecl`]).

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::ApiExtractor;
use poem_openapi::ApiExtractorType;
use poem_openapi::ExtractParamOptions;
use poem_openapi::registry::{MetaParamIn, MetaSchemaRef, Registry};
use poem_openapi::types::Type;

use crate::domain::{EventName, IdempotencyKey, TopicName, TopicSet, parse_urlencoded};
use crate::http::error::AppError;

/// `?event=<name>`: the fact's SSE event type, at most once.
#[derive(Debug)]
pub struct EventParam(pub Option<EventName>);

impl<'a> ApiExtractor<'a> for EventParam {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    type ParamType = String;
    type ParamRawType = ();

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Query)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(String::schema_ref())
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        options: ExtractParamOptions<String>,
    ) -> poem::Result<Self> {
        let query = request.uri().query().unwrap_or_default();
        if query.is_empty() {
            return Ok(Self(None));
        }
        let mut values = parse_urlencoded(query.as_bytes())
            .map_err(AppError::from)?
            .into_iter()
            .filter(|(name, _)| name == options.name);
        let Some((_, value)) = values.next() else {
            return Ok(Self(None));
        };
        // One event type per fact: `?event=a&event=b` is a mistake, not a choice.
        if values.next().is_some() {
            return Err(
                AppError::bad_request(format!("{} is given more than once", options.name)).into(),
            );
        }
        Ok(Self(Some(
            EventName::parse(&value).map_err(AppError::from)?,
        )))
    }
}

/// `?topic=<name>` (repeatable, at most [`TopicSet::MAX`]): the topics a read selects;
/// every topic when there is none.
#[derive(Debug)]
pub struct TopicsParam(pub Option<TopicSet>);

impl<'a> ApiExtractor<'a> for TopicsParam {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    type ParamType = Vec<String>;
    type ParamRawType = ();

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Query)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(Vec::<String>::schema_ref())
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        options: ExtractParamOptions<Vec<String>>,
    ) -> poem::Result<Self> {
        let query = request.uri().query().unwrap_or_default();
        if query.is_empty() {
            return Ok(Self(None));
        }
        let names = parse_urlencoded(query.as_bytes())
            .map_err(AppError::from)?
            .into_iter()
            .filter(|(name, _)| name == options.name)
            .map(|(_, value)| TopicName::parse(&value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::from)?;
        Ok(Self(TopicSet::new(names).map_err(AppError::from)?))
    }
}

/// `Idempotency-Key: <key>`: parsed from the header's raw bytes.
#[derive(Debug)]
pub struct KeyHeader(pub Option<IdempotencyKey>);

impl<'a> ApiExtractor<'a> for KeyHeader {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    type ParamType = String;
    type ParamRawType = ();

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(String::schema_ref())
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        options: ExtractParamOptions<String>,
    ) -> poem::Result<Self> {
        // The first value, as poem-openapi's own header parameters take it.
        match request.headers().get(options.name) {
            None => Ok(Self(None)),
            Some(value) => Ok(Self(Some(
                IdempotencyKey::parse(value.as_bytes()).map_err(AppError::from)?,
            ))),
        }
    }
}

/// A parameter that the operation reads from the raw request itself, together with the
/// others (the event streams parse their query whole: a repeated position is refused,
/// unknown names are ignored, and a value that does not parse is a 400 of theirs),
/// declared here only so that the description lists it, with `T`'s schema. In the query,
/// or with `HEADER` in a header. Extracting it reads nothing.
#[derive(Debug)]
pub struct DeclaredParam<T, const HEADER: bool>(PhantomData<fn() -> T>);

/// A query parameter, declared only: see [`DeclaredParam`].
pub type QueryDecl<T> = DeclaredParam<T, false>;
/// A header, declared only: see [`DeclaredParam`].
pub type HeaderDecl<T> = DeclaredParam<T, true>;

impl<'a, T: Type, const HEADER: bool> ApiExtractor<'a> for DeclaredParam<T, HEADER> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    type ParamType = T;
    type ParamRawType = T;

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(if HEADER {
            MetaParamIn::Header
        } else {
            MetaParamIn::Query
        })
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(T::schema_ref())
    }

    async fn from_request(
        _request: &'a Request,
        _body: &mut RequestBody,
        _options: ExtractParamOptions<T>,
    ) -> poem::Result<Self> {
        Ok(Self(PhantomData))
    }
}
