//! What an operator graphs and alerts on, counted where it happens and rendered in the
//! Prometheus text format (OpenMetrics) through the `prometheus-client` crate; the HTTP
//! layer serves it at `GET /metrics`.
//!
//! A leaf: it imports nothing of this crate, so the writer, the streams and the HTTP edge
//! can all count into it. Everything is a plain atomic on the hot paths: a counter add per
//! commit, per stream write and per response, a histogram observation per commit; per
//! request, the duration's series is found under a shared read lock first.

use std::sync::Arc;

use poem::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A response's status code, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// A request's method and route, as labels. The route is the template a request matched
/// (`/topics/{topic}/facts`), never its path: the set of values stays as small as the API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Arc<str>,
}

/// The labels of `factlog_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// The route label of a request that matched no route: an unknown path, a CORS preflight
/// (answered before routing).
pub const NO_ROUTE: &str = "none";

/// The version the binary was built from, and its git commit (`unknown` when it was built
/// outside a git checkout; see `build.rs`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// See [`VERSION`].
pub const COMMIT: &str = match option_env!("FACTLOG_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// A histogram of request durations: 250 µs to about 8 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// The service's metrics. Shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    facts_appended: Counter,
    facts_deleted: Counter,
    database_bytes: Gauge,
    commit_facts: Histogram,
    commit_seconds: Histogram,
    open_streams: Gauge,
    streams_caught_up: Counter,
    streams_expired: Counter,
    stream_bytes: Counter,
    responses: Family<StatusLabel, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let facts_appended = Counter::default();
        registry.register(
            "factlog_facts_appended",
            "Facts committed to the log",
            facts_appended.clone(),
        );
        let facts_deleted = Counter::default();
        registry.register(
            "factlog_facts_deleted",
            "Facts this instance deleted because they were outside --retain-facts or --retain-age",
            facts_deleted.clone(),
        );
        let database_bytes = Gauge::default();
        registry.register_with_unit(
            "factlog_database_size",
            "Size of the database on disk (SQLite: the file, free pages included, not its WAL)",
            Unit::Bytes,
            database_bytes.clone(),
        );
        // 1, 2, 4, ... 4096: the writer's largest group.
        let commit_facts = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "factlog_commit_group_facts",
            "Facts per group commit",
            commit_facts.clone(),
        );
        // 100 µs to about 1.6 s.
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register_with_unit(
            "factlog_commit_duration",
            "Time from starting a group to its commit being durable",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let open_streams = Gauge::default();
        registry.register(
            "factlog_streams_open",
            "Event streams open now",
            open_streams.clone(),
        );
        let streams_caught_up = Counter::default();
        registry.register(
            "factlog_streams_caught_up_from_database",
            "Times a live stream fell behind the in-memory buffer and caught up from the database",
            streams_caught_up.clone(),
        );
        let streams_expired = Counter::default();
        registry.register(
            "factlog_streams_expired",
            "Times a stream's position was older than the kept log, so it was sent a reset (reason expired)",
            streams_expired.clone(),
        );
        let stream_bytes = Counter::default();
        registry.register_with_unit(
            "factlog_stream_sent",
            "Bytes written to event streams",
            Unit::Bytes,
            stream_bytes.clone(),
        );
        let responses = Family::<StatusLabel, Counter>::default();
        registry.register(
            "factlog_http_responses",
            "HTTP responses by status code",
            responses.clone(),
        );
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "factlog_http_request_duration",
            "Time from a request's arrival to its response's head, by method and route template (route=\"none\": no route matched). An event stream's is the time to open it, not how long it stays open",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: VERSION,
                commit: COMMIT,
            })
            .set(1);
        registry.register(
            "factlog_build_info",
            "Always 1; its labels say which version and git commit the binary was built from",
            build_info,
        );
        Arc::new(Self {
            registry,
            facts_appended,
            facts_deleted,
            database_bytes,
            commit_facts,
            commit_seconds,
            open_streams,
            streams_caught_up,
            streams_expired,
            stream_bytes,
            responses,
            request_seconds,
        })
    }

    /// A group of `facts` was committed in `seconds`.
    pub fn committed(&self, facts: usize, seconds: f64) {
        self.facts_appended.inc_by(facts as u64);
        self.commit_facts.observe(facts as f64);
        self.commit_seconds.observe(seconds);
    }

    /// Retention deleted `facts`.
    pub fn deleted(&self, facts: u64) {
        self.facts_deleted.inc_by(facts);
    }

    /// A stream was told that facts after its position were deleted.
    pub fn stream_expired(&self) {
        self.streams_expired.inc();
    }

    /// A live stream went back to the database to catch up.
    pub fn stream_caught_up(&self) {
        self.streams_caught_up.inc();
    }

    /// A stream wrote `bytes`.
    pub fn stream_sent(&self, bytes: usize) {
        self.stream_bytes.inc_by(bytes as u64);
    }

    /// A response with `status` was sent.
    pub fn responded(&self, status: StatusCode) {
        self.responses
            .get_or_create(&StatusLabel {
                status: status.as_u16(),
            })
            .inc();
    }

    /// A request for `route` (a template, or [`NO_ROUTE`]) with `method` was answered,
    /// its response's head ready `seconds` after it arrived.
    pub fn request_took(&self, method: &poem::http::Method, route: Arc<str>, seconds: f64) {
        self.request_seconds
            .get_or_create(&RouteLabels {
                method: method_label(method),
                route,
            })
            .observe(seconds);
    }

    /// The text exposition, with the stream count and the database's size as of now
    /// (`None` when it could not be read: the last size read is kept).
    ///
    /// # Errors
    /// Only if formatting fails, which writing to a `String` does not.
    pub fn render(
        &self,
        open_streams: usize,
        database_bytes: Option<i64>,
    ) -> Result<String, std::fmt::Error> {
        self.open_streams
            .set(i64::try_from(open_streams).unwrap_or(i64::MAX));
        if let Some(bytes) = database_bytes {
            self.database_bytes.set(bytes);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A method as a label: the ones the API serves and a browser sends, and `other` for the
/// rest, which a client may make up at will.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
