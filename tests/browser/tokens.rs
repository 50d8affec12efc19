//! The live page on a server whose topics need a token: it asks for one when a read is
//! refused, keeps it in memory only, reads and posts with it, and when the token expires
//! asks for a new one and goes on exactly where it stopped.

use factlog_testkit::token::{self, SECRET, claims, hs256};

use super::*;

const PUBLISH_TOKEN: &str = "static-publisher-token";

async fn publish(app: &TestApp, topic: &str, info: &str) -> i64 {
    let response = app
        .client
        .post(app.url(&format!("/topics/{topic}/facts")))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&json!({ "info": info }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.expect("a record");
    record["id"].as_i64().expect("an id")
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
