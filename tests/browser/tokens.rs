//! The live page on a server whose topics need a token: it asks for one when a read is
//! refused, keeps it in memory only, reads and posts with it, and when the token expires
//! asks for a new one and goes on exactly where it stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use factlog_testkit::token::{self, SECRET, claims, hs256};

use super::*;

const PUBLISH_TOKEN: &str = "static-publisher-token";

async fn publish(app: &TestApp, topic: &str, info: &str) -> i64 {
    let path = format!("/topics/{topic}/facts");
    app.append_presenting(&path, &json!({ "info": info }), Some(PUBLISH_TOKEN))
        .await
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_page_asks_for_a_token_and_a_new_one_when_it_expires_and_misses_nothing() {
    let browser = browser().await;
    let app = spawn_with(|c| {
        c.jwt_keys = vec![SECRET.to_owned()];
        c.public_topics = "news.*".to_owned();
        c.publish_token = Some(PUBLISH_TOKEN.to_owned());
        c.jwt_leeway_secs = 0;
    })
    .await;
    let mut orders = vec![
        publish(&app, "orders.eu", "first").await,
        publish(&app, "orders.eu", "second").await,
    ];
    publish(&app, "news.eu", "public, not shown").await;

    browser.open(&app.url("/?topic=orders.eu")).await;
    browser.wait_for_state("needs token").await;
    let reason = browser
        .js("return document.getElementById('token-reason').textContent;")
        .await;
    assert!(
        reason.as_str().is_some_and(|r| r.contains("orders.eu")),
        "the prompt says what was refused: {reason}"
    );
    browser
        .screenshot(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/screenshots/token-prompt.png")
                .as_path(),
        )
        .await;

    // A token that lasts a few seconds: the page reads with it...
    let short = hs256(&claims(6, &["orders.*"], &["orders.eu"]));
    browser.type_into("token-input", &short).await;
    browser.click("use-token").await;
    browser.wait_for_rows(2).await;
    browser.wait_for_state("live").await;
    orders.push(publish(&app, "orders.eu", "live").await);
    browser.wait_for_rows(3).await;

    // ...until it expires; what is published meanwhile is shown once a new one is given.
    browser.wait_for_state("needs token").await;
    let reason = browser
        .js("return document.getElementById('token-reason').textContent;")
        .await;
    assert!(
        reason.as_str().is_some_and(|r| r.contains("expired")),
        "{reason}"
    );
    orders.push(publish(&app, "orders.eu", "missed 1").await);
    orders.push(publish(&app, "orders.eu", "missed 2").await);
    browser
        .type_into("token-input", &token::token(&["orders.*"], &["orders.eu"]))
        .await;
    browser.click("use-token").await;
    browser.wait_for_rows(5).await;
    browser.wait_for_state("live").await;
    assert_once_in_order(&browser.row_ids().await, orders.clone());

    // The same token posts from the form (to the topic shown).
    browser.type_into("info", "from the page").await;
    browser.click("send").await;
    browser.wait_for_rows(6).await;
    let ids = browser.row_ids().await;
    let (status, record) = app
        .client
        .get(app.url(&format!("/facts/{}", ids[5])))
        .bearer_auth(token::token(&["*"], &[]))
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("answered");
    assert_eq!(status, 200);
    let record: Value = record.json().await.expect("a record");
    assert_eq!(
        (record["topic"].clone(), record["fact"]["info"].clone()),
        (json!("orders.eu"), json!("from the page"))
    );

    // Kept in memory only: not in storage, a cookie or the URL; a reload asks again.
    let kept = browser
        .js("return [localStorage.length, sessionStorage.length, document.cookie, location.href.includes('token')];")
        .await;
    assert_eq!(kept, json!([0, 0, "", false]));
    browser.client.refresh().await.expect("reloaded");
    browser.wait_for_state("needs token").await;
    browser.close().await;
}

/// The pages of the README's "From a browser, three ways", in order.
fn readme_pages() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("the README");
    let section = readme
        .split("### From a browser, three ways")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("the README's section on browsers");
    section
        .split("```html\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(str::to_owned)
        .collect()
}

/// An application's backend on another port (another origin of the same site): `/` is the
/// page in `page`, and `/token` mints a token that lives `ttl` seconds, answered as text
/// and set as the `factlog_token` cookie, counting how many it minted.
async fn serve_backend(ttl: i64) -> (String, Arc<Mutex<String>>, Arc<AtomicUsize>) {
    let page = Arc::new(Mutex::new(String::new()));
    let minted = Arc::new(AtomicUsize::new(0));
    let (shown, count) = (Arc::clone(&page), Arc::clone(&minted));
    let routes = poem::Route::new()
        .at(
            "/",
            poem::endpoint::make_sync(move |_| {
                poem::web::Html(shown.lock().expect("the page").clone())
            }),
        )
        .at(
            "/token",
            poem::endpoint::make_sync(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                let token = hs256(&claims(ttl, &["orders.*"], &[]));
                poem::Response::builder()
                    .header(
                        "set-cookie",
                        format!("factlog_token={token}; Path=/; HttpOnly; SameSite=Strict"),
                    )
                    .content_type("text/plain")
                    .body(token)
            }),
        );
    (serve(routes).await, page, minted)
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn the_readmes_three_browser_pages_follow_a_private_topic_across_expiries() {
    let pages = readme_pages();
    assert_eq!(pages.len(), 3, "the cookie, the query and the fetch pages");
    let browser = browser().await;
    for (way, page) in ["cookie", "query", "fetch"].into_iter().zip(pages) {
        // Tokens that live two to three seconds, no leeway: each page renews a few times.
        let (backend, shown, minted) = serve_backend(3).await;
        let app = spawn_with(|c| {
            c.jwt_keys = vec![SECRET.to_owned()];
            c.public_topics = String::new();
            c.publish_token = Some(PUBLISH_TOKEN.to_owned());
            c.jwt_leeway_secs = 0;
            c.cors_origins = vec![backend.clone()];
        })
        .await;
        let page = page.replace("http://127.0.0.1:3001", &app.base);
        assert!(page.contains(&app.base), "{way}: the page names its server");
        *shown.lock().expect("the page") = page;

        let mut expected = Vec::new();
        for n in 0..2 {
            publish(&app, "orders.eu", &format!("{way} {n}")).await;
            expected.push(json!({ "info": format!("{way} {n}") }).to_string());
        }
        publish(&app, "orders.us", "another topic").await;
        browser.open(&format!("{backend}/")).await;
        let count =
            |n: usize| format!("return document.querySelectorAll('#facts li').length >= {n};");
        browser
            .wait_until(&format!("{way}: the first facts"), &count(2))
            .await;

        // Facts keep coming while tokens expire and are renewed.
        let mut n = 2;
        while minted.load(Ordering::SeqCst) < 3 {
            publish(&app, "orders.eu", &format!("{way} {n}")).await;
            expected.push(json!({ "info": format!("{way} {n}") }).to_string());
            publish(&app, "orders.us", "another topic").await;
            n += 1;
            assert!(n < 200, "{way}: the page renews its token");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        publish(&app, "orders.eu", &format!("{way} last")).await;
        expected.push(json!({ "info": format!("{way} last") }).to_string());
        browser
            .wait_until(&format!("{way}: every fact"), &count(expected.len()))
            .await;
        let items = browser
            .js("return [...document.querySelectorAll('#facts li')].map(li => li.textContent);")
            .await;
        assert_eq!(items, json!(expected), "{way}: every fact once, in order");
        app.stop().await;
    }
    browser.close().await;
}
