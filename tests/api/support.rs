//! What several test files of this binary check in the same way: an error's shape, and
//! that a refused request wrote nothing.

use serde_json::{Value, json};

use factlog_testkit::*;

/// What the log looks like from outside: the newest id and every id in it.
#[derive(Debug, PartialEq)]
pub struct LogState {
    pub last_id: Value,
    pub ids: Vec<i64>,
}

pub async fn log_state(app: &TestApp) -> LogState {
    LogState {
        last_id: app.status().await["last_id"].clone(),
        ids: app.all_ids().await,
    }
}

/// Asserts `response` is an error with `status` and a JSON body `{"error": "<text>"}`, and
/// returns the text.
pub async fn expect_error(response: reqwest::Response, status: u16, what: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "{what}: status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: an error is JSON, got content type {content_type:?}"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {body} has an \"error\" string"))
        .to_owned();
    assert!(
        !message.trim().is_empty(),
        "{what}: the error says something"
    );
    message
}

/// Sends a request that must be refused with `status`, and checks that nothing was written.
pub async fn expect_refused(
    app: &TestApp,
    request: reqwest::RequestBuilder,
    status: u16,
    what: &str,
) {
    let before = log_state(app).await;
    let response = request.send().await.expect("the POST is answered");
    expect_error(response, status, what).await;
    assert_eq!(log_state(app).await, before, "{what}: nothing is written");
}

/// A fresh server with one fact already in it, so "nothing written" is checked against a
/// log that is not empty.
pub async fn app_with_one_fact() -> TestApp {
    let app = spawn_app().await;
    app.append(&json!({"info": "already here"})).await;
    app
}

/// `GET path`, answered.
pub async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .send()
        .await
        .expect("the GET is answered")
}

/// A server holding facts 1..=n, each `{"n": <its id>}`.
pub async fn spawn_with_facts(n: i64) -> TestApp {
    let app = spawn_app().await;
    for i in 1..=n {
        assert_eq!(app.append(&json!({ "n": i })).await, i, "ids follow on");
    }
    app
}

/// The value of header `name`, which must be ASCII.
pub fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header"))
}

/// The ids of a page of `GET /facts` (or of a topic's facts), in the page's order.
pub fn ids_of(page: &Value) -> Vec<i64> {
    page["facts"]
        .as_array()
        .expect("a facts array")
        .iter()
        .map(|f| f["id"].as_i64().expect("an id"))
        .collect()
}
