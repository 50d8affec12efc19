//! What operators and load balancers ask, as the description shows it: `GET /healthz` and
//! `GET /metrics`. The answers are `ops.rs`'s, which the private metrics address serves
//! too.

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::registry::MetaResponses;

use super::raw::{Built, Declared, json_response, text_response};
use crate::http::ops;
use crate::http::state::AppState;

/// `/healthz` and `/metrics`.
pub struct ServiceApi;

/// The answer of `/healthz`.
pub struct Health;

impl Declared for Health {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![
                json_response(
                    200,
                    "The database answers.",
                    serde_json::json!({ "status": "ok" }),
                ),
                json_response(
                    503,
                    "The database does not answer (why is logged, not sent); with `Retry-After`.",
                    serde_json::json!({ "error": "the database is unavailable right now (full, locked or unreachable); nothing was written, try again shortly" }),
                ),
            ],
        }
    }
}

/// The metrics text.
pub struct MetricsText;

impl Declared for MetricsText {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![
                text_response(
                    200,
                    "Every metric, in the OpenMetrics text format, which Prometheus reads (README, \"Watching it\", lists them).",
                    ops::METRICS_CONTENT_TYPE,
                    "# HELP factlog_facts_appended Facts committed to the log.\n# TYPE factlog_facts_appended counter\nfactlog_facts_appended_total 42\n# EOF\n",
                ),
                json_response(
                    404,
                    "With `--metrics-listen`: the metrics are served on that address only, and this one has no such endpoint.",
                    serde_json::json!({ "error": "no such endpoint" }),
                ),
            ],
        }
    }
}

#[OpenApi]
impl ServiceApi {
    /// Whether the database answers: for load balancers.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self, state: Data<&AppState>) -> Built<Health> {
        Built::new(ops::healthz(&state).await)
    }

    /// The metrics, for Prometheus.
    ///
    /// With `--metrics-listen`, served on that address instead (plain HTTP, nothing else
    /// there), and not here: this answers 404, so that the metrics can be kept private.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, state: Data<&AppState>) -> poem::Result<Built<MetricsText>> {
        if state.config.metrics_listen.is_some() {
            return Err(poem::error::NotFoundError.into());
        }
        Ok(Built::new(ops::metrics(&state).await))
    }
}
