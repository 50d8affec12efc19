//! What the publishing operations (`POST /topics/{topic}/facts`, and `POST /facts`, alias
//! `POST /fact`, for the topic `default`; declared in `facts.rs`) do: turn the request into
//! a [`NewFact`], hand it to the writer, and answer with what became of it.

use poem_openapi::ApiResponse;

use super::body::FactBody;
use super::params::{EventParam, KeyHeader};
use super::record::Fact;
use crate::auth::Caller;
use crate::domain::{NewFact, TopicName};
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::storage::Appended;

/// The answer to a POST.
#[derive(Debug, ApiResponse)]
pub enum PostResponse {
    /// The fact was appended and is on disk.
    #[oai(status = 201)]
    Created(Fact, #[oai(header = "Location")] String),
    /// The idempotency key was seen before on this topic, for the same fact: nothing was
    /// appended; this is the record the first POST created.
    #[oai(status = 200)]
    AlreadyAppended(Fact),
}

/// What every publishing operation does.
pub async fn append(
    state: &AppState,
    publisher: &Caller,
    topic: TopicName,
    event: EventParam,
    key: KeyHeader,
    body: FactBody,
) -> poem::Result<PostResponse> {
    let fact = body.into_value();
    let new = NewFact {
        topic,
        event: event.0,
        fact: serde_json::to_string(&fact).map_err(|e| AppError::Internal(e.into()))?,
        key: key.0,
    };
    Ok(
        match state.writer.append(new).await.map_err(AppError::from)? {
            Appended::Created(record) => {
                if let Some(sub) = publisher.sub() {
                    tracing::debug!(sub = ?sub, id = record.id, topic = record.topic, "appended");
                }
                let location = format!("/facts/{}", record.id);
                // The stored text is this value, compacted: answer with the value itself
                // rather than parse the text back.
                let created = Fact {
                    id: record.id,
                    topic: record.topic,
                    event: record.event,
                    fact,
                    created_at: record.created_at,
                };
                PostResponse::Created(created, location)
            }
            Appended::Existing(record) => PostResponse::AlreadyAppended(record.try_into()?),
            Appended::Conflict(record) => {
                return Err(AppError::KeyConflict {
                    topic: record.topic,
                    id: record.id,
                }
                .into());
            }
        },
    )
}
