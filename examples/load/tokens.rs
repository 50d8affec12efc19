//! `tokens`: what checking tokens costs, each figure beside the same run without tokens.
//!
//! - Fan-out (the `fanout` scenario) with every subscriber holding an HS256 token in its
//!   URL, as a cross-site `EventSource` does, on a server where nothing is public; the
//!   publishers present the static `--publish-token`. Against a server without tokens.
//!   Server CPU per delivery: a token is checked once per stream, so this should not move.
//! - Connecting: `--streams` streams opened (64 at a time), each read to its response head
//!   and closed, with a token and without. Server CPU per connection: the difference is
//!   what checking one token costs.

use std::sync::Arc;
use std::time::Duration;

use factlog_testkit::token::{self, SECRET};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Subscription;
use crate::crowd::{Credentials, Spread};
use crate::scenarios::{Bench, Results, cpu_delta, record};
use crate::target::{Running, Spec};
use crate::{Metrics, report};

/// The static token the publishers present on the server that checks tokens.
const PUBLISHER: &str = "load-generator-publisher";
/// Streams opened at once when measuring connects.
const CONNECTS_IN_FLIGHT: usize = 64;

impl Bench<'_> {
    /// The `tokens` scenario.
    pub(crate) async fn tokens(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        // One token for every subscriber, as if each had fetched its own: checking it
        // costs the same, and the server keeps nothing between connections.
        let reader: &'static str = Box::leak(token::token(&["*"], &[]).into_boxed_str());
        let plain = Spec::Factlog {
            name: "factlog".into(),
            flags: vec!["--sync".into(), "full".into()],
        };
        let checked = Spec::Factlog {
            name: "factlog".into(),
            flags: ["--sync", "full", "--jwt-key", SECRET, "--public-topics", ""]
                .into_iter()
                .chain(["--publish-token", PUBLISHER])
                .map(String::from)
                .collect(),
        };
        let with_tokens = Credentials {
            subscribe: Some(reader),
            publish: Some(PUBLISHER),
        };
        let variants = [
            ("no tokens", &plain, Credentials::default()),
            ("tokens", &checked, with_tokens),
        ];
        let mut fanouts = Results::new();
        let mut connects = Results::new();
        for round in 1..=args.runs {
            for (i, (name, spec, credentials)) in variants.iter().enumerate() {
                let spread = Spread {
                    credentials: *credentials,
                    ..Spread::default()
                };
                let server = Running::start(spec, &self.scratch, None)?;
                let metrics = self
                    .fanout(std::slice::from_ref(&server), None, spread)
                    .await;
                server.stop();
                self.clean_scratch();
                record(&mut fanouts, i, name, round, "tokens fan-out", metrics?);

                let server = Running::start(spec, &self.scratch, None)?;
                let metrics = connect_cost(&server, spread, args.streams).await;
                server.stop();
                self.clean_scratch();
                record(&mut connects, i, name, round, "tokens connect", metrics?);
            }
        }
        report(
            "tokens-fanout",
            serde_json::json!({
                "subscribers": args.subscribers, "events": args.events,
                "publishers": args.publishers, "size": args.size,
            }),
            &fanouts,
        );
        report(
            "tokens-connect",
            serde_json::json!({ "streams": args.streams }),
            &connects,
        );
        Ok(())
    }
}

/// Opens `count` streams of `spread` (at most [`CONNECTS_IN_FLIGHT`] at once), each read
/// to its response head and closed: server CPU per connection, and connections per second.
async fn connect_cost(server: &Running, spread: Spread, count: usize) -> anyhow::Result<Metrics> {
    let path: Arc<str> = spread.events_path(0).into();
    let open = |index: usize| {
        let (addr, path) = (server.addr, Arc::clone(&path));
        async move { Subscription::open(addr, index, &path, None, 4096).await }
    };
    // Warm-up: the server's first-use costs stay out of the figures.
    for index in 0..CONNECTS_IN_FLIGHT {
        drop(open(index).await?);
    }
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let cpu0 = server.cpu_seconds();
    let started = std::time::Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let permit = Arc::clone(&gate).acquire_owned().await?;
        let opening = open(index);
        tasks.spawn(async move {
            let _permit = permit;
            opening.await.map(drop)
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The server notices the last closes a moment later; what that costs belongs here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_delta(server, cpu0);
    Ok(vec![
        ("connects_per_s", count as f64 / elapsed),
        ("cpu_us_per_connect", cpu * 1e6 / count as f64),
    ])
}
