//! Resume and completeness: restarts over the same file, many publishers with several
//! readers, and a reader that stops reading while thousands of facts are posted.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::json;
use sqlx::Connection as _;

use factlog_testkit::*;

#[tokio::test]
async fn a_restart_keeps_the_log_its_ids_and_its_identity() {
    let app = spawn_app().await;
    for n in 1..=3 {
        app.append(&json!({ "n": n })).await;
    }
    let before = app.status().await;
    let mut stream = app.events("", None).await;
    let seen = stream.take(3).await;
    let last_seen = seen[2].id.clone().expect("an id");

    let app = app.restart().await;
    // The stream ended with the old server.
    assert_eq!(stream.next_event().await, None);

    let after = app.status().await;
    assert_eq!(after["log_id"], before["log_id"]);
    assert_eq!(after["last_id"], 3);
    assert_eq!(
        app.append(&json!({ "n": 4 })).await,
        4,
        "ids continue after a restart"
    );
    assert_eq!(app.append(&json!({ "n": 5 })).await, 5);

    // Reconnect as a browser does: with the last id it saw.
    let mut resumed = app.events("", Some(&last_seen)).await;
    let events = resumed.take(2).await;
    assert_consecutive(&events, 4);
    assert_eq!(events[0].json(), json!({ "n": 4 }));
    let id = app.append(&json!({ "n": 6 })).await;
    assert_eq!(resumed.next_event().await.map(|e| e.id()), Some(id));
}

#[tokio::test]
async fn a_wiped_log_is_said_with_reset_and_a_new_log_id() {
    let app = spawn_app().await;
    for n in 1..=4 {
        app.append(&json!(n)).await;
    }
    let old_log = app.status().await["log_id"].clone();
    let app = app
        .restart_with(|db| {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        })
        .await;
    app.append(&json!("new")).await;
    assert_ne!(app.status().await["log_id"], old_log);

    // A browser that followed the old log reconnects with its last id.
    let mut stream = app.events("", Some("4")).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    assert_eq!(
        stream.next_frame().await.as_deref(),
        Some("event: reset\ndata: {\"reason\":\"unknown\",\"last_id\":1}")
    );
    let event = stream.next_event().await.expect("the new log");
    assert_eq!((event.id(), event.json()), (1, json!("new")));
}

/// Ids come from where they are handed out, not from the facts: with every fact deleted
/// by hand (as retention will delete old ones), the log keeps its newest id across a
/// restart, a client at that id is not told to reset, and the next fact gets the next id.
#[tokio::test]
async fn deleting_facts_takes_no_id_back() {
    let app = spawn_app().await;
    for n in 1..=3 {
        app.append(&json!({ "n": n })).await;
    }
    let stopped = app.stop_for_restart().await;
    let url = format!("sqlite://{}", stopped.dir.path().join("facts.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("the database opens");
    sqlx::query("DELETE FROM facts")
        .execute(&mut conn)
        .await
        .expect("every fact is deleted");
    conn.close().await.expect("closed");
    let app = stopped.start().await;

    assert_eq!(app.status().await["last_id"], 3);
    let mut stream = app.events("", Some("3")).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    assert_eq!(app.append(&json!({ "n": 4 })).await, 4);
    let event = stream.next_event().await.expect("the next fact");
    assert_eq!(
        (event.event.as_deref(), event.id()),
        (None, 4),
        "no reset first"
    );
}

#[tokio::test]
async fn concurrent_publishers_and_readers_see_every_fact_once_in_order() {
    const PUBLISHERS: usize = 16;
    const EACH: usize = 150;
    const TOTAL: i64 = (PUBLISHERS * EACH) as i64;
    let app = spawn_with(|c| c.sync = factlog::config::SyncLevel::Normal).await;
    app.append(&json!("before everyone")).await;

    let mut from_start = app.events("", None).await;
    let mut live_only = app.events("tail=0", None).await;
    let mut filtered = app.events("event=odd", None).await;
    // Make sure the live-only stream is attached before publishing starts.
    assert_eq!(live_only.next_frame().await.as_deref(), Some("retry: 2000"));

    let publishers = (0..PUBLISHERS).map(|p| {
        let client = app.client.clone();
        let base = app.base.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let path = if i % 2 == 1 {
                    "/facts?event=odd"
                } else {
                    "/facts"
                };
                let response = client
                    .post(format!("{base}{path}"))
                    .json(&json!({ "p": p, "i": i }))
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(response.status(), 201);
                let body: serde_json::Value = response.json().await.expect("record");
                ids.push(body["id"].as_i64().expect("id"));
            }
            ids
        })
    });
    let publishing = tokio::spawn(join_all(publishers));

    // A reader joining midway with the id it last saw, as a reconnecting browser does.
    let first_part = from_start.take(200).await;
    let resume_at = first_part.last().expect("events").id();
    let mut midway = app.events("", Some(&resume_at.to_string())).await;

    let acknowledged: Vec<i64> = publishing
        .await
        .expect("publishers")
        .into_iter()
        .flat_map(|r| r.expect("a publisher"))
        .collect();
    let last = TOTAL + 1;
    assert_eq!(
        acknowledged.iter().copied().collect::<HashSet<_>>().len(),
        TOTAL as usize
    );

    let mut all = first_part;
    all.extend(from_start.until_id(last).await);
    assert_consecutive(&all, 1);

    let live = live_only.until_id(last).await;
    assert_consecutive(&live, 2);

    let joined = midway.until_id(last).await;
    assert_consecutive(&joined, resume_at + 1);

    // The filtered stream: exactly the odd facts, in order, equal to the database's.
    let odd_in_db: Vec<i64> = all
        .iter()
        .filter(|e| e.event.as_deref() == Some("odd"))
        .map(Event::id)
        .collect();
    let mut odd_seen = Vec::new();
    while odd_seen.len() < odd_in_db.len() {
        odd_seen.push(filtered.next_event().await.expect("odd events").id());
    }
    assert_eq!(odd_seen, odd_in_db);

    // And all of it is what the database holds.
    let db_ids = app.all_ids().await;
    assert_eq!(db_ids, all.iter().map(Event::id).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reader_that_stops_reading_gets_everything_when_it_reads_again() {
    const FACTS: usize = 3000;
    let app = spawn_with(|c| c.sync = factlog::config::SyncLevel::Normal).await;
    let mut stalled = app.events("", None).await;
    assert_eq!(stalled.next_frame().await.as_deref(), Some("retry: 2000"));

    // Large facts, posted by a few publishers so that they land in many small groups:
    // far more bytes than the socket buffers hold and more groups than the notifier
    // keeps, so the reader must be caught up from the database.
    let padding = "x".repeat(8 * 1024);
    let pad = padding.clone();
    app.publish_concurrently(4, FACTS / 4, move |p, i| {
        ("/facts".to_owned(), json!({ "p": p, "i": i, "pad": pad }))
    })
    .await;

    let events = stalled.until_id(FACTS as i64).await;
    assert_consecutive(&events, 1);
    assert!(
        events
            .iter()
            .all(|e| e.json()["pad"].as_str() == Some(padding.as_str()))
    );
}
