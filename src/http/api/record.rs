//! A stored fact as the JSON API shows it.

use poem_openapi::ApiResponse;
use poem_openapi::Object;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::{Any, Type};
use serde_json::value::RawValue;

use crate::domain::FactRecord;
use crate::http::error::AppError;

/// A stored fact.
#[derive(Debug, Object, serde::Serialize)]
pub struct Fact {
    /// Position in the log, and the SSE event id.
    pub id: i64,
    /// The topic it belongs to.
    pub topic: String,
    /// The SSE event type; null for a fact posted without one.
    pub event: Option<String>,
    /// The fact as it was posted.
    // Kept as the stored text, which is already compact JSON: an answer copies it rather
    // than parse it into a tree and write it out again.
    pub fact: Any<Box<RawValue>>,
    /// When its group was committed (RFC 3339, UTC).
    pub created_at: String,
}

impl TryFrom<FactRecord> for Fact {
    type Error = AppError;

    fn try_from(record: FactRecord) -> Result<Self, AppError> {
        let fact = RawValue::from_string(record.fact).map_err(|e| {
            AppError::Internal(anyhow::anyhow!(
                "fact {} holds invalid JSON: {e}",
                record.id
            ))
        })?;
        Ok(Self {
            id: record.id,
            topic: record.topic,
            event: record.event,
            fact: Any(fact),
            created_at: record.created_at,
        })
    }
}

/// A response body serialized straight from its struct with serde: the body and its
/// schema are `Json<T>`'s, but `Json` would first build a `serde_json::Value` of the whole
/// object, turning each stored fact into a tree, on every answer.
#[derive(Debug)]
pub struct Direct<T>(pub T);

impl<T: Type + serde::Serialize + Send> Payload for Direct<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        Json::<T>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + serde::Serialize + Send> poem::IntoResponse for Direct<T> {
    fn into_response(self) -> poem::Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => poem::Response::builder()
                .content_type(Self::CONTENT_TYPE)
                .body(body),
            Err(err) => poem::error::ResponseError::as_response(&AppError::Internal(err.into())),
        }
    }
}

/// As `Json<T>`'s: a `200` with the body.
impl<T: Type + serde::Serialize + Send> ApiResponse for Direct<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
