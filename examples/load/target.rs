//! The servers under test: factlog (the release binary, over a temporary database), the
//! ceiling server (this program, re-run in `serve-ceiling` mode), a server at a URL, and
//! the peers of `../shared/peers` (restarted through their `run-peers.sh`). Each is a
//! separate process, so its CPU time and memory can be read from `/proc`.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Linux reports CPU time in `/proc/<pid>/stat` in ticks of `USER_HZ`, which is 100 on
/// every architecture Linux runs tokio on.
const TICKS_PER_SECOND: f64 = 100.0;

/// What to start or reach.
#[derive(Clone, Debug)]
pub enum Spec {
    /// factlog's release binary over a temporary database, with extra flags.
    Factlog {
        /// Shown in reports.
        name: String,
        /// Flags after `--listen` and `--database-url`.
        flags: Vec<String>,
    },
    /// This program in `serve-ceiling` mode: the same HTTP stack, no storage.
    Ceiling,
    /// A peer of `../shared/peers`, restarted with its script before each run.
    Peer {
        /// `seed` or `nchan`.
        name: String,
        /// Path to `run-peers.sh`.
        script: PathBuf,
    },
    /// A server someone else runs; CPU and memory only when `pid` is given.
    Url {
        /// Shown in reports.
        name: String,
        /// Where it listens.
        addr: SocketAddr,
        /// Its process, if known.
        pid: Option<u32>,
    },
}

impl Spec {
    /// The name shown in reports.
    pub fn name(&self) -> String {
        match self {
            Self::Factlog { name, .. } | Self::Peer { name, .. } | Self::Url { name, .. } => {
                name.clone()
            }
            Self::Ceiling => "ceiling".to_owned(),
        }
    }
}

/// A server that is up.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process whose tree is measured, if known.
    pub pid: Option<u32>,
    stop: Stop,
    /// Time from spawn until it answered HTTP.
    pub ready_after: Duration,
}

enum Stop {
    Child(Child),
    Script { script: PathBuf, name: String },
    Nothing,
}

impl Running {
    /// Starts (or restarts, or just reaches) the target. `database` is the SQLite file a
    /// factlog target serves; `None` makes a new one in `scratch`.
    pub fn start(spec: &Spec, scratch: &Path, database: Option<&Path>) -> anyhow::Result<Self> {
        match spec {
            Spec::Factlog { flags, .. } => {
                static FRESH: AtomicUsize = AtomicUsize::new(0);
                let db = match database {
                    Some(db) => db.to_path_buf(),
                    None => scratch.join(format!(
                        "fresh-{}.db",
                        FRESH.fetch_add(1, Ordering::Relaxed)
                    )),
                };
                Self::start_factlog(&format!("sqlite://{}", db.display()), flags)
            }
            Spec::Ceiling => {
                let mut command = Command::new(std::env::current_exe()?);
                command.args(["serve-ceiling", "--listen", "127.0.0.1:0"]);
                spawn_announcing(command)
            }
            Spec::Peer { name, script } => {
                let started = Instant::now();
                run_script(script, "restart", name)?;
                let port = match name.as_str() {
                    "seed" => std::env::var("SEED_PORT").unwrap_or_else(|_| "3001".into()),
                    _ => std::env::var("NCHAN_PORT").unwrap_or_else(|_| "3002".into()),
                };
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
                let pid = run_script(script, "pid", name)?
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} has no pid after start"))?;
                wait_ready(addr, started)?;
                Ok(Self {
                    addr,
                    pid: Some(pid),
                    stop: Stop::Script {
                        script: script.clone(),
                        name: name.clone(),
                    },
                    ready_after: started.elapsed(),
                })
            }
            Spec::Url { addr, pid, .. } => Ok(Self {
                addr: *addr,
                pid: *pid,
                stop: Stop::Nothing,
                ready_after: Duration::ZERO,
            }),
        }
    }

    /// factlog's release binary over the database at `url`, with extra flags.
    pub fn start_factlog(url: &str, flags: &[String]) -> anyhow::Result<Self> {
        let mut command = Command::new(factlog_binary()?);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(url)
            .args(flags);
        spawn_announcing(command)
    }

    /// A process someone else runs (a database server), measured but not served by.
    pub fn process(pid: u32) -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            pid: Some(pid),
            stop: Stop::Nothing,
            ready_after: Duration::ZERO,
        }
    }

    /// CPU time used so far by the process and its children, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pids = process_tree(self.pid?);
        let ticks: u64 = pids.iter().filter_map(|&pid| stat_ticks(pid)).sum();
        Some(ticks as f64 / TICKS_PER_SECOND)
    }

    /// Resident memory of the process and its children, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pids = process_tree(self.pid?);
        Some(pids.iter().filter_map(|&pid| rss_kib(pid)).sum())
    }

    /// Stops what this program started.
    pub fn stop(mut self) {
        match &mut self.stop {
            Stop::Child(child) => {
                // SIGTERM, so that factlog shuts down as in production (and checkpoints
                // its WAL); SIGKILL only if it hangs.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                eprintln!("warning: server {} ignored SIGTERM; killing it", child.id());
                let _ = child.kill();
                let _ = child.wait();
            }
            Stop::Script { script, name } => {
                if let Err(err) = run_script(script, "stop", name) {
                    eprintln!("warning: stopping {name}: {err:#}");
                }
            }
            Stop::Nothing => {}
        }
    }
}

/// This program's own CPU time so far, in seconds.
pub fn own_cpu_seconds() -> f64 {
    stat_ticks(std::process::id()).unwrap_or(0) as f64 / TICKS_PER_SECOND
}

/// The factlog binary beside this example, built first (cargo is quick when it is fresh).
pub fn factlog_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/load -> target/<profile>/factlog
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot find the target directory")?;
    let binary = profile_dir.join("factlog");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--bin", "factlog"]);
        // `cargo run` gave this program its package's variables (`OUT_DIR`,
        // `CARGO_MANIFEST_DIR`, ...). Some build scripts (ring's) rebuild when one they
        // watch changes, so passed on they would make every run rebuild the dependency
        // tree twice: once here, once for the next `cargo run`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(&*name);
            }
        }
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().context("cannot run cargo build")?;
        if !status.success() {
            bail!("cargo build --bin factlog failed");
        }
    }
    if !binary.exists() {
        bail!(
            "{} is missing: run with `cargo run --release --example load`",
            binary.display()
        );
    }
    Ok(binary)
}

/// Spawns a server that prints `listening on http://ADDR` (or `https://`) and waits until
/// it answers.
fn spawn_announcing(mut command: Command) -> anyhow::Result<Running> {
    let started = Instant::now();
    let mut child = command
        .env("RUST_LOG", "warn,factlog=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    // Servers log to stderr; the start-up line there names the address.
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let (https, addr) = loop {
        let Some(line) = lines.next() else {
            let status = child.wait()?;
            bail!("{command:?} exited ({status}) before listening");
        };
        let line = line?;
        let url = line.split("listening on ").nth(1).and_then(|url| {
            url.strip_prefix("http://")
                .map(|rest| (false, rest))
                .or_else(|| url.strip_prefix("https://").map(|rest| (true, rest)))
        });
        if let Some((https, rest)) = url {
            let addr: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            let addr = addr
                .to_socket_addrs()?
                .next()
                .context("no address in the start-up line")?;
            break (https, addr);
        }
    };
    // Read the rest of its log, so that it never blocks on a full pipe; pass its warnings
    // and errors through.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("  server: {line}");
            }
        }
    });
    if https {
        // The generator's GET below is plain HTTP; an HTTPS server logs its line once it
        // is migrated and bound, and serves from then on.
        std::net::TcpStream::connect(addr)?;
    } else {
        wait_ready(addr, started)?;
    }
    Ok(Running {
        addr,
        pid: Some(child.id()),
        stop: Stop::Child(child),
        ready_after: started.elapsed(),
    })
}

/// Polls `GET /status` until it answers 200; "ready" means serving, not just bound.
fn wait_ready(addr: SocketAddr, started: Instant) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let mut answer = Vec::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_end(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    bail!("{addr} did not answer GET /status within 60 s")
}

fn run_script(script: &Path, action: &str, name: &str) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(script)
        .args([action, name])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} {action} {name} failed", script.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `pid` and every process below it.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return tree;
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_fields(p)?.get(1)?.parse().ok()?)))
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The fields of `/proc/<pid>/stat` after the command name (state is the first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    Some(after_name.split(' ').map(str::to_owned).collect())
}

/// utime + stime of a process, in ticks.
fn stat_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Fields 14 and 15 of stat(5), counted from 1 with the pid; here from 0 at state (3).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
