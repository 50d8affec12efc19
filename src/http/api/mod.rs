//! Every route but the description itself, described by OpenAPI from this code:
//! publishing and reading facts ([`facts`], [`publish`]), the topics ([`topics`]), the
//! event streams ([`streams`], served by `sse/`), `GET /status` ([`status`]), `/healthz`
//! and `/metrics` ([`service`], answered by `ops.rs`), and the live page at `/` ([`page`]),
//! with the request bodies (the JSON one stored as [`compact`] writes it), the raw-read parameters, the record and the responses built
//! whole ([`raw`]) they share.

mod body;
mod compact;
mod facts;
mod page;
mod params;
mod publish;
mod raw;
mod record;
mod service;
mod status;
mod streams;
mod topics;

use poem_openapi::OpenApiService;

/// Every operation, as one OpenAPI service to nest at the root.
pub type Api = (
    facts::FactsApi,
    topics::TopicsApi,
    streams::StreamsApi,
    status::StatusApi,
    service::ServiceApi,
    page::Page,
);

/// The API with its description.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (
            facts::FactsApi,
            topics::TopicsApi,
            streams::StreamsApi,
            status::StatusApi,
            service::ServiceApi,
            page::Page,
        ),
        "factlog",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "An append-only log of JSON facts, followed live over Server-Sent Events (GET /events).",
    )
}
