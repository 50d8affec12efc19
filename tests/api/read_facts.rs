//! Reading: `GET /facts` pages (forwards and backwards), `GET /facts/{id}`, `GET /status`,
//! `GET /healthz`, the OpenAPI description and its page, unknown paths.

use serde_json::{Value, json};

use crate::support::*;
use factlog_testkit::*;

// ---------------------------------------------------------------------------------------
// GET /facts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_log_reads_as_an_empty_page_with_next_null() {
    let app = spawn_app().await;
    let (status, page) = app.get_json("/facts").await;
    assert_eq!(status, 200);
    assert_eq!(page["facts"], json!([]));
    assert!(page.as_object().expect("object").contains_key("next"));
    assert!(page["next"].is_null());
}

#[tokio::test]
async fn pages_default_to_100_facts_and_next_leads_to_the_end() {
    let app = spawn_with_facts(150).await;

    let (status, first) = app.get_json("/facts").await;
    assert_eq!(status, 200);
    assert_eq!(
        ids_of(&first),
        (1..=100).collect::<Vec<_>>(),
        "oldest first"
    );
    assert_eq!(first["next"], 100);
    // Records are complete, and hold what was posted.
    let record = &first["facts"][41];
    assert_eq!(record["id"], 42);
    assert_eq!(record["fact"], json!({"n": 42}));
    assert!(record["event"].is_null());
    assert!(
        record["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let (status, second) = app.get_json("/facts?after=100").await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&second), (101..=150).collect::<Vec<_>>());
    assert!(second["next"].is_null(), "null at the end of the log");

    let (_, beyond) = app.get_json("/facts?after=150").await;
    assert_eq!(beyond["facts"], json!([]));
    assert!(beyond["next"].is_null());
    let (_, far) = app.get_json("/facts?after=9999").await;
    assert_eq!(far["facts"], json!([]));
}

#[tokio::test]
async fn a_page_that_reaches_the_last_fact_exactly_has_next_null() {
    let app = spawn_with_facts(30).await;
    let (_, page) = app.get_json("/facts?after=20&limit=10").await;
    assert_eq!(ids_of(&page), (21..=30).collect::<Vec<_>>());
    assert!(page["next"].is_null(), "no further page: {page}");
}

#[tokio::test]
async fn after_and_limit_walk_the_log_page_by_page() {
    let app = spawn_with_facts(30).await;
    let mut after = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&format!("/facts?after={after}&limit=7")).await;
        assert_eq!(status, 200);
        let ids = ids_of(&page);
        assert!(ids.len() <= 7);
        seen.extend(ids);
        pages += 1;
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=30).collect::<Vec<_>>(),
        "every fact once, in order"
    );
    assert_eq!(pages, 5);
}

#[tokio::test]
async fn limit_may_be_1_or_1000() {
    let app = spawn_with_facts(3).await;
    let (status, page) = app.get_json("/facts?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&page), [1]);
    assert_eq!(page["next"], 1);
    let (status, page) = app.get_json("/facts?limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&page), [1, 2, 3]);
    assert!(page["next"].is_null());
}

#[tokio::test]
async fn bad_limit_and_after_values_are_refused_with_400() {
    let app = spawn_with_facts(2).await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "after=-1",
        "after=abc",
        "after=1.5",
        "before=-1",
        "before=abc",
        "after=1&before=2",
    ] {
        let response = get(&app, &format!("/facts?{query}")).await;
        expect_error(response, 400, &format!("GET /facts?{query}")).await;
    }
}

#[tokio::test]
async fn before_reads_the_log_backwards_with_prev() {
    let app = spawn_with_facts(30).await;

    let (status, page) = app.get_json("/facts?before=31&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(
        ids_of(&page),
        (21..=30).collect::<Vec<_>>(),
        "the newest ten, oldest first"
    );
    assert_eq!(page["prev"], 21, "pass as before for the page before");

    let (_, page) = app.get_json("/facts?before=21&limit=10").await;
    assert_eq!(ids_of(&page), (11..=20).collect::<Vec<_>>());
    assert_eq!(page["prev"], 11);

    let (_, page) = app.get_json("/facts?before=11&limit=10").await;
    assert_eq!(ids_of(&page), (1..=10).collect::<Vec<_>>());
    assert!(
        page["prev"].is_null(),
        "null at the start of the log: {page}"
    );

    let (_, page) = app.get_json("/facts?before=5&limit=10").await;
    assert_eq!(ids_of(&page), [1, 2, 3, 4]);
    assert!(page["prev"].is_null());

    let (_, page) = app.get_json("/facts?before=1").await;
    assert_eq!(page["facts"], json!([]));
    assert!(page["prev"].is_null());

    // Walking back with `prev` from past the end visits every fact once.
    let mut before = i64::MAX;
    let mut seen = Vec::new();
    loop {
        let (status, page) = app
            .get_json(&format!("/facts?before={before}&limit=8"))
            .await;
        assert_eq!(status, 200);
        let mut ids = ids_of(&page);
        ids.extend(seen);
        seen = ids;
        match page["prev"].as_i64() {
            Some(prev) => before = prev,
            None => break,
        }
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// GET /facts/{id}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn one_fact_reads_as_its_record() {
    let app = spawn_app().await;
    let response = app
        .post_json("/facts?event=user.created", &json!({"name": "ann"}))
        .await;
    assert_eq!(response.status(), 201);
    let posted: Value = response.json().await.expect("a record");

    let (status, record) = app.get_json("/facts/1").await;
    assert_eq!(status, 200);
    assert_eq!(record, posted);
    assert_eq!(record["id"], 1);
    assert_eq!(record["event"], "user.created");
    assert_eq!(record["fact"], json!({"name": "ann"}));
}

#[tokio::test]
async fn a_missing_fact_is_404_with_a_json_error() {
    let app = spawn_with_facts(1).await;
    for path in ["/facts/2", "/facts/0", "/facts/9223372036854775807"] {
        expect_error(get(&app, path).await, 404, path).await;
    }
}

#[tokio::test]
async fn a_non_numeric_fact_id_is_400_with_a_json_error() {
    let app = spawn_with_facts(1).await;
    for path in ["/facts/abc", "/facts/1.5", "/facts/99999999999999999999"] {
        expect_error(get(&app, path).await, 400, path).await;
    }
}

// ---------------------------------------------------------------------------------------
// GET /status, /healthz, /openapi.json, /docs, unknown paths
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn status_of_an_empty_log() {
    let app = spawn_app().await;
    let status = app.status().await;
    assert_eq!(status["clients"], 0);
    assert_eq!(status["last_id"], 0, "0 when the log is empty");
    let log_id = status["log_id"].as_str().expect("a log_id string");
    uuid::Uuid::parse_str(log_id).expect("log_id is a UUID");
}

#[tokio::test]
async fn status_follows_the_log_and_keeps_its_log_id() {
    let app = spawn_app().await;
    let log_id = app.status().await["log_id"].clone();
    app.append(&json!(1)).await;
    app.append(&json!(2)).await;
    let status = app.status().await;
    assert_eq!(status["last_id"], 2);
    assert_eq!(status["log_id"], log_id, "the log keeps its identity");

    let other = spawn_app().await;
    assert_ne!(
        other.status().await["log_id"],
        log_id,
        "another database is another log"
    );
}

#[tokio::test]
async fn status_counts_open_event_streams() {
    let app = spawn_app().await;
    let mut stream = app.events("", None).await;
    assert_eq!(stream.status, 200);
    // The stream is counted once it is open; the first frame shows it is.
    stream.next_frame().await.expect("the retry frame");
    assert_eq!(app.status().await["clients"], 1);
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let response = get(&app, "/healthz").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_openapi_description_is_json_and_describes_facts() {
    let app = spawn_app().await;
    let response = get(&app, "/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.expect("JSON");
    assert!(spec.get("openapi").is_some(), "an OpenAPI document");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/facts"), "describes /facts");
    assert!(paths.contains_key("/status"), "describes /status");
    assert!(paths["/facts"].get("post").is_some());
    assert!(paths["/facts"].get("get").is_some());
}

#[tokio::test]
async fn the_docs_page_is_html() {
    let app = spawn_app().await;
    let response = get(&app, "/docs").await;
    assert_eq!(response.status(), 200);
    let content_type = header(&response, "content-type")
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.expect("a body");
    assert!(body.to_ascii_lowercase().contains("<html"), "an HTML page");
}

#[tokio::test]
async fn an_unknown_path_is_404_with_a_json_error() {
    let app = spawn_app().await;
    for path in ["/nope", "/facts/1/extra", "/fatcs"] {
        expect_error(get(&app, path).await, 404, path).await;
    }
}

#[tokio::test]
async fn a_method_that_is_not_served_gets_a_json_error() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/facts/1"))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    assert!(
        status == 405 || status == 404,
        "DELETE is not served: {status}"
    );
    expect_error(response, status, "DELETE /facts/1").await;
}
