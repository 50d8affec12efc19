//! What every request handler can reach.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Policy;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::storage::Storage;
use crate::storage::writer::WriterHandle;

/// What every request handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Read access to the log.
    pub storage: Storage,
    /// The way to append.
    pub writer: WriterHandle,
    /// Fan-out, newest id, stream count.
    pub notifier: Arc<Notifier>,
    /// The command line.
    pub config: Arc<Config>,
    /// Who may read and write.
    pub policy: Arc<Policy>,
    /// The identity of this log.
    pub log_id: Arc<str>,
    /// Fires when the server is stopping; replaying streams end on it (live ones end when
    /// the notifier closes).
    pub shutdown: CancellationToken,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
}
