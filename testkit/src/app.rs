//! A real factlog in the test's own process: on a free port over a temporary SQLite file,
//! built by [`factlog::App`] exactly as the binary builds it, spoken to over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use factlog::{App, Config};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::WAIT;
use crate::sse::SseStream;

/// A running server. Dropping it shuts the server down.
pub struct TestApp {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// With `--metrics-listen`, the address `/metrics` is served on.
    pub metrics_addr: Option<SocketAddr>,
    /// `http://` (or, with a certificate, `https://`) and the address.
    pub base: String,
    /// A client for the test's requests (over HTTPS: one that trusts the server's
    /// certificate and speaks HTTP/2).
    pub client: reqwest::Client,
    /// What it was started with.
    pub config: Config,
    /// Keeps the database's directory alive across restarts.
    pub dir: Arc<TempDir>,
    /// A bearer token the harness's own reads of the whole log ([`TestApp::all_ids`])
    /// present, on a server where reading every topic needs one.
    pub reader_token: Option<String>,
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

/// A server over HTTPS with a new self-signed certificate for `127.0.0.1` and `localhost`
/// (kept in the database's directory, so a restart serves it again), and the
/// configuration adjusted by `adjust`.
pub async fn spawn_https(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(TempDir::new().expect("a temporary directory"));
    let cert = crate::tls::TestCert::write(dir.path(), "factlog test");
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("an address"),
        format!("sqlite://{}", dir.path().join("facts.db").display()),
    );
    config.tls_cert = Some(cert.cert);
    config.tls_key = Some(cert.key);
    adjust(&mut config);
    start(config, dir).await
}

async fn start(config: Config, dir: Arc<TempDir>) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        factlog::telemetry::init("factlog=debug,warn", factlog::config::LogFormat::Text);
    }
    let app = App::build(config.clone()).await.expect("the server starts");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let (base, client) = match &config.tls_cert {
        None => (format!("http://{addr}"), reqwest::Client::new()),
        Some(cert) => (
            format!("https://{addr}"),
            crate::tls::client_trusting(&std::fs::read(cert).expect("the certificate")),
        ),
    };
    TestApp {
        addr,
        metrics_addr,
        base,
        client,
        config,
        dir,
        reader_token: None,
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

    /// The URL of `path` on this server.
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
        self.append_presenting(path, fact, None).await
    }

    /// As [`TestApp::append_at`], presenting `token` as `Authorization: Bearer` when given.
    pub async fn append_presenting(&self, path: &str, fact: &Value, token: Option<&str>) -> i64 {
        let mut request = self.client.post(self.url(path)).json(fact);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the POST is answered");
        assert_eq!(response.status(), 201, "posting {fact} to {path}");
        let body: Value = response.json().await.expect("a JSON record");
        body["id"].as_i64().expect("an id")
    }

    /// Posts from `publishers` concurrent tasks, `each` facts apiece: publisher `p`'s
    /// `i`-th post is `post(p, i)`, a path and a fact, and must be answered `201`.
    /// Returns once every post is.
    pub async fn publish_concurrently<F>(&self, publishers: usize, each: usize, post: F)
    where
        F: Fn(usize, usize) -> (String, Value) + Send + Sync + 'static,
    {
        let post = Arc::new(post);
        let tasks = (0..publishers).map(|p| {
            let (client, base, post) = (self.client.clone(), self.base.clone(), Arc::clone(&post));
            tokio::spawn(async move {
                for i in 0..each {
                    let (path, fact) = post(p, i);
                    let response = client
                        .post(format!("{base}{path}"))
                        .json(&fact)
                        .send()
                        .await
                        .expect("answered");
                    assert_eq!(response.status(), 201, "posting {fact} to {path}");
                }
            })
        });
        for task in futures_util::future::join_all(tasks).await {
            task.expect("a publisher");
        }
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
        ids_read_as(&self.client, &self.base, self.reader_token.as_deref()).await
    }

    /// Opens the stream at `path` (which may carry a query).
    pub async fn get_stream(&self, path: &str) -> SseStream {
        let response = tokio::time::timeout(WAIT, self.client.get(self.url(path)).send())
            .await
            .expect("the stream opens in time")
            .expect("the stream opens");
        SseStream::new(response)
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
    ids_read_as(client, base, None).await
}

/// Every id in the log, read page by page, presenting `token` if given.
async fn ids_read_as(client: &reqwest::Client, base: &str, token: Option<&str>) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let mut request = client.get(format!("{base}/facts?after={after}&limit=1000"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("a page");
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
    /// What it ran with, its address included.
    pub config: Config,
    /// The directory of its database.
    pub dir: Arc<TempDir>,
}

impl Stopped {
    /// Starts the server again, on the same address over the same file.
    pub async fn start(self) -> TestApp {
        start(self.config, self.dir).await
    }
}

/// The value of the metric `name` (with its labels, if any) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
