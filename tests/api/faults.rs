//! What breaks such services in production: bad starts, a full disk, slow or malicious
//! connections, hostile input.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

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

/// Reads a stream's body until the fact with id `last`, checking that ids come one by one
/// from `first`; returns how many it read.
async fn read_all_in_order(response: reqwest::Response, first: i64, last: i64) -> i64 {
    use futures_util::StreamExt as _;
    let mut body = response.bytes_stream();
    let mut next = first;
    let mut carry: Vec<u8> = Vec::new();
    while next <= last {
        let chunk = body
            .next()
            .await
            .expect("the stream goes on")
            .expect("a chunk");
        carry.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(at) = carry[consumed..].windows(2).position(|w| w == b"\n\n") {
            let frame = &carry[consumed..consumed + at];
            consumed += at + 2;
            if let Some(id) = frame.strip_prefix(b"id: ") {
                let digits: Vec<u8> = id.iter().copied().take_while(u8::is_ascii_digit).collect();
                let id: i64 = std::str::from_utf8(&digits)
                    .expect("digits")
                    .parse()
                    .expect("an id");
                assert_eq!(id, next, "ids come one by one, in order");
                next += 1;
            }
        }
        carry.drain(..consumed);
    }
    next - first
}

/// 1,000 streams that stop reading while 5,000 facts are posted, one per commit (so five
/// times more groups than the in-memory buffer holds): the server's memory stays bounded,
/// and every stream, once it reads again, gets every fact in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_cost_bounded_memory_and_lose_nothing() {
    const STREAMS: usize = 1000;
    const FACTS: i64 = 5_000;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::TempDir::new().expect("a directory");
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &["--sync", "normal"],
    );
    let base = server.base();
    let client = reqwest::Client::new();
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        // Opened, and then not read at all until the end.
        let response = client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("a stream");
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let before = server.rss_kib();

    // One publisher, so that every fact is its own group and the stalled streams fall far
    // behind the in-memory buffer (1,024 groups) and must catch up from the database.
    let mut peak = before;
    for i in 0..FACTS {
        let response = client
            .post(format!("{base}/facts"))
            .json(&json!({ "i": i }))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 201);
        if i % 1000 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    peak = peak.max(server.rss_kib());
    let growth_mib = (peak.saturating_sub(before)) / 1024;
    eprintln!("server memory: {before} KiB before, peak {peak} KiB, +{growth_mib} MiB");
    assert!(
        growth_mib < 256,
        "1,000 stalled streams must not hold more than 256 MiB (held {growth_mib} MiB)"
    );

    let reads = streams
        .into_iter()
        .map(|response| tokio::spawn(read_all_in_order(response, 1, FACTS)));
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.expect("a reader"), FACTS);
    }
}

/// 10,000 open streams with facts flowing, then all of them gone at once: `clients` goes
/// back to 0 and the memory they took is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_streams_leave_at_once() {
    const STREAMS: usize = 10_000;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::TempDir::new().expect("a directory");
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &["--sync", "normal"],
    );
    let base = server.base();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .post(format!("{base}/facts"))
            .json(&json!("warm-up"))
            .send()
            .await
            .expect("answered")
            .status(),
        201
    );
    let before = server.rss_kib();

    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut socket = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connected");
        tokio::io::AsyncWriteExt::write_all(
            &mut socket,
            b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("sent");
        streams.push(socket);
    }
    let status = |client: reqwest::Client, base: String| async move {
        client
            .get(format!("{base}/status"))
            .send()
            .await
            .expect("answered")
            .json::<serde_json::Value>()
            .await
            .expect("JSON")
    };
    let deadline = std::time::Instant::now() + WAIT;
    while status(client.clone(), base.clone()).await["clients"] != STREAMS {
        assert!(std::time::Instant::now() < deadline, "all streams open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Facts flow to all of them.
    for i in 0..20 {
        let response = client
            .post(format!("{base}/facts"))
            .json(&json!({ "i": i }))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 201);
    }
    let mut first = streams.pop().expect("a stream");
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("id: 21\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut first, &mut buf)
            .await
            .expect("read");
        assert!(n > 0, "the stream is open");
        seen.extend_from_slice(&buf[..n]);
    }
    let peak = server.rss_kib();

    // All leave at once.
    drop(first);
    drop(streams);
    let deadline = std::time::Instant::now() + WAIT;
    while status(client.clone(), base.clone()).await["clients"] != 0 {
        assert!(std::time::Instant::now() < deadline, "clients returns to 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The allocator hands freed memory back over some seconds: wait for most of it.
    let taken = peak.saturating_sub(before);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = server.rss_kib();
        if now <= before + taken / 4 {
            eprintln!(
                "server memory: {before} KiB before, {peak} KiB with {STREAMS} streams, {now} KiB after"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "memory returns close to where it started: {before} KiB before, {peak} KiB peak, {now} KiB now"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
