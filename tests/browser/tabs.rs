//! One stream per browser: many tabs of the live page over plain HTTP/1.1, where a browser
//! opens at most six connections to a host, all go live on one shared stream; when the
//! tab holding it closes while facts are being posted, another takes over and no tab
//! misses a fact or shows one twice.

use fantoccini::wd::WindowHandle;

use super::*;

/// The server's count of open streams, from `/metrics`.
pub(super) async fn streams_open(app: &TestApp) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("a body");
    metric(&text, "factlog_streams_open").expect("the gauge")
}

/// Notes in the page whether it was ever hidden (a tab in the background), which decides
/// how much of the page's work Chromium throttles.
const WATCH_VISIBILITY: &str = "window.wasHidden = document.hidden; \
    document.addEventListener('visibilitychange', () => { window.wasHidden ||= document.hidden; });";

/// Opens the live page at `url` in `n` tabs (the first is the session's own window) and
/// waits until each is live; returns the tabs' handles.
pub(super) async fn open_tabs(browser: &Browser, url: &str, n: usize) -> Vec<WindowHandle> {
    let mut tabs = vec![browser.client.window().await.expect("the first window")];
    browser.open(url).await;
    browser.js(WATCH_VISIBILITY).await;
    for _ in 1..n {
        let tab = browser.client.new_window(true).await.expect("a new tab");
        browser
            .client
            .switch_to_window(tab.handle.clone())
            .await
            .expect("switched");
        browser.open(url).await;
        browser.js(WATCH_VISIBILITY).await;
        tabs.push(tab.handle);
    }
    for tab in &tabs {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        browser.wait_for_state("live").await;
    }
    tabs
}

/// The role of the current tab's subscription: "holder" or "follower".
async fn role(browser: &Browser) -> String {
    let role = browser
        .js("return document.getElementById('state').dataset.role;")
        .await;
    role.as_str().unwrap_or_default().to_owned()
}

/// Waits in every tab until it shows `expected`, then checks each shows exactly that.
async fn assert_every_tab_shows(browser: &Browser, tabs: &[WindowHandle], expected: &[i64]) {
    let last = expected.last().copied().unwrap_or_default();
    for (n, tab) in tabs.iter().enumerate() {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        browser
            .wait_until(
                &format!("tab {n} shows fact {last}"),
                &format!(
                    "const rows = document.querySelectorAll('#facts tr'); \
                     return rows.length > 0 && Number(rows[rows.length - 1].dataset.id) >= {last};"
                ),
            )
            .await;
        assert_eq!(
            browser.row_ids().await,
            expected,
            "tab {n}: every fact once, in order"
        );
    }
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn twenty_tabs_share_one_stream_and_each_shows_every_fact_once() {
    let browser = browser().await;
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for n in 0..3 {
        expected.push(app.append(&json!({ "info": format!("before {n}") })).await);
    }
    // Twenty tabs over HTTP/1.1: with a stream each, the seventh could never connect.
    let tabs = open_tabs(&browser, &app.base, 20).await;
    let mut roles = Vec::new();
    let mut hidden = 0;
    for tab in &tabs {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        roles.push(role(&browser).await);
        if browser.js("return window.wasHidden;").await == json!(true) {
            hidden += 1;
        }
    }
    assert_eq!(
        roles.iter().filter(|r| *r == "holder").count(),
        1,
        "one tab streams for all: {roles:?}"
    );
    // What this test covers depends on how Chromium shows tabs it is not looking at.
    eprintln!("tabs hidden at some time: {hidden} of {}", tabs.len());
    assert!(
        streams_open(&app).await <= 2.0,
        "one stream, not one per tab"
    );

    for n in 0..10 {
        expected.push(app.append(&json!({ "info": format!("live {n}") })).await);
    }
    assert_every_tab_shows(&browser, &tabs, &expected).await;
    assert!(streams_open(&app).await <= 2.0);
    browser.close().await;
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn when_the_streaming_tab_closes_another_takes_over_without_gap_or_duplicate() {
    let browser = browser().await;
    let app = spawn_with(|c| c.retry_ms = 300).await;
    let mut expected = vec![app.append(&json!({ "info": "before" })).await];
    let tabs = open_tabs(&browser, &app.base, 4).await;
    let mut holder = None;
    for tab in &tabs {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        if role(&browser).await == "holder" {
            holder = Some(tab.clone());
        }
    }
    let holder = holder.expect("a tab holds the stream");

    // Facts keep coming while the holder closes: the publisher posts until told to stop,
    // which is only after the holder has closed.
    let (client, base) = (app.client.clone(), app.base.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for n in 0.. {
            if stopped.load(std::sync::atomic::Ordering::Acquire) && n >= 40 {
                break;
            }
            let response = client
                .post(format!("{base}/facts"))
                .json(&json!({ "info": format!("during {n}") }))
                .send()
                .await
                .expect("answered");
            let record: Value = response.json().await.expect("a record");
            ids.push(record["id"].as_i64().expect("an id"));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        ids
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser
        .client
        .switch_to_window(holder.clone())
        .await
        .expect("switched");
    browser
        .client
        .close_window()
        .await
        .expect("the holder closes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let rest: Vec<WindowHandle> = tabs.into_iter().filter(|t| *t != holder).collect();
    expected.extend(publisher.await.expect("the publisher"));
    expected.push(app.append(&json!({ "info": "after" })).await);

    assert_every_tab_shows(&browser, &rest, &expected).await;
    let mut roles = Vec::new();
    for tab in &rest {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        roles.push(role(&browser).await);
    }
    assert_eq!(
        roles.iter().filter(|r| *r == "holder").count(),
        1,
        "another tab took over: {roles:?}"
    );
    assert!(streams_open(&app).await <= 2.0);
    browser.close().await;
}

/// Tabs of the live page on a server whose topics need a token: every tab asks for one;
/// a token pasted into any one of them (here a tab that does not hold the stream) gets
/// every tab going, the holder's stream included.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn a_token_pasted_into_one_tab_gets_every_tab_going() {
    use factlog_testkit::token::{self, SECRET};
    let browser = browser().await;
    let app = spawn_with(|c| {
        c.jwt_keys = vec![SECRET.to_owned()];
        c.public_topics = String::new();
        c.publish_token = Some("publisher".to_owned());
    })
    .await;
    let publish = async |info: &str| {
        app.append_presenting(
            "/topics/orders.eu/facts",
            &json!({ "info": info }),
            Some("publisher"),
        )
        .await
    };
    let mut expected = vec![publish("before").await];
    let url = app.url("/?topic=orders.eu");
    let mut tabs = vec![browser.client.window().await.expect("the first window")];
    browser.open(&url).await;
    for _ in 1..3 {
        let tab = browser.client.new_window(true).await.expect("a new tab");
        browser
            .client
            .switch_to_window(tab.handle.clone())
            .await
            .expect("switched");
        browser.open(&url).await;
        tabs.push(tab.handle);
    }
    let mut follower = None;
    for tab in &tabs {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        browser.wait_for_state("needs token").await;
        if role(&browser).await == "follower" {
            follower = Some(tab.clone());
        }
    }
    let follower = follower.expect("a tab that does not hold the stream");
    browser
        .client
        .switch_to_window(follower)
        .await
        .expect("switched");
    browser
        .type_into("token-input", &token::token(&["orders.*"], &[]))
        .await;
    browser.click("use-token").await;
    expected.push(publish("after").await);
    assert_every_tab_shows(&browser, &tabs, &expected).await;
    for tab in &tabs {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        browser.wait_for_state("live").await;
        assert_eq!(
            browser
                .js("return document.getElementById('token-prompt').hidden;")
                .await,
            json!(true),
            "the prompt is gone"
        );
    }
    browser.close().await;
}

/// Where Web Locks are missing (an older browser), each tab streams on its own and still
/// shows every fact once.
#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn without_web_locks_each_tab_streams_on_its_own() {
    let browser = browser().await;
    let app = spawn_app().await;
    let mut expected = vec![app.append(&json!({ "n": 1 })).await];
    let page = format!(
        r#"<!doctype html><ul id="facts"></ul><p id="state"></p><script type="module">
        Object.defineProperty(Navigator.prototype, "locks", {{ get: () => undefined }});
        const {{ follow }} = await import("{base}/factlog.js");
        window.log = follow("{base}", {{
          onFact: (record) => {{
            const li = document.createElement("li");
            li.dataset.id = record.id;
            document.getElementById("facts").append(li);
          }},
          onState: (state) => {{ document.getElementById("state").textContent = state; }},
        }});
        </script>"#,
        base = app.base
    );
    let tabs = open_tabs(&browser, &serve_html(page).await, 2).await;
    expected.push(app.append(&json!({ "n": 2 })).await);
    for tab in &tabs {
        browser
            .client
            .switch_to_window(tab.clone())
            .await
            .expect("switched");
        assert_eq!(browser.js("return window.log.role;").await, "alone");
        browser
            .wait_until(
                "both facts",
                "return document.querySelectorAll('#facts li').length >= 2;",
            )
            .await;
        let ids = browser
            .js("return [...document.querySelectorAll('#facts li')].map(li => Number(li.dataset.id));")
            .await;
        assert_eq!(ids, json!(expected));
    }
    assert_eq!(streams_open(&app).await, 2.0, "a stream per tab");
    browser.close().await;
}
