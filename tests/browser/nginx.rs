//! The README's nginx recipe ("Behind nginx"), run as pasted by Debian's nginx (see
//! `factlog_testkit::nginx`), in front of factlog, with the tutorial's client in Chromium
//! on another origin: a restart of factlog long enough for nginx to answer the browser's
//! reconnects itself costs the page nothing.

use factlog_testkit::nginx::{Nginx, ONE_INSTANCE, readme_block};

use super::*;

/// Posts `{"info": info}` through nginx.
async fn post(nginx: &Nginx, info: &str) {
    let response = nginx
        .client
        .post(nginx.url("/facts"))
        .json(&json!({ "info": info }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201, "posting {info} through nginx");
}

/// factlog stopped for 5 s, then started again over the same file. Meanwhile the page's
/// `EventSource` comes back every 2 s and nginx answers it (factlog is not there): were
/// that answer nginx's own 502 page, or lacking CORS, the browser would close the stream
/// for good. It must stay a reconnecting stream, and show every fact once after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(no_browser, no_nginx),
    ignore = "needs Chromium, chromedriver and nginx: apt-get install chromium chromium-driver nginx"
)]
async fn the_tutorials_client_survives_a_restart_behind_nginx() {
    let app = spawn_app().await;
    let nginx = Nginx::start(&readme_block(ONE_INSTANCE), &[("127.0.0.1:3001", app.addr)]);
    let browser = browser_with(&[&format!(
        "--ignore-certificate-errors-spki-list={}",
        nginx.cert.spki_sha256
    )])
    .await;
    for info in ["before 1", "before 2"] {
        post(&nginx, info).await;
    }
    // The tutorial's client, and a note of the state each error leaves it in.
    let page = format!(
        r#"<!doctype html><ul id="facts"></ul><script>
        window.errors = [];
        const events = new EventSource('{}/events');
        window.events = events;
        events.onmessage = (event) => {{
          const fact = JSON.parse(event.data);
          const li = document.createElement('li');
          li.textContent = fact.info;
          document.getElementById('facts').append(li);
        }};
        events.onerror = () => window.errors.push(events.readyState);
        </script>"#,
        nginx.base
    );
    browser.open(&serve_html(page).await).await;
    browser
        .wait_until(
            "the facts posted before",
            "return document.querySelectorAll('#facts li').length === 2;",
        )
        .await;

    let stopped = app.stop_for_restart().await;
    let down = std::time::Instant::now();
    // The stream's end is one error; every answer nginx gives while factlog is down ends
    // too, and is another.
    browser
        .wait_until(
            "a reconnect answered by nginx",
            "return window.errors.length >= 2;",
        )
        .await;
    if let Some(rest) = std::time::Duration::from_secs(5).checked_sub(down.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert_reconnecting(&browser).await;
    let app = stopped.start().await;

    for info in ["after 1", "after 2"] {
        post(&nginx, info).await;
    }
    // Anything sent before a last fact has arrived once that one has.
    post(&nginx, "last").await;
    browser
        .wait_until(
            "the last fact",
            "return document.getElementById('facts').innerText.includes('last');",
        )
        .await;
    let items = browser
        .js("return [...document.querySelectorAll('#facts li')].map(li => li.textContent);")
        .await;
    assert_eq!(
        items,
        json!(["before 1", "before 2", "after 1", "after 2", "last"])
    );
    assert_reconnecting(&browser).await;
    assert_eq!(
        browser.js("return window.events.readyState;").await,
        json!(1),
        "the stream is open again"
    );
    // nginx did answer for factlog: its log has streams that ended with 200 besides
    // the first one.
    let answered = nginx
        .access_log()
        .lines()
        .filter(|line| line.contains("GET /events ") && line.contains("\" 200 "))
        .count();
    assert!(answered >= 2, "{}", nginx.access_log());
    drop(app);
    browser.close().await;
}

/// After every error so far, the page's `EventSource` was reconnecting (`0`), never
/// closed for good (`2`).
async fn assert_reconnecting(browser: &Browser) {
    let errors = browser.js("return window.errors;").await;
    let errors: Vec<i64> = serde_json::from_value(errors).expect("ready states");
    assert!(
        errors.iter().all(|&state| state == 0),
        "after every error the stream was reconnecting (0), never closed (2): {errors:?}"
    );
}
