//! Who may read and write: public and private topics on every read route, the three places
//! a token is read from, grants by name, prefix and `*`, the firehose rule, `/topics`
//! filtering, a `404` for a fact the caller may not read, and appends that need the header
//! and a `publish` grant (or the static token) and write nothing when refused. The
//! functions ending in `_on` also run on PostgreSQL (`postgres/access.rs`).

use factlog::Config;
use serde_json::{Value, json};

use crate::support::*;
use factlog_testkit::token::{self, SECRET};
use factlog_testkit::*;

/// The static `--publish-token` of these servers.
pub const PUBLISH_TOKEN: &str = "static-publisher-token";

/// What every server here runs with: the test secret, `news.*` public, the static token.
pub fn secured(config: &mut Config) {
    config.jwt_keys = vec![SECRET.to_owned()];
    config.public_topics = "news.*".to_owned();
    config.publish_token = Some(PUBLISH_TOKEN.to_owned());
}

/// Where a request presents its token.
#[derive(Clone, Copy, Debug)]
pub enum Via<'t> {
    Nothing,
    Header(&'t str),
    Cookie(&'t str),
    Query(&'t str),
}

/// `method path`, presenting a token `via` one of the three places.
pub fn request(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    via: Via,
) -> reqwest::RequestBuilder {
    let with_query = |token: &str| {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}access_token={token}")
    };
    match via {
        Via::Nothing => app.client.request(method, app.url(path)),
        Via::Header(token) => app.client.request(method, app.url(path)).bearer_auth(token),
        Via::Cookie(token) => app
            .client
            .request(method, app.url(path))
            .header("cookie", format!("theme=dark; factlog_token={token}")),
        Via::Query(token) => app.client.request(method, app.url(&with_query(token))),
    }
}

/// The status of `GET path` presented `via`; a `401` or `403` is checked to carry the
/// right challenge and a JSON error.
pub async fn read_status(app: &TestApp, path: &str, via: Via<'_>) -> u16 {
    let response = request(app, reqwest::Method::GET, path, via)
        .send()
        .await
        .expect("the GET is answered");
    let status = response.status().as_u16();
    let challenge = header(&response, "www-authenticate").map(str::to_owned);
    match status {
        401 | 403 => {
            let expected = match (status, via) {
                (403, _) => r#"Bearer error="insufficient_scope""#,
                (_, Via::Nothing) => "Bearer",
                _ => r#"Bearer error="invalid_token""#,
            };
            assert_eq!(challenge.as_deref(), Some(expected), "{path} ({via:?})");
            expect_error(response, status, path).await;
        }
        _ => assert_eq!(challenge, None, "{path}: no challenge on {status}"),
    }
    status
}

/// Posts `fact` to `topic` with the static token; returns its id.
pub async fn publish(app: &TestApp, topic: &str, fact: Value) -> i64 {
    let path = format!("/topics/{topic}/facts");
    app.append_presenting(&path, &fact, Some(PUBLISH_TOKEN))
        .await
}

/// The names `GET /topics` lists to a caller presenting `via`.
async fn listed(app: &TestApp, via: Via<'_>) -> Vec<String> {
    let response = request(app, reqwest::Method::GET, "/topics", via)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test]
async fn without_the_flags_everything_is_open_and_tokens_are_ignored() {
    let app = spawn_app().await;
    let id = app
        .append_at("/topics/orders.eu/facts", &json!({"n": 1}))
        .await;
    for via in [
        Via::Nothing,
        Via::Header("not-a-token"),
        Via::Query("x.y.z"),
    ] {
        for path in [
            "/events?tail=1",
            "/topics/orders.eu/events?tail=1",
            "/facts",
            &format!("/facts/{id}"),
        ] {
            assert_eq!(read_status(&app, path, via).await, 200, "{path} {via:?}");
        }
    }
    let response = request(
        &app,
        reqwest::Method::POST,
        "/topics/orders.eu/facts",
        Via::Header("whatever"),
    )
    .json(&json!({"n": 2}))
    .send()
    .await
    .expect("answered");
    assert_eq!(response.status(), 201, "anyone appends");
}

#[tokio::test]
async fn public_topics_are_read_by_anyone_and_private_ones_by_their_grants() {
    public_topics_are_read_by_anyone_and_private_ones_by_their_grants_on(spawn_with(secured).await)
        .await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn public_topics_are_read_by_anyone_and_private_ones_by_their_grants_on(app: TestApp) {
    let news = publish(&app, "news.sport", json!({"score": "2-1"})).await;
    let order = publish(&app, "orders.eu", json!({"total": 12})).await;
    let reads = |topic: &str| {
        [
            format!("/topics/{topic}/facts"),
            format!("/topics/{topic}"),
            format!("/facts?topic={topic}"),
            format!("/topics/{topic}/events?tail=1"),
            format!("/events?topic={topic}&tail=1"),
        ]
    };
    let orders_reader = token::token(&["orders.*"], &[]);
    let everything = token::token(&["*"], &[]);
    for path in reads("news.sport") {
        assert_eq!(
            read_status(&app, &path, Via::Nothing).await,
            200,
            "{path}: public"
        );
        assert_eq!(
            read_status(&app, &path, Via::Header(&orders_reader)).await,
            200,
            "{path}"
        );
    }
    for path in reads("orders.eu") {
        assert_eq!(
            read_status(&app, &path, Via::Nothing).await,
            401,
            "{path}: private"
        );
        assert_eq!(
            read_status(&app, &path, Via::Header(&orders_reader)).await,
            200,
            "{path}"
        );
    }
    // A stream of several topics needs every one of them.
    let both = "/events?topic=news.sport&topic=orders.eu&tail=1";
    assert_eq!(read_status(&app, both, Via::Nothing).await, 401);
    assert_eq!(
        read_status(&app, both, Via::Header(&orders_reader)).await,
        200
    );

    // The firehose needs `*`: a grant of every topic there is today is not a grant of
    // every topic there will be.
    for path in ["/events", "/events?tail=1", "/facts"] {
        assert_eq!(read_status(&app, path, Via::Nothing).await, 401, "{path}");
        assert_eq!(
            read_status(&app, path, Via::Header(&orders_reader)).await,
            403,
            "{path}"
        );
        assert_eq!(
            read_status(&app, path, Via::Header(&everything)).await,
            200,
            "{path}"
        );
    }

    // A fact one may not read does not exist, as far as the caller can tell.
    let fact = |id: i64| format!("/facts/{id}");
    assert_eq!(read_status(&app, &fact(news), Via::Nothing).await, 200);
    let (status, body) = app.get_json(&fact(order)).await;
    let missing = json!({ "error": format!("no fact with id {order}") });
    assert_eq!((status, body), (404, missing), "as if it did not exist");
    assert_eq!(
        read_status(&app, &fact(order), Via::Header(&orders_reader)).await,
        200
    );

    // `/topics` lists what the caller may read, no more.
    assert_eq!(listed(&app, Via::Nothing).await, ["news.sport"]);
    assert_eq!(
        listed(&app, Via::Header(&orders_reader)).await,
        ["news.sport", "orders.eu"]
    );
}

#[tokio::test]
async fn a_token_is_read_from_the_header_the_cookie_or_the_query_first_found_wins() {
    let app = spawn_with(secured).await;
    publish(&app, "orders.eu", json!({"total": 12})).await;
    let reader = token::token(&["orders.eu"], &[]);
    let other = token::token(&["orders.us"], &[]);
    let path = "/topics/orders.eu/facts";
    for via in [
        Via::Header(&reader),
        Via::Cookie(&reader),
        Via::Query(&reader),
    ] {
        assert_eq!(read_status(&app, path, via).await, 200, "{via:?}");
        assert_eq!(
            read_status(&app, "/topics/orders.eu/events?tail=1", via).await,
            200,
            "{via:?}"
        );
    }
    // A quoted cookie value (RFC 6265) is the same token.
    let response = app
        .client
        .get(app.url(path))
        .header("cookie", format!("factlog_token=\"{reader}\""))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "a quoted cookie");

    // The header is looked at first, then the cookie, then the query: the first found is
    // the caller's, even when a later one would have been allowed.
    let header_then_cookie = request(&app, reqwest::Method::GET, path, Via::Header(&other))
        .header("cookie", format!("factlog_token={reader}"));
    assert_eq!(
        header_then_cookie.send().await.expect("answered").status(),
        403
    );
    let cookie_then_query = request(
        &app,
        reqwest::Method::GET,
        &format!("{path}?access_token={reader}"),
        Via::Cookie(&other),
    );
    assert_eq!(
        cookie_then_query.send().await.expect("answered").status(),
        403
    );
    // Another scheme in `Authorization` (a proxy's Basic) is not a token: the cookie is.
    let basic_then_cookie = app
        .client
        .get(app.url(path))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .header("cookie", format!("factlog_token={reader}"));
    assert_eq!(
        basic_then_cookie.send().await.expect("answered").status(),
        200
    );
}

#[tokio::test]
async fn grants_match_by_exact_name_by_prefix_and_star() {
    let app = spawn_with(|c| {
        secured(c);
        c.public_topics = String::new();
    })
    .await;
    for topic in [
        "orders",
        "orders.eu",
        "orders.eu.west",
        "orders.us",
        "ordersx",
        "news",
    ] {
        publish(&app, topic, json!({"topic": topic})).await;
    }
    let cases: [(&[&str], &[&str]); 4] = [
        (&["orders.eu"], &["orders.eu"]),
        (&["orders.*"], &["orders.eu", "orders.eu.west", "orders.us"]),
        (&["orders", "news"], &["orders", "news"]),
        (
            &["*"],
            &[
                "orders",
                "orders.eu",
                "orders.eu.west",
                "orders.us",
                "ordersx",
                "news",
            ],
        ),
    ];
    for (grants, readable) in cases {
        let reader = token::token(grants, &[]);
        for topic in [
            "orders",
            "orders.eu",
            "orders.eu.west",
            "orders.us",
            "ordersx",
            "news",
        ] {
            let want = if readable.contains(&topic) { 200 } else { 403 };
            let path = format!("/topics/{topic}/facts");
            assert_eq!(
                read_status(&app, &path, Via::Header(&reader)).await,
                want,
                "{grants:?} reading {topic}"
            );
        }
        let mut names = listed(&app, Via::Header(&reader)).await;
        let mut want: Vec<_> = readable.iter().map(|t| (*t).to_owned()).collect();
        names.sort();
        want.sort();
        assert_eq!(names, want, "{grants:?}: /topics");
    }
}

#[tokio::test]
async fn public_topics_default_to_all_and_may_be_narrowed_or_emptied() {
    // With keys but no --public-topics, every read stays open.
    let open = spawn_with(|c| {
        c.jwt_keys = vec![SECRET.to_owned()];
        c.publish_token = Some(PUBLISH_TOKEN.to_owned());
    })
    .await;
    publish(&open, "orders.eu", json!({"n": 1})).await;
    for path in ["/events?tail=1", "/facts", "/topics/orders.eu/facts"] {
        assert_eq!(read_status(&open, path, Via::Nothing).await, 200, "{path}");
    }
    // Publishing there needs a grant: --jwt-key protects appends.
    let refused = open
        .post_json("/topics/orders.eu/facts", &json!({"n": 2}))
        .await;
    expect_error(refused, 401, "an anonymous append").await;

    // Several patterns, comma-separated.
    let narrowed = spawn_with(|c| {
        secured(c);
        c.public_topics = "news.*, weather".to_owned();
    })
    .await;
    for (topic, want) in [
        ("news.eu", 200),
        ("weather", 200),
        ("weather.eu", 401),
        ("orders.eu", 401),
    ] {
        let path = format!("/topics/{topic}/facts");
        assert_eq!(
            read_status(&narrowed, &path, Via::Nothing).await,
            want,
            "{topic}"
        );
    }

    // Empty: every read needs a token; `/topics` lists nothing to anonymous callers.
    let closed = spawn_with(|c| {
        secured(c);
        c.public_topics = String::new();
    })
    .await;
    publish(&closed, "news.eu", json!({"n": 1})).await;
    assert_eq!(
        read_status(&closed, "/topics/news.eu/facts", Via::Nothing).await,
        401
    );
    assert_eq!(listed(&closed, Via::Nothing).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_service_routes_stay_open_whatever_is_protected() {
    let app = spawn_with(|c| {
        secured(c);
        c.public_topics = String::new();
    })
    .await;
    for path in [
        "/",
        "/status",
        "/healthz",
        "/openapi.json",
        "/docs",
        "/metrics",
    ] {
        assert_eq!(read_status(&app, path, Via::Nothing).await, 200, "{path}");
    }
}

#[tokio::test]
async fn appends_need_the_header_and_a_publish_grant_and_refusals_write_nothing() {
    appends_need_the_header_and_a_publish_grant_and_refusals_write_nothing_on(
        spawn_with(secured).await,
    )
    .await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn appends_need_the_header_and_a_publish_grant_and_refusals_write_nothing_on(
    mut app: TestApp,
) {
    let everything = token::token(&["*"], &[]);
    // "Nothing written" is checked by reading the whole log, which needs `*`.
    app.reader_token = Some(everything.clone());
    publish(&app, "news.eu", json!({"already": "here"})).await;
    let post = |path: &str, via: Via| {
        request(&app, reqwest::Method::POST, path, via).json(&json!({"n": 1}))
    };
    let writer = token::token(&[], &["orders.eu", "default"]);
    let subscriber = token::token(&["*"], &[]);
    let expired = token::hs256(&token::claims(-3600, &[], &["*"]));
    let cases: Vec<(&str, Via, u16, &str)> = vec![
        ("/topics/orders.eu/facts", Via::Nothing, 401, "no token"),
        ("/facts", Via::Nothing, 401, "no token, default topic"),
        ("/fact", Via::Nothing, 401, "no token, the tutorial's route"),
        (
            "/topics/orders.eu/facts",
            Via::Cookie(&writer),
            401,
            "a granting cookie",
        ),
        (
            "/topics/orders.eu/facts",
            Via::Query(&writer),
            401,
            "a granting query token",
        ),
        (
            "/topics/orders.eu/facts",
            Via::Header(&subscriber),
            403,
            "a subscribe grant",
        ),
        (
            "/topics/orders.us/facts",
            Via::Header(&writer),
            403,
            "another topic",
        ),
        (
            "/topics/orders.eu.x/facts",
            Via::Header(&writer),
            403,
            "a longer name",
        ),
        (
            "/topics/orders.eu/facts",
            Via::Header(&expired),
            401,
            "an expired token",
        ),
        (
            "/topics/orders.eu/facts",
            Via::Header("static-publisher-toke"),
            401,
            "most of the static token",
        ),
    ];
    for (path, via, status, what) in cases {
        expect_refused(&app, post(path, via), status, what).await;
    }
    let challenge = post("/topics/orders.us/facts", Via::Header(&writer))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        header(&challenge, "www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );

    // What is granted is written, and read back by a reader of every topic.
    let mut written = Vec::new();
    for (path, via) in [
        ("/topics/orders.eu/facts", Via::Header(&writer)),
        ("/facts", Via::Header(&writer)),
        ("/fact", Via::Header(&writer)),
        ("/topics/anything.at.all/facts", Via::Header(PUBLISH_TOKEN)),
    ] {
        let response = post(path, via).send().await.expect("answered");
        assert_eq!(response.status(), 201, "{path}");
        written.push(response.json::<Value>().await.expect("a record")["id"].clone());
    }
    let response = request(
        &app,
        reqwest::Method::GET,
        "/facts",
        Via::Header(&everything),
    )
    .send()
    .await
    .expect("answered");
    let page: Value = response.json().await.expect("a page");
    assert_eq!(ids_of(&page).len(), 1 + written.len(), "{page}");
}
