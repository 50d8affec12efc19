//! `GET /events` and `GET /topics/{topic}/events`, as the description shows them: an
//! event stream (`text/event-stream`), its frames, its parameters and who may read it.
//! The stream itself is `sse/`'s, which reads the whole query at once; the parameters
//! here are declared for the description only (see [`QueryDecl`]).

use poem::Request;
use poem::web::Data;
use poem_openapi::registry::MetaResponses;
use poem_openapi::{Enum, OpenApi, param};

use super::params::{HeaderDecl, QueryDecl};
use super::raw::{Built, Declared, header, text_response};
use crate::http::access::ReadAccess;
use crate::http::sse;
use crate::http::state::AppState;

/// The event streams.
pub struct StreamsApi;

/// What a fact's `data:` line holds.
#[derive(Debug, Enum)]
#[oai(rename_all = "lowercase")]
enum StreamFormat {
    /// The fact itself (the default).
    Fact,
    /// The whole record: `{"id", "topic", "event", "fact", "created_at"}`.
    Record,
}

/// An event stream, as the description shows it.
pub struct EventStream;

/// The frames of a stream, for the description.
const FRAMES: &str = "The stream, never compressed or buffered. Its frames:\n\n\
- `retry: <ms>` first: the reconnection delay (`--retry-ms`).\n\
- One event per fact, ids strictly increasing: `id: <id>`, then `event: <type>` when the \
fact has one (without it the event is a `message`), then `data: <the fact as compact JSON>` \
(with `format=record`: `{\"id\", \"topic\", \"event\", \"fact\", \"created_at\"}`), always \
one line, then a blank line.\n\
- `event: reset`: clear what you show and rebuild from what follows. \
`data: {\"reason\":\"unknown\",\"last_id\":<newest id>}` when the position is one this log \
never issued (its database was replaced or wiped); the whole log follows. \
`data: {\"reason\":\"expired\",\"first_id\":<oldest kept id or null>,\"last_id\":<newest id>}` \
when facts after the position were deleted (retention); the kept log follows.\n\
- `event: token-expired` with `data: {\"last_id\":<id>}`, and the stream ends, when the \
token it was opened with expires: present a new token and resume after `last_id`.\n\
- `: keep-alive` comment lines when idle (every `--keep-alive-secs`).\n\n\
Neither `retry:` nor a comment is followed by a blank line of its own.";

/// A stream as a client reads it.
const EXAMPLE: &str = "retry: 2000\nid: 1\ndata: {\"info\":\"shark sighted\"}\n\n\
id: 2\nevent: sighting\ndata: {\"info\":\"whale\"}\n\n: keep-alive\n";

impl Declared for EventStream {
    fn meta() -> MetaResponses {
        let mut stream = text_response(200, FRAMES, "text/event-stream", EXAMPLE);
        stream.headers = vec![
            header("Cache-Control", "`no-cache`"),
            header(
                "X-Accel-Buffering",
                "`no`: a proxy that buffers (nginx) passes each frame on at once",
            ),
        ];
        MetaResponses {
            responses: vec![stream],
        }
    }
}

#[OpenApi]
impl StreamsApi {
    /// Follow the log: Server-Sent Events.
    ///
    /// The facts of the selected topics (every topic without `topic`) from the start
    /// position, then live: each committed fact exactly once, across the switch from
    /// replay to live and for a slow reader. Where it starts, first match wins: the
    /// `Last-Event-ID` header, `lastEventId` (or `after`), `tail`; without any, the first
    /// fact. Errors, as JSON `{"error": ...}`: 400 a bad or repeated position, topic, event
    /// type or format; 401 a token is needed, or the one presented is not valid; 403 the
    /// token does not grant a topic (all topics at once need `*`); 503 over
    /// `--max-subscribers`, or shutting down, with `Retry-After`.
    #[oai(path = "/events", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        req: &Request,
        state: Data<&AppState>,
        access: ReadAccess,
        /// Only these topics (repeatable, at most 32). Without it, every topic.
        topic: QueryDecl<Vec<String>>,
        /// Only facts of these event types (repeatable, at most 64); a fact without a type
        /// is a `message`.
        event: QueryDecl<Vec<String>>,
        /// Start after this id: what a browser's `EventSource` sends when it reconnects.
        /// Wins over the query.
        #[oai(name = "Last-Event-ID", validator(minimum(value = "0")))]
        last_event_id_header: HeaderDecl<i64>,
        /// Start after this id, on a first connection (a browser cannot set the header).
        #[oai(name = "lastEventId", validator(minimum(value = "0")))]
        last_event_id: QueryDecl<i64>,
        /// As `lastEventId`.
        #[oai(validator(minimum(value = "0")))]
        after: QueryDecl<i64>,
        /// Start with the newest n facts of the selection, then live; 0: live only.
        #[oai(validator(minimum(value = "0")))]
        tail: QueryDecl<i64>,
        /// What `data:` holds: the fact (default), or the whole record.
        format: QueryDecl<StreamFormat>,
    ) -> poem::Result<Built<EventStream>> {
        // Declared only: the stream reads its query itself.
        let _ = (
            topic,
            event,
            last_event_id_header,
            last_event_id,
            after,
            tail,
            format,
        );
        Ok(Built::new(sse::events(req, &state, access).await?))
    }

    /// Follow one topic: Server-Sent Events.
    ///
    /// `GET /events?topic={topic}`, with everything else as there (`topic` in the query
    /// too is 400).
    #[oai(path = "/topics/:topic/events", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn topic_events(
        &self,
        req: &Request,
        state: Data<&AppState>,
        access: ReadAccess,
        /// The topic.
        topic: param::Path<String>,
        /// Only facts of these event types (repeatable, at most 64); a fact without a type
        /// is a `message`.
        event: QueryDecl<Vec<String>>,
        /// Start after this id: what a browser's `EventSource` sends when it reconnects.
        /// Wins over the query.
        #[oai(name = "Last-Event-ID", validator(minimum(value = "0")))]
        last_event_id_header: HeaderDecl<i64>,
        /// Start after this id, on a first connection (a browser cannot set the header).
        #[oai(name = "lastEventId", validator(minimum(value = "0")))]
        last_event_id: QueryDecl<i64>,
        /// As `lastEventId`.
        #[oai(validator(minimum(value = "0")))]
        after: QueryDecl<i64>,
        /// Start with the newest n facts of the topic, then live; 0: live only.
        #[oai(validator(minimum(value = "0")))]
        tail: QueryDecl<i64>,
        /// What `data:` holds: the fact (default), or the whole record.
        format: QueryDecl<StreamFormat>,
    ) -> poem::Result<Built<EventStream>> {
        // Declared only: the stream reads its query itself.
        let _ = (
            event,
            last_event_id_header,
            last_event_id,
            after,
            tail,
            format,
        );
        Ok(Built::new(
            sse::topic_events(req, &topic, &state, access).await?,
        ))
    }
}
