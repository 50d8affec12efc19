//! The scenarios over a large log: `replay` (fresh streams over it) and `startup` (how
//! long a large log takes to open), and the log itself, made once through factlog's own
//! writer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::task::JoinSet;

use crate::client::{Event, Subscription};
use crate::crowd::{fact_body, parse_id};
use crate::report;
use crate::scenarios::{Bench, Results, cpu_delta, record};
use crate::target::{Running, Spec};

impl Bench<'_> {
    /// The log of `--backlog` facts that `replay` and `startup` use, made once.
    async fn prefilled(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.prefilled {
            return Ok(path.clone());
        }
        let path = self.scratch.join("backlog.db");
        let started = Instant::now();
        prefill(&path, self.args.backlog, self.args.size, |_| "default").await?;
        eprintln!(
            "  prefilled {} facts in {:.1} s",
            self.args.backlog,
            started.elapsed().as_secs_f64()
        );
        self.prefilled = Some(path.clone());
        Ok(path)
    }

    /// `replay`: fresh streams over a `--backlog` log, from the start, from the middle and
    /// from the last fact.
    pub(crate) async fn replay(&mut self) -> anyhow::Result<()> {
        let backlog = self.args.backlog;
        let db = self.prefilled().await?;
        let spec = Spec::Factlog {
            name: "factlog".into(),
            flags: Vec::new(),
        };
        let mut results = Results::new();
        for round in 1..=self.args.runs {
            let server = Running::start(&spec, &self.scratch, Some(&db))?;
            let cpu0 = server.cpu_seconds();
            let whole = read_stream(server.addr, "/events", None, backlog).await;
            let cpu = cpu_delta(&server, cpu0);
            let half = backlog / 2;
            let middle = read_stream(server.addr, "/events", Some(half), backlog - half).await;
            let end = read_stream(server.addr, "/events", Some(backlog - 1), 1).await;
            server.stop();
            let (whole, middle, end) = (whole?, middle?, end?);
            let metrics = vec![
                ("events_per_s", backlog as f64 / whole.elapsed),
                ("first_event_ms", whole.first_ms),
                ("cpu_us_per_event", cpu * 1e6 / backlog as f64),
                ("middle_events_per_s", (backlog / 2) as f64 / middle.elapsed),
                ("middle_first_event_ms", middle.first_ms),
                ("end_first_event_ms", end.first_ms),
                ("gaps", (whole.gaps + middle.gaps + end.gaps) as f64),
            ];
            record(&mut results, 0, "factlog", round, "replay", metrics);
        }
        report(
            "replay",
            serde_json::json!({ "backlog": backlog, "size": self.args.size }),
            &results,
        );
        Ok(())
    }

    /// `startup`: spawn to serving, with an empty log and with the `--backlog` log.
    pub(crate) async fn startup(&mut self) -> anyhow::Result<()> {
        let full = self.prefilled().await?;
        let spec = Spec::Factlog {
            name: "factlog".into(),
            flags: Vec::new(),
        };
        let empty = self.scratch.join("empty.db");
        // The first start creates and migrates the file; the measured starts open it.
        Running::start(&spec, &self.scratch, Some(&empty))?.stop();
        let mut results = Results::new();
        for round in 1..=self.args.runs.max(5) {
            let server = Running::start(&spec, &self.scratch, Some(&empty))?;
            let empty_ms = server.ready_after.as_secs_f64() * 1e3;
            server.stop();
            let server = Running::start(&spec, &self.scratch, Some(&full))?;
            let full_ms = server.ready_after.as_secs_f64() * 1e3;
            server.stop();
            let metrics = vec![
                ("empty_ms", empty_ms),
                ("full_ms", full_ms),
                ("ratio", full_ms / empty_ms),
            ];
            record(&mut results, 0, "factlog", round, "startup", metrics);
        }
        report(
            "startup",
            serde_json::json!({ "backlog": self.args.backlog }),
            &results,
        );
        Ok(())
    }
}

/// One read of a stream's figures.
pub(crate) struct StreamRead {
    /// From connecting to the first event.
    pub(crate) first_ms: f64,
    /// From connecting to the last event.
    pub(crate) elapsed: f64,
    /// Events whose id is not the previous one's plus one (a log with every id).
    pub(crate) gaps: u64,
    /// Events whose id is not above the previous one's.
    pub(crate) out_of_order: u64,
}

/// Opens the stream at `path` on `addr` (resuming after `after`, when given) and reads
/// `count` events.
pub(crate) async fn read_stream(
    addr: SocketAddr,
    path: &str,
    after: Option<u64>,
    count: u64,
) -> anyhow::Result<StreamRead> {
    let started = Instant::now();
    let resume = after.map(|id| id.to_string());
    let mut sub = Subscription::open(addr, 0, path, resume.as_deref(), 256 * 1024).await?;
    let mut progress = Progress {
        started,
        first: None,
        previous: after.unwrap_or(0),
        seen: 0,
        gaps: 0,
        out_of_order: 0,
    };
    sub.buffered_events(|e| progress.on_event(e));
    while progress.seen < count {
        if !sub.read_events(|e| progress.on_event(e)).await? {
            bail!("the stream ended after {} of {count} events", progress.seen);
        }
    }
    Ok(StreamRead {
        first_ms: progress.first.unwrap_or_default().as_secs_f64() * 1e3,
        elapsed: started.elapsed().as_secs_f64(),
        gaps: progress.gaps,
        out_of_order: progress.out_of_order,
    })
}

/// Where a read of a stream is.
struct Progress {
    started: Instant,
    first: Option<Duration>,
    previous: u64,
    seen: u64,
    gaps: u64,
    out_of_order: u64,
}

impl Progress {
    fn on_event(&mut self, event: Event<'_>) {
        let Some((id, _)) = event.id.and_then(parse_id) else {
            return;
        };
        self.first.get_or_insert_with(|| self.started.elapsed());
        if id != self.previous + 1 {
            self.gaps += 1;
        }
        if id <= self.previous {
            self.out_of_order += 1;
        }
        self.previous = id;
        self.seen += 1;
    }
}

/// Appends `count` facts to a new log at `path` through factlog's own writer (group
/// commit, `--sync normal`), much faster than over HTTP; fact `n` goes to the topic
/// `topic_of(n)`.
pub(crate) async fn prefill(
    path: &Path,
    count: u64,
    size: usize,
    topic_of: fn(u64) -> &'static str,
) -> anyhow::Result<()> {
    use factlog::config::SyncLevel;
    use factlog::domain::NewFact;
    use factlog::storage::{self, Opened, Publish, SchemaMode, writer};

    let url = format!("sqlite://{}", path.display());
    let Opened {
        storage,
        appender,
        follower: _,
        newest_id,
    } = storage::open(&url, SyncLevel::Normal, SchemaMode::Migrate).await?;
    if newest_id != 0 {
        bail!("{} is not empty", path.display());
    }
    let notifier: std::sync::Arc<dyn Publish> = factlog::notifier::Notifier::new(0, 1);
    let (handle, task) = writer::spawn(
        appender,
        notifier,
        factlog::domain::Retention::default(),
        factlog::metrics::Metrics::new(),
    )?;
    // Enough appenders in flight to fill the writer's largest groups.
    let appenders = 8192u64;
    let mut tasks = JoinSet::new();
    for a in 0..appenders {
        let handle = handle.clone();
        tasks.spawn(async move {
            let mut n = a;
            while n < count {
                let fact = String::from_utf8(fact_body(0, 0, n, size))?;
                handle
                    .append(NewFact {
                        topic: factlog::domain::TopicName::parse(topic_of(n))?,
                        event: None,
                        fact,
                        key: None,
                    })
                    .await?;
                n += appenders;
            }
            anyhow::Ok(())
        });
    }
    drop(handle);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    task.await?;
    storage.close().await;
    Ok(())
}
