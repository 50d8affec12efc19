//! The scenarios. Each run starts its targets fresh, measures them one after the other
//! (so that two targets never share the machine), and stops them; the figures are the
//! medians of `--runs` runs.
//!
//! Every fact carries a run number, its publisher, its index and the time it was posted:
//! `{"r":7,"p":2,"n":41,"t":123456,"x":"…"}`. Subscribers check delivery from these (each
//! index exactly once, each publisher's facts in the order it posted them, ids strictly
//! increasing), so the same check works for factlog and for the peers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::client::{Event, Poster, Subscription};
use crate::target::{Running, Spec, own_cpu_seconds};
use crate::{Args, Metrics, Scenario, now_us, report};

/// The publisher number of the marker fact that tells a subscriber it has caught up.
const READY: u32 = u32::MAX;
/// Connections opened at once; more would overflow the listen backlog.
const CONNECTS_IN_FLIGHT: usize = 256;
/// Subscribers whose every delivery's latency is recorded (the others only count).
const LATENCY_SAMPLED_SUBSCRIBERS: usize = 64;
/// How long a subscriber that only counts waits between reads: 10 to 30 ms, different for
/// each, so that a thousand of them do not all wake at once and disturb the timed ones.
fn unsampled_read_pause(index: usize) -> Duration {
    Duration::from_millis(10 + (index as u64 * 7919) % 21)
}

/// The state kept across scenarios: the scratch directory and the prefilled log.
pub struct Bench<'a> {
    args: &'a Args,
    scratch: PathBuf,
    run: u32,
    prefilled: Option<PathBuf>,
}

/// Each target's runs, in the order the targets were listed.
type Results = BTreeMap<usize, (String, Vec<Metrics>)>;

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
                    let metrics = self.append(&server).await;
                    server.stop();
                    record(&mut appends, i, &name, round, "append", metrics?);
                }
                if do_fanout {
                    let server = Running::start(spec, &self.scratch, None)?;
                    let metrics = self.fanout(std::slice::from_ref(&server), None).await;
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

    fn next_run(&mut self) -> u32 {
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
            let metrics = self.fanout(std::slice::from_ref(&sqlite), None).await;
            sqlite.stop();
            record(&mut results, 0, "sqlite, 1", round, "instances", metrics?);
            self.clean_scratch();

            for (i, &count) in args.instances.iter().enumerate() {
                let name = format!("load_{}_{count}", self.next_run());
                let url = db.url_of(&name);
                let servers = (0..count)
                    .map(|_| Running::start_factlog(&url, &flags))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let metrics = self.fanout(&servers, database.as_ref()).await;
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
    fn clean_scratch(&self) {
        let Ok(dir) = std::fs::read_dir(&self.scratch) else {
            return;
        };
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().starts_with("fresh-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// `append`: `--connections` publishers post `--facts` facts as fast as answers come.
    async fn append(&mut self, server: &Running) -> anyhow::Result<Metrics> {
        let args = self.args;
        let run = self.next_run();
        let mut posters = Vec::with_capacity(args.connections);
        for i in 0..args.connections {
            let mut poster = Poster::connect(server.addr, i).await?;
            // Warm-up: the connection and the server's first-use costs stay out of the figures.
            for n in 0..4 {
                poster
                    .post("/fact", &fact_body(run, i as u32, n, args.size))
                    .await?;
            }
            posters.push(poster);
        }
        let next = Arc::new(AtomicU64::new(0));
        let (cpu0, own0, started) = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());
        let mut tasks = JoinSet::new();
        for (p, mut poster) in posters.into_iter().enumerate() {
            let next = Arc::clone(&next);
            let (total, size) = (args.facts, args.size);
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
                    let status = poster.post("/fact", &body).await?;
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
    /// back or at `--rate`; every subscriber must get every fact once, in order. With
    /// several servers (instances sharing one log), subscribers and publishers are spread
    /// over them in turn, and the CPU is theirs together; `database`'s CPU is reported
    /// per fact.
    async fn fanout(
        &mut self,
        servers: &[Running],
        database: Option<&Running>,
    ) -> anyhow::Result<Metrics> {
        let args = self.args;
        let run = self.next_run();
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let crowd = Crowd::open(&addrs, run, args.subscribers, args.events).await?;
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

        let expected = (args.subscribers as u64 * args.events) as f64;
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
    async fn idle(&mut self, server: &Running) -> anyhow::Result<Metrics> {
        let args = self.args;
        let run = self.next_run();
        // Warm up what every server allocates once (runtime, pools, first stream), then
        // take the baseline. A hundred streams opened together make a pool grow to its
        // size (factlog's read pool opens more connections, each with a thread and a page
        // cache, only when several streams start at once); fewer left that growth to be
        // counted as memory per stream.
        let warm = Crowd::open(&[server.addr], run, 100, 0).await?;
        warm.catch_up(server.addr, run).await?;
        warm.close().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let base = server
            .rss_kib()
            .context("no memory figure for this server")?;

        let crowd = Crowd::open(&[server.addr], run, args.streams, args.burst).await?;
        crowd.catch_up(server.addr, run).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = server.rss_kib().unwrap_or(0);

        publish(&[server.addr], run, args.burst, 8, args.burst_size, 0).await?;
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

    /// The log of `--backlog` facts that `replay` and `startup` use, made once.
    async fn prefilled(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.prefilled {
            return Ok(path.clone());
        }
        let path = self.scratch.join("backlog.db");
        let started = Instant::now();
        prefill(&path, self.args.backlog, self.args.size).await?;
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
    async fn replay(&mut self) -> anyhow::Result<()> {
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
            let whole = replay_once(&server, None, backlog).await;
            let cpu = cpu_delta(&server, cpu0);
            let middle = replay_once(&server, Some(backlog / 2), backlog).await;
            let end = replay_once(&server, Some(backlog - 1), backlog).await;
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
    async fn startup(&mut self) -> anyhow::Result<()> {
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

fn record(results: &mut Results, i: usize, name: &str, round: usize, what: &str, m: Metrics) {
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

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The `q` quantile of sorted microsecond figures, in milliseconds.
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[index]) / 1e3
}

fn cpu_delta(server: &Running, before: Option<f64>) -> f64 {
    match (before, server.cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => f64::NAN,
    }
}

/// A fact of about `size` bytes, stamped with the time it is made.
fn fact_body(run: u32, publisher: u32, n: u64, size: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"r":{run},"p":{publisher},"n":{n},"t":{}"#, now_us());
    let room = size.saturating_sub(body.len() + 8);
    if room > 0 {
        body.push_str(r#","x":""#);
        body.extend(std::iter::repeat_n('x', room));
        body.push('"');
    }
    body.push('}');
    body.into_bytes()
}

/// What a subscriber reads out of a fact's data.
struct Mark {
    run: u32,
    publisher: u32,
    n: u64,
    t: u64,
}

fn parse_mark(data: &[u8]) -> Option<Mark> {
    let rest = data.strip_prefix(br#"{"r":"#)?;
    let (run, rest) = digits(rest)?;
    let (publisher, rest) = digits(rest.strip_prefix(br#","p":"#)?)?;
    let (n, rest) = digits(rest.strip_prefix(br#","n":"#)?)?;
    let (t, _) = digits(rest.strip_prefix(br#","t":"#)?)?;
    Some(Mark {
        run: u32::try_from(run).ok()?,
        publisher: u32::try_from(publisher).ok()?,
        n,
        t,
    })
}

fn digits(s: &[u8]) -> Option<(u64, &[u8])> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let value = std::str::from_utf8(&s[..len]).ok()?.parse().ok()?;
    Some((value, &s[len..]))
}

/// An event id as a comparable pair: `17` is (17, 0); nchan's `1700000000:3` is
/// (1700000000, 3).
fn parse_id(id: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(id).ok()?;
    match text.split_once(':') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((text.parse().ok()?, 0)),
    }
}

/// Posts facts `0..count` from `publishers` connections, back to back or at `rate` per
/// second; returns how many were refused.
async fn publish(
    addrs: &[SocketAddr],
    run: u32,
    count: u64,
    publishers: usize,
    size: usize,
    rate: u64,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for p in 0..publishers {
        let mut poster = Poster::connect(addrs[p % addrs.len()], p).await?;
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                }
                let status = poster
                    .post("/fact", &fact_body(run, p as u32, n, size))
                    .await?;
                if !(200..300).contains(&status) {
                    errors += 1;
                }
            }
            anyhow::Ok(errors)
        });
    }
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        errors += done??;
    }
    Ok(errors)
}

/// What the subscribers of one crowd share with the coordinator.
struct Shared {
    run: u32,
    expected: u64,
    measuring: AtomicBool,
    connected: AtomicUsize,
    ready: AtomicUsize,
    done: AtomicUsize,
}

/// One subscriber's account.
#[derive(Default)]
struct Account {
    seen: Vec<bool>,
    distinct: u64,
    duplicated: u64,
    out_of_order: u64,
    last_n: Vec<Option<u64>>,
    last_id: Option<(u64, u64)>,
    ready: bool,
    sampled: bool,
    latencies: Vec<u32>,
    last_at: Option<Instant>,
    error: Option<String>,
}

impl Account {
    fn on_event(&mut self, event: Event<'_>, shared: &Shared) {
        let Some(mark) = parse_mark(event.data) else {
            return;
        };
        if mark.run != shared.run {
            return; // a fact of an earlier run, still in a peer's buffer
        }
        if mark.publisher == READY {
            if !self.ready {
                self.ready = true;
                shared.ready.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        if let Some(id) = event.id.and_then(parse_id) {
            if self.last_id.is_some_and(|last| id <= last) {
                self.out_of_order += 1;
            }
            self.last_id = Some(id);
        }
        let Some(seen) = self.seen.get_mut(mark.n as usize) else {
            return;
        };
        if *seen {
            self.duplicated += 1;
            return;
        }
        *seen = true;
        self.distinct += 1;
        let p = mark.publisher as usize;
        if p >= self.last_n.len() {
            self.last_n.resize(p + 1, None);
        }
        if self.last_n[p].is_some_and(|last| mark.n <= last) {
            self.out_of_order += 1;
        }
        self.last_n[p] = Some(mark.n);
        if self.sampled && shared.measuring.load(Ordering::Relaxed) {
            self.latencies
                .push(u32::try_from(now_us().saturating_sub(mark.t)).unwrap_or(u32::MAX));
        }
        if self.distinct == shared.expected {
            self.last_at = Some(Instant::now());
            shared.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Many subscribers on one server, each in its own task, reading until told to stop.
struct Crowd {
    shared: Arc<Shared>,
    size: usize,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Account>,
}

impl Crowd {
    /// Opens `size` streams from the start of the log, each expecting `expected` facts,
    /// spread over `addrs` in turn.
    async fn open(
        addrs: &[SocketAddr],
        run: u32,
        size: usize,
        expected: u64,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            run,
            expected,
            measuring: AtomicBool::new(false),
            connected: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
        let stride = (size / LATENCY_SAMPLED_SUBSCRIBERS).max(1);
        let mut tasks = JoinSet::new();
        for index in 0..size {
            let shared = Arc::clone(&shared);
            let gate = Arc::clone(&gate);
            let mut stopped = stopped.clone();
            let addr = addrs[index % addrs.len()];
            tasks.spawn(async move {
                let mut account = Account {
                    seen: vec![false; expected as usize],
                    sampled: index % stride == 0,
                    ..Account::default()
                };
                let pause = unsampled_read_pause(index);
                let opened = {
                    let _permit = gate.acquire().await;
                    Subscription::open(addr, index, "/events", None, 16 * 1024).await
                };
                let mut sub = match opened {
                    Ok(sub) => sub,
                    Err(err) => {
                        account.error = Some(format!("open: {err}"));
                        shared.connected.fetch_add(1, Ordering::AcqRel);
                        return account;
                    }
                };
                shared.connected.fetch_add(1, Ordering::AcqRel);
                sub.buffered_events(|e| account.on_event(e, &shared));
                loop {
                    tokio::select! {
                        read = sub.read_events(|e| account.on_event(e, &shared)) => match read {
                            Ok(true) if account.sampled => {}
                            Ok(true) => {
                                // The subscribers that only count read in bulk: one read
                                // per pause instead of one per frame keeps the generator's
                                // own cost per delivery well below the server's. The
                                // server writes as it always does; its socket buffers
                                // hold what arrives meanwhile.
                                tokio::select! {
                                    () = tokio::time::sleep(pause) => {}
                                    _ = stopped.changed() => break,
                                }
                            }
                            Ok(false) => {
                                account.error = Some("the server ended the stream".into());
                                break;
                            }
                            Err(err) => {
                                account.error = Some(format!("read: {err}"));
                                break;
                            }
                        },
                        _ = stopped.changed() => break,
                    }
                }
                account
            });
        }
        let crowd = Self {
            shared,
            size,
            stop,
            tasks,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while crowd.shared.connected.load(Ordering::Acquire) < size {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {size} streams opened within 120 s",
                    crowd.shared.connected.load(Ordering::Acquire)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(crowd)
    }

    /// Posts the ready marker until every stream has read it: from then on each stream is
    /// live, past whatever the server held before.
    async fn catch_up(&self, addr: SocketAddr, run: u32) -> anyhow::Result<()> {
        let mut poster = Poster::connect(addr, 0).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut next_marker = Instant::now();
        while self.shared.ready.load(Ordering::Acquire) < self.size {
            if Instant::now() >= next_marker {
                poster.post("/fact", &fact_body(run, READY, 0, 0)).await?;
                next_marker = Instant::now() + Duration::from_secs(2);
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} streams caught up within 120 s",
                    self.shared.ready.load(Ordering::Acquire),
                    self.size
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Waits until every stream has all its facts, or `deadline`.
    async fn wait_all_done(&self, deadline: Instant) {
        while self.shared.done.load(Ordering::Acquire) < self.size && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Closes every stream at once and returns their accounts.
    async fn close(mut self) -> Vec<Account> {
        let _ = self.stop.send(true);
        let mut accounts = Vec::with_capacity(self.size);
        while let Some(done) = self.tasks.join_next().await {
            if let Ok(account) = done {
                accounts.push(account);
            }
        }
        accounts
    }
}

/// One replay's figures.
struct Replayed {
    first_ms: f64,
    elapsed: f64,
    gaps: u64,
}

/// Reads a fresh stream (after `after`, or from the start) until the fact `last`.
async fn replay_once(server: &Running, after: Option<u64>, last: u64) -> anyhow::Result<Replayed> {
    let started = Instant::now();
    let resume = after.map(|id| id.to_string());
    let mut sub =
        Subscription::open(server.addr, 0, "/events", resume.as_deref(), 256 * 1024).await?;
    let mut progress = Progress {
        started,
        first: None,
        previous: after.unwrap_or(0),
        gaps: 0,
    };
    sub.buffered_events(|e| progress.on_event(e));
    while progress.previous < last {
        if !sub.read_events(|e| progress.on_event(e)).await? {
            bail!("the stream ended at {} of {last}", progress.previous);
        }
    }
    Ok(Replayed {
        first_ms: progress.first.unwrap_or_default().as_secs_f64() * 1e3,
        elapsed: started.elapsed().as_secs_f64(),
        gaps: progress.gaps,
    })
}

/// Where a replaying stream is.
struct Progress {
    started: Instant,
    first: Option<Duration>,
    previous: u64,
    gaps: u64,
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
        self.previous = id;
    }
}

/// Appends `count` facts to a new log at `path` through factlog's own writer (group
/// commit, `--sync normal`), much faster than over HTTP.
async fn prefill(path: &Path, count: u64, size: usize) -> anyhow::Result<()> {
    use factlog::config::SyncLevel;
    use factlog::domain::NewFact;
    use factlog::storage::{self, Opened, Publish, writer};

    let url = format!("sqlite://{}", path.display());
    let Opened {
        storage,
        appender,
        follower: _,
        newest_id,
    } = storage::open(&url, SyncLevel::Normal).await?;
    if newest_id != 0 {
        bail!("{} is not empty", path.display());
    }
    let notifier: std::sync::Arc<dyn Publish> = factlog::notifier::Notifier::new(0, 1);
    let (handle, task) = writer::spawn(appender, notifier, factlog::metrics::Metrics::new())?;
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
                        topic: factlog::domain::TopicName::default_topic(),
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
