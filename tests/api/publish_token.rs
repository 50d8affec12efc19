//! `--publish-token`: appending needs the token, whichever way it is tried; reading does
//! not.

use serde_json::json;

use crate::support::*;
use factlog_testkit::*;

// ---------------------------------------------------------------------------------------
// Publish token
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "s3cret";

async fn spawn_protected() -> TestApp {
    let app = spawn_with(|c| c.publish_token = Some(TOKEN.into())).await;
    let response = app
        .client
        .post(app.url("/facts"))
        .bearer_auth(TOKEN)
        .json(&json!({"info": "already here"}))
        .send()
        .await
        .expect("the POST is answered");
    assert_eq!(response.status(), 201);
    app
}

/// Like `expect_refused` for 401, also checking the token is not given away.
async fn expect_unauthorized(app: &TestApp, request: reqwest::RequestBuilder, what: &str) {
    let before = log_state(app).await;
    let response = request.send().await.expect("the POST is answered");
    let message = expect_error(response, 401, what).await;
    assert!(
        !message.contains(TOKEN),
        "{what}: the error {message:?} does not reveal the token"
    );
    assert_eq!(log_state(app).await, before, "{what}: nothing is written");
}

#[tokio::test]
async fn with_a_publish_token_a_post_without_it_is_refused_with_401() {
    let app = spawn_protected().await;
    for path in ["/facts", "/fact"] {
        let request = app.client.post(app.url(path)).json(&json!({"info": "x"}));
        expect_unauthorized(&app, request, &format!("{path} without a token")).await;
    }
}

#[tokio::test]
async fn with_a_publish_token_a_wrong_token_is_refused_with_401() {
    let app = spawn_protected().await;
    let cases = [
        ("a wrong token", "Bearer wrong".to_owned()),
        (
            "a prefix of the token",
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        ),
        ("the token and more", format!("Bearer {TOKEN}x")),
        ("an empty bearer", "Bearer ".to_owned()),
        ("the token without a scheme", TOKEN.to_owned()),
        ("another scheme", format!("Basic {TOKEN}")),
    ];
    for (what, authorization) in cases {
        let request = app
            .client
            .post(app.url("/facts"))
            .header("authorization", authorization)
            .json(&json!({"info": "x"}));
        expect_unauthorized(&app, request, what).await;
    }
}

#[tokio::test]
async fn with_a_publish_token_the_right_bearer_token_publishes() {
    let app = spawn_protected().await;
    for path in ["/facts", "/fact?event=secured"] {
        let response = app
            .client
            .post(app.url(path))
            .header("authorization", format!("Bearer {TOKEN}"))
            .json(&json!({"info": "allowed"}))
            .send()
            .await
            .expect("the POST is answered");
        assert_eq!(response.status(), 201, "{path} with the token");
    }
    assert_eq!(app.all_ids().await, [1, 2, 3]);
}

#[tokio::test]
async fn with_a_publish_token_auth_is_checked_before_the_body() {
    let app = spawn_protected().await;
    let request = app
        .client
        .post(app.url("/facts"))
        .header("content-type", "application/json")
        .body("{not json");
    expect_unauthorized(&app, request, "a malformed body without a token").await;

    let request = app
        .client
        .post(app.url("/facts?event=bad%20name"))
        .header("authorization", "Bearer nope")
        .header("content-type", "text/plain")
        .body("{not json");
    expect_unauthorized(&app, request, "every other fault, with a wrong token").await;

    // With the token, the same malformed body gets its own error.
    let request = app
        .client
        .post(app.url("/facts"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json");
    expect_refused(&app, request, 400, "a malformed body with the token").await;
}

#[tokio::test]
async fn with_a_publish_token_reading_stays_open() {
    let app = spawn_protected().await;
    for path in ["/facts", "/facts/1", "/status", "/healthz"] {
        let response = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("the GET is answered");
        assert_eq!(response.status(), 200, "GET {path} needs no token");
    }
    let (_, page) = app.get_json("/facts").await;
    assert_eq!(page["facts"][0]["fact"], json!({"info": "already here"}));
    let mut stream = app.events("", None).await;
    assert_eq!(stream.status, 200, "GET /events needs no token");
    let event = stream.next_event().await.expect("the fact");
    assert_eq!(event.id(), 1);
}
