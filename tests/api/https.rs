//! HTTPS (`--tls-cert`, `--tls-key`): HTTP/2 and HTTP/1.1 by ALPN, streams and resume over
//! HTTP/2, a stalled HTTP/2 reader, shutdown with streams open, the certificate replaced on
//! SIGHUP, and the handshake's deadline. The certificates are self-signed, made by the test.

use std::time::Duration;

use reqwest::Version;
use serde_json::json;

use factlog_testkit::tls::{
    TestCert, builder_trusting, client_trusting, http1_client_trusting, until_served,
};
use factlog_testkit::*;

use crate::slow_readers::read_all_in_order;

fn pem(app: &TestApp) -> Vec<u8> {
    std::fs::read(app.config.tls_cert.as_ref().expect("a certificate")).expect("readable")
}

#[tokio::test]
async fn https_offers_http2_and_http1_by_alpn() {
    let app = spawn_https(|_| {}).await;
    let response = app.post_fact(&json!({"over": "h2"})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.version(), Version::HTTP_2);

    let http1 = http1_client_trusting(&pem(&app));
    let response = http1
        .post(app.url("/facts"))
        .json(&json!({"over": "http/1.1"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    assert_eq!(response.version(), Version::HTTP_11);

    let page = app.client.get(app.url("/")).send().await.expect("the page");
    assert_eq!(
        (page.status().as_u16(), page.version()),
        (200, Version::HTTP_2)
    );
    // Plain HTTP on the HTTPS port is no answer at all, not a page in the clear.
    assert!(
        reqwest::get(format!("http://{}/status", app.addr))
            .await
            .is_err()
    );
    assert_eq!(app.all_ids().await, [1, 2]);
}

/// Twelve streams on the one HTTP/2 connection the client keeps (a browser's twelve tabs
/// would be more than HTTP/1.1's six connections): every fact reaches every stream once.
#[tokio::test]
async fn twelve_streams_share_one_http2_connection() {
    let app = spawn_https(|_| {}).await;
    let mut streams = Vec::new();
    for _ in 0..12 {
        let mut stream = app.events("", None).await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
        streams.push(stream);
    }
    for n in 1..=5 {
        app.append(&json!({ "n": n })).await;
    }
    for stream in &mut streams {
        let ids: Vec<i64> = stream.take(5).await.iter().map(Event::id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }
    let status = app.status().await;
    assert_eq!(status["clients"], 12);
}

#[tokio::test]
async fn resume_over_http2_across_a_restart() {
    let app = spawn_https(|_| {}).await;
    for n in 1..=3 {
        app.append(&json!({ "n": n })).await;
    }
    let mut stream = app.events("", None).await;
    let seen: Vec<i64> = stream.take(3).await.iter().map(Event::id).collect();
    assert_eq!(seen, [1, 2, 3]);
    drop(stream);

    let app = app.restart().await;
    for n in 4..=6 {
        app.append(&json!({ "n": n })).await;
    }
    let mut resumed = app.events("", Some("3")).await;
    assert_eq!(resumed.status, 200);
    let ids: Vec<i64> = resumed.take(3).await.iter().map(Event::id).collect();
    assert_eq!(ids, [4, 5, 6], "exactly the facts after the last one seen");
    app.append(&json!({"n": 7})).await;
    assert_eq!(resumed.next_event().await.map(|e| e.id()), Some(7));
}

/// 200 streams on one HTTP/2 connection stop reading while 3,000 facts are posted, one per
/// commit: flow control stops each stream's writes, the server's memory stays bounded,
/// and every stream, once read again, gets every fact in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_readers_cost_bounded_memory_and_lose_nothing() {
    const STREAMS: usize = 200;
    const FACTS: i64 = 3_000;
    let dir = tempfile::TempDir::new().expect("a directory");
    let cert = TestCert::write(dir.path(), "factlog test");
    let cert_path = cert.cert.display().to_string();
    let key_path = cert.key.display().to_string();
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &[
            "--sync",
            "normal",
            "--tls-cert",
            &cert_path,
            "--tls-key",
            &key_path,
        ],
    );
    let base = server.base();
    assert!(base.starts_with("https://"));
    let client = client_trusting(&cert.pem);
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let response = client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("a stream");
        assert_eq!(
            (response.status().as_u16(), response.version()),
            (200, Version::HTTP_2)
        );
        streams.push(response);
    }
    let before = server.rss_kib();
    let mut peak = before;
    let big = "x".repeat(1000);
    for i in 0..FACTS {
        let response = client
            .post(format!("{base}/facts"))
            .json(&json!({ "i": i, "pad": big }))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 201);
        if i % 500 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    peak = peak.max(server.rss_kib());
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("server memory: {before} KiB before, peak {peak} KiB, +{growth_mib} MiB");
    // Unbounded, each stream would hold all 3 MB of frames: 600 MB.
    assert!(
        growth_mib < 128,
        "200 stalled HTTP/2 streams must not hold more than 128 MiB (held {growth_mib} MiB)"
    );
    let reads = streams
        .into_iter()
        .map(|response| tokio::spawn(read_all_in_order(response, 1, FACTS)));
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.expect("a reader"), FACTS);
    }
}

/// Shutting down with streams open on an HTTP/2 connection: the streams end, the
/// connection is told to go away, and the server stops in time.
#[tokio::test]
async fn shutdown_ends_http2_streams_and_stops() {
    let app = spawn_https(|_| {}).await;
    app.append(&json!(1)).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = app.events("", None).await;
        assert_eq!(stream.next_event().await.map(|e| e.id()), Some(1));
        streams.push(stream);
    }
    let stopped = app.stop_for_restart().await;
    for stream in &mut streams {
        assert_eq!(stream.next_frame().await, None, "the stream ended");
    }
    // Started again on the same address and file, the browser's reconnect resumes.
    let app = stopped.start().await;
    app.append(&json!(2)).await;
    let mut resumed = app.events("", Some("1")).await;
    assert_eq!(resumed.next_event().await.map(|e| e.id()), Some(2));
}

/// A renewed certificate (certbot's deploy hook sends SIGHUP): new connections get it,
/// open streams carry on; a broken renewal leaves the one in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_streams() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let first = TestCert::write(dir.path(), "first");
    let cert_path = first.cert.display().to_string();
    let key_path = first.key.display().to_string();
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &["--tls-cert", &cert_path, "--tls-key", &key_path],
    );
    let base = server.base();
    let old_client = client_trusting(&first.pem);
    let append = |client: reqwest::Client, n: i64| {
        let base = base.clone();
        async move {
            let response = client
                .post(format!("{base}/facts"))
                .json(&json!({ "n": n }))
                .send()
                .await
                .expect("answered");
            assert_eq!(response.status(), 201);
        }
    };
    append(old_client.clone(), 1).await;
    let response = old_client
        .get(format!("{base}/events"))
        .send()
        .await
        .expect("a stream");
    let mut stream = SseStream::new(response);
    assert_eq!(stream.next_event().await.map(|e| e.id()), Some(1));

    let renewed = TestCert::write(dir.path(), "renewed");
    server.signal("HUP");
    let new_client = client_trusting(&renewed.pem);
    until_served(&new_client, &base).await;
    let trusting_only_the_old = client_trusting(&first.pem);
    assert!(
        trusting_only_the_old
            .get(format!("{base}/status"))
            .send()
            .await
            .is_err(),
        "new connections no longer get the old certificate"
    );
    append(new_client.clone(), 2).await;
    assert_eq!(
        stream.next_event().await.map(|e| e.id()),
        Some(2),
        "the stream opened before the reload goes on"
    );

    std::fs::write(&renewed.key, "not a key").expect("written");
    server.signal("HUP");
    let started = std::time::Instant::now();
    while !server
        .logged()
        .iter()
        .any(|line| line.contains("was not reloaded"))
    {
        assert!(started.elapsed() < WAIT, "the failed reload is logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    append(client_trusting(&renewed.pem), 3).await;
    assert_eq!(stream.next_event().await.map(|e| e.id()), Some(3));
    server.signal("TERM");
    let log = server.finish(WAIT);
    assert!(
        log.iter()
            .any(|l| l.contains("SIGHUP: the TLS certificate was reloaded"))
    );
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_with_a_clear_error() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let cert = TestCert::write(dir.path(), "one");
    let other = tempfile::TempDir::new().expect("a directory");
    let other_cert = TestCert::write(other.path(), "two");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").expect("written");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            &cert.cert,
            &other_cert.key,
            "are not a certificate and its key",
        ),
        (&garbage, &cert.key, "no certificate in it"),
        (&cert.cert, &garbage, "no PEM private key in it"),
        (&missing, &cert.key, "cannot read"),
    ];
    for (cert_file, key_file, expected) in cases {
        let output = factlog_command(
            &db,
            "127.0.0.1:0",
            &[
                "--tls-cert",
                &cert_file.display().to_string(),
                "--tls-key",
                &key_file.display().to_string(),
            ],
        )
        .output()
        .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    let output = factlog_command(&db, "127.0.0.1:0", &["--tls-cert", "cert.pem"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
    assert!(!db.exists(), "nothing was created");
}

/// A connection that never finishes its TLS handshake is closed after the header timeout.
#[tokio::test]
async fn a_handshake_that_never_comes_is_cut_off() {
    let app = spawn_https(|c| c.header_timeout_secs = 1).await;
    let mut silent = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connected");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut silent, &mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    // Served connections are not affected.
    assert_eq!(app.status().await["clients"], 0);
}

/// `--max-connections` counts TLS connections like any other: at the limit a new one waits
/// (its handshake is not even started) until one closes.
#[tokio::test]
async fn tls_connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = spawn_https(|c| c.max_connections = 2).await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        // A client each, so a connection each.
        let response = http1_client_trusting(&pem(&app))
            .get(app.url("/events"))
            .send()
            .await
            .expect("a stream");
        assert_eq!(response.status(), 200);
        streams.push(SseStream::new(response));
    }
    let waiting = builder_trusting(&pem(&app))
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a client");
    assert!(waiting.get(app.url("/status")).send().await.is_err());
    drop(streams.pop());
    assert_eq!(app.status().await["clients"], 1);
}

/// An HTTP/2 connection that finishes its handshake and then opens no stream is closed
/// after the header timeout, as an HTTP/1.1 one that sends no request is.
#[tokio::test]
async fn an_http2_connection_that_asks_nothing_is_cut_off() {
    use rustls::pki_types::pem::PemObject as _;
    let app = spawn_https(|c| c.header_timeout_secs = 1).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(&pem(&app)).expect("PEM"))
        .expect("a root");
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connected");
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::IpAddress(app.addr.ip().into()),
            tcp,
        )
        .await
        .expect("the handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await {
                Ok(0) => return Ok(0),
                Ok(_) => continue,
                Err(err) => return Err(err),
            }
        }
    })
    .await
    .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
}

/// The live page's own POST over HTTP/2 carries no `Host` header, only the authority: with
/// `--cors-origin` narrowed to another site it is still the page's own.
#[tokio::test]
async fn a_same_origin_post_over_http2_is_not_refused() {
    let app = spawn_https(|c| c.cors_origins = vec!["https://elsewhere.test".into()]).await;
    let response = app
        .client
        .post(app.url("/facts"))
        .header("origin", format!("https://{}", app.addr))
        .json(&json!({"from": "the page"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 201);
}
