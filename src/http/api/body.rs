//! The body of a POST: any JSON value, or a form stored as an object of its fields. The
//! body has already been read within its limit (`middleware/body_limit.rs`).

use bytes::Bytes;
use poem::Request;
use poem_openapi::ApiRequest;
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type as _;
use serde_json::Value;

use super::compact::compact;
use crate::domain::parse_urlencoded;
use crate::http::error::AppError;

/// The body of a POST.
#[derive(Debug, ApiRequest)]
pub enum FactBody {
    /// Any JSON value.
    Json(JsonBody),
    /// A form; stored as an object of its string fields.
    Form(FormBody),
}

impl FactBody {
    /// The fact the body holds, as it is stored: compact JSON.
    ///
    /// # Errors
    /// Only if serde_json cannot write a form's fields, which it always can.
    pub fn into_stored(self) -> Result<String, AppError> {
        match self {
            Self::Json(JsonBody(text)) => Ok(text),
            Self::Form(FormBody(fields)) => serde_json::to_string(&Value::Object(fields))
                .map_err(|e| AppError::Internal(e.into())),
        }
    }
}

/// A JSON body: any JSON value, held as its stored text.
#[derive(Debug)]
pub struct JsonBody(String);

impl Payload for JsonBody {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        Json::<Value>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        Value::schema_ref()
    }
}

impl ParsePayload for JsonBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        let bytes = <Bytes as poem::FromRequest>::from_request(request, body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(AppError::bad_request("the body is empty: send a JSON value").into());
        }
        // serde_json refuses invalid UTF-8, trailing garbage and nesting deeper than 128.
        let text = compact(&bytes)
            .map_err(|e| AppError::bad_request(format!("the body is not valid JSON: {e}")))?;
        Ok(Self(text))
    }
}

/// A form body: stored as a JSON object of its string fields (a repeated field keeps its
/// last value).
#[derive(Debug)]
pub struct FormBody(serde_json::Map<String, Value>);

impl Payload for FormBody {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(),
            Ok(m) if m.type_() == "application" && m.subtype() == "x-www-form-urlencoded")
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            additional_properties: Some(Box::new(String::schema_ref())),
            ..MetaSchema::new("object")
        }))
    }

    fn register(_registry: &mut Registry) {}
}

impl ParsePayload for FormBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        let bytes = <Bytes as poem::FromRequest>::from_request(request, body).await?;
        // `curl -d '{...}'` without a content type sends JSON labelled as a form; storing
        // it as a field named `{...}` would help nobody.
        if matches!(
            bytes.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        ) {
            return Err(AppError::bad_request(
                "the body looks like JSON but is labelled as a form: send it with Content-Type: application/json",
            )
            .into());
        }
        let fields = parse_urlencoded(&bytes)
            .map_err(AppError::from)?
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        Ok(Self(fields))
    }
}
