//! The factlog binary as a separate process: for signals, resource limits and its log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::WAIT;

/// The factlog binary cargo built beside the running test (or example): tests live in
/// `target/<profile>/deps/`, examples in `target/<profile>/examples/`, the binary in
/// `target/<profile>/`. Cargo builds it before a package's integration tests.
pub fn factlog_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir.join("factlog")
}

/// The factlog binary as a separate process, for signals, limits and its log.
pub struct Process {
    /// The process.
    pub child: Child,
    /// The address its start-up line named.
    pub addr: SocketAddr,
    /// `http` or `https`, as its start-up line named it.
    pub scheme: &'static str,
    stderr: Option<std::thread::JoinHandle<()>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The command that runs the binary over the SQLite file `db` with extra flags.
pub fn factlog_command(db: &Path, listen: &str, extra: &[&str]) -> Command {
    factlog_command_url(&format!("sqlite://{}", db.display()), listen, extra)
}

/// The command that runs the binary over the database at `url` with extra flags.
pub fn factlog_command_url(url: &str, listen: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(factlog_binary());
    command
        .arg("--listen")
        .arg(listen)
        .arg("--database-url")
        .arg(url)
        .args(extra)
        .env("RUST_LOG", "factlog=info")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

impl Process {
    /// Starts the binary over `db` with extra flags, and waits for its start-up line.
    pub fn start(db: &Path, listen: &str, extra: &[&str]) -> Process {
        Self::spawn(factlog_command(db, listen, extra))
    }

    /// Starts `command` (the binary, or a wrapper that execs it) and waits for the
    /// start-up line; keeps every line it logs.
    pub fn spawn(mut command: Command) -> Process {
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = std::sync::Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let url = line.split("listening on ").nth(1).and_then(|url| {
                    url.strip_prefix("http://")
                        .map(|addr| ("http", addr))
                        .or_else(|| url.strip_prefix("https://").map(|addr| ("https", addr)))
                });
                if let Some((scheme, addr)) = url {
                    if let Some(tx) = tx.take() {
                        let addr: String = addr
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']')
                            })
                            .collect();
                        let _ = tx.send((scheme, addr));
                    }
                }
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("[factlog] {line}");
                }
                kept.lock().expect("the log").push(line);
            }
        });
        let (scheme, addr) = rx
            .recv_timeout(WAIT)
            .expect("the start-up line names the address");
        Process {
            child,
            addr: addr.parse().expect("an address"),
            scheme,
            stderr: Some(reader),
            log,
        }
    }

    /// `http://` (or `https://`) and its address.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Every line it has logged so far.
    pub fn logged(&self) -> Vec<String> {
        self.log.lock().expect("the log").clone()
    }

    /// Waits for the process to exit (after a signal) and returns every line it logged.
    pub fn finish(self, limit: Duration) -> Vec<String> {
        let log = std::sync::Arc::clone(&self.log);
        self.wait(limit);
        log.lock().expect("the log").clone()
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub fn wait(mut self, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.stderr.take() {
                    let _ = reader.join();
                }
                return status.success();
            }
            assert!(
                started.elapsed() < limit,
                "the process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
