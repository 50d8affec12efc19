//! `Idempotency-Key`: a retried POST appends nothing and answers with the first record.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::*;
use factlog_testkit::*;

// ---------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_answers_200_with_the_first_record() {
    let app = spawn_app().await;
    let fact = json!({"order": 42});

    let first = app.post_with_key("/facts", "order-42", &fact).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("a JSON record");
    let state = log_state(&app).await;

    for _ in 0..3 {
        let retry = app.post_with_key("/facts", "order-42", &fact).await;
        assert_eq!(retry.status(), 200, "a retry is not a creation");
        let retry: Value = retry.json().await.expect("a JSON record");
        assert_eq!(retry, first, "the retry answers the very same record");
    }
    assert_eq!(log_state(&app).await, state, "the log has not grown");
    assert_eq!(app.all_ids().await, [1]);
}

#[tokio::test]
async fn the_idempotency_key_is_honoured_on_the_alias_and_with_an_event() {
    let app = spawn_app().await;
    let send = |path: &'static str| {
        app.client
            .post(app.url(path))
            .header("idempotency-key", "k-1")
            .json(&json!({"a": 1}))
            .send()
    };
    let first = send("/facts?event=ev").await.expect("answered");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("JSON");
    let again = send("/fact?event=ev").await.expect("answered");
    assert_eq!(again.status(), 200, "the alias shares the key space");
    assert_eq!(again.json::<Value>().await.expect("JSON"), first);
    assert_eq!(app.all_ids().await, [1]);
}

#[tokio::test]
async fn different_idempotency_keys_each_append() {
    let app = spawn_app().await;
    let fact = json!({"same": "body"});
    let mut ids = Vec::new();
    for key in ["key-a", "key-b", "key-c"] {
        let response = app.post_with_key("/facts", key, &fact).await;
        assert_eq!(response.status(), 201, "{key} is new");
        let record: Value = response.json().await.expect("a JSON record");
        ids.push(record["id"].as_i64().expect("an id"));
    }
    // A POST without a key always appends, even with the same body.
    ids.push(app.append(&fact).await);
    ids.push(app.append(&fact).await);
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(app.all_ids().await, ids);
}

/// A key names one fact on one topic: reused for another body or another event type it is
/// refused with 422 (a client reusing keys by mistake must hear of it), and nothing is
/// written; on another topic it is another key.
#[tokio::test]
async fn a_key_reused_for_another_fact_is_refused_with_422() {
    a_key_reused_for_another_fact_is_refused_with_422_on(spawn_app().await).await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn a_key_reused_for_another_fact_is_refused_with_422_on(app: TestApp) {
    let first = app
        .post_with_key("/facts", "same-key", &json!({"version": 1}))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("a JSON record");

    let other_body = app
        .client
        .post(app.url("/facts"))
        .header("idempotency-key", "same-key")
        .json(&json!({"version": 2}));
    let message = {
        let response = other_body.send().await.expect("answered");
        expect_error(response, 422, "the key with another body").await
    };
    assert!(message.contains("already used"), "{message}");
    let other_event = app
        .client
        .post(app.url("/facts?event=changed"))
        .header("idempotency-key", "same-key")
        .json(&json!({"version": 1}));
    expect_refused(&app, other_event, 422, "the key with another event type").await;
    assert_eq!(app.all_ids().await, [1], "nothing was written");

    // The same fact again is a retry: 200 and the first record.
    let again = app
        .post_with_key("/facts", "same-key", &json!({"version": 1}))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.expect("a record"), first);

    // Keys are scoped to the topic: the same key on another topic is another fact.
    let elsewhere = app
        .post_with_key("/topics/other/facts", "same-key", &json!({"version": 2}))
        .await;
    assert_eq!(elsewhere.status(), 201);
    let elsewhere: Value = elsewhere.json().await.expect("a record");
    assert_eq!(
        (elsewhere["id"].as_i64(), elsewhere["topic"].as_str()),
        (Some(2), Some("other"))
    );
    let retried = app
        .post_with_key("/topics/other/facts", "same-key", &json!({"version": 2}))
        .await;
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.json::<Value>().await.expect("a record"), elsewhere);
}

#[tokio::test]
async fn invalid_idempotency_keys_are_refused_with_400_and_nothing_is_written() {
    let app = app_with_one_fact().await;
    let too_long = "k".repeat(201);
    for (what, key) in [
        ("201 characters", too_long.as_str()),
        ("a space", "a b"),
        ("empty", ""),
        ("a tab", "a\tb"),
    ] {
        let request = app
            .client
            .post(app.url("/facts"))
            .header("idempotency-key", key)
            .json(&json!({"info": "x"}));
        expect_refused(
            &app,
            request,
            400,
            &format!("an Idempotency-Key with {what}"),
        )
        .await;
    }
    // The longest valid key, and every visible ASCII character, are accepted.
    let longest = "k".repeat(200);
    let response = app.post_with_key("/facts", &longest, &json!(1)).await;
    assert_eq!(response.status(), 201, "a key of 200 characters");
    let visible: String = (b'!'..=b'~').map(char::from).collect();
    let response = app.post_with_key("/facts", &visible, &json!(2)).await;
    assert_eq!(response.status(), 201, "a key of every visible character");
}

/// A key that is present but not ASCII text (`café` in UTF-8, Latin-1 bytes) is a bad key,
/// never "no key": taken for none, a retry would append a second fact.
#[tokio::test]
async fn a_key_that_is_not_ascii_text_is_refused_with_400_every_time() {
    let app = app_with_one_fact().await;
    for raw in ["café".as_bytes(), b"caf\xe9", b"\xff\xfe"] {
        let key = reqwest::header::HeaderValue::from_bytes(raw).expect("a header value");
        for attempt in ["first", "retry"] {
            let request = app
                .client
                .post(app.url("/facts"))
                .header("idempotency-key", key.clone())
                .json(&json!({"info": "once?"}));
            expect_refused(
                &app,
                request,
                400,
                &format!("{attempt} with the key {raw:?}"),
            )
            .await;
        }
    }
}

/// Other headers a publishing request carries fall into the same trap if read as text:
/// a token or a content type that is not valid text is refused as what it is.
#[tokio::test]
async fn headers_that_are_not_text_are_refused_not_ignored() {
    let app = spawn_with(|c| c.publish_token = Some("s3cret".into())).await;
    let raw = |bytes: &[u8]| reqwest::header::HeaderValue::from_bytes(bytes).expect("a value");
    let request = app
        .client
        .post(app.url("/facts"))
        .header("authorization", raw(b"Bearer s3cr\xe9t"))
        .json(&json!(1));
    expect_refused(&app, request, 401, "a token that is not text").await;
    let request = app
        .client
        .post(app.url("/facts"))
        .bearer_auth("s3cret")
        .header("content-type", raw(b"application/json\xe9"))
        .body("1");
    let before = app.all_ids().await;
    let response = request.send().await.expect("answered");
    let message = expect_error(response, 415, "a content type that is not text").await;
    assert!(
        message.contains("unsupported content type"),
        "says what is wrong with it: {message}"
    );
    assert_eq!(app.all_ids().await, before, "nothing is written");
}

#[tokio::test]
async fn concurrent_posts_with_the_same_key_append_exactly_one_fact() {
    let app = app_with_one_fact().await;
    let fact = json!({"payment": "p-1"});

    let answers = join_all((0..32).map(|_| async {
        let response = app.post_with_key("/facts", "payment-p-1", &fact).await;
        let status = response.status().as_u16();
        let record: Value = response.json().await.expect("a JSON record");
        (status, record)
    }))
    .await;

    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "exactly one POST created the fact: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == 201 || *status == 200),
        "the others are answered 200: {answers:?}"
    );
    let first = &answers[0].1;
    assert!(
        answers.iter().all(|(_, record)| record == first),
        "every answer carries the same record: {answers:?}"
    );
    assert_eq!(first["id"], 2);
    assert_eq!(app.all_ids().await, [1, 2], "one fact was appended");
    assert_eq!(app.status().await["last_id"], 2);
}
