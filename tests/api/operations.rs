//! What operators rely on: `/metrics`, JSON logs, and a publish token that never leaks.

use serde_json::json;

use factlog_testkit::*;

/// The value of the metric line that starts with `name` (with its labels).
#[tokio::test]
async fn metrics_count_appends_commits_streams_bytes_and_responses() {
    let app = spawn_app().await;
    let mut stream = app.events("", None).await;
    for i in 0..3 {
        app.append(&json!({ "i": i })).await;
    }
    stream.take(3).await;
    let refused = app.post_raw("/facts", "application/json", "{oops").await;
    assert_eq!(refused.status(), 400);

    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.expect("a body");
    assert_eq!(metric(&text, "factlog_facts_appended_total"), Some(3.0));
    assert_eq!(metric(&text, "factlog_streams_open"), Some(1.0));
    assert_eq!(
        metric(&text, r#"factlog_http_responses_total{status="201"}"#),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, r#"factlog_http_responses_total{status="400"}"#),
        Some(1.0)
    );
    // Three commits of one fact each: all in the `le="1.0"` bucket.
    assert_eq!(metric(&text, "factlog_commit_group_facts_count"), Some(3.0));
    assert_eq!(
        metric(&text, r#"factlog_commit_group_facts_bucket{le="1.0"}"#),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "factlog_commit_duration_seconds_count"),
        Some(3.0)
    );
    assert!(metric(&text, "factlog_stream_sent_bytes_total").is_some_and(|b| b > 0.0));
    assert_eq!(
        metric(&text, "factlog_streams_caught_up_from_database_total"),
        Some(0.0)
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn logs_can_be_json_lines() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &["--log-format", "json"],
    );
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/facts?event=bad%20name", server.base()))
        .json(&json!(1))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 400);
    server.signal("TERM");
    let log = server.finish(WAIT);
    assert!(!log.is_empty());
    for line in &log {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["fields"]["message"].is_string());
    }
    let start = serde_json::from_str::<serde_json::Value>(&log[0]).expect("JSON");
    assert_eq!(start["level"], "INFO");
    assert!(start["fields"]["addr"].is_string());
    // A client's mistake is a warning, with what was wrong.
    assert!(log.iter().any(|line| {
        let parsed: serde_json::Value = serde_json::from_str(line).expect("JSON");
        parsed["level"] == "WARN" && parsed["fields"]["status"] == 400
    }));
}

#[tokio::test]
async fn the_token_is_never_logged_or_echoed_and_guards_every_way_to_append() {
    const TOKEN: &str = "s3cret-token-value-0123456789";
    let dir = tempfile::TempDir::new().expect("a directory");
    let mut command = factlog_command(&dir.path().join("facts.db"), "127.0.0.1:0", &[]);
    command
        .env("FACTLOG_PUBLISH_TOKEN", TOKEN)
        .env("RUST_LOG", "debug");
    let server = Process::spawn(command);
    let base = server.base();
    let client = reqwest::Client::new();

    // Every way a request might append, without the token, or with a wrong one.
    let mut answers = Vec::new();
    for path in [
        "/facts",
        "/fact",
        "/facts?event=x",
        "/fact/",
        "/facts/1",
        "/events",
    ] {
        for auth in [
            None,
            Some(format!("Bearer {TOKEN}x")),
            Some(TOKEN.to_owned()),
        ] {
            for method in [reqwest::Method::POST, reqwest::Method::PUT] {
                let mut request = client
                    .request(method.clone(), format!("{base}{path}"))
                    .json(&json!({ "sneaky": path }));
                if let Some(auth) = &auth {
                    request = request.header("authorization", auth);
                }
                let response = request.send().await.expect("answered");
                assert!(
                    response.status().is_client_error(),
                    "{method} {path} with {auth:?} answered {}",
                    response.status()
                );
                answers.push(format!("{:?}", response.headers()));
                answers.push(response.text().await.expect("a body"));
            }
        }
    }
    let form = client
        .post(format!("{base}/facts"))
        .form(&[("sneaky", "form")])
        .send()
        .await
        .expect("answered");
    assert_eq!(form.status(), 401);
    let status: serde_json::Value = client
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["last_id"], 0, "nothing was appended");

    // With the token it works, and the token is in no answer and no log line.
    let ok = client
        .post(format!("{base}/facts"))
        .bearer_auth(TOKEN)
        .json(&json!({ "ok": true }))
        .send()
        .await
        .expect("answered");
    assert_eq!(ok.status(), 201);
    answers.push(ok.text().await.expect("a body"));
    server.signal("TERM");
    let log = server.finish(WAIT);
    assert!(log.len() > 10, "debug logging was on");
    for text in answers.iter().chain(&log) {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

/// The `_count` of the duration histogram for `method` and `route`.
fn requests_counted(text: &str, method: &str, route: &str) -> Option<f64> {
    metric(
        text,
        &format!(
            r#"factlog_http_request_duration_seconds_count{{method="{method}",route="{route}"}}"#
        ),
    )
}

async fn scrape(app: &TestApp, url: &str) -> String {
    let response = app.client.get(url).send().await.expect("answered");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.expect("a body")
}

#[tokio::test]
async fn request_durations_are_counted_by_route_template_and_the_build_is_named() {
    let app = spawn_app().await;
    let id = app
        .append_at("/topics/orders.eu/facts", &json!({"n": 1}))
        .await;
    app.append_at("/topics/orders.us/facts", &json!({"n": 2}))
        .await;
    let (status, _) = app.get_json(&format!("/facts/{id}")).await;
    assert_eq!(status, 200);
    let mut stream = app.events("", None).await;
    stream.next_frame().await.expect("the retry frame");
    let unknown = app.client.get(app.url("/no/such/route")).send().await;
    assert_eq!(unknown.expect("answered").status(), 404);
    for path in ["/openapi.json", "/docs/"] {
        let described = app.client.get(app.url(path)).send().await;
        assert_eq!(described.expect("answered").status(), 200, "{path}");
    }

    let text = scrape(&app, &app.url("/metrics")).await;
    assert_eq!(
        requests_counted(&text, "POST", "/topics/{topic}/facts"),
        Some(2.0),
        "two topics, one route"
    );
    assert_eq!(requests_counted(&text, "GET", "/facts/{id}"), Some(1.0));
    assert_eq!(requests_counted(&text, "GET", "/events"), Some(1.0));
    assert_eq!(requests_counted(&text, "GET", "none"), Some(1.0));
    assert_eq!(requests_counted(&text, "GET", "/openapi.json"), Some(1.0));
    assert_eq!(requests_counted(&text, "GET", "/docs/"), Some(1.0));
    let durations: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("factlog_http_request_duration_seconds"))
        .collect();
    assert!(
        durations
            .iter()
            .all(|l| !l.contains("orders") && !l.contains("/no/such")),
        "a raw path became a label: {durations:#?}"
    );
    assert!(text.contains("# TYPE factlog_http_request_duration_seconds histogram"));

    let build = format!(
        r#"factlog_build_info{{version="{}",commit="#,
        env!("CARGO_PKG_VERSION")
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&build))
        .unwrap_or_else(|| panic!("no {build} in {text}"));
    assert!(line.ends_with("} 1"), "{line}");
    assert!(text.contains("# TYPE factlog_build_info gauge"));
}

#[tokio::test]
async fn metrics_listen_serves_the_metrics_there_and_not_on_the_public_address() {
    let app =
        spawn_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"))).await;
    let private = app.metrics_addr.expect("a metrics address");
    assert_ne!(private, app.addr);
    app.append(&json!({"n": 1})).await;

    let response = app
        .client
        .get(format!("http://{private}/metrics"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.expect("a body");
    assert_eq!(metric(&text, "factlog_facts_appended_total"), Some(1.0));
    assert!(text.contains("factlog_build_info{"));
    // The public requests are counted; the scrape on the private address is not one.
    assert_eq!(requests_counted(&text, "POST", "/facts"), Some(1.0));

    let public = app.client.get(app.url("/metrics")).send().await;
    let public = public.expect("answered");
    assert_eq!(public.status(), 404, "the public address hides the metrics");
    let body: serde_json::Value = public.json().await.expect("a JSON error");
    assert_eq!(body["error"], "no such endpoint");
    // The private address serves the metrics and nothing else.
    for path in ["/status", "/facts", "/"] {
        let response = app
            .client
            .get(format!("http://{private}{path}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 404, "{path} on the metrics address");
    }
    let text = scrape(&app, &format!("http://{private}/metrics")).await;
    assert_eq!(requests_counted(&text, "GET", "/metrics"), Some(1.0));
}

#[tokio::test]
async fn the_readme_lists_every_metric() {
    let app = spawn_app().await;
    // A family with labels shows once it has a series: one request gives them theirs.
    app.append(&json!({"n": 1})).await;
    let text = scrape(&app, &app.url("/metrics")).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("the README");
    let watching = readme
        .split("### Watching it")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a \"Watching it\" section");
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.len() >= 12, "{families:?}");
    let missing: Vec<&&str> = families
        .iter()
        .filter(|name| !watching.contains(&format!("`{name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in README's \"Watching it\": {missing:?}"
    );
}
