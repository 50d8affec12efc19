//! The OpenAPI description (`/openapi.json`, shown by `/docs`) covers every route the
//! server answers, and says what each answers: the event streams as `text/event-stream`
//! with their frames and parameters, the operators' routes, the page and its module, and
//! who may call what.
//!
//! "Every route" is not a list kept here: the routes are read from the source (each
//! `#[oai(path = ...)]` operation and each `.at(...)`/`.nest(...)` of the router), and
//! each operation of the description is requested: it must answer with a status and
//! content type the description lists, and on a server that needs tokens, ask for one
//! only where it declares the schemes and take each scheme it declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use factlog_testkit::*;

/// The routes the description does not describe: itself, and the page that shows it.
const UNDESCRIBED: &[&str] = &["/openapi.json", "/docs"];

async fn description(app: &TestApp) -> Value {
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    doc
}

fn paths(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The string literal right after each `marker` in `source`.
fn literals_after<'a>(source: &'a str, marker: &str) -> Vec<&'a str> {
    source
        .match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = source[at + marker.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// Every route `src/http/` declares, as the description writes paths (`{topic}` for
/// poem's `:topic`): the API's operations and the router's own routes.
fn declared_routes() -> BTreeSet<String> {
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut routes = BTreeSet::new();
    for file in rust_files(&http) {
        let source = std::fs::read_to_string(&file).expect("a source file");
        let found = ["path =", ".at(", ".nest("]
            .into_iter()
            .flat_map(|marker| literals_after(&source, marker));
        for route in found.filter(|r| r.starts_with('/')) {
            let route: Vec<String> = route
                .split('/')
                .map(|s| match s.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => s.to_owned(),
                })
                .collect();
            routes.insert(route.join("/"));
        }
    }
    routes
}

#[tokio::test]
async fn every_route_of_the_router_is_described() {
    let app = spawn_app().await;
    let described = paths(&description(&app).await);
    let declared = declared_routes();
    // The scan finds what it is for (the streams were plain handlers once).
    for route in [
        "/facts",
        "/events",
        "/topics/{topic}/events",
        "/metrics",
        "/docs",
    ] {
        assert!(declared.contains(route), "the scan misses {route}");
    }
    let missing: Vec<&String> = declared
        .iter()
        .filter(|route| !described.contains(*route) && !UNDESCRIBED.contains(&route.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes not in /openapi.json: {missing:?}"
    );
}

/// The essence of a content type: `text/event-stream`, without parameters.
fn media(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Where a request presents a token.
#[derive(Clone, Copy, Debug)]
enum Present<'t> {
    Nothing,
    Bearer(&'t str),
    Cookie(&'t str),
    Query(&'t str),
}

/// What one described operation answered.
#[derive(Debug)]
struct Answer {
    what: String,
    status: u16,
    /// The content type sent, without parameters.
    sent: String,
    /// The content types the description lists for that status.
    listed: Vec<String>,
    /// The security schemes the operation declares.
    schemes: Vec<String>,
}

/// Requests every operation of `doc` once, presenting `present`, with "1" for every path
/// parameter and a JSON body for a POST. An event stream's answer is its head; the stream
/// is dropped with it.
async fn answer_each(app: &TestApp, doc: &Value, present: Present<'_>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        let url: Vec<&str> = path
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect();
        let mut url = app.url(&url.join("/"));
        if let Present::Query(token) = present {
            url.push_str(&format!("?access_token={token}"));
        }
        for (method, operation) in operations.as_object().expect("operations") {
            let method: reqwest::Method = method.to_uppercase().parse().expect("a method");
            let mut request = app.client.request(method.clone(), &url);
            if method == reqwest::Method::POST {
                request = request.json(&json!({"from": "the description"}));
            }
            request = match present {
                Present::Bearer(token) => request.bearer_auth(token),
                Present::Cookie(token) => {
                    request.header("cookie", format!("factlog_token={token}"))
                }
                Present::Nothing | Present::Query(_) => request,
            };
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            let sent = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(media)
                .unwrap_or_default();
            let listed = operation["responses"][status.to_string()]["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.keys().map(|k| media(k)))
                .collect();
            let schemes = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                .collect();
            answers.push(Answer {
                what: format!("{method} {path} ({present:?})"),
                status,
                sent,
                listed,
                schemes,
            });
        }
    }
    assert!(
        answers.len() > 10,
        "only {} operations described",
        answers.len()
    );
    answers
}

#[tokio::test]
async fn every_described_operation_answers_as_described() {
    let app = spawn_app().await;
    // Something to find at every `{param}` = "1": topic "1" holds fact 1.
    app.append_at("/topics/1/facts", &json!({"n": 1})).await;
    let doc = description(&app).await;
    for answer in answer_each(&app, &doc, Present::Nothing).await {
        let Answer { what, status, .. } = &answer;
        assert!(
            *status != 404 && *status != 405,
            "{what} is described but answers {status}"
        );
        assert!(
            !answer.listed.is_empty(),
            "{what} answers {status}, which its description does not list"
        );
        assert!(
            answer.listed.contains(&answer.sent),
            "{what}: sends {:?}, described as {:?}",
            answer.sent,
            answer.listed
        );
    }
    for path in UNDESCRIBED {
        let response = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200, "{path}");
    }
}

/// On a server where every read and append needs a token, the operations that ask for one
/// are those that declare the schemes, and each declared scheme is one they take.
#[tokio::test]
async fn the_token_schemes_are_declared_where_tokens_are_taken() {
    let app = spawn_with(|c| {
        crate::access::secured(c);
        c.public_topics = String::new();
    })
    .await;
    let everything = token::token(&["*"], &["*"]);
    app.append_presenting("/topics/1/facts", &json!({"n": 1}), Some(&everything))
        .await;
    let doc = description(&app).await;

    let refused = answer_each(&app, &doc, Present::Nothing).await;
    let refused: Vec<&Answer> = refused.iter().filter(|a| a.status == 401).collect();
    for what in [
        "GET /events",
        "GET /topics/{topic}/events",
        "POST /facts",
        "GET /facts",
    ] {
        assert!(
            refused
                .iter()
                .any(|a| a.what.starts_with(&format!("{what} "))),
            "{what} needs a token here: {refused:#?}"
        );
    }
    for answer in refused {
        assert!(
            answer.schemes.iter().any(|s| s == "bearerToken"),
            "{} asks for a token but declares none",
            answer.what
        );
    }
    for answer in answer_each(&app, &doc, Present::Bearer(&everything)).await {
        assert!(
            answer.status != 401 && answer.status != 403,
            "{}: {}",
            answer.what,
            answer.status
        );
    }
    for (present, scheme) in [
        (Present::Cookie(&everything), "cookieToken"),
        (Present::Query(&everything), "queryToken"),
    ] {
        for answer in answer_each(&app, &doc, present).await {
            if answer.schemes.iter().any(|s| s == scheme) {
                assert!(
                    answer.status != 401 && answer.status != 403,
                    "{} declares {scheme} but answers {}",
                    answer.what,
                    answer.status
                );
            } else if !answer.schemes.is_empty() {
                assert_eq!(
                    answer.status, 401,
                    "{} takes {scheme} undeclared",
                    answer.what
                );
            }
        }
    }
}

#[tokio::test]
async fn the_streams_are_described_as_event_streams_with_their_frames_and_parameters() {
    let app = spawn_app().await;
    let doc = description(&app).await;
    for path in ["/events", "/topics/{topic}/events"] {
        let operation = &doc["paths"][path]["get"];
        let ok = &operation["responses"]["200"];
        assert!(
            ok["content"]["text/event-stream"].is_object(),
            "{path}: {ok}"
        );
        let frames = ok["description"].as_str().expect("a description");
        for frame in [
            "retry:",
            "id:",
            "event:",
            "data:",
            "event: reset",
            "event: token-expired",
            ": keep-alive",
        ] {
            assert!(frames.contains(frame), "{path} does not describe {frame:?}");
        }
        for header in ["Cache-Control", "X-Accel-Buffering"] {
            assert!(ok["headers"][header].is_object(), "{path}: {header}");
        }
        let params: BTreeSet<(String, String)> = operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| {
                let name = p["name"].as_str().expect("a name").to_owned();
                (name, p["in"].as_str().expect("in").to_owned())
            })
            .collect();
        let mut expected = vec![
            ("Last-Event-ID", "header"),
            ("lastEventId", "query"),
            ("after", "query"),
            ("tail", "query"),
            ("event", "query"),
            ("format", "query"),
        ];
        expected.push(if path == "/events" {
            ("topic", "query")
        } else {
            ("topic", "path")
        });
        for (name, place) in expected {
            assert!(
                params.contains(&(name.to_owned(), place.to_owned())),
                "{path}: no {place} parameter {name}: {params:?}"
            );
        }
        let schemes: Vec<String> = operation["security"]
            .as_array()
            .expect("security")
            .iter()
            .flat_map(|s| s.as_object().into_iter().flat_map(|o| o.keys().cloned()))
            .collect();
        assert_eq!(
            schemes,
            ["bearerToken", "cookieToken", "queryToken"],
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_operators_routes_and_the_page_are_described() {
    let app = spawn_app().await;
    let doc = description(&app).await;
    let content = |path: &str| doc["paths"][path]["get"]["responses"]["200"]["content"].clone();
    assert!(
        content("/metrics")["application/openmetrics-text; version=1.0.0; charset=utf-8"]
            .is_object()
    );
    assert!(content("/healthz")["application/json; charset=utf-8"].is_object());
    assert!(content("/")["text/html; charset=utf-8"].is_object());
    assert!(content("/factlog.js")["text/javascript; charset=utf-8"].is_object());
    for path in ["/metrics", "/healthz", "/", "/factlog.js", "/status"] {
        assert!(
            doc["paths"][path]["get"]["security"].is_null(),
            "{path} needs no token"
        );
    }
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let names: Vec<&String> = schemes.keys().collect();
    assert_eq!(names, ["bearerToken", "cookieToken", "queryToken"]);
}
