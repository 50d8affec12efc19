//! Bad posts: every bad request is refused with the right status, a JSON error, and
//! nothing written.

use serde_json::json;

use crate::support::*;

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
