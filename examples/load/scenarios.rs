//! The scenarios. Each run starts its targets fresh, measures them one after the other
//! (so that two targets never share the machine), and stops them; the figures are the
//! medians of `--runs` runs. `append`, `fanout`, `idle` and `instances` are here; `replay`
//! and `startup` in `backlog.rs`; `topics` in `topics.rs`; the subscribers and publishers
//! they use in `crowd.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::task::JoinSet;

use crate::client::Poster;
use crate::crowd::{Crowd, Spread, fact_body, micros, percentile, publish};
use crate::target::{Running, Spec, own_cpu_seconds};
use crate::{Args, Metrics, Scenario, report};

/// The state kept across scenarios: the scratch directory and the prefilled log.
pub struct Bench<'a> {
    pub(crate) args: &'a Args,
    pub(crate) scratch: PathBuf,
    run: u32,
    pub(crate) prefilled: Option<PathBuf>,
}

/// Each target's runs, in the order the targets were listed.
pub(crate) type Results = BTreeMap<usize, (String, Vec<Metrics>)>;

impl<'a> Bench<'a> {
    /// A bench writing its databases under `scratch`.
    pub fn new(args: &'a Args, scratch: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            args,
            scratch,
            run: std::process::id(),
            prefilled: None,
        })
    }

    /// Runs one scenario `--runs` times over its targets and reports the medians.
    pub async fn run(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        let args = self.args;
        let factlog = |sync: &str| Spec::Factlog {
            name: format!("factlog-{sync}"),
            flags: vec!["--sync".into(), sync.into()],
        };
        let external: Vec<Spec> = args
            .url_specs()?
            .into_iter()
            .chain(args.peer_specs())
            .collect();
        let own = args.url.is_empty();
        let mut targets = Vec::new();
        match scenario {
            Scenario::Append => {
                if own {
                    targets.push(Spec::Ceiling);
                    targets.extend(args.sync.iter().map(|s| factlog(s)));
                }
                targets.extend(external);
            }
            Scenario::Fanout => {
                if own {
                    targets.push(Spec::Ceiling);
                    targets.push(factlog("full"));
                }
                targets.extend(external);
            }
            Scenario::Idle => {
                if own {
                    targets.push(factlog("full"));
                }
                targets.extend(external);
            }
            Scenario::Replay | Scenario::Startup => {
                if !own {
                    bail!("{scenario:?} measures factlog's own storage: leave out --url");
                }
                return if scenario == Scenario::Replay {
                    self.replay().await
                } else {
                    self.startup().await
                };
            }
            Scenario::Ceiling => targets.push(Spec::Ceiling),
            Scenario::Instances => {
                if !own {
                    bail!("instances starts its own factlog instances: leave out --url");
                }
                return self.instances().await;
            }
            Scenario::Topics => {
                if !own {
                    bail!("topics starts its own factlog: leave out --url");
                }
                return self.topics().await;
            }
            Scenario::Tokens => {
                if !own {
                    bail!("tokens starts its own factlog: leave out --url");
                }
                return self.tokens().await;
            }
            Scenario::Retention => {
                if !own {
                    bail!("retention starts its own factlog: leave out --url");
                }
                return self.retention().await;
            }
            Scenario::Https => {
                if !own {
                    bail!("https starts its own factlog: leave out --url");
                }
                return self.https().await;
            }
            Scenario::All | Scenario::ServeCeiling => unreachable!("dispatched in main"),
        }

        let mut appends = Results::new();
        let mut fanouts = Results::new();
        let mut idles = Results::new();
        for round in 1..=args.runs {
            for (i, spec) in targets.iter().enumerate() {
                let name = spec.name();
                let do_append = matches!(scenario, Scenario::Append | Scenario::Ceiling);
                let do_fanout = matches!(scenario, Scenario::Fanout | Scenario::Ceiling);
                if do_append {
                    let server = Running::start(spec, &self.scratch, None)?;
                    let spread = Spread {
                        topics: args.spread,
                        ..Spread::default()
                    };
                    let metrics = self.append(&server, spread, args.facts).await;
                    server.stop();
                    record(&mut appends, i, &name, round, "append", metrics?);
                }
                if do_fanout {
                    let server = Running::start(spec, &self.scratch, None)?;
                    let spread = Spread {
                        topics: args.spread,
                        ..Spread::default()
                    };
                    let metrics = self
                        .fanout(std::slice::from_ref(&server), None, spread)
                        .await;
                    server.stop();
                    record(&mut fanouts, i, &name, round, "fanout", metrics?);
                }
                if scenario == Scenario::Idle {
                    let server = Running::start(spec, &self.scratch, None)?;
                    let metrics = self.idle(&server).await;
                    server.stop();
                    record(&mut idles, i, &name, round, "idle", metrics?);
                }
                self.clean_scratch();
            }
        }
        let label = |base: &str| {
            if scenario == Scenario::Ceiling {
                format!("ceiling-{base}")
            } else {
                base.to_owned()
            }
        };
        if !appends.is_empty() {
            let params = serde_json::json!({
                "connections": args.connections, "facts": args.facts, "size": args.size,
            });
            report(
                &label("append"),
                with_ceiling(params, &appends, "facts_per_s"),
                &appends,
            );
        }
        if !fanouts.is_empty() {
            let params = serde_json::json!({
                "subscribers": args.subscribers, "events": args.events, "rate": args.rate,
                "publishers": self.fanout_publishers(), "size": args.size,
            });
            report(
                &label("fanout"),
                with_ceiling(params, &fanouts, "deliveries_per_s"),
                &fanouts,
            );
        }
        if !idles.is_empty() {
            let params = serde_json::json!({
                "streams": args.streams, "burst": args.burst, "burst_size": args.burst_size,
            });
            report("idle", params, &idles);
        }
        Ok(())
    }

    pub(crate) fn next_run(&mut self) -> u32 {
        self.run = self.run.wrapping_add(1);
        self.run
    }

    /// `instances`: the fan-out with 1, 2, 3... factlog instances sharing one PostgreSQL
    /// database (a new one each run), subscribers and publishers spread over them, beside
    /// one instance over SQLite in the same run.
    async fn instances(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        let Some(db) = factlog_testkit::pg::durable_database("the instances scenario") else {
            bail!("the instances scenario needs PostgreSQL (see the README)");
        };
        // The cluster's server and its backends, for their CPU time.
        let database = db.server_pid().map(Running::process);
        let flags = vec!["--sync".to_owned(), "full".to_owned()];
        let mut results = Results::new();
        for round in 1..=args.runs {
            let sqlite = Running::start(
                &Spec::Factlog {
                    name: "sqlite".into(),
                    flags: flags.clone(),
                },
                &self.scratch,
                None,
            )?;
            let metrics = self
                .fanout(std::slice::from_ref(&sqlite), None, Spread::default())
                .await;
            sqlite.stop();
            record(&mut results, 0, "sqlite, 1", round, "instances", metrics?);
            self.clean_scratch();

            for (i, &count) in args.instances.iter().enumerate() {
                let name = format!("load_{}_{count}", self.next_run());
                let url = db.url_of(&name);
                let servers = (0..count)
                    .map(|_| Running::start_factlog(&url, &flags))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let metrics = self
                    .fanout(&servers, database.as_ref(), Spread::default())
                    .await;
                for server in servers {
                    server.stop();
                }
                db.drop_database(&name);
                let name = format!("postgres, {count}");
                record(&mut results, i + 1, &name, round, "instances", metrics?);
            }
        }
        let params = serde_json::json!({
            "instances": args.instances, "subscribers": args.subscribers,
            "events": args.events, "rate": args.rate,
            "publishers": self.fanout_publishers(), "size": args.size,
        });
        report("instances", params, &results);
        Ok(())
    }

    fn fanout_publishers(&self) -> usize {
        if self.args.rate > 0 {
            1
        } else {
            self.args.publishers.max(1)
        }
    }

    /// Removes the fresh databases of finished runs (they can be large).
    pub(crate) fn clean_scratch(&self) {
        let Ok(dir) = std::fs::read_dir(&self.scratch) else {
            return;
        };
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().starts_with("fresh-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// `append`: `--connections` publishers post `facts` facts (`--facts` in the scenario)
    /// as fast as answers come, to the topics of `spread`.
    pub(crate) async fn append(
        &mut self,
        server: &Running,
        spread: Spread,
        facts: u64,
    ) -> anyhow::Result<Metrics> {
        let args = self.args;
        let run = self.next_run();
        let mut posters = Vec::with_capacity(args.connections);
        for i in 0..args.connections {
            let mut poster = Poster::connect(server.addr, i).await?;
            // Warm-up: the connection and the server's first-use costs stay out of the figures.
            for n in 0..4 {
                poster
                    .post(
                        &spread.post_path(n),
                        &fact_body(run, i as u32, n, args.size),
                    )
                    .await?;
            }
            posters.push(poster);
        }
        let next = Arc::new(AtomicU64::new(0));
        let (cpu0, own0, started) = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());
        let mut tasks = JoinSet::new();
        for (p, mut poster) in posters.into_iter().enumerate() {
            let next = Arc::clone(&next);
            let (total, size) = (facts, args.size);
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity((total as usize) / 32);
                let mut errors = 0u64;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let body = fact_body(run, p as u32, n, size);
                    let sent = Instant::now();
                    let status = poster.post(&spread.post_path(n), &body).await?;
                    latencies.push(micros(sent.elapsed()));
                    if !(200..300).contains(&status) {
                        errors += 1;
                    }
                }
                anyhow::Ok((latencies, errors))
            });
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        while let Some(done) = tasks.join_next().await {
            let (mine, failed) = done??;
            latencies.extend(mine);
            errors += failed;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_delta(server, cpu0);
        let own = own_cpu_seconds() - own0;
        let acked = latencies.len() as f64 - errors as f64;
        latencies.sort_unstable();
        Ok(vec![
            ("facts_per_s", acked / elapsed),
            ("cpu_us_per_fact", cpu * 1e6 / acked),
            ("p50_ms", percentile(&latencies, 0.50)),
            ("p99_ms", percentile(&latencies, 0.99)),
            ("max_ms", percentile(&latencies, 1.0)),
            ("errors", errors as f64),
            ("client_cpu_us_per_fact", own * 1e6 / acked),
        ])
    }

    /// `fanout`: `--subscribers` streams caught up, then `--events` facts posted back to
    /// back or at `--rate`; every subscriber must get every fact of its topic once, in
    /// order (every fact, without topics). With several servers (instances sharing one
    /// log), subscribers and publishers are spread over them in turn, and the CPU is theirs
    /// together; `database`'s CPU is reported per fact.
    pub(crate) async fn fanout(
        &mut self,
        servers: &[Running],
        database: Option<&Running>,
        spread: Spread,
    ) -> anyhow::Result<Metrics> {
        let args = self.args;
        let run = self.next_run();
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let crowd = Crowd::open(&addrs, run, args.subscribers, args.events, spread).await?;
        crowd.catch_up(addrs[0], run).await?;

        let cpu_of = || -> Option<f64> { servers.iter().map(Running::cpu_seconds).sum() };
        let (cpu0, own0) = (cpu_of(), own_cpu_seconds());
        let db_cpu0 = database.and_then(Running::cpu_seconds);
        let started = Instant::now();
        crowd.shared.measuring.store(true, Ordering::Release);
        let publishing = publish(
            &addrs,
            run,
            args.events,
            self.fanout_publishers(),
            args.size,
            args.rate,
            spread,
        );
        let wait_limit = Duration::from_secs(30).max(Duration::from_secs_f64(
            4.0 * args.events as f64 / args.rate.max(1) as f64,
        ));
        let post_errors = publishing.await?;
        crowd.wait_all_done(started + wait_limit).await;
        let cpu = match (cpu0, cpu_of()) {
            (Some(before), Some(after)) => after - before,
            _ => f64::NAN,
        };
        let db_cpu = database.map_or(f64::NAN, |db| cpu_delta(db, db_cpu0));
        let own = own_cpu_seconds() - own0;
        let results = crowd.close().await;

        let expected: u64 = (0..args.subscribers)
            .map(|i| spread.expected(i, args.events))
            .sum();
        let expected = expected as f64;
        let delivered: u64 = results.iter().map(|r| r.distinct).sum();
        let last = results
            .iter()
            .filter_map(|r| r.last_at)
            .max()
            .unwrap_or_else(Instant::now);
        let elapsed = last.duration_since(started).as_secs_f64();
        let mut latencies: Vec<u32> = results
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        let failed = results.iter().filter(|r| r.error.is_some()).count();
        if let Some(err) = results.iter().find_map(|r| r.error.as_deref()) {
            eprintln!("  {failed} subscribers failed; the first: {err}");
        }
        let delivered_f = delivered as f64;
        Ok([
            ("deliveries_per_s", delivered_f / elapsed),
            ("cpu_us_per_delivery", cpu * 1e6 / delivered_f),
            ("p50_ms", percentile(&latencies, 0.50)),
            ("p99_ms", percentile(&latencies, 0.99)),
            ("max_ms", percentile(&latencies, 1.0)),
            ("missing", expected - delivered_f),
            (
                "duplicated",
                results.iter().map(|r| r.duplicated).sum::<u64>() as f64,
            ),
            (
                "out_of_order",
                results.iter().map(|r| r.out_of_order).sum::<u64>() as f64,
            ),
            ("failed_subscribers", failed as f64),
            ("post_errors", post_errors as f64),
            ("client_cpu_us_per_delivery", own * 1e6 / delivered_f),
        ]
        .into_iter()
        .chain(database.map(|_| {
            (
                "database_cpu_us_per_fact",
                db_cpu * 1e6 / args.events as f64,
            )
        }))
        .collect())
    }

    /// `idle`: `--streams` open streams: the server's memory per stream when idle, after
    /// a burst of `--burst` facts of `--burst-size` bytes, and once they have all gone.
    pub(crate) async fn idle(&mut self, server: &Running) -> anyhow::Result<Metrics> {
        let args = self.args;
        let run = self.next_run();
        // Warm up what every server allocates once (runtime, pools, first stream), then
        // take the baseline. A hundred streams opened together make a pool grow to its
        // size (factlog's read pool opens more connections, each with a thread and a page
        // cache, only when several streams start at once); fewer left that growth to be
        // counted as memory per stream.
        let warm = Crowd::open(&[server.addr], run, 100, 0, Spread::default()).await?;
        warm.catch_up(server.addr, run).await?;
        warm.close().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let base = server
            .rss_kib()
            .context("no memory figure for this server")?;

        let crowd = Crowd::open(
            &[server.addr],
            run,
            args.streams,
            args.burst,
            Spread::default(),
        )
        .await?;
        crowd.catch_up(server.addr, run).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = server.rss_kib().unwrap_or(0);

        publish(
            &[server.addr],
            run,
            args.burst,
            8,
            args.burst_size,
            0,
            Spread::default(),
        )
        .await?;
        crowd
            .wait_all_done(Instant::now() + Duration::from_secs(120))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let burst = server.rss_kib().unwrap_or(0);
        let results = crowd.close().await;
        let missing = (args.streams as u64 * args.burst)
            .saturating_sub(results.iter().map(|r| r.distinct).sum());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let closed = server.rss_kib().unwrap_or(0);

        let per_stream = |rss: u64| (rss as f64 - base as f64) / args.streams as f64;
        Ok(vec![
            ("base_mib", base as f64 / 1024.0),
            ("kib_per_stream_idle", per_stream(idle)),
            ("kib_per_stream_after_burst", per_stream(burst)),
            ("mib_after_close", closed as f64 / 1024.0),
            ("missing", missing as f64),
        ])
    }
}

pub(crate) fn record(
    results: &mut Results,
    i: usize,
    name: &str,
    round: usize,
    what: &str,
    m: Metrics,
) {
    let shown: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::human(*v)))
        .collect();
    eprintln!("  {what} run {round} {name}: {}", shown.join(" "));
    results
        .entry(i)
        .or_insert_with(|| (name.to_owned(), Vec::new()))
        .1
        .push(m);
}

/// Adds each target's share of the ceiling's `key` to the report's parameters.
fn with_ceiling(mut params: serde_json::Value, results: &Results, key: &str) -> serde_json::Value {
    let medians: Vec<(String, f64)> = results
        .values()
        .map(|(name, runs)| (name.clone(), crate::median_of(runs, key)))
        .collect();
    let Some(&(_, ceiling)) = medians.iter().find(|(name, _)| name == "ceiling") else {
        return params;
    };
    let mut shares = serde_json::Map::new();
    for (name, value) in medians.iter().filter(|(name, _)| name != "ceiling") {
        let share = value / ceiling;
        println!(
            "{name} reaches {:.0}% of the ceiling's {key}",
            share * 100.0
        );
        shares.insert(name.clone(), serde_json::json!(share));
    }
    params["share_of_ceiling"] = serde_json::Value::Object(shares);
    params
}

pub(crate) fn cpu_delta(server: &Running, before: Option<f64>) -> f64 {
    match (before, server.cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => f64::NAN,
    }
}
