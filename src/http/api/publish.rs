//! What the publishing operations (`POST /topics/{topic}/facts`, and `POST /facts`, alias
//! `POST /fact`, for the topic `default`; declared in `facts.rs`) do: turn the request into
//! a [`NewFact`], hand it to the writer, and answer with what became of it.

use poem_openapi::ApiResponse;

use super::body::FactBody;
use super::params::{EventParam, KeyHeader};
use super::record::{Direct, Fact};
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
    Created(Direct<Fact>, #[oai(header = "Location")] String),
    /// The idempotency key was seen before on this topic, for the same fact: nothing was
    /// appended; this is the record the first POST created.
    #[oai(status = 200)]
    AlreadyAppended(Direct<Fact>),
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
    let new = NewFact {
        topic,
        event: event.0,
        fact: body.into_stored()?,
        key: key.0,
    };
    Ok(
        match state.writer.append(new).await.map_err(AppError::from)? {
            Appended::Created(record) => {
                if let Some(sub) = publisher.sub() {
                    tracing::debug!(sub = ?sub, id = record.id, topic = record.topic, "appended");
                }
                let location = format!("/facts/{}", record.id);
                PostResponse::Created(Direct(record.try_into()?), location)
            }
            Appended::Existing(record) => PostResponse::AlreadyAppended(Direct(record.try_into()?)),
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
