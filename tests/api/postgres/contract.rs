//! The contract on PostgreSQL, ids in commit order, and workers publishing through SQL.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection as _;

use super::*;
use factlog_testkit::pg;
use factlog_testkit::*;

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn the_contract_holds_on_postgres() {
    let Some(db) = pg::database("the_contract_holds_on_postgres") else {
        return;
    };
    let app = instance(&db).await;
    let mut live = app.events("", None).await;
    assert_eq!(live.status, 200);

    let created = app
        .post_fact(&json!({"info": "one", "source": "test"}))
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/facts/1");
    let record: Value = created.json().await.expect("a record");
    assert_eq!(record["fact"], json!({"info": "one", "source": "test"}));
    let created_at = record["created_at"].as_str().expect("a time");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339");
    assert!(
        created_at.ends_with('Z') && created_at.len() == 24,
        "{created_at}"
    );

    assert_eq!(
        app.append_at("/facts?event=deploy", &json!({"n": 2})).await,
        2
    );
    let first = app
        .post_with_key("/facts", "retry-me", &json!({"n": 3}))
        .await;
    assert_eq!(first.status(), 201);
    let again = app
        .post_with_key("/facts", "retry-me", &json!({"n": 3}))
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("a record");
    assert_eq!(
        (again["id"].as_i64(), &again["fact"]),
        (Some(3), &json!({"n": 3}))
    );

    // Live frames (rendered by factlog) and replayed ones (rendered by PostgreSQL) are
    // the same bytes.
    let mut live_frames = Vec::new();
    while live_frames.len() < 3 {
        let frame = live.next_frame().await.expect("a live frame");
        if frame.starts_with("id: ") {
            live_frames.push(frame);
        }
    }
    let mut replay = app.events("", None).await;
    let mut replayed = Vec::new();
    while replayed.len() < 3 {
        let frame = replay.next_frame().await.expect("a replayed frame");
        if frame.starts_with("id: ") {
            replayed.push(frame);
        }
    }
    assert_eq!(replayed, live_frames);
    assert_eq!(live_frames[1], "id: 2\nevent: deploy\ndata: {\"n\":2}");

    let only_deploys = app.events("event=deploy", None).await.take(1).await;
    assert_eq!(only_deploys[0].id(), 2);
    let tail = app.events("tail=1", None).await.take(1).await;
    assert_eq!(tail[0].id(), 3);
    let (status, page) = app.get_json("/facts?after=1&limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (page["facts"][0]["id"].as_i64(), page["next"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(app.get_json("/facts/2").await.1["event"], "deploy");
    assert_eq!(app.get_json("/facts/9").await.0, 404);
    assert_eq!(app.get_json("/healthz").await.0, 200);

    // A restart over the same database: same log, same ids, and a client resumes.
    let log_id = app.status().await["log_id"].clone();
    let app = app.restart().await;
    let status = app.status().await;
    assert_eq!(
        (status["log_id"].clone(), status["last_id"].as_i64()),
        (log_id, Some(3))
    );
    let mut resumed = app.events("", Some("2")).await;
    assert_eq!(app.append(&json!({"n": 4})).await, 4);
    assert_consecutive(&resumed.take(2).await, 3);

    // A position this log never issued is said, not guessed at.
    let mut beyond = app.events("", Some("99")).await;
    let reset = beyond.next_event().await.expect("a reset");
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(reset.json(), json!({"reason": "unknown", "last_id": 4}));
}

/// What makes a shared log work: no instance may see id 11 while id 10 is still to
/// commit. A worker holds an append open; a POST made meanwhile must wait for it, and
/// then gets the next id. With ids from a sequence the POST would take id 2 and commit
/// first, and every stream would have to skip 1 or wait for it forever.
#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn ids_follow_commit_order() {
    let Some(db) = pg::database("ids_follow_commit_order") else {
        return;
    };
    let app = instance(&db).await;
    let mut stream = app.events("", None).await;

    let mut worker = db.connect().await;
    let mut open = worker.begin().await.expect("a transaction");
    let held = publish_sql(&mut open, r#"{"from": "a slow worker"}"#, None, None)
        .await
        .expect("published, not yet committed");
    assert_eq!(held, 1);

    let post = tokio::spawn({
        let request = app
            .client
            .post(app.url("/facts"))
            .json(&json!({"from": "http"}));
        async move { request.send().await.expect("answered") }
    });
    // Wait until the writer is seen waiting for the worker's lock, failing if the POST is
    // answered first.
    let mut observer = db.connect().await;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            !post.is_finished(),
            "a POST was answered while an earlier id was uncommitted"
        );
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database()
               AND application_name = 'factlog writer' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut observer)
        .await
        .expect("pg_stat_activity");
        if waiting == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the writer never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    open.commit().await.expect("committed");

    let answered = post.await.expect("the POST task");
    assert_eq!(answered.status(), 201);
    let record: Value = answered.json().await.expect("a record");
    assert_eq!(record["id"], 2);
    let events = stream.take(2).await;
    assert_consecutive(&events, 1);
    assert_eq!(events[0].json(), json!({"from": "a slow worker"}));
    assert_eq!(table_ids(&mut observer).await, [1, 2]);
}

/// A background program publishes with `factlog_publish`: same checks, same idempotency
/// keys as `POST /facts`, and its facts reach every stream on every instance.
#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn workers_publish_through_sql() {
    let Some(db) = pg::database("workers_publish_through_sql") else {
        return;
    };
    let a = instance(&db).await;
    let b = instance(&db).await;
    let mut on_a = a.events("", None).await;
    let mut deploys_on_b = b.events("event=deploy", None).await;

    let mut worker = db.connect().await;
    let pretty = "{ \"info\": \"backup  done\",\n  \"source\": \"cron\",\r\n \"sizes\": [ 1, 2 ] }";
    assert_eq!(
        publish_sql(&mut worker, pretty, None, None)
            .await
            .expect("published"),
        1
    );
    assert_eq!(
        publish_sql(&mut worker, r#"{"v": 1}"#, Some("deploy"), Some("deploy-1"))
            .await
            .expect("published"),
        2
    );
    // The same key again for the same fact, from SQL and over HTTP: the first record, not
    // a new fact. For another fact, refused: nothing is written.
    assert_eq!(
        publish_sql(
            &mut worker,
            r#"{ "v":1 }"#,
            Some("deploy"),
            Some("deploy-1")
        )
        .await
        .expect("published"),
        2
    );
    let refused = publish_sql(&mut worker, r#"{"v": 2}"#, Some("deploy"), Some("deploy-1"))
        .await
        .expect_err("another fact under a used key is refused");
    assert!(refused.to_string().contains("already used"), "{refused}");
    let retried = a
        .post_with_key("/facts?event=deploy", "deploy-1", &json!({"v": 1}))
        .await;
    assert_eq!(retried.status(), 200);
    assert_eq!(
        retried.json::<Value>().await.expect("a record")["fact"],
        json!({"v": 1})
    );
    let conflicting = a
        .post_with_key("/facts?event=deploy", "deploy-1", &json!({"v": 3}))
        .await;
    assert_eq!(conflicting.status(), 422);

    // What POST refuses, SQL refuses, with a message that says why; nothing is written.
    for (fact, event, key, says) in [
        ("1", Some("two words"), None, "event"),
        ("1", None, Some("with space"), "idempotency key"),
        ("1", Some(""), None, "event"),
    ] {
        let err = publish_sql(&mut worker, fact, event, key)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(says), "{err}");
    }
    let null = sqlx::query_scalar::<_, i64>("SELECT factlog_publish(NULL)")
        .fetch_one(&mut worker)
        .await
        .expect_err("refused");
    assert!(null.to_string().contains("null"), "{null}");
    let broken = publish_sql(&mut worker, r#"{"a": "#, None, None)
        .await
        .expect_err("refused");
    assert!(broken.to_string().contains("json"), "{broken}");
    assert_eq!(table_ids(&mut worker).await, [1, 2]);

    // Stored compact, keys in their order, strings untouched: one `data:` line.
    let events = on_a.take(2).await;
    assert_eq!(
        events[0].data,
        r#"{"info":"backup  done","source":"cron","sizes":[1,2]}"#
    );
    assert_eq!(events[1].event.as_deref(), Some("deploy"));
    assert_eq!(deploys_on_b.take(1).await[0].id(), 2);
    assert_eq!(b.get_json("/facts/1").await.1["fact"]["source"], "cron");

    // Published inside a transaction that rolls back: never published, and no id lost.
    let mut undone = worker.begin().await.expect("a transaction");
    publish_sql(&mut undone, r#"{"undone": true}"#, None, None)
        .await
        .expect("published, then rolled back");
    undone.rollback().await.expect("rolled back");
    assert_eq!(b.append(&json!({"after": "rollback"})).await, 3);
    let next = on_a.next_event().await.expect("the next fact");
    assert_eq!((next.id(), next.json()), (3, json!({"after": "rollback"})));
}

/// Group commit and idempotency keys across instances: many concurrent POSTs spread over
/// three instances get distinct, gap-free ids; the same key posted to all of them at once
/// makes one fact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn group_commit_and_keys_work_across_instances() {
    let Some(db) = pg::database("group_commit_and_keys_work_across_instances") else {
        return;
    };
    let instances = [
        instance(&db).await,
        instance(&db).await,
        instance(&db).await,
    ];

    let mut posts = Vec::new();
    for n in 0..300 {
        let app = &instances[n % 3];
        posts.push(
            app.client
                .post(app.url("/facts"))
                .json(&json!({"n": n}))
                .send(),
        );
    }
    let mut ids = HashSet::new();
    for answered in futures_util::future::join_all(posts).await {
        let response = answered.expect("answered");
        assert_eq!(response.status(), 201);
        let record: Value = response.json().await.expect("a record");
        assert!(ids.insert(record["id"].as_i64().expect("an id")));
    }
    assert_eq!(ids, (1..=300).collect::<HashSet<i64>>());
    // Committed in groups, not one by one.
    let mut groups = 0.0;
    for app in &instances {
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("answered")
            .text()
            .await
            .expect("the metrics");
        groups += metric(&text, "factlog_commit_group_facts_count").expect("the group count");
    }
    assert!(groups < 300.0, "300 facts took {groups} commits");

    let body = json!({"n": "once"});
    let same_key = (0..30).map(|n| instances[n % 3].post_with_key("/facts", "only-once", &body));
    let mut created = 0;
    let mut key_ids = HashSet::new();
    for response in futures_util::future::join_all(same_key).await {
        created += usize::from(response.status() == 201);
        let record: Value = response.json().await.expect("a record");
        key_ids.insert(record["id"].as_i64().expect("an id"));
    }
    assert_eq!((created, key_ids.len()), (1, 1));
    let mut conn = db.connect().await;
    assert_eq!(table_ids(&mut conn).await, (1..=301).collect::<Vec<i64>>());
}
