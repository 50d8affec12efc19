//! `POST /facts` and its alias `POST /fact`: what is stored and answered on success.

use serde_json::{Value, json};

use crate::support::*;
use factlog_testkit::*;

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
    assert_eq!(keys, ["created_at", "event", "fact", "id", "topic"]);
    assert_eq!(
        record["topic"], "default",
        "POST /facts appends to the topic default"
    );
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

/// What is stored, and so answered, streamed and paged, is the posted value in one form:
/// compact, numbers as 64-bit integers or doubles, strings escaped only where JSON must, a
/// repeated key holding its last value in its first place.
#[tokio::test]
async fn a_posted_value_is_stored_in_one_compact_form() {
    let app = spawn_app().await;
    let cases = [
        (
            "{ \"n\" : 1E2, \"big\": 123456789012345678901234567890, \"s\": \"caf\\u00e9 \\/ \\u0001\",\n  \"a\": [ 1 , -0.0, {} ] }",
            r#"{"n":100.0,"big":1.2345678901234568e+29,"s":"café / \u0001","a":[1,-0.0,{}]}"#,
        ),
        (
            r#"{"n": 1, "m": [], "n": {"o": 2}}"#,
            r#"{"n":{"o":2},"m":[]}"#,
        ),
    ];
    let mut stream = app.events("", None).await;
    for (posted, stored) in cases {
        let response = app.post_raw("/facts", "application/json", posted).await;
        assert_eq!(response.status(), 201);
        let answered = response.text().await.expect("a body");
        let id = serde_json::from_str::<Value>(&answered).expect("JSON")["id"].clone();
        let page = app
            .client
            .get(app.url(&format!("/facts?after={}", id.as_i64().expect("an id") - 1)))
            .send()
            .await
            .expect("the GET is answered")
            .text()
            .await
            .expect("a body");
        for text in [&answered, &page] {
            assert!(
                text.contains(&format!("\"fact\":{stored}")),
                "{stored} in {text}"
            );
        }
        assert_eq!(stream.take(1).await[0].data, stored);
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
