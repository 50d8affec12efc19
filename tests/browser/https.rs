//! The live page over HTTPS with HTTP/2, in Chromium trusting the test's self-signed
//! certificate (and only it): a page with twelve streams, twice what HTTP/1.1 allows a
//! host, has them all live on one connection; a renewed certificate loaded on SIGHUP
//! leaves an open page live and is what a new browser gets.

use factlog_testkit::tls::{TestCert, client_trusting, until_served};

use super::*;

/// Chromium's flag that trusts exactly these certificates' keys.
fn trusting(certs: &[&TestCert]) -> String {
    let hashes: Vec<&str> = certs.iter().map(|c| c.spki_sha256.as_str()).collect();
    format!("--ignore-certificate-errors-spki-list={}", hashes.join(","))
}

#[tokio::test]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn twelve_streams_of_one_page_are_live_over_http2() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let cert = TestCert::write(dir.path(), "factlog test");
    let app = spawn_with(|c| {
        c.tls_cert = Some(cert.cert.clone());
        c.tls_key = Some(cert.key.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let browser = browser_with(&[&trusting(&[&cert])]).await;
    browser.open(&app.base).await;
    browser.wait_for_state("live").await;
    assert_eq!(
        browser
            .js("return performance.getEntriesByType('navigation')[0].nextHopProtocol;")
            .await,
        json!("h2")
    );
    browser
        .js("window.got = []; window.streams = []; \
             for (let i = 0; i < 12; i++) { \
               const es = new EventSource('/events'); window.got.push([]); \
               es.onmessage = (e) => window.got[i].push(Number(e.lastEventId)); \
               window.streams.push(es); \
             }")
        .await;
    browser
        .wait_until(
            "twelve open streams",
            "return window.streams.every((es) => es.readyState === EventSource.OPEN);",
        )
        .await;
    for n in 1..=5 {
        app.append(&json!({ "n": n })).await;
    }
    browser
        .wait_until(
            "five facts on every stream",
            "return window.got.every((ids) => ids.length >= 5);",
        )
        .await;
    let got: Vec<Vec<i64>> =
        serde_json::from_value(browser.js("return window.got;").await).expect("ids");
    for ids in got {
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }
    browser.wait_for_rows(5).await;
    assert_once_in_order(&browser.row_ids().await, 1..=5);
    // The twelve, and the page's own.
    assert_eq!(app.status().await["clients"], 13);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_browser,
    ignore = "needs Chromium and chromedriver: apt-get install chromium chromium-driver"
)]
async fn a_renewed_certificate_leaves_the_page_live_and_is_what_new_browsers_get() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let first = TestCert::write(dir.path(), "first");
    let renewal_dir = tempfile::TempDir::new().expect("a directory");
    let renewed = TestCert::write(renewal_dir.path(), "renewed");
    let cert_path = first.cert.display().to_string();
    let key_path = first.key.display().to_string();
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &["--tls-cert", &cert_path, "--tls-key", &key_path],
    );
    let base = server.base();
    let post = |client: reqwest::Client, n: i64| {
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
    let browser = browser_with(&[&trusting(&[&first, &renewed])]).await;
    browser.open(&base).await;
    browser.wait_for_state("live").await;
    post(client_trusting(&first.pem), 1).await;
    browser.wait_for_rows(1).await;

    // The renewal: new files in place (as certbot's deploy hook copies them), then SIGHUP.
    std::fs::copy(&renewed.cert, &first.cert).expect("copied");
    std::fs::copy(&renewed.key, &first.key).expect("copied");
    server.signal("HUP");
    let renewed_client = client_trusting(&renewed.pem);
    until_served(&renewed_client, &base).await;
    post(renewed_client, 2).await;
    browser.wait_for_rows(2).await;
    assert_once_in_order(&browser.row_ids().await, 1..=2);
    assert_eq!(
        browser
            .js("return document.getElementById('state').textContent;")
            .await,
        json!("live"),
        "the page never lost its stream"
    );

    // A browser that trusts only the renewed certificate gets a page that works.
    let fresh = browser_with(&[&trusting(&[&renewed])]).await;
    fresh.open(&base).await;
    fresh.wait_for_state("live").await;
    fresh.wait_for_rows(2).await;
    assert_once_in_order(&fresh.row_ids().await, 1..=2);
    fresh.close().await;
    browser.close().await;
    server.signal("TERM");
    assert!(server.wait(WAIT));
}
