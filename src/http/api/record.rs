//! A stored fact as the JSON API shows it.

use poem_openapi::Object;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use serde_json::Value;

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
    pub fact: Value,
    /// When its group was committed (RFC 3339, UTC).
    pub created_at: String,
}

impl TryFrom<FactRecord> for Fact {
    type Error = AppError;

    fn try_from(record: FactRecord) -> Result<Self, AppError> {
        let fact = serde_json::from_str(&record.fact).map_err(|e| {
            AppError::Internal(anyhow::anyhow!(
                "fact {} holds invalid JSON: {e}",
                record.id
            ))
        })?;
        Ok(Self {
            id: record.id,
            topic: record.topic,
            event: record.event,
            fact,
            created_at: record.created_at,
        })
    }
}

/// One fact is a response body of its own, serialized straight from the struct: the body
/// and its schema are `Json<Fact>`'s, but `Json` would first build a `serde_json::Value`
/// of the whole object, cloning the fact into it, on every POST.
impl Payload for Fact {
    const CONTENT_TYPE: &'static str = <Json<Fact> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        Json::<Fact>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        <Fact as poem_openapi::types::Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Fact as poem_openapi::types::Type>::register(registry);
    }
}

impl poem::IntoResponse for Fact {
    fn into_response(self) -> poem::Response {
        match serde_json::to_vec(&self) {
            Ok(body) => poem::Response::builder()
                .content_type(Self::CONTENT_TYPE)
                .body(body),
            Err(err) => poem::error::ResponseError::as_response(&AppError::Internal(err.into())),
        }
    }
}
