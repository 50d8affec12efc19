//! `GET /status`: the tutorial's endpoint, grown.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::state::AppState;

/// The service's state.
pub struct StatusApi;

/// The service's state.
#[derive(Debug, Object)]
struct Status {
    /// Open SSE streams (the tutorial's field).
    clients: u64,
    /// The newest id, 0 when the log is empty.
    last_id: i64,
    /// The UUID of this log, made when its database was created.
    log_id: String,
}

#[OpenApi]
impl StatusApi {
    /// The service's state: open streams, newest id, and the log's identity.
    #[oai(path = "/status", method = "get")]
    async fn status(&self, state: Data<&AppState>) -> Json<Status> {
        Json(Status {
            clients: u64::try_from(state.notifier.open_streams()).unwrap_or(u64::MAX),
            last_id: state.notifier.newest_id(),
            log_id: state.log_id.to_string(),
        })
    }
}
