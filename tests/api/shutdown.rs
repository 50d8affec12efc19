//! The real binary under signals: SIGTERM with open streams exits promptly and cleanly;
//! SIGKILL during concurrent posting loses no acknowledged fact.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use factlog_testkit::*;

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_promptly() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let server = Process::start(&db, "127.0.0.1:0", &[]);
    let client = reqwest::Client::new();
    let base = server.base();
    client
        .post(format!("{base}/facts"))
        .json(&json!("one"))
        .send()
        .await
        .expect("posted");

    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("a stream");
        let mut stream = SseStream::new(response);
        assert_eq!(stream.next_event().await.map(|e| e.id()), Some(1));
        streams.push(stream);
    }

    server.signal("TERM");
    for stream in &mut streams {
        // The stream ends cleanly (no error, no hang).
        assert_eq!(stream.next_frame().await, None);
    }
    let clean = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(10)))
        .await
        .expect("waited");
    assert!(clean, "exit status 0 after SIGTERM");

    // Start again: the fact is there.
    let server = Process::start(&db, "127.0.0.1:0", &[]);
    let status: serde_json::Value = client
        .get(format!("{}/status", server.base()))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["last_id"], 1);
}

/// Many rounds of: 16 publishers post as fast as they can with `--sync full`, a stream
/// follows (resuming from where the previous round's stream stopped), and the process is
/// killed with SIGKILL after a different number of facts each round.
#[tokio::test]
async fn sigkill_rounds_during_concurrent_posting_lose_no_acknowledged_fact() {
    const ROUNDS: i64 = 6;
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let client = reqwest::Client::new();
    let mut acknowledged: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut seen: Vec<i64> = Vec::new();

    for round in 0..ROUNDS {
        let server = Process::start(&db, "127.0.0.1:0", &["--sync", "full"]);
        let base = server.base();
        let last_seen = seen.last().copied().unwrap_or(0);
        let mut stream = SseStream::new(
            client
                .get(format!("{base}/events"))
                .header("last-event-id", last_seen.to_string())
                .send()
                .await
                .expect("stream"),
        );
        // Publishers post until their requests fail because the server is gone.
        let publishers = (0..16).map(|p| {
            let client = client.clone();
            let url = format!("{base}/facts");
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let fact = json!({ "round": round, "p": p, "i": i });
                    let Ok(response) = client.post(&url).json(&fact).send().await else {
                        break;
                    };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(record) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    acknowledged.push((record["id"].as_i64().expect("id"), fact));
                }
                acknowledged
            })
        });
        let publishing = tokio::spawn(join_all(publishers));

        // A different moment each round: after 40 to about 400 new facts.
        let kill_after = 40 + usize::try_from(round * 89 % 360).expect("small");
        let events = stream.take(kill_after).await;
        seen.extend(events.iter().map(Event::id));
        server.signal("KILL");
        drop(server);
        acknowledged.extend(
            publishing
                .await
                .expect("publishers")
                .into_iter()
                .flat_map(|r| r.expect("a publisher")),
        );
    }

    let server = Process::start(&db, "127.0.0.1:0", &[]);
    let base = server.base();
    // Every acknowledged fact is there, with its exact content.
    for (id, fact) in &acknowledged {
        let record: serde_json::Value = client
            .get(format!("{base}/facts/{id}"))
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("a record");
        assert_eq!(&record["fact"], fact, "fact {id} survived with its content");
    }
    // Ids have no duplicates and no holes.
    let ids = all_ids(&client, &base).await;
    let expected: Vec<i64> = (1..=ids.len() as i64).collect();
    assert_eq!(ids, expected);
    assert!(ids.len() >= acknowledged.len());
    // The stream that resumed across every crash saw each id once, in order, no gap.
    let expected_seen: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(seen, expected_seen);
    let mut resumed = SseStream::new(
        client
            .get(format!("{base}/events"))
            .header("last-event-id", seen.len().to_string())
            .send()
            .await
            .expect("stream"),
    );
    let events = resumed.take(ids.len() - seen.len()).await;
    assert_consecutive(&events, seen.len() as i64 + 1);
}
