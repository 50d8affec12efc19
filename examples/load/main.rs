//! factlog's load generator.
//!
//! ```text
//! cargo run --release --example load -- <scenario> [options]
//! ```
//!
//! Scenarios: `append`, `fanout`, `idle`, `replay`, `startup`, `ceiling`, or `all`, and
//! `instances` (several factlog instances on one PostgreSQL database), `topics`, `tokens`,
//! `retention` and `https`. Each starts its own servers (factlog's release binary over a temporary
//! database, and the ceiling server) unless `--url` names one, prints a human summary and
//! then one JSON line of results per scenario (medians of `--runs`). `--peers` measures
//! the reference servers of `../shared/peers` in the same run, side by side. See the
//! README's "Performance" section for the figures and how to read them.

mod backlog;
mod ceiling;
mod client;
mod crowd;
mod https;
mod retention;
mod scenarios;
mod secure;
mod target;
mod tokens;
mod topics;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use crate::target::Spec;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Concurrent publishers: acknowledged facts per second and latency.
    Append,
    /// Many subscribers: deliveries per second, publish-to-receive latency, correctness.
    Fanout,
    /// Many idle streams: server memory per stream, idle and after a burst.
    Idle,
    /// A fresh stream over a large backlog: events per second and time to first event.
    Replay,
    /// Time from process start to serving, empty and with a large log.
    Startup,
    /// The HTTP stack with no storage: the ceiling `append` and `fanout` are compared to.
    Ceiling,
    /// The fan-out with several factlog instances sharing one PostgreSQL database (needs
    /// PostgreSQL; not part of `all`).
    Instances,
    /// What topics cost: routed fan-out, a rare topic in a large log, appends spread over
    /// topics, each beside its counterpart without topics (not part of `all`).
    Topics,
    /// What checking tokens costs: fan-out with every subscriber holding a token, and
    /// connecting with one, each beside the same without tokens (not part of `all`).
    Tokens,
    /// What retention costs appends (`--retain-facts` against no bound), and the file's
    /// size over a long run with a bound (not part of `all`).
    Retention,
    /// `fanout` and `idle` over HTTPS with HTTP/2 beside plain HTTP/1.1 (not part of
    /// `all`).
    Https,
    /// Every scenario, in the order above.
    All,
    /// (internal) serve the ceiling server.
    #[value(hide = true)]
    ServeCeiling,
}

/// factlog's load generator: see the README's "Performance" section.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,

    /// Runs of each scenario; figures are the medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,

    /// Measure the server at this URL (`http://host:port`, or `name=http://host:port`)
    /// instead of starting factlog. Repeat for several.
    #[arg(long)]
    url: Vec<String>,

    /// The process id of each `--url` server, in the same order, for CPU and memory.
    #[arg(long)]
    pid: Vec<u32>,

    /// Also measure the reference peers, restarted before each run with this script.
    #[arg(long, num_args = 0..=1, default_missing_value = "../shared/peers/run-peers.sh")]
    peers: Option<PathBuf>,

    /// Which peers `--peers` runs.
    #[arg(long, value_delimiter = ',', default_value = "nchan,seed")]
    peer_names: Vec<String>,

    /// append: concurrent publishers (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// append: facts posted in each run.
    #[arg(long, default_value_t = 100_000)]
    facts: u64,

    /// Size in bytes of each fact's JSON (append and fanout).
    #[arg(long, default_value_t = 100)]
    size: usize,

    /// append: the `--sync` levels factlog runs with.
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    sync: Vec<String>,

    /// fanout: subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,

    /// fanout: facts posted once every subscriber is caught up.
    #[arg(long, default_value_t = 1000)]
    events: u64,

    /// fanout: facts per second, 0 for back to back.
    #[arg(long, default_value_t = 0)]
    rate: u64,

    /// fanout: concurrent publishers when posting back to back (one when paced).
    #[arg(long, default_value_t = 8)]
    publishers: usize,

    /// append and fanout: spread the facts (and subscribers) over this many topics (0: no
    /// topics, `/fact` and `/events` as the tutorial's clients use them).
    #[arg(long, default_value_t = 0)]
    spread: u64,

    /// topics: how many topics the facts and subscribers are spread over.
    #[arg(long, default_value_t = 100)]
    topics: u64,

    /// instances: how many factlog instances share the database, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    instances: Vec<usize>,

    /// idle: streams held open; tokens: streams opened and closed.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,

    /// idle: facts in the burst sent to every stream.
    #[arg(long, default_value_t = 100)]
    burst: u64,

    /// idle: size in bytes of each burst fact.
    #[arg(long, default_value_t = 1024)]
    burst_size: usize,

    /// replay and startup: facts in the log.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,

    /// retention: facts appended with `--retain-facts 10000` in the run that measures the
    /// file's size.
    #[arg(long, default_value_t = 1_000_000)]
    retention_facts: u64,

    /// (serve-ceiling) the address to listen on.
    #[arg(long, default_value = "127.0.0.1:0", hide = true)]
    listen: SocketAddr,
}

/// One run's figures, in the order they are shown.
type Metrics = Vec<(&'static str, f64)>;

/// The instant all timestamps in facts count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Tens of thousands of connections need as many descriptors: the hard limit, then.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    epoch();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.scenario == Scenario::ServeCeiling {
        return runtime.block_on(ceiling::serve(args.listen));
    }
    let scratch = tempfile::Builder::new().prefix("factlog-load-").tempdir()?;
    let scenarios: &[Scenario] = match args.scenario {
        Scenario::All => &[
            Scenario::Append,
            Scenario::Fanout,
            Scenario::Idle,
            Scenario::Replay,
            Scenario::Startup,
            Scenario::Ceiling,
        ],
        ref one => std::slice::from_ref(one),
    };
    let mut bench = scenarios::Bench::new(&args, scratch.path().to_path_buf())?;
    for &scenario in scenarios {
        runtime.block_on(bench.run(scenario))?;
    }
    Ok(())
}

impl Args {
    /// The servers named with `--url`.
    fn url_specs(&self) -> anyhow::Result<Vec<Spec>> {
        self.url
            .iter()
            .enumerate()
            .map(|(i, given)| {
                let (name, url) = match given.split_once('=') {
                    Some((name, url)) => (name.to_owned(), url),
                    None => (format!("url{}", i + 1), given.as_str()),
                };
                let hostport = url
                    .strip_prefix("http://")
                    .with_context(|| format!("{url}: only http:// URLs are supported"))?
                    .trim_end_matches('/');
                let addr = hostport
                    .to_socket_addrs()?
                    .next()
                    .with_context(|| format!("{url} does not resolve"))?;
                Ok(Spec::Url {
                    name,
                    addr,
                    pid: self.pid.get(i).copied(),
                })
            })
            .collect()
    }

    /// The peers `--peers` asks for.
    fn peer_specs(&self) -> Vec<Spec> {
        let Some(script) = &self.peers else {
            return Vec::new();
        };
        self.peer_names
            .iter()
            .map(|name| Spec::Peer {
                name: name.clone(),
                script: script.clone(),
            })
            .collect()
    }
}

/// Prints a scenario's medians as a table and as one JSON line.
fn report(
    scenario: &str,
    params: serde_json::Value,
    results: &BTreeMap<usize, (String, Vec<Metrics>)>,
) {
    let mut json_results = serde_json::Map::new();
    println!("\n== {scenario}: medians of each target's runs ==");
    for (name, runs) in results.values() {
        let Some(first) = runs.first() else { continue };
        let mut line = format!("{name:>16}");
        let mut medians = serde_json::Map::new();
        for (key, _) in first {
            let median = median_of(runs, key);
            line.push_str(&format!("  {key}={}", human(median)));
            medians.insert((*key).to_owned(), serde_json::json!(median));
        }
        medians.insert("runs".into(), serde_json::json!(runs.len()));
        println!("{line}");
        json_results.insert(name.clone(), serde_json::Value::Object(medians));
    }
    let line = serde_json::json!({
        "scenario": scenario,
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "params": params,
        "results": json_results,
    });
    println!("{line}");
}

/// The median over `runs` of the figure named `key` (NaN when no run has it).
fn median_of(runs: &[Metrics], key: &str) -> f64 {
    let mut values: Vec<f64> = runs
        .iter()
        .filter_map(|run| run.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
        .collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A figure rounded for people: three significant digits, no exponent.
fn human(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
