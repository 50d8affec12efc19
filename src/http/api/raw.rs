//! Responses a handler builds whole, declared in the description by a type that says what
//! they are: the event streams (their frames are written by `domain::frame`), `/healthz`
//! and the metrics text (written by the `metrics` module). poem-openapi's own payloads
//! would render the body themselves; these only carry a finished response through.

use std::marker::PhantomData;

use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};

/// What a [`Built`] response is, for the description.
pub trait Declared {
    /// The responses, as the description lists them.
    fn meta() -> MetaResponses;
}

/// A response built by a handler, declared by `D`.
pub struct Built<D>(Response, PhantomData<fn() -> D>);

impl<D> Built<D> {
    /// Carries `response` as it is.
    pub fn new(response: Response) -> Self {
        Self(response, PhantomData)
    }
}

impl<D> IntoResponse for Built<D> {
    fn into_response(self) -> Response {
        self.0
    }
}

impl<D: Declared> ApiResponse for Built<D> {
    fn meta() -> MetaResponses {
        D::meta()
    }

    fn register(_registry: &mut Registry) {}
}

/// A response of `status` with a body of `content_type`, a string described by
/// `description` (and shown by `example`).
pub fn text_response(
    status: u16,
    description: &'static str,
    content_type: &'static str,
    example: &'static str,
) -> MetaResponse {
    let schema = MetaSchema {
        example: Some(example.into()),
        ..MetaSchema::new("string")
    };
    MetaResponse {
        description,
        status: Some(status),
        status_range: None,
        content: vec![MetaMediaType {
            content_type,
            schema: MetaSchemaRef::Inline(Box::new(schema)),
        }],
        headers: Vec::new(),
    }
}

/// A response of `status` with a JSON object for a body, described by `description` and
/// shown by `example`.
pub fn json_response(
    status: u16,
    description: &'static str,
    example: serde_json::Value,
) -> MetaResponse {
    let schema = MetaSchema {
        example: Some(example),
        ..MetaSchema::new("object")
    };
    MetaResponse {
        description,
        status: Some(status),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "application/json; charset=utf-8",
            schema: MetaSchemaRef::Inline(Box::new(schema)),
        }],
        headers: Vec::new(),
    }
}

/// A response header, a string, as the description lists it.
pub fn header(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
    }
}
