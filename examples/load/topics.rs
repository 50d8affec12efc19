//! `topics`: what topics cost, each figure beside its counterpart without topics in the
//! same run.
//!
//! - Fan-out routed by topic: `--subscribers` streams, each on one of `--topics` topics,
//!   and `--events` facts spread over them, against the same crowd and facts on one
//!   stream of everything (the `fanout` scenario). Server CPU per delivery, as measured
//!   and net of what posting the facts costs with nobody listening (measured in the same
//!   run): with 100 topics each fact reaches a hundredth of the subscribers, so what a
//!   post costs weighs a hundred times more on each delivery.
//! - A topic holding 1% of a `--backlog` log: a fresh stream of it from the start (the
//!   first of a newly started server, then another), and with `tail=100`: time to the
//!   first event, events per second.
//! - `append` with the facts spread over `--topics` topics, against all on one topic.

use std::time::Instant;

use crate::Metrics;
use crate::backlog::read_stream;
use crate::crowd::{Spread, publish};
use crate::report;
use crate::scenarios::{Bench, Results, cpu_delta, record};
use crate::target::{Running, Spec};

/// The topic of the backlog that holds one fact in a hundred.
const RARE: &str = "rare";

impl Bench<'_> {
    /// The `topics` scenario.
    pub(crate) async fn topics(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        let spread = Spread {
            topics: args.topics,
            ..Spread::default()
        };
        let spec = Spec::Factlog {
            name: "factlog".into(),
            flags: vec!["--sync".into(), "full".into()],
        };
        let mut fanouts = Results::new();
        let mut appends = Results::new();
        for round in 1..=args.runs {
            for (i, (name, spread)) in [("one stream", Spread::default()), ("topics", spread)]
                .into_iter()
                .enumerate()
            {
                let server = Running::start(&spec, &self.scratch, None)?;
                let posting = self.posting_cost(&server, spread).await?;
                server.stop();
                self.clean_scratch();
                let server = Running::start(&spec, &self.scratch, None)?;
                let mut metrics = self
                    .fanout(std::slice::from_ref(&server), None, spread)
                    .await?;
                server.stop();
                self.clean_scratch();
                // Deliveries made, from the figures themselves.
                let expected =
                    (args.subscribers as u64 * args.events) as f64 / spread.topics.max(1) as f64;
                let delivered = expected - figure(&metrics, "missing");
                let cpu = figure(&metrics, "cpu_us_per_delivery") * delivered;
                let net = (cpu - posting * args.events as f64) / delivered;
                metrics.push(("posting_cpu_us_per_fact", posting));
                metrics.push(("net_cpu_us_per_delivery", net));
                record(&mut fanouts, i, name, round, "topics fan-out", metrics);
            }
            for (i, (name, spread)) in [
                (
                    "one topic",
                    Spread {
                        topics: 1,
                        ..Spread::default()
                    },
                ),
                ("topics", spread),
            ]
            .into_iter()
            .enumerate()
            {
                let server = Running::start(&spec, &self.scratch, None)?;
                let metrics = self.append(&server, spread, args.facts).await?;
                server.stop();
                self.clean_scratch();
                record(&mut appends, i, name, round, "topics append", metrics);
            }
        }
        report(
            "topics-fanout",
            serde_json::json!({
                "subscribers": args.subscribers, "events": args.events, "topics": args.topics,
                "publishers": args.publishers, "size": args.size,
            }),
            &fanouts,
        );
        report(
            "topics-append",
            serde_json::json!({
                "connections": args.connections, "facts": args.facts, "topics": args.topics,
                "size": args.size,
            }),
            &appends,
        );
        self.rare_topic().await
    }

    /// Server CPU per fact of posting `--events` facts over `spread` with nobody listening.
    async fn posting_cost(&mut self, server: &Running, spread: Spread) -> anyhow::Result<f64> {
        let args = self.args;
        let run = self.next_run();
        let cpu0 = server.cpu_seconds();
        let publishers = args.publishers.max(1);
        publish(
            &[server.addr],
            run,
            args.events,
            publishers,
            args.size,
            0,
            spread,
        )
        .await?;
        Ok(cpu_delta(server, cpu0) * 1e6 / args.events as f64)
    }

    /// Fresh streams of a topic that holds one fact in a hundred of a `--backlog` log.
    async fn rare_topic(&mut self) -> anyhow::Result<()> {
        let backlog = self.args.backlog;
        let db = self.scratch.join("topics-backlog.db");
        let started = Instant::now();
        crate::backlog::prefill(&db, backlog, self.args.size, |n| {
            if n % 100 == 99 { RARE } else { "bulk" }
        })
        .await?;
        eprintln!(
            "  prefilled {backlog} facts, {} of them on `{RARE}`, in {:.1} s",
            backlog / 100,
            started.elapsed().as_secs_f64()
        );
        let spec = Spec::Factlog {
            name: "factlog".into(),
            flags: Vec::new(),
        };
        let rare = backlog / 100;
        let mut results = Results::new();
        for round in 1..=self.args.runs {
            // The first stream of a newly started server maps the pages it reads; the
            // next finds them mapped.
            let server = Running::start(&spec, &self.scratch, Some(&db))?;
            let path = format!("/topics/{RARE}/events");
            let first = read_stream(server.addr, &path, None, rare).await;
            let cpu0 = server.cpu_seconds();
            let again = read_stream(server.addr, &path, None, rare).await;
            let cpu = cpu_delta(&server, cpu0);
            let tail = read_stream(server.addr, &format!("{path}?tail=100"), None, 100).await;
            server.stop();
            let (first, again, tail) = (first?, again?, tail?);
            let metrics = vec![
                ("new_server_events_per_s", rare as f64 / first.elapsed),
                ("new_server_first_event_ms", first.first_ms),
                ("events_per_s", rare as f64 / again.elapsed),
                ("first_event_ms", again.first_ms),
                ("cpu_us_per_event", cpu * 1e6 / rare as f64),
                ("tail_100_first_event_ms", tail.first_ms),
                ("tail_100_ms", tail.elapsed * 1e3),
                (
                    "out_of_order",
                    (first.out_of_order + again.out_of_order + tail.out_of_order) as f64,
                ),
            ];
            record(&mut results, 0, "factlog", round, "rare topic", metrics);
        }
        report(
            "topics-rare",
            serde_json::json!({ "backlog": backlog, "topic_share": 0.01, "size": self.args.size }),
            &results,
        );
        Ok(())
    }
}

/// The figure named `key` of one run.
fn figure(metrics: &Metrics, key: &str) -> f64 {
    metrics
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(f64::NAN, |(_, v)| *v)
}
