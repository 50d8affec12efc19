//! The JSON API, described by OpenAPI from this code: publishing and reading facts
//! ([`facts`]), `GET /status` ([`status`]), and the live page at `/` ([`page`]), with the
//! request bodies, the raw-read parameters and the record they share.

mod body;
mod facts;
mod page;
mod params;
mod record;
mod status;

use poem_openapi::OpenApiService;

/// Every operation, as one OpenAPI service to nest at the root.
pub type Api = (facts::FactsApi, status::StatusApi, page::Page);

/// The API with its description.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (facts::FactsApi, status::StatusApi, page::Page),
        "factlog",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "An append-only log of JSON facts, followed live over Server-Sent Events (GET /events).",
    )
}
