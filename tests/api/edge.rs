//! What every answer shares: `X-Request-Id`, and CORS.

use reqwest::Method;
use serde_json::json;

use crate::support::*;
use factlog_testkit::*;

// ---------------------------------------------------------------------------------------
// X-Request-Id
// ---------------------------------------------------------------------------------------

fn request_id(response: &reqwest::Response, what: &str) -> String {
    header(response, "x-request-id")
        .unwrap_or_else(|| panic!("{what}: an X-Request-Id header"))
        .to_owned()
}

#[tokio::test]
async fn every_answer_carries_a_uuid_request_id() {
    let app = spawn_with_facts(1).await;
    let mut seen = Vec::new();
    for (path, status) in [
        ("/status", 200),
        ("/facts", 200),
        ("/facts/1", 200),
        ("/healthz", 200),
        ("/nope", 404),
        ("/facts/2", 404),
        ("/facts?limit=0", 400),
        ("/facts/abc", 400),
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), status, "GET {path}");
        let id = request_id(&response, path);
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{path}: {id:?} is a UUID: {e}"));
        seen.push(id);
    }
    let response = app.post_raw("/facts", "text/plain", "x").await;
    assert_eq!(response.status(), 415);
    seen.push(request_id(&response, "a refused POST"));
    let response = app.post_fact(&json!(1)).await;
    assert_eq!(response.status(), 201);
    seen.push(request_id(&response, "a POST"));

    let count = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), count, "each request has its own id");
}

#[tokio::test]
async fn the_callers_own_request_id_is_echoed_back() {
    let app = spawn_app().await;
    for (path, status) in [("/status", 200), ("/nope", 404), ("/facts?limit=abc", 400)] {
        let response = app
            .client
            .get(app.url(path))
            .header("x-request-id", "trace-abc-123")
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), status);
        assert_eq!(request_id(&response, path), "trace-abc-123", "GET {path}");
    }
    let response = app
        .client
        .post(app.url("/facts"))
        .header("x-request-id", "b5e0c6a4-1111-4222-8333-444455556666")
        .json(&json!({"a": 1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    assert_eq!(
        request_id(&response, "POST"),
        "b5e0c6a4-1111-4222-8333-444455556666"
    );
}

// ---------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------

fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::RequestBuilder {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
}

fn allows_origin(response: &reqwest::Response, origin: &str) -> bool {
    matches!(header(response, "access-control-allow-origin"), Some(o) if o == origin || o == "*")
}

#[tokio::test]
async fn by_default_a_preflight_from_any_origin_passes() {
    let app = spawn_app().await;
    for path in ["/facts", "/fact"] {
        let response = preflight(&app, path, "http://elsewhere.test")
            .send()
            .await
            .expect("answered");
        assert!(
            response.status().is_success(),
            "OPTIONS {path}: {}",
            response.status()
        );
        assert!(
            allows_origin(&response, "http://elsewhere.test"),
            "OPTIONS {path} allows the origin: {:?}",
            response.headers()
        );
        let methods = header(&response, "access-control-allow-methods")
            .unwrap_or_default()
            .to_ascii_uppercase();
        assert!(
            methods.contains("POST") || methods == "*",
            "POST is allowed: {methods:?}"
        );
        let headers = header(&response, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            headers == "*"
                || (headers.contains("content-type") && headers.contains("authorization")),
            "Content-Type and Authorization are allowed: {headers:?}"
        );
    }
}

#[tokio::test]
async fn by_default_a_simple_request_from_any_origin_is_allowed() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/status"))
        .header("origin", "http://elsewhere.test")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(
        allows_origin(&response, "http://elsewhere.test"),
        "{:?}",
        response.headers()
    );

    let response = app
        .client
        .post(app.url("/facts"))
        .header("origin", "http://elsewhere.test")
        .json(&json!({"from": "a browser"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    assert!(allows_origin(&response, "http://elsewhere.test"));
    let exposed = header(&response, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("location"),
        "a page can read the Location of what it posted: {exposed:?}"
    );
}

async fn spawn_narrowed() -> TestApp {
    spawn_with(|c| c.cors_origins = vec!["http://good.test".into()]).await
}

#[tokio::test]
async fn with_a_cors_list_the_allowed_origin_is_echoed_with_credentials() {
    let app = spawn_narrowed().await;

    let response = app
        .client
        .get(app.url("/status"))
        .header("origin", "http://good.test")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("http://good.test"),
        "echoed, not *"
    );
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );

    let response = preflight(&app, "/facts", "http://good.test")
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("http://good.test")
    );
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
}

#[tokio::test]
async fn with_a_cors_list_another_origin_is_refused() {
    let app = spawn_narrowed().await;
    app.append(&json!({"info": "already here"})).await;

    let response = app
        .client
        .get(app.url("/status"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let status = response.status().as_u16();
    expect_error(response, status, "GET from another origin").await;

    let response = preflight(&app, "/facts", "http://evil.test")
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(header(&response, "access-control-allow-origin"), None);

    let response = app
        .client
        .post(app.url("/facts"))
        .header("origin", "http://evil.test")
        .json(&json!({"info": "from evil"}))
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(app.all_ids().await, [1], "nothing is written");
}

#[tokio::test]
async fn with_a_cors_list_a_same_origin_request_is_not_refused() {
    let app = spawn_narrowed().await;
    let own_origin = format!("http://{}", app.addr);

    let response = app
        .client
        .get(app.url("/status"))
        .header("origin", &own_origin)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "the page's own GET");

    let response = app
        .client
        .post(app.url("/facts"))
        .header("origin", &own_origin)
        .json(&json!({"info": "from the live page"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201, "the page's own POST");
    assert_eq!(app.all_ids().await, [1]);
}

#[tokio::test]
async fn without_an_origin_header_a_cors_list_changes_nothing() {
    let app = spawn_narrowed().await;
    let response = get(&app, "/status").await;
    assert_eq!(response.status(), 200, "curl and programs send no Origin");
    app.append(&json!(1)).await;
}
