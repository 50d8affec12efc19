//! The live page in a real headless Chromium, driven over WebDriver (chromedriver) with
//! fantoccini. Each test runs against a real server on a free port over a temporary
//! database.
//!
//! Where Chromium or chromedriver is missing, the build script (`build.rs`) marks the tests
//! ignored, with the reason, so `cargo test` reports them as not run; with
//! `FACTLOG_REQUIRE_BROWSER=1` (as `.ci/run` sets) they run, and a missing browser fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use factlog_testkit::*;

mod client;
mod https;
mod nginx;
mod tabs;
mod tokens;

/// A Chromium session and the chromedriver serving it; both end on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Starts a browser. The tests run only where the build script found one (or where
/// `FACTLOG_REQUIRE_BROWSER=1` demands one), so a missing one is a failure here.
async fn browser() -> Browser {
    browser_with(&[]).await
}

/// Starts a browser with extra command-line flags.
async fn browser_with(flags: &[&str]) -> Browser {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        panic!(
            "Chromium and chromedriver are needed for the browser tests \
             (Debian: apt-get install chromium chromium-driver)"
        );
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut driver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let webdriver = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > WAIT {
            let _ = driver.kill();
            panic!("chromedriver did not start listening");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = tempfile::TempDir::new().expect("a profile directory");
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1100,800",
    ]
    .into_iter()
    .chain(flags.iter().copied())
    .map(str::to_owned)
    .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": args,
        }),
    );
    // A cold Chromium can be slow to start on a loaded machine: try a few times.
    let mut attempt = 0;
    let client = loop {
        attempt += 1;
        match ClientBuilder::native()
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await
        {
            Ok(client) => break client,
            Err(err) if attempt < 3 => {
                eprintln!("starting a browser session failed, retrying: {err}")
            }
            Err(err) => panic!("no browser session: {err}"),
        }
    };
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

impl Browser {
    async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("the script runs")
    }

    /// Polls `script` until it returns `true`; fails with `what` if it never does.
    async fn wait_until(&self, what: &str, script: &str) {
        let started = std::time::Instant::now();
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            assert!(started.elapsed() < WAIT, "waited in vain for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ids in the page's table, top to bottom.
    async fn row_ids(&self) -> Vec<i64> {
        let ids = self
            .js("return [...document.querySelectorAll('#facts tr')].map(r => Number(r.dataset.id));")
            .await;
        serde_json::from_value(ids).expect("a list of ids")
    }

    async fn wait_for_rows(&self, n: usize) {
        self.wait_until(
            &format!("{n} rows"),
            &format!("return document.querySelectorAll('#facts tr').length >= {n};"),
        )
        .await;
    }

    async fn wait_for_state(&self, state: &str) {
        self.wait_until(
            &format!("state {state}"),
            &format!("return document.getElementById('state').textContent === '{state}';"),
        )
        .await;
    }

    async fn type_into(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.expect("the field");
        field.clear().await.expect("cleared");
        field.send_keys(text).await.expect("typed");
    }

    async fn click(&self, id: &str) {
        let button = self.client.find(Locator::Id(id)).await.expect("the button");
        button.click().await.expect("clicked");
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn assert_once_in_order(ids: &[i64], expected: impl IntoIterator<Item = i64>) {
    assert_eq!(ids, expected.into_iter().collect::<Vec<_>>());
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn facts_posted_elsewhere_appear_in_order_once() {
    let browser = browser().await;
    let app = spawn_app().await;
    app.append(&json!({ "info": "shark sighted", "source": "https://example.com/sharks" }))
        .await;
    app.append(&json!({ "info": "whale", "source": "boat", "count": 3, "tags": ["big", "blue"] }))
        .await;
    app.post_json(
        "/facts?event=weather",
        &json!({ "info": "storm coming", "wind": "9 Bft" }),
    )
    .await;
    browser.open(&app.base).await;
    browser.wait_for_state("live").await;
    browser.wait_for_rows(3).await;

    for n in 4..=6 {
        app.append(&json!({ "info": format!("fact {n}"), "source": "curl" }))
            .await;
    }
    browser.wait_for_rows(6).await;
    assert_once_in_order(&browser.row_ids().await, 1..=6);
    // A URL source is a link; the typed event is shown; other fields are shown.
    assert_eq!(
        browser
            .js("return document.querySelector('#facts tr td.source a').href;")
            .await,
        json!("https://example.com/sharks")
    );
    let text = browser
        .js("return document.getElementById('facts').innerText;")
        .await;
    let text = text.as_str().expect("text");
    assert!(text.contains("weather") && text.contains("9 Bft") && text.contains("blue"));
    assert_eq!(
        browser
            .js("return document.getElementById('last-id').textContent;")
            .await,
        json!("6")
    );
    browser
        .screenshot(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/screenshots/live-page.png")
                .as_path(),
        )
        .await;
    browser.close().await;
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_form_posts_and_shows_the_servers_errors() {
    let browser = browser().await;
    let app = spawn_with(|c| c.publish_token = Some("s3cret".into())).await;
    browser.open(&app.base).await;
    browser.wait_for_state("live").await;

    browser.type_into("info", "from the form").await;
    browser.type_into("source", "https://factlog.test").await;
    browser.type_into("token", "wrong").await;
    browser.click("send").await;
    browser
        .wait_until(
            "the server's error",
            "return document.getElementById('form-message').textContent.includes('401');",
        )
        .await;
    let message = browser
        .js("return document.getElementById('form-message').textContent;")
        .await;
    assert!(
        message.as_str().is_some_and(|m| m.contains("token")),
        "{message}"
    );
    assert_eq!(app.status().await["last_id"], 0, "nothing was written");

    // With the right token, by keyboard: Enter in a field submits the form.
    browser.type_into("token", "s3cret").await;
    browser.type_into("event", "note").await;
    let info = browser
        .client
        .find(Locator::Id("info"))
        .await
        .expect("info");
    info.send_keys("\u{E007}").await.expect("Enter");
    browser.wait_for_rows(1).await;
    let (_, record) = app.get_json("/facts/1").await;
    assert_eq!(
        record["fact"],
        json!({ "info": "from the form", "source": "https://factlog.test" })
    );
    assert_eq!(record["event"], "note");
    browser.close().await;
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_page_reconnects_across_a_restart_and_shows_no_row_twice() {
    let browser = browser().await;
    let app = spawn_with(|c| c.retry_ms = 300).await;
    for n in 1..=3 {
        app.append(&json!({ "info": n })).await;
    }
    browser.open(&app.base).await;
    browser.wait_for_rows(3).await;
    browser.wait_for_state("live").await;

    let stopped = app.stop_for_restart().await;
    browser.wait_for_state("reconnecting").await;
    let app = stopped.start().await;
    browser.wait_for_state("live").await;
    for n in 4..=6 {
        app.append(&json!({ "info": n })).await;
    }
    browser.wait_for_rows(6).await;
    assert_once_in_order(&browser.row_ids().await, 1..=6);
    browser.close().await;
}

/// A page away for longer than the retention: meanwhile more facts came and the ones
/// after its position were deleted. It gets `reset` (`expired`) and rebuilds from the
/// kept log, every row once.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn a_page_away_longer_than_the_retention_rebuilds_from_the_kept_log() {
    let browser = browser().await;
    // A long retry: the server is back, and has deleted, before the page reconnects.
    let app = spawn_with(|c| c.retry_ms = 1500).await;
    for n in 1..=3 {
        app.append(&json!({ "info": n })).await;
    }
    browser.open(&app.base).await;
    browser.wait_for_rows(3).await;
    browser.wait_for_state("live").await;

    let mut stopped = app.stop_for_restart().await;
    browser.wait_for_state("reconnecting").await;
    fill(&stopped.dir.path().join("facts.db"), 10).await;
    stopped.config.retain_facts = Some(5);
    let app = stopped.start().await;
    browser
        .wait_until(
            "the kept log only",
            "return [...document.querySelectorAll('#facts tr')].map(r => r.dataset.id).join() === '9,10,11,12,13';",
        )
        .await;
    browser.wait_for_state("live").await;
    app.append(&json!({ "info": 14 })).await;
    browser.wait_for_rows(6).await;
    assert_once_in_order(&browser.row_ids().await, 9..=14);
    browser.close().await;
}

/// The tutorial's own client, from another origin: `new EventSource`, `JSON.parse`,
/// append a row. Checks CORS and resume for clients written for the tutorial.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_tutorials_client_from_another_origin_sees_every_fact_once() {
    let browser = browser().await;
    let app = spawn_with(|c| c.retry_ms = 300).await;
    app.append(&json!({ "info": "before", "source": "curl" }))
        .await;

    let page = format!(
        r#"<!doctype html><ul id="facts"></ul><script>
        const events = new EventSource('{}/events');
        events.onmessage = (event) => {{
          const fact = JSON.parse(event.data);
          const li = document.createElement('li');
          li.textContent = fact.info;
          document.getElementById('facts').append(li);
        }};
        </script>"#,
        app.base
    );
    let other_origin = serve_html(page).await;
    browser.open(&other_origin).await;
    browser
        .wait_until(
            "the first fact",
            "return document.querySelectorAll('#facts li').length === 1;",
        )
        .await;

    let app = app.restart().await;
    for info in ["after 1", "after 2"] {
        app.append(&json!({ "info": info, "source": "curl" })).await;
    }
    browser
        .wait_until(
            "three facts",
            "return document.querySelectorAll('#facts li').length >= 3;",
        )
        .await;
    // Time for any duplicate to show up would be a timing assertion; instead post one more
    // fact and wait for it: anything sent before it has arrived by then.
    app.append(&json!({ "info": "last", "source": "curl" }))
        .await;
    browser
        .wait_until(
            "the last fact",
            "return document.getElementById('facts').innerText.includes('last');",
        )
        .await;
    let items = browser
        .js("return [...document.querySelectorAll('#facts li')].map(li => li.textContent);")
        .await;
    assert_eq!(items, json!(["before", "after 1", "after 2", "last"]));
    browser.close().await;
}

/// The README's page that follows two topics, exactly as the README shows it (only its
/// server's address changed), resumes both across a restart with one id.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_readmes_two_topic_page_resumes_both_topics_across_a_restart() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("the README");
    let section = readme
        .split("## Topics")
        .nth(1)
        .expect("the README's topics section");
    let page = section
        .split("```html\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the page in the topics section");
    let browser = browser().await;
    let app = spawn_with(|c| c.retry_ms = 300).await;
    let page = page.replace("http://127.0.0.1:3001", &app.base);
    assert!(page.contains(&app.base), "the page names its server");
    async fn post(app: &TestApp, topic: &str, n: i64) -> i64 {
        let path = format!("/topics/{topic}/facts");
        app.append_at(&path, &json!({ "n": n })).await
    }
    let mut expected = Vec::new();
    for (topic, n) in [("orders.eu", 1), ("deploys", 2), ("chat.lobby", 3)] {
        let id = post(&app, topic, n).await;
        if topic != "deploys" {
            expected.push(format!("#{id} {topic}: {{\"n\":{n}}}"));
        }
    }
    browser.open(&serve_html(page).await).await;
    browser
        .wait_until(
            "the first two facts",
            "return document.querySelectorAll('#facts li').length === 2;",
        )
        .await;

    let app = app.restart().await;
    for (topic, n) in [
        ("chat.lobby", 4),
        ("deploys", 5),
        ("orders.eu", 6),
        ("chat.lobby", 7),
    ] {
        let id = post(&app, topic, n).await;
        if topic != "deploys" {
            expected.push(format!("#{id} {topic}: {{\"n\":{n}}}"));
        }
    }
    let last = expected.len();
    browser
        .wait_until(
            "every fact of both topics",
            &format!("return document.querySelectorAll('#facts li').length >= {last};"),
        )
        .await;
    // Anything sent before a last fact has arrived once that one has.
    let id = post(&app, "orders.eu", 8).await;
    expected.push(format!("#{id} orders.eu: {{\"n\":8}}"));
    browser
        .wait_until(
            "the last fact",
            "return document.getElementById('facts').innerText.includes('\"n\":8');",
        )
        .await;
    let items = browser
        .js("return [...document.querySelectorAll('#facts li')].map(li => li.textContent);")
        .await;
    assert_eq!(items, json!(expected));
    browser.close().await;
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn a_log_of_100000_facts_opens_at_the_newest_and_pages_back() {
    let browser = browser().await;
    let app = spawn_app().await;
    let stopped = app.stop_for_restart().await;
    fill(&stopped.dir.path().join("facts.db"), 100_000).await;
    let app = stopped.start().await;
    assert_eq!(app.status().await["last_id"], 100_000);

    browser.open(&app.base).await;
    browser.wait_for_state("live").await;
    browser.wait_for_rows(300).await;
    let ids = browser.row_ids().await;
    assert_once_in_order(&ids, 99_701..=100_000);

    browser.click("earlier").await;
    browser.wait_for_rows(500).await;
    assert_once_in_order(&browser.row_ids().await, 99_501..=100_000);

    // Live facts still arrive at the bottom.
    let id = app.append(&json!({ "info": "live" })).await;
    browser.wait_for_rows(501).await;
    assert_eq!(browser.row_ids().await.last(), Some(&id));
    browser.close().await;
}

/// The topics a page shows are in its URL, so a link opens the same view. Each row shows
/// its topic and the time it was stored; facts of other topics never appear; the form posts
/// to the topic typed in it; a new choice of topics opens the page for them.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_page_shows_the_topics_in_its_url() {
    let browser = browser().await;
    let app = spawn_app().await;
    for (topic, info) in [
        ("orders.eu", "order 1"),
        ("chat.lobby", "hi"),
        ("deploys", "v2"),
    ] {
        app.append_at(&format!("/topics/{topic}/facts"), &json!({ "info": info }))
            .await;
    }
    browser
        .open(&format!("{}/?topic=orders.eu&topic=chat.lobby", app.base))
        .await;
    browser.wait_for_state("live").await;
    browser.wait_for_rows(2).await;
    assert_once_in_order(&browser.row_ids().await, [1, 2]);
    let topics = browser
        .js("return [...document.querySelectorAll('#facts td.topic')].map(td => td.textContent);")
        .await;
    assert_eq!(topics, json!(["orders.eu", "chat.lobby"]));
    assert_eq!(
        browser
            .js("return document.getElementById('topics').value;")
            .await,
        json!("orders.eu, chat.lobby")
    );

    // Live facts too: only those of the page's topics, with their stored time.
    app.append_at("/topics/deploys/facts", &json!({ "info": "v3" }))
        .await;
    let id = app
        .append_at("/topics/orders.eu/facts", &json!({ "info": "order 2" }))
        .await;
    browser.wait_for_rows(3).await;
    assert_once_in_order(&browser.row_ids().await, [1, 2, id]);
    let (_, record) = app.get_json(&format!("/facts/{id}")).await;
    let expected_time = browser
        .js(&format!(
            "return new Date({}).toLocaleString();",
            record["created_at"]
        ))
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('#facts tr:last-child td.time').textContent;")
            .await,
        expected_time,
        "a live row shows the time the fact was stored"
    );

    // The form posts to the topic typed in it.
    browser.type_into("topic", "chat.lobby").await;
    browser.type_into("info", "from the page").await;
    browser.click("send").await;
    browser.wait_for_rows(4).await;
    let posted = browser.row_ids().await[3];
    let (_, record) = app.get_json(&format!("/facts/{posted}")).await;
    assert_eq!(record["topic"], "chat.lobby");
    assert_eq!(record["fact"], json!({ "info": "from the page" }));

    // Another choice opens the page for it, in the URL.
    browser.type_into("topics", "deploys").await;
    browser.click("show-topics").await;
    browser
        .wait_until(
            "the URL names the topic",
            "return location.search === '?topic=deploys';",
        )
        .await;
    browser.wait_for_state("live").await;
    browser.wait_for_rows(2).await;
    assert_once_in_order(&browser.row_ids().await, [3, 4]);
    browser.close().await;
}

/// Writes `n` facts straight into a stopped server's database: setting the scene, much
/// faster than posting them one by one.
async fn fill(db: &Path, n: i64) {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the database opens");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO facts (event, fact, created_at)
         SELECT NULL, json_object('info', 'fact ' || i, 'source', 'https://example.com/' || i),
                '2026-01-01T00:00:00.000Z'
         FROM n",
    )
    .bind(n)
    .execute(&mut conn)
    .await
    .expect("facts are written");
}

/// Serves one HTML page on another port (another origin) and returns its URL.
async fn serve_html(html: String) -> String {
    let base = serve(poem::endpoint::make_sync(move |_| {
        poem::web::Html(html.clone())
    }))
    .await;
    format!("{base}/")
}

/// Serves `endpoint` on a free port of 127.0.0.1 and returns its `http://` base.
async fn serve(endpoint: impl poem::Endpoint + 'static) -> String {
    use poem::listener::{Acceptor as _, Listener as _};
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("a port");
    let addr = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .expect("an address");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    format!("http://{addr}")
}
