//! `GET /status`: the tutorial's endpoint, grown.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::error::AppError;
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
    /// The oldest kept fact's id (with `--retain-facts` or `--retain-age`, older ones
    /// were deleted); null when the log holds no fact.
    first_id: Option<i64>,
    /// The UUID of this log, made when its database was created.
    log_id: String,
}

#[OpenApi]
impl StatusApi {
    /// The service's state: open streams, newest and oldest ids, and the log's identity.
    /// 503 when the database cannot be read.
    #[oai(path = "/status", method = "get")]
    async fn status(&self, state: Data<&AppState>) -> poem::Result<Json<Status>> {
        let bounds = state.storage.bounds().await.map_err(AppError::from)?;
        Ok(Json(Status {
            clients: u64::try_from(state.notifier.open_streams()).unwrap_or(u64::MAX),
            last_id: state.notifier.newest_id(),
            first_id: bounds.first_id,
            log_id: state.log_id.to_string(),
        }))
    }
}
