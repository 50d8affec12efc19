//! Readers that do not keep up, and crowds that leave at once: the server's memory stays
//! bounded and nobody loses a fact.

use std::time::Duration;

use serde_json::json;

use factlog_testkit::*;

/// Reads a stream's body until the fact with id `last`, checking that ids come one by one
/// from `first`; returns how many it read.
pub(crate) async fn read_all_in_order(response: reqwest::Response, first: i64, last: i64) -> i64 {
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
            // The first frame follows the `retry:` line.
            let id_line = frame
                .split(|&b| b == b'\n')
                .find_map(|line| line.strip_prefix(b"id: "));
            if let Some(id) = id_line {
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
