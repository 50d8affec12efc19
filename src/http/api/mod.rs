//! The JSON API, described by OpenAPI from this code: publishing and reading facts
//! ([`facts`], [`publish`]), the topics ([`topics`]), `GET /status` ([`status`]), and the
//! live page at `/` ([`page`]), with the request bodies, the raw-read parameters and the
//! record they share.

mod body;
mod facts;
mod page;
mod params;
mod publish;
mod record;
mod status;
mod topics;

use poem_openapi::OpenApiService;

/// Every operation, as one OpenAPI service to nest at the root.
pub type Api = (
    facts::FactsApi,
    topics::TopicsApi,
    status::StatusApi,
    page::Page,
);

/// The API with its description.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (
            facts::FactsApi,
            topics::TopicsApi,
            status::StatusApi,
            page::Page,
        ),
        "factlog",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "An append-only log of JSON facts, followed live over Server-Sent Events (GET /events).",
    )
}
