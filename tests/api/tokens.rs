//! The tokens themselves: every way a token can be bad is a `401` with
//! `error="invalid_token"` (never taken for no token, even on a public topic); the
//! algorithm comes from the configuration only; RS256, ES256 and EdDSA with PEM public
//! keys; rotation; issuer and audience; `factlog token`; start-up refusing bad key flags;
//! and a token never showing in a response, a header or a log line.

use std::process::Command;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::access::{PUBLISH_TOKEN, Via, publish, read_status, request, secured};
use crate::support::*;
use factlog::config::JwtAlg;
use factlog_testkit::token::{self, SECRET, claims, hs256, hs256_with, key_path, signed};
use factlog_testkit::*;

#[tokio::test]
async fn a_bad_token_is_refused_even_where_no_token_is_needed() {
    let app = spawn_with(secured).await;
    publish(&app, "news.eu", json!({"n": 1})).await;
    let grants = json!({"subscribe": ["*"], "publish": ["*"]});
    let now = token::now();
    let cases = [
        (
            "signed with another secret",
            hs256_with(
                b"another-secret-0123456789abcdef-xyz",
                &claims(3600, &["*"], &[]),
            ),
        ),
        (
            "expired beyond the leeway",
            hs256(&claims(-120, &["*"], &[])),
        ),
        (
            "not valid yet",
            hs256(&json!({"exp": now + 7200, "nbf": now + 3600, "factlog": grants})),
        ),
        (
            "without exp",
            hs256(&json!({"sub": "x", "factlog": grants})),
        ),
        ("alg none", token::unsigned(&claims(3600, &["*"], &["*"]))),
        ("HS384 with the right secret", {
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("a key");
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS384),
                &claims(3600, &["*"], &[]),
                &key,
            )
            .expect("signed")
        }),
        (
            "a grant that is not a pattern",
            hs256(&claims(3600, &["orders*"], &[])),
        ),
        (
            "grants that are not lists",
            hs256(&json!({"exp": now + 60, "factlog": {"subscribe": "*"}})),
        ),
        ("not a token", "not-a-token".to_owned()),
        ("three dots of nothing", "..".to_owned()),
        ("a truncated token", {
            let t = token::token(&["*"], &[]);
            t[..t.len() - 3].to_owned()
        }),
    ];
    for (what, bad) in &cases {
        for via in [Via::Header(bad), Via::Cookie(bad), Via::Query(bad)] {
            // On a public topic too: a tab whose cookie went bad is told, not turned
            // anonymous.
            for path in [
                "/topics/news.eu/facts",
                "/topics/orders.eu/events",
                "/topics",
            ] {
                assert_eq!(
                    read_status(&app, path, via).await,
                    401,
                    "{what} via {via:?} at {path}"
                );
            }
        }
        let before = app.status().await["last_id"].clone();
        let response = request(
            &app,
            reqwest::Method::POST,
            "/topics/news.eu/facts",
            Via::Header(bad),
        )
        .json(&json!({"n": 2}))
        .send()
        .await
        .expect("answered");
        assert_eq!(
            header(&response, "www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{what}"
        );
        let message = expect_error(response, 401, what).await;
        assert!(
            !bad.is_empty() && !message.contains(bad.as_str()),
            "{what}: {message}"
        );
        assert_eq!(
            app.status().await["last_id"],
            before,
            "{what}: nothing written"
        );
    }
    // An empty bearer is a bad token too.
    let empty = app
        .client
        .get(app.url("/topics/news.eu/facts"))
        .header("authorization", "Bearer ");
    assert_eq!(empty.send().await.expect("answered").status(), 401);
    // Within the leeway (30 s by default), a just-expired token still reads.
    let just_expired = hs256(&claims(-5, &["*"], &[]));
    assert_eq!(
        read_status(&app, "/topics/orders.eu/facts", Via::Header(&just_expired)).await,
        200
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match_when_configured() {
    let app = spawn_with(|c| {
        secured(c);
        c.jwt_issuer = Some("https://auth.example".to_owned());
        c.jwt_audience = Some("factlog".to_owned());
    })
    .await;
    let with = |iss: Option<&str>, aud: Option<Value>| {
        let mut claims = claims(3600, &["*"], &[]);
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            claims["aud"] = aud;
        }
        hs256(&claims)
    };
    let cases = [
        (
            "both right",
            with(Some("https://auth.example"), Some(json!("factlog"))),
            200,
        ),
        (
            "aud as a list",
            with(
                Some("https://auth.example"),
                Some(json!(["other", "factlog"])),
            ),
            200,
        ),
        (
            "wrong issuer",
            with(Some("https://evil.example"), Some(json!("factlog"))),
            401,
        ),
        (
            "wrong audience",
            with(Some("https://auth.example"), Some(json!("other"))),
            401,
        ),
        ("no issuer", with(None, Some(json!("factlog"))), 401),
        ("no audience", with(Some("https://auth.example"), None), 401),
    ];
    for (what, t, want) in cases {
        assert_eq!(
            read_status(&app, "/topics/orders.eu/facts", Via::Header(&t)).await,
            want,
            "{what}"
        );
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_verify_with_a_pem_public_key_and_the_token_never_chooses() {
    let kinds = [
        (JwtAlg::Rs256, Algorithm::RS256, "rsa"),
        (JwtAlg::Es256, Algorithm::ES256, "ec"),
        (JwtAlg::EdDsa, Algorithm::EdDSA, "ed"),
    ];
    for (alg, algorithm, kind) in kinds {
        let public = key_path(&format!("{kind}-public.pem"));
        let app = spawn_with(|c| {
            secured(c);
            c.jwt_alg = alg;
            c.jwt_keys = vec![format!("@{}", public.display())];
        })
        .await;
        let good = signed(
            algorithm,
            kind,
            &claims(3600, &["orders.*"], &["orders.eu"]),
        );
        assert_eq!(
            read_status(&app, "/topics/orders.eu/facts", Via::Header(&good)).await,
            200,
            "{kind}"
        );
        let response = request(
            &app,
            reqwest::Method::POST,
            "/topics/orders.eu/facts",
            Via::Header(&good),
        )
        .json(&json!({"signed": kind}))
        .send()
        .await
        .expect("answered");
        assert_eq!(response.status(), 201, "{kind}: a publish grant");

        // Algorithm confusion: an HS256 token whose secret is the public key file, the
        // test secret, or no signature at all.
        let pem = std::fs::read(&public).expect("the public key");
        let forged = [
            (
                "HS256 with the public key",
                hs256_with(&pem, &claims(3600, &["*"], &["*"])),
            ),
            (
                "HS256 with the secret",
                hs256(&claims(3600, &["*"], &["*"])),
            ),
            ("alg none", token::unsigned(&claims(3600, &["*"], &["*"]))),
        ];
        for (what, t) in &forged {
            assert_eq!(
                read_status(&app, "/topics/orders.eu/facts", Via::Header(t)).await,
                401,
                "{kind}: {what}"
            );
        }
        for (_, _, other) in kinds.iter().filter(|k| k.2 != kind) {
            let other_alg = kinds.iter().find(|k| k.2 == *other).expect("a kind").1;
            let t = signed(other_alg, other, &claims(3600, &["*"], &[]));
            assert_eq!(
                read_status(&app, "/topics/orders.eu/facts", Via::Header(&t)).await,
                401,
                "{kind} server, {other} token"
            );
        }
    }
}

#[tokio::test]
async fn two_keys_verify_during_a_rotation() {
    let old = "the-old-secret-0123456789abcdef-0123";
    let app = spawn_with(|c| {
        secured(c);
        c.jwt_keys = vec![SECRET.to_owned(), old.to_owned()];
    })
    .await;
    let by = |secret: &str| hs256_with(secret.as_bytes(), &claims(3600, &["orders.*"], &[]));
    assert_eq!(
        read_status(&app, "/topics/orders.eu/facts", Via::Header(&by(SECRET))).await,
        200
    );
    assert_eq!(
        read_status(&app, "/topics/orders.eu/facts", Via::Header(&by(old))).await,
        200
    );
    let stranger = by("a-third-secret-0123456789abcdef-0123");
    assert_eq!(
        read_status(&app, "/topics/orders.eu/facts", Via::Header(&stranger)).await,
        401
    );
}

/// Runs `factlog` with `args` (no server flags) and returns (success, stdout, stderr).
fn run_factlog(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(factlog_binary())
        .args(args)
        .env_remove("FACTLOG_JWT_KEYS")
        .output()
        .expect("factlog runs");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8");
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[tokio::test]
async fn factlog_token_mints_a_token_the_server_accepts() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("written");
    let key = format!("@{}", secret_file.display());
    let (ok, stdout, stderr) = run_factlog(&[
        "token",
        "--jwt-key",
        &key,
        "--sub",
        "alice",
        "--subscribe",
        "orders.*",
        "--publish",
        "orders.eu",
        "--ttl",
        "1h",
    ]);
    assert!(ok, "{stderr}");
    let minted = stdout.trim().to_owned();
    assert_eq!(
        minted.split('.').count(),
        3,
        "one JWT on stdout: {stdout:?}"
    );

    let app = spawn_with(secured).await;
    assert_eq!(
        read_status(&app, "/topics/orders.us/facts", Via::Header(&minted)).await,
        200
    );
    for (topic, want) in [("orders.eu", 201), ("orders.us", 403)] {
        let response = request(
            &app,
            reqwest::Method::POST,
            &format!("/topics/{topic}/facts"),
            Via::Header(&minted),
        )
        .json(&json!({"by": "alice"}))
        .send()
        .await
        .expect("answered");
        assert_eq!(response.status(), want, "publishing to {topic}");
    }
    let refused = request(
        &app,
        reqwest::Method::POST,
        "/topics/orders.us/facts",
        Via::Header(&minted),
    )
    .json(&json!({}))
    .send()
    .await
    .expect("answered");
    let message = expect_error(refused, 403, "a topic not granted").await;
    assert!(
        message.contains("orders.us") && message.contains("alice"),
        "{message}"
    );

    // Mistakes are caught when minting, in one line.
    for (args, says) in [
        (
            vec!["token", "--jwt-key", "short", "--subscribe", "x"],
            "32 bytes",
        ),
        (
            vec!["token", "--jwt-key", SECRET, "--subscribe", "orders*"],
            "--subscribe",
        ),
        (vec!["token", "--jwt-key", SECRET, "--ttl", "soon"], "--ttl"),
    ] {
        let (ok, stdout, stderr) = run_factlog(&args);
        assert!(!ok && stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn bad_key_flags_stop_the_server_at_start_with_the_reason() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello\n").expect("written");
    let private = key_path("rsa-private.pem").display().to_string();
    let ec_public = key_path("ec-public.pem").display().to_string();
    let missing = dir.path().join("missing.txt").display().to_string();
    let cases: [(&[&str], &str); 6] = [
        (&["--jwt-key", "too-short"], "32 bytes"),
        (&["--jwt-key", &format!("@{missing}")], "missing.txt"),
        (
            &[
                "--jwt-alg",
                "RS256",
                "--jwt-key",
                &not_a_key.display().to_string(),
            ],
            "--jwt-key",
        ),
        (
            &["--jwt-alg", "RS256", "--jwt-key", &ec_public],
            "--jwt-key",
        ),
        (&["--jwt-alg", "RS256", "--jwt-key", &private], "--jwt-key"),
        (
            &["--jwt-key", SECRET, "--public-topics", "news*"],
            "--public-topics",
        ),
    ];
    for (extra, says) in cases {
        let output = factlog_command(&db, "127.0.0.1:0", extra)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} starts");
        let lines: Vec<_> = stderr
            .lines()
            .filter(|l| l.contains("cannot start"))
            .collect();
        assert_eq!(lines.len(), 1, "{extra:?}: one line: {stderr}");
        assert!(lines[0].contains(says), "{extra:?}: {stderr}");
        assert!(!stderr.contains(SECRET), "the secret is not logged");
    }
}

#[tokio::test]
async fn a_token_never_appears_in_a_response_a_header_or_a_log_line() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let mut command = factlog_command(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &[
            "--jwt-key",
            SECRET,
            "--public-topics",
            "news.*",
            "--publish-token",
            PUBLISH_TOKEN,
        ],
    );
    command.env("RUST_LOG", "debug");
    let server = Process::spawn(command);
    let base = server.base();
    let client = reqwest::Client::new();
    let reader = token::token(&["orders.*"], &["orders.eu"]);
    let outsider = token::token(&["weather"], &[]);
    let expired = hs256(&claims(-3600, &["*"], &["*"]));
    let secrets = [
        reader.as_str(),
        outsider.as_str(),
        expired.as_str(),
        PUBLISH_TOKEN,
    ];

    let get = |path: String| client.get(format!("{base}{path}"));
    let post = |path: &str| client.post(format!("{base}{path}")).json(&json!({"n": 1}));
    let cookie = format!("factlog_token={expired}");
    let requests = [
        post("/topics/orders.eu/facts").bearer_auth(&reader),
        post("/facts").bearer_auth(PUBLISH_TOKEN),
        post("/topics/orders.us/facts").bearer_auth(&reader),
        get(format!("/topics/orders.eu/facts?access_token={reader}")),
        get(format!("/topics/orders.eu/facts?access_token={outsider}")),
        get(format!(
            "/topics/news.eu/facts?access_token={expired}&limit=x"
        )),
        get(format!("/facts?access_token={reader}&after=nope")),
        get("/topics/orders.eu/facts".into()).header("cookie", cookie),
    ];
    let mut seen = Vec::new();
    for request in requests {
        let response = request.send().await.expect("answered");
        assert_eq!(header(&response, "referrer-policy"), Some("no-referrer"));
        seen.push(format!("{} {:?}", response.status(), response.headers()));
        seen.push(response.text().await.expect("a body"));
    }
    // A stream opened with the token in its URL: the first frame, then gone.
    let stream = get(format!(
        "/topics/orders.eu/events?access_token={reader}&tail=1"
    ))
    .send()
    .await
    .expect("answered");
    seen.push(format!("{:?}", stream.headers()));
    let mut stream = SseStream::new(stream);
    seen.push(stream.next_frame().await.expect("a frame"));
    drop(stream);

    for text in &seen {
        for secret in secrets {
            let signature = secret.rsplit('.').next().unwrap_or(secret);
            assert!(
                !text.contains(signature),
                "a response holds a token: {text}"
            );
        }
    }
    server.signal("TERM");
    let log = server.finish(Duration::from_secs(20));
    // The start-up line says who may read and write, so a misspelt variable is seen.
    assert!(
        log.iter().any(|l| l.contains("listening on")
            && l.contains("anyone reads news.*, the rest needs a token")
            && l.contains("1 HS256 key")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("access_token=REDACTED")),
        "the URL is logged, redacted: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("tester")),
        "the subject is logged: {log:#?}"
    );
    for line in &log {
        for secret in secrets {
            let signature = secret.rsplit('.').next().unwrap_or(secret);
            assert!(
                !line.contains(signature),
                "a log line holds a token: {line}"
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_declares_the_token_schemes_and_where_they_apply() {
    let app = spawn_with(secured).await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerToken"]["type"], "http");
    assert_eq!(schemes["bearerToken"]["scheme"], "bearer");
    assert_eq!(schemes["cookieToken"]["in"], "cookie");
    assert_eq!(schemes["cookieToken"]["name"], "factlog_token");
    assert_eq!(schemes["queryToken"]["in"], "query");
    assert_eq!(schemes["queryToken"]["name"], "access_token");
    let names = |op: &Value| -> Vec<String> {
        op["security"]
            .as_array()
            .map(|list| {
                list.iter()
                    .flat_map(|s| s.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let post = &doc["paths"]["/topics/{topic}/facts"]["post"];
    assert_eq!(
        names(post),
        ["bearerToken"],
        "an append takes the header only"
    );
    let read = &doc["paths"]["/topics/{topic}/facts"]["get"];
    assert_eq!(names(read), ["bearerToken", "cookieToken", "queryToken"]);
    assert!(
        doc["paths"]["/status"]["get"]["security"].is_null(),
        "/status is open"
    );
}
