//! A stream ends when its token does: `event: token-expired` with the last id it sent,
//! then the end of the stream; a client that fetches a new token and resumes after that id
//! gets exactly the rest. Also on PostgreSQL (`postgres/access.rs`).

use serde_json::json;

use crate::access::{publish, secured};
use factlog::Config;
use factlog_testkit::token::{self, claims, hs256};
use factlog_testkit::*;

/// Servers here allow no leeway, so that a token lives exactly as long as its `exp` says.
pub fn strict(config: &mut Config) {
    secured(config);
    config.jwt_leeway_secs = 0;
}

#[tokio::test]
async fn a_stream_says_token_expired_with_its_last_id_and_a_new_token_resumes_exactly() {
    a_stream_says_token_expired_with_its_last_id_and_a_new_token_resumes_exactly_on(
        spawn_with(strict).await,
    )
    .await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn a_stream_says_token_expired_with_its_last_id_and_a_new_token_resumes_exactly_on(
    app: TestApp,
) {
    for n in 1..=3 {
        publish(&app, "orders.eu", json!({ "n": n })).await;
    }
    publish(&app, "orders.us", json!({"other": "topic"})).await;
    // Expires two to three seconds from now (`exp` counts whole seconds).
    let short = hs256(&claims(3, &["orders.*"], &[]));
    let response = app
        .client
        .get(app.url("/topics/orders.eu/events?after=0"))
        .bearer_auth(&short)
        .send()
        .await
        .expect("the stream opens");
    let mut stream = SseStream::new(response);
    assert_eq!(stream.status, 200);
    assert_consecutive(&stream.take(3).await, 1);
    // Live facts reach it while the token lasts.
    let live = publish(&app, "orders.eu", json!({"n": "live"})).await;
    assert_eq!(stream.next_event().await.expect("the live fact").id(), live);

    let expired = stream.next_event().await.expect("token-expired");
    assert_eq!(expired.event.as_deref(), Some("token-expired"));
    assert_eq!(expired.id, None, "it is not a fact: it carries no id");
    assert_eq!(expired.json(), json!({ "last_id": live }));
    assert_eq!(stream.next_frame().await, None, "then the stream ends");

    // Facts published meanwhile are not lost: a new token resumes after `last_id`.
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(publish(&app, "orders.eu", json!({ "missed": n })).await);
    }
    publish(&app, "orders.us", json!({"other": "topic"})).await;
    let renewed = token::token(&["orders.eu"], &[]);
    let response = app
        .client
        .get(app.url("/topics/orders.eu/events"))
        .header("last-event-id", live.to_string())
        .header("cookie", format!("factlog_token={renewed}"))
        .send()
        .await
        .expect("the stream opens");
    let mut resumed = SseStream::new(response);
    let ids: Vec<i64> = resumed.take(3).await.iter().map(|e| e.id()).collect();
    assert_eq!(ids, missed, "exactly the facts after last_id");

    // A stream that sent nothing reports where it started (`tail=0`: at the newest id of
    // the log).
    let quiet = hs256(&claims(2, &["orders.*"], &[]));
    let response = app
        .client
        .get(app.url(&format!(
            "/topics/orders.eu/events?tail=0&access_token={quiet}"
        )))
        .send()
        .await
        .expect("the stream opens");
    let mut quiet = SseStream::new(response);
    let expired = quiet.next_event().await.expect("token-expired");
    assert_eq!(expired.event.as_deref(), Some("token-expired"));
    let newest = app.status().await["last_id"].clone();
    assert_eq!(expired.json(), json!({ "last_id": newest }));
    assert_eq!(quiet.next_frame().await, None);
}

#[tokio::test]
async fn a_stream_without_an_expiring_token_is_not_ended() {
    // Public topics read without a token, and the static token does not expire: neither
    // stream has a deadline. A keep-alive comes after a second; no token-expired.
    let app = spawn_with(|c| {
        strict(c);
        c.keep_alive_secs = 1;
    })
    .await;
    let mut public = app.get_stream("/topics/news.eu/events").await;
    assert_eq!(public.status, 200);
    let frame = public.next_frame().await.expect("a frame");
    let frame = if frame.starts_with("retry:") {
        public.next_frame().await.expect("a frame")
    } else {
        frame
    };
    assert!(
        frame.starts_with(':'),
        "a keep-alive comment, got {frame:?}"
    );
    let id = publish(&app, "news.eu", json!({"still": "open"})).await;
    assert_eq!(public.next_event().await.expect("the fact").id(), id);
}
