//! The durable watermark under `--sync full`: a fact that is committed but not yet synced
//! to disk is shown by nothing (no answer, read, summary or stream), nor counted by
//! retention, and everything shows it once the sync is done. The server runs with the
//! test hook that holds its sync while a file exists (CONTRIBUTING.md).

use std::path::Path;

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use sqlx::Connection as _;

use factlog_testkit::*;

/// `query`'s one number, read from the file itself with a connection of the test's own:
/// what is committed, whether or not the server shows it.
async fn in_file(db: &Path, query: &str) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .expect("the file opens");
    let value = sqlx::query_scalar(query)
        .fetch_one(&mut conn)
        .await
        .expect("read");
    let _ = conn.close().await;
    value
}

/// Waits until the file holds fact `id`.
async fn wait_for_commit(db: &Path, id: i64) {
    while in_file(db, "SELECT coalesce(max(id), 0) FROM facts").await < id {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

fn ids(page: &Value) -> Vec<i64> {
    page["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .map(|f| f["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn a_committed_fact_is_shown_by_nothing_until_it_is_durable() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let hold = dir.path().join("hold-sync");
    let mut command = factlog_command(&db, "127.0.0.1:0", &["--sync", "full"]);
    command.env("FACTLOG_TEST_HOLD_SYNC", &hold);
    let server = Process::spawn(command);
    let base = server.base();
    let client = reqwest::Client::new();

    let first = client
        .post(format!("{base}/topics/a/facts"))
        .json(&json!({ "n": 1 }))
        .send()
        .await
        .expect("posted");
    assert_eq!(first.status(), 201);
    let mut following = SseStream::new(
        client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("stream"),
    );
    assert_eq!(following.next_event().await.expect("fact 1").id(), 1);

    // Hold the sync, and post fact 2 (with a key) on another topic.
    std::fs::write(&hold, "").expect("hold file");
    let post = |client: reqwest::Client| {
        let url = format!("{base}/topics/b/facts");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("idempotency-key", "second")
                .json(&json!({ "n": 2 }))
                .send()
                .await
                .expect("answered");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        })
    };
    let posted = post(client.clone());
    // Committed to the file; from now on it only waits for the sync.
    wait_for_commit(&db, 2).await;
    // An idempotent retry finds the committed fact, and must not tell of it either.
    let retried = post(client.clone());

    let (_, page) = get(&client, format!("{base}/facts")).await;
    assert_eq!(ids(&page), [1], "a page");
    let (_, page) = get(&client, format!("{base}/facts?before=10")).await;
    assert_eq!(ids(&page), [1], "a page read backwards");
    let (_, page) = get(&client, format!("{base}/topics/b/facts")).await;
    assert_eq!(ids(&page), Vec::<i64>::new(), "the topic's page");
    let (_, page) = get(&client, format!("{base}/facts?topic=a&topic=b")).await;
    assert_eq!(ids(&page), [1], "a page of both topics");
    let (status, _) = get(&client, format!("{base}/facts/2")).await;
    assert_eq!(status, 404, "the fact by id");
    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["last_id"], 1, "/status");
    let (_, topics) = get(&client, format!("{base}/topics")).await;
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["a"], "the topic list");
    let (status, _) = get(&client, format!("{base}/topics/b")).await;
    assert_eq!(status, 404, "the topic's summary");
    // A stream asking for the newest fact starts after fact 1; one replaying topic b
    // from the start has nothing to replay.
    let mut tail = SseStream::new(
        client
            .get(format!("{base}/events?tail=1"))
            .send()
            .await
            .expect("stream"),
    );
    assert_eq!(tail.next_event().await.expect("the newest").id(), 1);
    let mut replay = SseStream::new(
        client
            .get(format!("{base}/events?topic=b"))
            .header("last-event-id", "0")
            .send()
            .await
            .expect("stream"),
    );
    let mut several = SseStream::new(
        client
            .get(format!("{base}/events?topic=a&topic=b"))
            .header("last-event-id", "0")
            .send()
            .await
            .expect("stream"),
    );
    assert_eq!(several.next_event().await.expect("fact 1").id(), 1);
    // Whatever has arrived by now: none of the streams has fact 2, and neither request
    // has its answer.
    assert!(
        following.next_event().now_or_never().is_none(),
        "a live stream"
    );
    assert!(tail.next_event().now_or_never().is_none(), "a tail stream");
    assert!(replay.next_event().now_or_never().is_none(), "a replay");
    assert!(
        several.next_event().now_or_never().is_none(),
        "a replay of both topics"
    );
    assert!(!posted.is_finished(), "the post is not answered");
    assert!(!retried.is_finished(), "the retry is not answered");

    // Released: every way of looking shows fact 2.
    std::fs::remove_file(&hold).expect("released");
    let (status, record) = posted.await.expect("the post");
    assert_eq!((status, record["id"].as_i64()), (201, Some(2)));
    let (status, record) = retried.await.expect("the retry");
    assert_eq!((status, record["id"].as_i64()), (200, Some(2)));
    for stream in [&mut following, &mut tail, &mut replay, &mut several] {
        let event = stream.next_event().await.expect("fact 2");
        assert_eq!((event.id(), event.json()), (2, json!({ "n": 2 })));
    }
    let (_, page) = get(&client, format!("{base}/facts")).await;
    assert_eq!(ids(&page), [1, 2]);
    let (status, _) = get(&client, format!("{base}/facts/2")).await;
    assert_eq!(status, 200);
    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["last_id"], 2);
    let (status, summary) = get(&client, format!("{base}/topics/b")).await;
    assert_eq!((status, summary["last_id"].as_i64()), (200, Some(2)));
}

/// `--retain-facts 1` counts only durable facts: while newer facts wait for their sync, the
/// newest durable fact is not deleted to make room for them (a power cut could take them
/// back and leave the log empty).
#[tokio::test]
async fn retention_counts_only_durable_facts() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let hold = dir.path().join("hold-sync");
    let mut command = factlog_command(
        &db,
        "127.0.0.1:0",
        &["--sync", "full", "--retain-facts", "1"],
    );
    command.env("FACTLOG_TEST_HOLD_SYNC", &hold);
    let server = Process::spawn(command);
    let base = server.base();
    let client = reqwest::Client::new();
    let post = |n: i64| {
        let (client, url) = (client.clone(), format!("{base}/facts"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "n": n }))
                .send()
                .await
                .expect("answered");
            response.status().as_u16()
        })
    };
    assert_eq!(post(1).await.expect("posted"), 201);
    // A retention step follows a group once a second has passed since the last one: past
    // it, the group of fact 2 is followed by a step.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    std::fs::write(&hold, "").expect("hold file");
    let second = post(2);
    wait_for_commit(&db, 2).await;
    // The writer takes the next group only after the step that followed fact 2's.
    let third = post(3);
    wait_for_commit(&db, 3).await;
    assert_eq!(
        in_file(&db, "SELECT count(*) FROM facts WHERE id = 1").await,
        1,
        "fact 1, the newest durable fact, is still in the file"
    );
    let (status, _) = get(&client, format!("{base}/facts/1")).await;
    assert_eq!(status, 200);

    std::fs::remove_file(&hold).expect("released");
    assert_eq!(second.await.expect("fact 2"), 201);
    assert_eq!(third.await.expect("fact 3"), 201);
    // Durable now, they count: the bound deletes down to fact 3.
    let started = std::time::Instant::now();
    loop {
        let (_, page) = get(&client, format!("{base}/facts")).await;
        if ids(&page) == [3] {
            break;
        }
        assert!(started.elapsed() < WAIT, "retention never ran: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
