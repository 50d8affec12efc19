//! The client module (`/factlog.js`) as an application uses it, and its parser against the
//! server's own framing: both inside Chromium.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use factlog::domain::FactRecord;
use factlog::domain::frame::{self, Format};
use factlog_testkit::token::{SECRET, claims, hs256};

use super::*;

const PUBLISH_TOKEN: &str = "static-publisher-token";

/// An application's backend on another origin: `/` is `page`, `/token` mints a token for
/// `orders.*` and `chat.lobby` that lives `ttl` seconds, counting how many it minted.
async fn serve_app(page: String, ttl: i64) -> (String, Arc<AtomicUsize>) {
    let minted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&minted);
    let routes = poem::Route::new()
        .at(
            "/",
            poem::endpoint::make_sync(move |_| poem::web::Html(page.clone())),
        )
        .at(
            "/token",
            poem::endpoint::make_sync(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                hs256(&claims(ttl, &["orders.*", "chat.lobby"], &[]))
            }),
        );
    (serve(routes).await, minted)
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn an_application_on_the_module_follows_two_topics_across_token_expiries() {
    let browser = browser().await;
    let app = spawn_with(|c| {
        c.jwt_keys = vec![SECRET.to_owned()];
        c.public_topics = String::new();
        c.publish_token = Some(PUBLISH_TOKEN.to_owned());
        c.jwt_leeway_secs = 0;
    })
    .await;
    let module = app
        .client
        .get(app.url("/factlog.js"))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        module.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    // The first token the page presents has already expired: the server refuses it
    // (`invalid_token`) and the callback is asked again, with the reason.
    let page = format!(
        r#"<!doctype html><ul id="facts"></ul><p id="state"></p><script type="module">
        import {{ follow }} from "{base}/factlog.js";
        window.reasons = [];
        follow("{base}", {{
          topics: ["orders.eu", "chat.lobby"],
          token: async (reason) => {{
            window.reasons.push(reason);
            if (reason === null) return "{expired}";
            return (await fetch("/token")).text();
          }},
          onFact: (record) => {{
            const li = document.createElement("li");
            li.textContent = `#${{record.id}} ${{record.topic}}: ${{JSON.stringify(record.fact)}}`;
            document.getElementById("facts").append(li);
          }},
          onState: (state) => {{ document.getElementById("state").textContent = state; }},
        }});
        </script>"#,
        base = app.base,
        expired = hs256(&claims(-60, &["*"], &[])),
    );
    let (backend, minted) = serve_app(page, 3).await;

    let mut expected = Vec::new();
    let mut n = 0;
    let mut post = async |topic: &'static str| {
        n += 1;
        let path = format!("/topics/{topic}/facts");
        let id = app
            .append_presenting(&path, &json!({ "n": n }), Some(PUBLISH_TOKEN))
            .await;
        if topic != "deploys" {
            expected.push(format!("#{id} {topic}: {{\"n\":{n}}}"));
        }
    };
    for topic in ["orders.eu", "deploys", "chat.lobby"] {
        post(topic).await;
    }
    browser.open(&format!("{backend}/")).await;
    browser
        .wait_until(
            "the first facts",
            "return document.querySelectorAll('#facts li').length >= 2;",
        )
        .await;
    // Facts on both topics (and one not followed) while tokens of three seconds expire.
    let mut rounds = 0;
    while minted.load(Ordering::SeqCst) < 4 {
        for topic in ["chat.lobby", "deploys", "orders.eu"] {
            post(topic).await;
        }
        rounds += 1;
        assert!(rounds < 100, "the page renews its token");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    post("orders.eu").await;
    let last = expected.last().cloned().expect("facts");
    browser
        .wait_until(
            "the last fact",
            &format!("return document.getElementById('facts').innerText.includes({last:?});"),
        )
        .await;
    let items = browser
        .js("return [...document.querySelectorAll('#facts li')].map(li => li.textContent);")
        .await;
    assert_eq!(
        items,
        json!(expected),
        "every fact of both topics once, in order"
    );
    let reasons = browser.js("return window.reasons;").await;
    let reasons = reasons.as_array().expect("reasons");
    assert_eq!(reasons[0], Value::Null, "asked once before connecting");
    assert_eq!(reasons[1]["status"], 401, "the expired token was refused");
    assert!(
        reasons.iter().filter(|r| r["expired"] == true).count() >= 2,
        "token-expired asked for new tokens: {reasons:?}"
    );
    browser.close().await;
}

/// A small deterministic generator: the test is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// A stream of the server's own frames (facts of both formats, resets, token-expired,
/// `retry:` lines and keep-alive comments with and without a blank line after them), and
/// the events a WHATWG parser dispatches for it: `[type, id, lastEventId, data]`.
fn frames(rng: &mut Lcg) -> (Vec<u8>, Vec<Value>, u64) {
    let facts = [
        json!({ "info": "shark", "source": "https://example.com" }),
        json!("plain text with \"quotes\", a \\ and a line\nbreak\r\n"),
        json!({ "emoji": "🦈🌊", "accents": "café – naïve", "cjk": "鮫", "sep": "\u{2028}\u{2029}\u{85}" }),
        json!([1, 2.5, -3, null, true, { "deep": [[[]]] }]),
        json!({ "data": "data: not a field", "colon": ": not a comment", "nul": "\u{0}" }),
        json!(42),
    ];
    let (mut stream, mut expected) = (Vec::new(), Vec::new());
    let (mut id, mut last_id, mut retry) = (0_i64, String::new(), 2000);
    let blank = |rng: &mut Lcg, piece: &[u8]| -> Vec<u8> {
        // The server's lines (which no blank line follows), or the same with one after
        // them, as other servers and earlier factlogs send them.
        let mut piece = piece.to_vec();
        if rng.below(2) == 1 {
            piece.push(b'\n');
        }
        piece
    };
    stream.extend(blank(rng, &frame::retry(retry)));
    for _ in 0..400 {
        match rng.below(10) {
            0 => stream.extend(blank(rng, frame::KEEP_ALIVE)),
            1 => {
                retry = 100 + rng.below(5000);
                stream.extend(blank(rng, &frame::retry(retry)));
            }
            2 => {
                let (reset, data) = match rng.below(3) {
                    0 => (
                        frame::reset_unknown(id),
                        json!({ "reason": "unknown", "last_id": id }),
                    ),
                    1 => (
                        frame::reset_expired(Some(id), id),
                        json!({ "reason": "expired", "first_id": id, "last_id": id }),
                    ),
                    _ => (frame::token_expired(id), json!({ "last_id": id })),
                };
                let kind = if data.get("reason").is_some() {
                    "reset"
                } else {
                    "token-expired"
                };
                stream.extend_from_slice(&reset);
                expected.push(json!([kind, null, last_id, data]));
            }
            _ => {
                id += 1 + i64::try_from(rng.below(1000)).expect("small");
                let fact = facts[usize::try_from(rng.below(6)).expect("small")].clone();
                let event = ["", "weather", "reset", "a.b:c-d_9"]
                    [usize::try_from(rng.below(4)).expect("small")];
                let record = FactRecord {
                    id,
                    topic: ["default", "orders.eu"][usize::try_from(rng.below(2)).expect("small")]
                        .into(),
                    event: (!event.is_empty()).then(|| event.to_owned()),
                    fact: fact.to_string(),
                    created_at: "2026-11-30T12:00:00.000Z".into(),
                };
                let format = if rng.below(2) == 0 {
                    Format::Fact
                } else {
                    Format::Record
                };
                let mut buf = BytesMut::new();
                record.render_frame(&mut buf, format);
                stream.extend_from_slice(&buf);
                let data = match format {
                    Format::Fact => fact,
                    Format::Record => json!({
                        "id": id, "topic": record.topic, "event": record.event, "fact": fact,
                        "created_at": record.created_at,
                    }),
                };
                last_id = id.to_string();
                let kind = if event.is_empty() { "message" } else { event };
                expected.push(json!([kind, last_id, last_id, data]));
            }
        }
    }
    (stream, expected, retry)
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_modules_parser_reads_the_servers_frames_in_chunks_of_any_size() {
    let browser = browser().await;
    let app = spawn_app().await;
    browser.open(&app.url("/factlog.js")).await;
    let mut rng = Lcg(17);
    for round in 0..12 {
        let (stream, expected, retry) = frames(&mut rng);
        // The server writes LF; a WHATWG parser must take CRLF and CR alike.
        let text = String::from_utf8(stream).expect("UTF-8");
        let stream = match round % 3 {
            0 => text,
            1 => text.replace('\n', "\r\n"),
            _ => text.replace('\n', "\r"),
        }
        .into_bytes();
        // Chunks of one byte, of any size up to 64 (splitting CRLF and UTF-8 sequences),
        // and the whole stream at once.
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let size = match round % 4 {
                0 => 1,
                3 => stream.len(),
                _ => 1 + usize::try_from(rng.below(64)).expect("small"),
            };
            let end = (at + size).min(stream.len());
            chunks.push(stream[at..end].to_vec());
            at = end;
        }
        let parsed = browser
            .client
            .execute_async(
                r#"const [chunks, done] = arguments;
                import("/factlog.js").then(({ SseParser }) => {
                  const parser = new SseParser(), events = [];
                  for (const chunk of chunks) events.push(...parser.feed(new Uint8Array(chunk)));
                  done([events.map((e) => [e.type, e.id, e.lastEventId, JSON.parse(e.data)]),
                        parser.retry]);
                }, (err) => done(String(err)));"#,
                vec![json!(chunks)],
            )
            .await
            .expect("the parser runs");
        assert_eq!(parsed[0], json!(expected), "round {round}: the events");
        assert_eq!(parsed[1], json!(retry), "round {round}: the newest retry");
    }
    browser.close().await;
}

/// The README's page for the module, exactly as the README shows it (only its server's
/// address changed), in three tabs of one application: one stream between them, and
/// every fact of both topics once, in order, in each, across token expiries.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_readmes_module_page_in_three_tabs_shares_one_stream() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("the README");
    let page = readme
        .split("## The client module: `/factlog.js`")
        .nth(1)
        .and_then(|section| section.split("```html\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the page in the README's section on the module");
    let browser = browser().await;
    let app = spawn_with(|c| {
        c.jwt_keys = vec![SECRET.to_owned()];
        c.public_topics = String::new();
        c.publish_token = Some(PUBLISH_TOKEN.to_owned());
        c.jwt_leeway_secs = 0;
    })
    .await;
    let page = page.replace("http://127.0.0.1:3001", &app.base);
    assert!(page.contains(&app.base), "the page names its server");
    let (backend, minted) = serve_app(page, 3).await;

    let mut expected = Vec::new();
    let mut n = 0;
    let mut post = async |topic: &'static str| {
        n += 1;
        let path = format!("/topics/{topic}/facts");
        let id = app
            .append_presenting(&path, &json!({ "n": n }), Some(PUBLISH_TOKEN))
            .await;
        if topic != "deploys" {
            expected.push(format!("#{id} {topic}: {{\"n\":{n}}}"));
        }
    };
    for topic in ["orders.eu", "deploys", "chat.lobby"] {
        post(topic).await;
    }
    let tabs = super::tabs::open_tabs(&browser, &format!("{backend}/"), 3).await;
    assert!(super::tabs::streams_open(&app).await <= 2.0);
    // Each tab asked for a token to start; then the holder renews its own twice.
    let mut rounds = 0;
    while minted.load(Ordering::SeqCst) < 5 {
        for topic in ["chat.lobby", "deploys", "orders.eu"] {
            post(topic).await;
        }
        rounds += 1;
        assert!(rounds < 100, "the holder renews its token");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    post("orders.eu").await;
    let last = expected.last().cloned().expect("facts");
    for (t, tab) in tabs.iter().enumerate() {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        browser
            .wait_until(
                &format!("tab {t}: the last fact"),
                &format!("return document.getElementById('facts').innerText.includes({last:?});"),
            )
            .await;
        let items = browser
            .js("return [...document.querySelectorAll('#facts li')].map(li => li.textContent);")
            .await;
        assert_eq!(items, json!(expected), "tab {t}: every fact once, in order");
    }
    assert!(super::tabs::streams_open(&app).await <= 2.0);
    browser.close().await;
}
