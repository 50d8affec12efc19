//! The test harness: a real factlog on a free port over a temporary SQLite file, spoken to
//! over real HTTP, with an SSE reader that splits the byte stream into frames.

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use factlog::{App, Config};
use futures_util::{Stream, StreamExt as _};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before the test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server. Dropping it shuts the server down.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    /// Keeps the database's directory alive across restarts.
    pub dir: Arc<TempDir>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

/// A server with the default configuration over a new, empty database.
pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// A server over a new database, with the configuration adjusted by `adjust`.
pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(TempDir::new().expect("a temporary directory"));
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("an address"),
        format!("sqlite://{}", dir.path().join("facts.db").display()),
    );
    adjust(&mut config);
    start(config, dir).await
}

async fn start(config: Config, dir: Arc<TempDir>) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        factlog::telemetry::init("factlog=debug,warn", factlog::config::LogFormat::Text);
    }
    let app = App::build(config.clone()).await.expect("the server starts");
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        config,
        dir,
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server)
                .await
                .expect("the server stops in time")
                .expect("the server task");
        }
    }

    /// Stops this server and starts a new one over the same file, on the same address.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Stops this server, lets `between` do what it likes to the database file, and starts
    /// a new server over the same path, on the same address.
    pub async fn restart_with(self, between: impl FnOnce(&std::path::Path)) -> TestApp {
        let stopped = self.stop_for_restart().await;
        between(&stopped.dir.path().join("facts.db"));
        stopped.start().await
    }

    /// Stops the server, keeping what is needed to start it again on the same address
    /// over the same file.
    pub async fn stop_for_restart(self) -> Stopped {
        let mut config = self.config.clone();
        config.listen = self.addr;
        let dir = Arc::clone(&self.dir);
        self.stop().await;
        Stopped { config, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /facts` with a JSON body.
    pub async fn post_fact(&self, fact: &Value) -> reqwest::Response {
        self.post_json("/facts", fact).await
    }

    /// POST a JSON body to `path` (which may carry a query).
    pub async fn post_json(&self, path: &str, fact: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(fact)
            .send()
            .await
            .expect("the POST is answered")
    }

    /// POST a JSON body to `path` with an `Idempotency-Key`.
    pub async fn post_with_key(&self, path: &str, key: &str, fact: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("idempotency-key", key)
            .json(fact)
            .send()
            .await
            .expect("the POST is answered")
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the POST is answered")
    }

    /// Posts `fact` and returns its id.
    pub async fn append(&self, fact: &Value) -> i64 {
        self.append_at("/facts", fact).await
    }

    /// POSTs `fact` to `path` (which may carry `?event=`), expects 201, returns its id.
    pub async fn append_at(&self, path: &str, fact: &Value) -> i64 {
        let response = self.post_json(path, fact).await;
        assert_eq!(response.status(), 201, "posting {fact} to {path}");
        let body: Value = response.json().await.expect("a JSON record");
        body["id"].as_i64().expect("an id")
    }

    /// `GET path` as JSON, with its status.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("the GET is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `GET /status`.
    pub async fn status(&self) -> Value {
        let (status, body) = self.get_json("/status").await;
        assert_eq!(status, 200);
        body
    }

    /// Every id in the log, read through `GET /facts`.
    pub async fn all_ids(&self) -> Vec<i64> {
        all_ids(&self.client, &self.base).await
    }

    /// Opens `GET /events?{query}`, with a `Last-Event-ID` header when given.
    pub async fn events(&self, query: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = self.client.get(self.url(&format!("/events?{query}")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the stream opens in time")
            .expect("the stream opens");
        SseStream::new(response)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Every id in the log of the server at `base`, read page by page through `GET /facts`.
pub async fn all_ids(client: &reqwest::Client, base: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let response = client
            .get(format!("{base}/facts?after={after}&limit=1000"))
            .send()
            .await
            .expect("a page");
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.expect("a JSON page");
        ids.extend(
            page["facts"]
                .as_array()
                .expect("facts")
                .iter()
                .map(|f| f["id"].as_i64().expect("id")),
        );
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return ids,
        }
    }
}

/// A stopped server that can be started again.
pub struct Stopped {
    pub config: Config,
    pub dir: Arc<TempDir>,
}

impl Stopped {
    /// Starts the server again, on the same address over the same file.
    pub async fn start(self) -> TestApp {
        start(self.config, self.dir).await
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn id(&self) -> i64 {
        self.id
            .as_deref()
            .expect("an id")
            .parse()
            .expect("a numeric id")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// An open event stream, read frame by frame.
pub struct SseStream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next raw frame (the text before a blank line), or `None` when the stream ended.
    pub async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                return Some(String::from_utf8(frame).expect("UTF-8 frames"));
            }
            match tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("a frame in time")
            {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event, skipping comments and the `retry:` frame, parsed field by field as
    /// the SSE specification does.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let frame = self.next_frame().await?;
            if let Some(event) = parse_event(&frame) {
                return Some(event);
            }
        }
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            events.push(self.next_event().await.expect("the stream goes on"));
        }
        events
    }

    /// Events until (and including) the one with id `last`.
    pub async fn until_id(&mut self, last: i64) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await.expect("the stream goes on");
            let id = event.id();
            events.push(event);
            if id >= last {
                return events;
            }
        }
    }
}

/// Parses one frame's fields; `None` when it carries no data (comments, `retry:`).
pub fn parse_event(frame: &str) -> Option<Event> {
    let mut event = Event {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in frame.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line
            .split_once(':')
            .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}

/// The value of the metric `name` (with its labels, if any) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Asserts ids strictly increase by one from `first`, with no gap and no duplicate.
pub fn assert_consecutive(events: &[Event], first: i64) {
    let ids: Vec<i64> = events.iter().map(Event::id).collect();
    let expected: Vec<i64> = (first..first + ids.len() as i64).collect();
    assert_eq!(ids, expected, "ids must be consecutive from {first}");
}

/// The factlog binary as a separate process, for signals, limits and its log.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<()>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The command that runs the binary over the SQLite file `db` with extra flags.
pub fn factlog_command(db: &std::path::Path, listen: &str, extra: &[&str]) -> Command {
    factlog_command_url(&format!("sqlite://{}", db.display()), listen, extra)
}

/// The command that runs the binary over the database at `url` with extra flags.
pub fn factlog_command_url(url: &str, listen: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_factlog"));
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
    pub fn start(db: &std::path::Path, listen: &str, extra: &[&str]) -> Process {
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
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let addr: String = addr
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']')
                            })
                            .collect();
                        let _ = tx.send(addr);
                    }
                }
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("[factlog] {line}");
                }
                kept.lock().expect("the log").push(line);
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("the start-up line names the address");
        Process {
            child,
            addr: addr.parse().expect("an address"),
            stderr: Some(reader),
            log,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
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
