//! `POST /facts` and its alias `POST /fact`: what is stored and answered on success, and
//! that every bad request is refused with the right status, a JSON error, and nothing
//! written.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;

/// What the log looks like from outside: the newest id and every id in it.
#[derive(Debug, PartialEq)]
struct LogState {
    last_id: Value,
    ids: Vec<i64>,
}

async fn log_state(app: &TestApp) -> LogState {
    LogState {
        last_id: app.status().await["last_id"].clone(),
        ids: app.all_ids().await,
    }
}

/// Asserts `response` is an error with `status` and a JSON body `{"error": "<text>"}`, and
/// returns the text.
async fn expect_error(response: reqwest::Response, status: u16, what: &str) -> String {
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
async fn expect_refused(app: &TestApp, request: reqwest::RequestBuilder, status: u16, what: &str) {
    let before = log_state(app).await;
    let response = request.send().await.expect("the POST is answered");
    expect_error(response, status, what).await;
    assert_eq!(log_state(app).await, before, "{what}: nothing is written");
}

/// A fresh server with one fact already in it, so "nothing written" is checked against a
/// log that is not empty.
async fn app_with_one_fact() -> TestApp {
    let app = spawn_app().await;
    app.append(&json!({"info": "already here"})).await;
    app
}

/// Whether `s` has the shape `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339 in UTC).
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let Some(rest) = s.get(19..) else {
        return false;
    };
    let fraction_ok = match rest.strip_suffix('Z') {
        Some("") => true,
        Some(f) => f.len() > 1 && f.starts_with('.') && f[1..].bytes().all(|d| d.is_ascii_digit()),
        None => false,
    };
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && fraction_ok
}

#[test]
fn the_rfc3339_checker_itself() {
    assert!(is_rfc3339_utc("2024-05-01T12:34:56Z"));
    assert!(is_rfc3339_utc("2024-05-01T12:34:56.789Z"));
    assert!(!is_rfc3339_utc("2024-05-01T12:34:56+00:00"));
    assert!(!is_rfc3339_utc("2024-05-01 12:34:56Z"));
    assert!(!is_rfc3339_utc("2024-05-01T12:34:56.Z"));
    assert!(!is_rfc3339_utc("yesterday"));
}

// ---------------------------------------------------------------------------------------
// Success
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn posting_json_answers_201_with_location_and_the_record() {
    let app = spawn_app().await;
    let fact = json!({"info": "the sky is blue", "source": "me"});

    let response = app.post_fact(&fact).await;

    assert_eq!(response.status(), 201);
    let location = response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("an ASCII Location")
        .to_owned();
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let record: Value = response.json().await.expect("a JSON record");
    let object = record.as_object().expect("the record is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "event", "fact", "id"]);
    let id = record["id"].as_i64().expect("a numeric id");
    assert_eq!(id, 1, "the first fact of a new log");
    assert_eq!(location, format!("/facts/{id}"));
    assert!(record["event"].is_null(), "a plain fact has event null");
    assert_eq!(record["fact"], fact);
    let created_at = record["created_at"].as_str().expect("created_at text");
    assert!(
        is_rfc3339_utc(created_at),
        "created_at {created_at:?} is RFC 3339 UTC ending in Z"
    );

    // The Location leads to the same record, and the log now holds it.
    let (status, stored) = app.get_json(&location).await;
    assert_eq!(status, 200);
    assert_eq!(stored, record);
    assert_eq!(app.status().await["last_id"], id);
    assert_eq!(app.all_ids().await, [id]);
}

#[tokio::test]
async fn ids_grow_by_one_with_each_post() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.append(&json!({ "n": n })).await);
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(app.all_ids().await, ids);
}

#[tokio::test]
async fn any_json_value_is_a_fact_scalars_and_arrays_included() {
    let app = spawn_app().await;
    let values = [
        json!(42),
        json!(-1.5),
        json!("just a string"),
        json!(true),
        json!(false),
        json!(null),
        json!([1, "two", {"three": 3}]),
        json!([]),
        json!({}),
        json!({"nested": {"deeper": [null, {"x": "é ✓ \n \"quoted\""}]}}),
    ];
    for value in values {
        let response = app.post_fact(&value).await;
        assert_eq!(response.status(), 201, "posting {value}");
        let record: Value = response.json().await.expect("a JSON record");
        assert_eq!(record["fact"], value, "the answer echoes {value}");
        assert!(
            record.as_object().expect("object").contains_key("fact"),
            "even a null fact is present in the record"
        );
        let id = record["id"].as_i64().expect("an id");
        let (status, stored) = app.get_json(&format!("/facts/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(stored["fact"], value, "the log keeps {value}");
    }
    assert_eq!(app.all_ids().await.len(), 10);
}

#[tokio::test]
async fn the_key_order_of_a_posted_object_is_preserved() {
    let app = spawn_app().await;
    let body = r#"{"zulu": 1, "alpha": 2, "mike": {"yankee": 3, "bravo": 4}}"#;

    let response = app.post_raw("/facts", "application/json", body).await;
    assert_eq!(response.status(), 201);
    let answered = response.text().await.expect("a body");
    let record: Value = serde_json::from_str(&answered).expect("JSON");
    let id = record["id"].as_i64().expect("an id");

    let stored = app
        .client
        .get(app.url(&format!("/facts/{id}")))
        .send()
        .await
        .expect("the GET is answered")
        .text()
        .await
        .expect("a body");

    // Checked on the raw text, so the test does not depend on how a JSON library orders
    // the keys of a parsed object.
    for text in [&answered, &stored] {
        let at = |key: &str| {
            text.find(&format!("\"{key}\""))
                .unwrap_or_else(|| panic!("{key} in {text}"))
        };
        assert!(
            at("zulu") < at("alpha") && at("alpha") < at("mike"),
            "top-level keys keep their order in {text}"
        );
        assert!(
            at("yankee") < at("bravo"),
            "nested keys keep their order in {text}"
        );
    }
}

#[tokio::test]
async fn a_form_post_is_stored_as_an_object_of_string_fields() {
    let app = spawn_app().await;

    let response = app
        .post_raw(
            "/facts",
            "application/x-www-form-urlencoded",
            "info=hello+world%21&source=the+form&count=3&empty=",
        )
        .await;

    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.expect("a JSON record");
    assert_eq!(
        record["fact"],
        json!({"info": "hello world!", "source": "the form", "count": "3", "empty": ""}),
        "every field is a string, numbers included"
    );
    let keys: Vec<&String> = record["fact"]
        .as_object()
        .expect("an object")
        .keys()
        .collect();
    assert_eq!(
        keys,
        ["info", "source", "count", "empty"],
        "fields keep their order"
    );
    let id = record["id"].as_i64().expect("an id");
    let (status, stored) = app.get_json(&format!("/facts/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(stored["fact"], record["fact"]);
}

#[tokio::test]
async fn a_form_post_with_a_charset_parameter_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .post_raw(
            "/facts",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "info=caf%C3%A9",
        )
        .await;
    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.expect("a JSON record");
    assert_eq!(record["fact"], json!({"info": "café"}));
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .post_raw("/facts", "application/json; charset=utf-8", r#"{"a":1}"#)
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn the_event_query_names_the_facts_event_type() {
    let app = spawn_app().await;
    for name in ["user.created", "a", "x:y-z_1", &"e".repeat(64)] {
        let response = app
            .post_json(&format!("/facts?event={name}"), &json!({"who": "ann"}))
            .await;
        assert_eq!(response.status(), 201, "event name {name:?} is valid");
        let record: Value = response.json().await.expect("a JSON record");
        assert_eq!(record["event"], name);
        assert_eq!(record["fact"], json!({"who": "ann"}));
        let id = record["id"].as_i64().expect("an id");
        let (_, stored) = app.get_json(&format!("/facts/{id}")).await;
        assert_eq!(stored["event"], name, "the event type is stored");
    }
}

#[tokio::test]
async fn the_tutorial_alias_post_fact_appends_like_post_facts() {
    let app = spawn_app().await;
    let fact = json!({"info": "from the tutorial", "source": "express"});

    let response = app.post_json("/fact", &fact).await;

    assert_eq!(response.status(), 201);
    let location = response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ASCII")
        .to_owned();
    let record: Value = response.json().await.expect("a JSON record");
    assert_eq!(record["fact"], fact);
    assert_eq!(location, format!("/facts/{}", record["id"]));

    let response = app.post_json("/fact?event=tutorial", &json!(1)).await;
    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.expect("a JSON record");
    assert_eq!(record["event"], "tutorial");

    let response = app
        .post_raw("/fact", "application/x-www-form-urlencoded", "info=form")
        .await;
    assert_eq!(response.status(), 201);

    assert_eq!(app.all_ids().await, [1, 2, 3]);
}

#[tokio::test]
async fn a_chunked_body_within_the_limit_is_accepted() {
    let app = spawn_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"info\":".to_vec()),
        Ok(b" \"sent in".to_vec()),
        Ok(b" pieces\"}".to_vec()),
    ];
    let response = app
        .client
        .post(app.url("/facts"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("the POST is answered");
    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.expect("a JSON record");
    assert_eq!(record["fact"], json!({"info": "sent in pieces"}));
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_accepted_and_one_byte_more_is_not() {
    let app = spawn_with(|c| c.max_body_bytes = 1024).await;
    // `"xxx…"`: a JSON string of exactly `len` bytes.
    let body_of = |len: usize| format!("\"{}\"", "x".repeat(len - 2));

    let response = app
        .post_raw("/facts", "application/json", body_of(1024))
        .await;
    assert_eq!(response.status(), 201, "a body of exactly the limit");

    let request = app
        .client
        .post(app.url("/facts"))
        .header("content-type", "application/json")
        .body(body_of(1025));
    expect_refused(&app, request, 413, "a body one byte over the limit").await;
    assert_eq!(app.all_ids().await, [1]);
}

// ---------------------------------------------------------------------------------------
// Bad input: the right status, a JSON error, nothing written
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_bodies_are_refused_with_400_and_nothing_is_written() {
    let app = app_with_one_fact().await;
    let mut invalid_utf8 = b"{\"info\": \"".to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(b"\"}");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed JSON", b"{info: nope}".to_vec()),
        ("truncated JSON", b"{\"info\": \"cut sho".to_vec()),
        ("an empty body", Vec::new()),
        ("a body of only whitespace", b"  \n\t ".to_vec()),
        ("10,000 nested arrays", "[".repeat(10_000).into_bytes()),
        (
            "balanced but deeply nested arrays",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        ("invalid UTF-8 bytes", invalid_utf8),
        ("trailing garbage", b"{\"info\": 1} garbage".to_vec()),
        ("two JSON values", b"{\"a\": 1}{\"b\": 2}".to_vec()),
        ("a bare word", b"hello".to_vec()),
    ];
    for (what, body) in cases {
        let request = app
            .client
            .post(app.url("/facts"))
            .header("content-type", "application/json")
            .body(body);
        expect_refused(&app, request, 400, what).await;
    }
    assert_eq!(app.all_ids().await, [1]);
}

#[tokio::test]
async fn json_sent_with_a_form_content_type_is_refused_with_400() {
    let app = app_with_one_fact().await;
    for body in [r#"{"info": "json"}"#, r#"  [1, 2]"#] {
        let request = app
            .client
            .post(app.url("/facts"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        expect_refused(&app, request, 400, "JSON labelled as a form").await;
    }
}

#[tokio::test]
async fn a_form_that_decodes_to_invalid_utf8_is_refused_with_400() {
    let app = app_with_one_fact().await;
    let request = app
        .client
        .post(app.url("/facts"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("info=%FF%FE");
    expect_refused(&app, request, 400, "a form with invalid UTF-8").await;
}

/// A JSON array of about `len` bytes.
fn big_json(len: usize) -> Vec<u8> {
    let mut body = b"[0".to_vec();
    while body.len() < len {
        body.extend_from_slice(b",0");
    }
    body.push(b']');
    body
}

#[tokio::test]
async fn an_oversize_body_with_content_length_is_refused_with_413() {
    let app = app_with_one_fact().await;
    let limit = app.config.max_body_bytes;
    assert_eq!(limit, 65536, "the default limit");
    let request = app
        .client
        .post(app.url("/facts"))
        .header("content-type", "application/json")
        .body(big_json(limit + 1));
    expect_refused(&app, request, 413, "a body over the limit").await;
}

#[tokio::test]
async fn an_oversize_body_sent_chunked_without_content_length_is_refused_with_413() {
    let app = app_with_one_fact().await;
    let limit = app.config.max_body_bytes;
    let body = big_json(limit * 2);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let request = app
        .client
        .post(app.url("/facts"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    expect_refused(&app, request, 413, "a chunked body over the limit").await;
}

#[tokio::test]
async fn other_content_types_are_refused_with_415() {
    let app = app_with_one_fact().await;
    for content_type in [
        "text/plain",
        "text/html",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        let request = app
            .client
            .post(app.url("/facts"))
            .header("content-type", content_type)
            .body(r#"{"info": "json, but labelled otherwise"}"#);
        expect_refused(&app, request, 415, content_type).await;
    }
}

#[tokio::test]
async fn a_body_without_content_type_is_refused_with_415() {
    let app = app_with_one_fact().await;
    // `.body(...)` sets no content type of its own.
    let request = app
        .client
        .post(app.url("/facts"))
        .body(r#"{"info": "unlabelled"}"#);
    expect_refused(&app, request, 415, "no content type").await;
}

#[tokio::test]
async fn bad_event_names_are_refused_with_400() {
    let app = app_with_one_fact().await;
    let too_long = "e".repeat(65);
    let cases = [
        ("empty", ""),
        ("65 characters", too_long.as_str()),
        ("a space", "a%20b"),
        ("a plus (a space in a query)", "a+b"),
        ("a carriage return", "a%0Db"),
        ("a line feed", "a%0Ab"),
        ("a CRLF and a forged field", "a%0D%0Adata:%20evil"),
        ("a NUL", "a%00b"),
        ("non-ASCII", "caf%C3%A9"),
        ("a slash", "a%2Fb"),
        ("invalid UTF-8", "a%FF"),
    ];
    for path in ["/facts", "/fact"] {
        for (what, name) in cases {
            let request = app
                .client
                .post(app.url(&format!("{path}?event={name}")))
                .json(&json!({"info": "x"}));
            expect_refused(
                &app,
                request,
                400,
                &format!("{path}: event name with {what}"),
            )
            .await;
        }
    }
}

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

#[tokio::test]
async fn a_key_retried_with_a_different_body_still_answers_the_first_record() {
    // Documented behaviour: the key alone identifies the POST. A second POST with a known
    // key is taken for a retry whatever its body (or event) says: nothing is appended and
    // the answer is 200 with the record the first POST created. The new body is ignored,
    // not compared and not refused.
    let app = spawn_app().await;
    let first = app
        .post_with_key("/facts", "same-key", &json!({"version": 1}))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("a JSON record");

    let second = app
        .client
        .post(app.url("/facts?event=changed"))
        .header("idempotency-key", "same-key")
        .json(&json!({"version": 2}))
        .send()
        .await
        .expect("the POST is answered");
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.expect("a JSON record");
    assert_eq!(second, first);
    assert_eq!(second["fact"], json!({"version": 1}), "the first body wins");
    assert!(second["event"].is_null(), "and the first event type");
    assert_eq!(app.all_ids().await, [1]);
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
