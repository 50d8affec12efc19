//! The README's nginx recipes, run as pasted by Debian's nginx (only the port, the
//! certificate, the log file and the upstream addresses replaced; see
//! `factlog_testkit::nginx`): every block loads, requests pass through, and while factlog
//! is down nginx answers a stream with a `retry:` that a browser follows and everything
//! else with factlog's JSON errors. The browser's side of an outage is in
//! `tests/browser/nginx.rs`.
//!
//! Where nginx is missing the build script marks these ignored; `FACTLOG_REQUIRE_NGINX=1`
//! (as `.ci/run` sets) runs them regardless.

use factlog_testkit::nginx::{
    DownAddr, Nginx, ONE_INSTANCE, SEVERAL_INSTANCES, nginx_blocks, readme, readme_block,
    test_config,
};
use factlog_testkit::*;
use serde_json::{Value, json};

/// The upstream addresses the several-instances block names.
const INSTANCES: [&str; 3] = ["10.0.0.11:3001", "10.0.0.12:3001", "10.0.0.13:3001"];

/// nginx with the one-instance block, in front of `addr`.
fn one_instance(addr: std::net::SocketAddr) -> Nginx {
    Nginx::start(&readme_block(ONE_INSTANCE), &[("127.0.0.1:3001", addr)])
}

/// nginx with the several-instances block, in front of `addrs`.
fn several_instances(addrs: [std::net::SocketAddr; 3]) -> Nginx {
    let upstreams: Vec<_> = INSTANCES.into_iter().zip(addrs).collect();
    Nginx::start(&readme_block(SEVERAL_INSTANCES), &upstreams)
}

#[test]
#[cfg_attr(no_nginx, ignore = "needs nginx: apt-get install nginx")]
fn every_nginx_block_of_the_readme_passes_nginx_t() {
    let blocks = nginx_blocks(&readme());
    assert_eq!(
        blocks.len(),
        2,
        "the README's nginx blocks (a new one needs a marker and a line here)"
    );
    for (marker, block) in blocks {
        // nginx -t connects to nothing: any address will do.
        let down = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let upstreams: Vec<_> = if marker.starts_with(ONE_INSTANCE) {
            vec![("127.0.0.1:3001", down)]
        } else if marker.starts_with(SEVERAL_INSTANCES) {
            INSTANCES.into_iter().map(|a| (a, down)).collect()
        } else {
            panic!("an nginx block without a known marker before it: {block}")
        };
        let output = test_config(&block, &upstreams);
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "nginx -t of {marker}: {said}");
        assert!(said.contains("test is successful"), "{said}");
        // nginx 1.25.1 and later deprecate `listen ... http2`, which the README says.
        let warnings: Vec<&str> = said
            .lines()
            .filter(|line| line.contains("[warn]"))
            .filter(|line| !line.contains("\"listen ... http2\" directive is deprecated"))
            .collect();
        assert!(warnings.is_empty(), "nginx -t of {marker} warns: {said}");
    }
}

/// What nginx must answer while no factlog answers, checked on `nginx`.
async fn answers_for_factlog(nginx: &Nginx) {
    let origin = "http://page.example";
    for path in ["/events", "/topics/orders.eu/events?after=3"] {
        let response = nginx
            .client
            .get(nginx.url(path))
            .header("origin", origin)
            .header("last-event-id", "7")
            .send()
            .await
            .expect("answered");
        assert_eq!(
            response.status(),
            200,
            "{path}: EventSource retries only a 200"
        );
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/event-stream", "{path}");
        assert_eq!(
            headers["access-control-allow-origin"], origin,
            "{path}: a page on another origin may read it"
        );
        // A valid event stream that sets the reconnection time and dispatches no event.
        let mut stream = SseStream::new(response);
        let mut frames = Vec::new();
        while let Some(frame) = stream.next_frame().await {
            frames.push(frame);
        }
        assert!(
            frames.iter().any(|f| f == "retry: 2000"),
            "{path}: {frames:?}"
        );
        assert!(
            frames.iter().all(|f| parse_event(f).is_none()),
            "{path}: no event in {frames:?}"
        );
    }

    let response = nginx
        .client
        .post(nginx.url("/facts"))
        .header("origin", origin)
        .header("idempotency-key", "while-down")
        .json(&json!({ "n": 1 }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["access-control-allow-origin"], origin);
    let body: Value = response.json().await.expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");

    let response = nginx
        .client
        .get(nginx.url("/facts/1"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");
}

/// A body over the limit, refused by nginx itself as factlog would refuse it.
async fn refuses_a_large_body(nginx: &Nginx) {
    let response = nginx
        .client
        .post(nginx.url("/facts"))
        .header("content-type", "application/json")
        .body(format!("\"{}\"", "x".repeat(70_000)))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(
        body,
        json!({ "error": "the request body is larger than the limit of 65536 bytes" })
    );
}

#[tokio::test]
#[cfg_attr(no_nginx, ignore = "needs nginx: apt-get install nginx")]
async fn with_factlog_down_nginx_answers_a_retry_to_streams_and_json_to_the_rest() {
    let down = [DownAddr::new(), DownAddr::new(), DownAddr::new()];
    let one = one_instance(down[0].addr);
    answers_for_factlog(&one).await;
    refuses_a_large_body(&one).await;
    let several = several_instances(down.each_ref().map(|d| d.addr));
    answers_for_factlog(&several).await;
    refuses_a_large_body(&several).await;
}

#[tokio::test]
#[cfg_attr(no_nginx, ignore = "needs nginx: apt-get install nginx")]
async fn through_the_one_instance_block_posts_and_streams_reach_factlog() {
    let app = spawn_app().await;
    let nginx = one_instance(app.addr);
    let mut stream = SseStream::new(
        nginx
            .client
            .get(nginx.url("/topics/orders.eu/events"))
            .send()
            .await
            .expect("the stream opens"),
    );
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    for n in 1..=3 {
        let response = nginx
            .client
            .post(nginx.url("/topics/orders.eu/facts"))
            .json(&json!({ "n": n }))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 201);
    }
    // Unbuffered: each fact arrives while the stream is open.
    let events = stream.take(3).await;
    assert_consecutive(&events, 1);
    assert_eq!(events[2].json(), json!({ "n": 3 }));
    // factlog's own errors pass through untouched.
    let response = nginx
        .client
        .post(nginx.url("/facts"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("factlog's JSON");
    assert!(body["error"].is_string(), "{body}");
    refuses_a_large_body(&nginx).await;
    // The query string (where a token may be) stays out of the access log.
    drop(stream);
    nginx
        .client
        .get(nginx.url("/facts?access_token=secret-in-the-query"))
        .send()
        .await
        .expect("answered");
    // nginx writes a request's line once it has sent the answer: wait for it.
    let started = std::time::Instant::now();
    while !nginx.access_log().contains("GET /facts HTTP/2.0") {
        assert!(
            started.elapsed() < WAIT,
            "the access log: {}",
            nginx.access_log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = nginx.access_log();
    assert!(!log.contains("secret-in-the-query"), "{log}");
}

#[tokio::test]
#[cfg_attr(no_nginx, ignore = "needs nginx: apt-get install nginx")]
async fn the_several_instances_block_skips_instances_that_are_down() {
    let app = spawn_app().await;
    let down = [DownAddr::new(), DownAddr::new()];
    let nginx = several_instances([down[0].addr, app.addr, down[1].addr]);
    for n in 1..=6 {
        let response = nginx
            .client
            .post(nginx.url("/facts"))
            .json(&json!({ "n": n }))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 201, "fact {n}");
    }
    let mut stream = SseStream::new(
        nginx
            .client
            .get(nginx.url("/events"))
            .send()
            .await
            .expect("the stream opens"),
    );
    assert_eq!(stream.status, 200);
    assert_consecutive(&stream.take(6).await, 1);
}
