//! What breaks such services in production: bad starts, a full disk, slow or malicious
//! connections, hostile input.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use factlog_testkit::*;

/// Runs the binary until it exits; returns (success, stderr).
fn run_to_exit(db_url: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_factlog"))
        .args(["--listen", "127.0.0.1:0", "--database-url", db_url])
        .env("RUST_LOG", "factlog=info")
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A bad start is one line naming the problem and a failure status: no panic, no backtrace.
fn assert_clean_refusal(db_url: &str, names: &str) {
    let (ok, stderr) = run_to_exit(db_url);
    assert!(!ok, "{db_url}: must not start");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{db_url}: one line, got {stderr}");
    assert!(lines[0].contains("ERROR") && lines[0].contains("cannot start"));
    assert!(
        lines[0].contains(names),
        "{db_url}: the line names {names:?}: {}",
        lines[0]
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
}

#[test]
fn bad_starts_say_what_is_wrong_in_one_line() {
    let dir = tempfile::TempDir::new().expect("a directory");

    let missing = dir.path().join("no/such/dir/facts.db");
    assert_clean_refusal(&format!("sqlite://{}", missing.display()), "unable to open");

    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "these are my notes, not a database\n".repeat(200),
    )
    .expect("written");
    assert_clean_refusal(
        &format!("sqlite://{}", not_sqlite.display()),
        "not a database",
    );

    // A database migrated by a newer factlog: a migration this build does not know.
    let newer = dir.path().join("newer.db");
    let server = Process::start(&newer, "127.0.0.1:0", &[]);
    server.signal("TERM");
    assert!(server.wait(WAIT));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", newer.display()))
            .await
            .expect("opened");
        sqlx::query(
            "INSERT INTO _sqlx_migrations VALUES \
             (9999, 'from the future', datetime('now'), 1, x'00', 1)",
        )
        .execute(&mut conn)
        .await
        .expect("a migration from the future");
        conn.close().await.expect("closed");
    });
    assert_clean_refusal(&format!("sqlite://{}", newer.display()), "9999");

    assert_clean_refusal("mysql://nowhere/facts", "postgres://");
    for url in ["sqlite::memory:", "sqlite://facts.db?mode=memory"] {
        assert_clean_refusal(url, "in-memory database");
    }

    // A PostgreSQL server that is not there; its password never reaches the log.
    let unreachable = "postgres://factlog:s3cret@127.0.0.1:1/facts";
    assert_clean_refusal(
        unreachable,
        "cannot open the database postgres://factlog:***@",
    );
    let (_, stderr) = run_to_exit(unreachable);
    assert!(
        !stderr.contains("s3cret"),
        "the password is logged: {stderr}"
    );
}

/// Reads until the server closes the connection; true if it did within `limit`.
fn closed_within(mut socket: TcpStream, limit: Duration) -> bool {
    socket
        .set_read_timeout(Some(limit))
        .expect("a read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn silent_and_trickling_connections_are_cut_off() {
    let app = spawn_with(|c| c.header_timeout_secs = 1).await;
    let addr = app.addr;

    // Opens a connection and sends nothing.
    let silent = TcpStream::connect(addr).expect("connected");
    // Sends a request head one byte at a time, a byte every 300 ms: never finishing.
    let mut trickle = TcpStream::connect(addr).expect("connected");
    let trickling = std::thread::spawn(move || {
        for byte in b"GET /events HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*byte]).is_err() {
                return true; // cut off
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        closed_within(trickle, Duration::from_secs(10))
    });
    let silent_closed =
        tokio::task::spawn_blocking(move || closed_within(silent, Duration::from_secs(10)));

    // Meanwhile everyone else is served.
    assert_eq!(
        app.post_fact(&json!({ "served": true })).await.status(),
        201
    );
    assert!(
        silent_closed.await.expect("joined"),
        "a silent connection is closed"
    );
    assert!(
        tokio::task::spawn_blocking(move || trickling.join().expect("joined"))
            .await
            .expect("joined"),
        "a trickling request head is cut off"
    );
    assert_eq!(app.status().await["last_id"], 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = spawn_with(|c| c.max_connections = 8).await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(app.events("", None).await);
    }
    // The limit is full: a new connection is not served...
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a client");
    assert!(client.get(app.url("/status")).send().await.is_err());
    // ...until one closes.
    drop(streams.pop());
    let status = app.status().await;
    assert_eq!(status["clients"], 7);
}

#[tokio::test]
async fn hostile_requests_get_clean_4xx_and_write_nothing() {
    let app = spawn_app().await;
    let huge = "a".repeat(100 * 1024);
    let long = "a".repeat(60 * 1024);

    // An oversized header, and a huge query string.
    let response = app
        .client
        .post(app.url("/facts"))
        .header("x-huge", &huge)
        .json(&json!(1))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 431);
    let response = app
        .client
        .post(app.url(&format!("/facts?event={long}")))
        .json(&json!(1))
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_client_error(), "{}", response.status());

    // Thousands of event filters, on a stream and on a POST.
    let filters = (0..5000)
        .map(|i| format!("event=e{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let response = app
        .client
        .get(app.url(&format!("/events?{filters}")))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    let response = app
        .client
        .post(app.url(&format!("/facts?{filters}")))
        .json(&json!(1))
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_client_error(), "{}", response.status());

    // Hundreds of headers.
    let mut request = app.client.post(app.url("/facts")).json(&json!(1));
    for i in 0..500 {
        request = request.header(format!("x-h{i}"), "v");
    }
    let response = request.send().await;
    assert!(response.is_err() || response.is_ok_and(|r| r.status().is_client_error()));

    // NUL and CR in Last-Event-ID, sent raw (HTTP clients refuse to send them).
    for bad in ["1\0", "1\r2", "\0"] {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut socket = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connected");
        let request = format!("GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {bad}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("sent");
        let mut answer = [0u8; 12];
        tokio::time::timeout(WAIT, socket.read_exact(&mut answer))
            .await
            .expect("answered in time")
            .expect("an answer");
        assert!(
            answer.starts_with(b"HTTP/1.1 4"),
            "{bad:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    // The server is fine and nothing was written.
    assert_eq!(app.status().await["last_id"], 0);
    assert_eq!(
        app.post_fact(&json!({ "still": "fine" })).await.status(),
        201
    );
}

/// A disk that fills up: the server runs under a file-size limit (`RLIMIT_FSIZE`, which
/// makes writes past it fail as they would on a full disk), which is then lifted.
#[tokio::test]
async fn a_full_disk_refuses_posts_with_503_keeps_streams_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let mut command = Command::new("prlimit");
    // Soft limit 256 KiB, hard limit unlimited, so that it can be raised later.
    command.args(["--fsize=262144:unlimited", "--"]);
    let inner = factlog_command(&db, "127.0.0.1:0", &[]);
    command
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("RUST_LOG", "factlog=info")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let server = Process::spawn(command);
    let base = server.base();
    let client = reqwest::Client::new();
    let mut stream = SseStream::new(
        client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("a stream"),
    );
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));

    // Post facts of 1 KiB until the disk is "full".
    let pad = "x".repeat(1024);
    let mut acknowledged = 0;
    let refusal = loop {
        let response = client
            .post(format!("{base}/facts"))
            .json(&json!({ "n": acknowledged, "pad": pad }))
            .send()
            .await
            .expect("answered");
        if response.status() != 201 {
            break response;
        }
        acknowledged += 1;
        assert!(acknowledged < 10_000, "the limit was never hit");
    };
    assert_eq!(refusal.status(), 503);
    assert_eq!(refusal.headers()["retry-after"], "5");
    let body: serde_json::Value = refusal.json().await.expect("a JSON error");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));

    // Nothing of the refused group was written: the log is exactly what was acknowledged.
    let ids = all_ids(&client, &base).await;
    assert_eq!(ids, (1..=acknowledged).collect::<Vec<i64>>());
    let events = stream
        .take(usize::try_from(acknowledged).expect("a count"))
        .await;
    assert_consecutive(&events, 1);

    // Space returns: posting works again, without a restart, and the open stream goes on.
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &server.child.id().to_string(),
            "--fsize=unlimited:unlimited",
        ])
        .status()
        .expect("prlimit runs");
    assert!(status.success());
    let response = client
        .post(format!("{base}/facts"))
        .json(&json!({ "after": "space returned" }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    let next = stream.next_event().await.expect("the stream is still open");
    assert_eq!(next.id(), acknowledged + 1);
    assert_eq!(next.json(), json!({ "after": "space returned" }));
}

/// A database locked by another process past the busy timeout: the POST gets 503 with
/// `Retry-After` and a sentence for a person, never SQLite's own error text; the cause is
/// in the server's log beside the request's id; nothing is written.
#[tokio::test]
async fn a_locked_database_is_a_503_in_words_with_the_cause_logged() {
    use sqlx::Connection as _;
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let server = Process::start(&db, "127.0.0.1:0", &[]);
    let client = reqwest::Client::new();
    let base = server.base();
    let first = client
        .post(format!("{base}/facts"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(first.status(), 201);

    // Another process (a backup, an operator's shell) takes the write lock and keeps it.
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the database opens");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .expect("the write lock is taken");
    let refused = client
        .post(format!("{base}/facts"))
        .header("x-request-id", "locked-request-1")
        .json(&json!({"n": "never"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = refused.json().await.expect("a JSON error");
    let said = body["error"].as_str().expect("an error text");
    assert!(!said.is_empty());
    assert!(
        !said.contains("database is locked"),
        "SQLite's text is sent: {said}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("the lock is released");
    locker.close().await.expect("closed");

    assert_eq!(all_ids(&client, &base).await, [1], "nothing was written");
    server.signal("TERM");
    let log = server.finish(WAIT);
    assert!(
        log.iter()
            .any(|line| line.contains("locked-request-1") && line.contains("database is locked")),
        "the cause is logged with the request id: {log:#?}"
    );
}
