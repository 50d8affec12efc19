//! `factlog backup` while the server is busy, and the README's restore: every fact
//! acknowledged before the backup began is in the copy, a server runs on it, and readers
//! ahead of the restored log are told so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use factlog_testkit::*;

/// Every fact the server at `base` holds, by id.
async fn every_fact(client: &reqwest::Client, base: &str) -> BTreeMap<i64, Value> {
    let mut facts = BTreeMap::new();
    let mut after = 0;
    loop {
        let page: Value = client
            .get(format!("{base}/facts?after={after}&limit=1000"))
            .send()
            .await
            .expect("a page")
            .json()
            .await
            .expect("JSON");
        for record in page["facts"].as_array().expect("facts") {
            facts.insert(record["id"].as_i64().expect("id"), record["fact"].clone());
        }
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return facts,
        }
    }
}

#[tokio::test]
async fn a_backup_under_load_holds_every_acknowledged_fact_and_restores() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let server = Process::start(&db, "127.0.0.1:0", &[]);
    let base = server.base();
    let client = reqwest::Client::new();

    // Four publishers post until told to stop, keeping what each POST acknowledged.
    let acknowledged: Arc<Mutex<Vec<(i64, Value)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let (client, base) = (client.clone(), base.clone());
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        publishers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let fact = json!({"publisher": p, "n": n, "pad": "x".repeat(200)});
                let response = client
                    .post(format!("{base}/facts"))
                    .json(&fact)
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(response.status(), 201);
                let id = response.json::<Value>().await.expect("a record")["id"]
                    .as_i64()
                    .expect("an id");
                acknowledged.lock().expect("the list").push((id, fact));
                n += 1;
            }
        }));
    }
    while acknowledged.lock().expect("the list").len() < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let before_backup = acknowledged.lock().expect("the list").clone();
    let copy = dir.path().join("copy.db");
    let url = format!("sqlite://{}", db.display());
    let copy_arg = copy.to_str().expect("a UTF-8 path").to_owned();
    let output = tokio::process::Command::new(factlog_binary())
        .args(["backup", &copy_arg, "--database-url", &url])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("the backup runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("copied into"), "{said}");
    // Another backup to the same name is refused, and leaves the copy as it was.
    let copied = std::fs::read(&copy).expect("the copy");
    let again = tokio::process::Command::new(factlog_binary())
        .args(["backup", &copy_arg, "--database-url", &url])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("the backup runs");
    assert!(!again.status.success());
    let refused = String::from_utf8_lossy(&again.stderr);
    assert!(refused.contains("exists"), "{refused}");
    assert!(std::fs::read(&copy).expect("the copy") == copied);
    // The publishers go on a little past the backup, then stop.
    let after_backup = acknowledged.lock().expect("the list").len();
    while acknowledged.lock().expect("the list").len() < after_backup + 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        publisher.await.expect("a publisher");
    }
    let original_status = client
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("answered")
        .json::<Value>()
        .await
        .expect("JSON");

    // A second server on the copy, beside the first.
    let on_copy = Process::start(&copy, "127.0.0.1:0", &[]);
    let restored = every_fact(&client, &on_copy.base()).await;
    for (id, fact) in &before_backup {
        assert_eq!(restored.get(id), Some(fact), "fact {id} is in the copy");
    }
    // A snapshot of a log whose ids are in commit order: a prefix, with no hole.
    let newest = *restored.keys().last().expect("facts");
    assert_eq!(
        restored.keys().copied().collect::<Vec<_>>(),
        (1..=newest).collect::<Vec<_>>()
    );
    let copy_status = client
        .get(format!("{}/status", on_copy.base()))
        .send()
        .await
        .expect("answered")
        .json::<Value>()
        .await
        .expect("JSON");
    assert_eq!(copy_status["log_id"], original_status["log_id"]);
    drop(on_copy);

    // The README's restore: stop, move the log and its -wal and -shm aside, copy the
    // backup in, start.
    server.signal("TERM");
    assert!(server.wait(WAIT));
    let original_newest = original_status["last_id"].as_i64().expect("last_id");
    assert!(original_newest > newest, "the log went on after the backup");
    for suffix in ["", "-wal", "-shm"] {
        let from = dir.path().join(format!("facts.db{suffix}"));
        if from.exists() {
            std::fs::rename(&from, dir.path().join(format!("facts.db.broken{suffix}")))
                .expect("moved aside");
        }
    }
    std::fs::copy(&copy, &db).expect("the backup is copied in");
    let restarted = Process::start(&db, "127.0.0.1:0", &[]);
    assert_eq!(every_fact(&client, &restarted.base()).await, restored);
    // A reader that had seen facts the restore took back is told, not left waiting for
    // ids that will be reused.
    let mut stream = SseStream::new(
        client
            .get(format!("{}/events", restarted.base()))
            .header("last-event-id", original_newest.to_string())
            .send()
            .await
            .expect("a stream"),
    );
    let first = stream.next_event().await.expect("an event");
    assert_eq!(first.event.as_deref(), Some("reset"), "{first:?}");
}
