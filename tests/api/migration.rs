//! Upgrading: a log made by the previous release (factlog 0.1, before topics), opened by
//! this build, on both engines. The fixtures in `tests/fixtures/` were made with that
//! release's binary: four facts (two with an event type, two with an idempotency key),
//! the SQLite file as it left it, PostgreSQL's database as `pg_dump --inserts` wrote it.

use serde_json::{Value, json};
use sqlx::Connection as _;

use factlog_testkit::pg;
use factlog_testkit::*;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What a user of the old log checks after the upgrade: every fact is in `default`,
/// nothing is lost, ids and the log's identity are kept, a key still recognizes its
/// retry, new facts follow on, and a tutorial client sees what it saw before.
async fn check_upgraded(base: &str, log_id: &str, facts: &[(Option<&str>, Value)]) {
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let response = client.get(url).send().await.expect("answered");
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("JSON")
        }
    };
    let status = get("/status").await;
    assert_eq!(
        (status["last_id"].as_i64(), status["log_id"].as_str()),
        (Some(4), Some(log_id))
    );
    let page = get("/facts").await;
    let records = page["facts"].as_array().expect("facts");
    assert_eq!(records.len(), facts.len());
    for (n, (record, (event, fact))) in records.iter().zip(facts).enumerate() {
        assert_eq!(record["id"].as_i64(), i64::try_from(n + 1).ok());
        assert_eq!(record["topic"], "default");
        assert_eq!(record["event"].as_str(), *event);
        assert_eq!(&record["fact"], fact);
    }
    assert_eq!(
        get("/topics").await,
        json!({"topics": [{"name": "default", "first_id": 1, "last_id": 4, "facts": 4}], "next": null})
    );
    let retry = client
        .post(format!("{base}/facts"))
        .header("idempotency-key", "order-42")
        .json(&json!({"order": 42}))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        retry.status(),
        200,
        "the old key still recognizes its retry"
    );
    assert_eq!(retry.json::<Value>().await.expect("a record")["id"], 3);
    let posted = client
        .post(format!("{base}/fact"))
        .json(&json!({"info": "after the upgrade"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(posted.status(), 201);
    assert_eq!(posted.json::<Value>().await.expect("a record")["id"], 5);
    let response = client
        .get(format!("{base}/events"))
        .send()
        .await
        .expect("a stream");
    let mut stream = SseStream::new(response);
    let events = stream.take(5).await;
    assert_consecutive(&events, 1);
    for (event, (expected_event, fact)) in events.iter().zip(facts) {
        assert_eq!(event.event.as_deref(), *expected_event);
        assert_eq!(
            &event.json(),
            fact,
            "the bare fact, as the tutorial's client reads it"
        );
    }
}

/// The migration is the one start-up that reads the whole log: it says so in the log.
fn assert_migration_logged(log: &[String]) {
    assert!(
        log.iter()
            .any(|l| l.contains("migrating the database") && l.contains("topics")),
        "the migration is announced: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("migrated the database")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_sqlite_log_of_the_previous_release_opens_with_its_facts_in_default() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    std::fs::copy(fixture("factlog-0.1.sqlite"), &db).expect("the fixture is copied");
    let server = Process::start(&db, "127.0.0.1:0", &[]);
    let facts = [
        (
            None,
            json!({"info": "shark sighted", "source": "https://example.com/sharks"}),
        ),
        (Some("sighting"), json!({"info": "whale", "source": "boat"})),
        (None, json!({"order": 42})),
        (Some("deploy"), json!([1, 2, 3])),
    ];
    check_upgraded(
        &server.base(),
        "7ee44d2f-8654-47a5-bf81-13d5c378e547",
        &facts,
    )
    .await;
    server.signal("TERM");
    assert_migration_logged(&server.finish(WAIT));
    // Started again, nothing is left to migrate.
    let again = Process::start(&db, "127.0.0.1:0", &[]);
    again.signal("TERM");
    let log = again.finish(WAIT);
    assert!(!log.iter().any(|l| l.contains("migrating")), "{log:#?}");
}

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn a_postgres_log_of_the_previous_release_opens_with_its_facts_in_default() {
    let Some(db) = pg::database("a_postgres_log_of_the_previous_release_opens") else {
        return;
    };
    let dump = std::fs::read_to_string(fixture("factlog-0.1.pg.sql")).expect("the fixture");
    db.create().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(&dump)
        .execute(&mut conn)
        .await
        .expect("the old database is restored");
    conn.close().await.expect("closed");
    let server = Process::spawn(factlog_command_url(&db.url, "127.0.0.1:0", &[]));
    let facts = [
        (
            None,
            json!({"info": "shark sighted", "source": "https://example.com/sharks"}),
        ),
        (Some("sighting"), json!({"info": "whale", "source": "boat"})),
        (None, json!({"order": 42})),
        (Some("deploy"), json!({"n": 4})),
    ];
    check_upgraded(
        &server.base(),
        "91ce1f88-2d4f-4b89-bb3d-53ea0d6bb61a",
        &facts,
    )
    .await;
    server.signal("TERM");
    assert_migration_logged(&server.finish(WAIT));
}
