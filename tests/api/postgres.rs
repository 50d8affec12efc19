//! factlog on PostgreSQL: one log shared by several instances and by programs that
//! publish through SQL. Each test gets its own database (see `pg.rs`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::helpers::*;
use crate::pg::{self, PgDatabase};

/// A server in this process over the test's database.
async fn instance(db: &PgDatabase) -> TestApp {
    let url = db.url.clone();
    spawn_with(move |c| c.database_url = url).await
}

/// Every id in the table, in order.
async fn table_ids(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM facts ORDER BY id")
        .fetch_all(conn)
        .await
        .expect("the table is read")
}

/// Publishes through SQL as a worker would; returns the id.
async fn publish_sql(
    conn: &mut sqlx::PgConnection,
    fact: &str,
    event: Option<&str>,
    key: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT factlog_publish($1::json, $2, $3)")
        .bind(fact)
        .bind(event)
        .bind(key)
        .fetch_one(conn)
        .await
}

/// Polls `query` (one integer) until it returns `want`.
async fn until_count(conn: &mut sqlx::PgConnection, query: &str, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: i64 = sqlx::query_scalar(query)
            .fetch_one(&mut *conn)
            .await
            .expect("the query runs");
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {got}, never {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
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
    assert_eq!(reset.json(), json!({"last_id": 4}));
}

/// What makes a shared log work: no instance may see id 11 while id 10 is still to
/// commit. A worker holds an append open; a POST made meanwhile must wait for it, and
/// then gets the next id. With ids from a sequence the POST would take id 2 and commit
/// first, and every stream would have to skip 1 or wait for it forever.
#[tokio::test]
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

/// Reads a stream until it has seen id `last`, reconnecting with `Last-Event-ID` (as a
/// browser does) whenever the stream ends because its instance stopped.
async fn follow(
    client: reqwest::Client,
    base: String,
    mut stream: SseStream,
    last: i64,
) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        while let Some(event) = stream.next_event().await {
            ids.push(event.id());
            if event.id() >= last {
                return ids;
            }
        }
        let deadline = Instant::now() + WAIT;
        stream = loop {
            assert!(Instant::now() < deadline, "{base} did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut request = client.get(format!("{base}/events"));
            if let Some(id) = ids.last() {
                request = request.header("last-event-id", id.to_string());
            }
            if let Ok(response) = request.send().await {
                if response.status() == 200 {
                    break SseStream::new(response);
                }
            }
        };
    }
}

/// Posts until the server acknowledges, retrying with the same idempotency key through
/// refused connections and 503s (an instance restarting): the fact is appended once.
async fn post_until_acknowledged(client: &reqwest::Client, base: &str, key: &str, fact: &Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let sent = client
            .post(format!("{base}/facts"))
            .header("idempotency-key", key)
            .json(fact)
            .send()
            .await;
        if let Ok(response) = sent {
            if matches!(response.status().as_u16(), 200 | 201) {
                return;
            }
            assert_eq!(response.status(), 503, "only unavailability is retried");
        }
        assert!(Instant::now() < deadline, "{key} was never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three instances (real processes) on one database; publishers post to all of them and
/// a worker publishes through SQL; subscribers follow every instance, from the start and
/// live only; one instance restarts midway, another is killed and restarted. Every
/// subscriber sees the same strictly increasing, gap-free sequence, equal to the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_gap_free_sequence() {
    let Some(db) = pg::database("instances_share_one_gap_free_sequence") else {
        return;
    };
    const PUBLISHERS_PER_INSTANCE: usize = 2;
    const FACTS_PER_PUBLISHER: usize = 100;
    const WORKER_FACTS: usize = 100;
    let total = (3 * PUBLISHERS_PER_INSTANCE * FACTS_PER_PUBLISHER + WORKER_FACTS) as i64;

    let mut processes: Vec<Process> = (0..3)
        .map(|_| Process::spawn(factlog_command_url(&db.url, "127.0.0.1:0", &[])))
        .collect();
    let bases: Vec<String> = processes.iter().map(Process::base).collect();
    let client = reqwest::Client::new();

    let mut subscribers = Vec::new();
    for base in &bases {
        for query in ["", "tail=0"] {
            let response = client
                .get(format!("{base}/events?{query}"))
                .send()
                .await
                .expect("a stream");
            assert_eq!(response.status(), 200);
            let stream = SseStream::new(response);
            subscribers.push(tokio::spawn(follow(
                client.clone(),
                base.clone(),
                stream,
                total,
            )));
        }
    }

    let mut publishers = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        for p in 0..PUBLISHERS_PER_INSTANCE {
            let (client, base) = (client.clone(), base.clone());
            publishers.push(tokio::spawn(async move {
                for n in 0..FACTS_PER_PUBLISHER {
                    let key = format!("instance{i}-publisher{p}-{n}");
                    let fact = json!({"instance": i, "publisher": p, "n": n});
                    post_until_acknowledged(&client, &base, &key, &fact).await;
                }
            }));
        }
    }
    let mut worker = db.connect().await;
    publishers.push(tokio::spawn(async move {
        for n in 0..WORKER_FACTS {
            let key = format!("worker-{n}");
            publish_sql(
                &mut worker,
                &json!({"worker": n}).to_string(),
                None,
                Some(&key),
            )
            .await
            .expect("the worker publishes");
        }
    }));

    // A third of the way, instance 1 stops (SIGTERM) and starts again on the same address;
    // two thirds of the way, instance 2 is killed (SIGKILL) and started again.
    let mut observer = db.connect().await;
    for (nth, signal) in [(1, "TERM"), (2, "KILL")] {
        let after = total * nth / 3;
        until_count(
            &mut observer,
            &format!("SELECT least(count(*), {after}) FROM facts"),
            after,
        )
        .await;
        let stopping = processes.remove(nth as usize);
        let addr = stopping.addr.to_string();
        let url = db.url.clone();
        let restarted = tokio::task::spawn_blocking(move || {
            stopping.signal(signal);
            let clean = stopping.wait(WAIT);
            assert!(clean || signal == "KILL", "instance {nth} stops cleanly");
            Process::spawn(factlog_command_url(&url, &addr, &[]))
        })
        .await
        .expect("the instance restarts");
        processes.insert(nth as usize, restarted);
    }

    for publisher in publishers {
        publisher.await.expect("a publisher");
    }
    let table = table_ids(&mut observer).await;
    let expected: Vec<i64> = (1..=total).collect();
    assert_eq!(
        table, expected,
        "the table holds every fact once, ids without a gap"
    );
    for subscriber in subscribers {
        let seen = tokio::time::timeout(WAIT, subscriber)
            .await
            .expect("every subscriber catches up")
            .expect("a subscriber");
        assert_eq!(seen, expected);
    }
}

/// The listening connection killed from the database side: the follower listens again
/// and reads from its last id, so streams continue without a gap. Writer and reader
/// connections killed too: the next requests get new ones.
#[tokio::test]
async fn killed_connections_lose_nothing() {
    let Some(db) = pg::database("killed_connections_lose_nothing") else {
        return;
    };
    let a = instance(&db).await;
    let b = instance(&db).await;
    let mut on_b = b.events("", None).await;
    assert_eq!(a.append(&json!({"n": 1})).await, 1);
    assert_eq!(on_b.take(1).await[0].id(), 1);

    let mut admin = db.connect().await;
    // This test's database only: a server of FACTLOG_TEST_POSTGRES_URL serves others.
    let followers = "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name = 'factlog follower'";
    until_count(&mut admin, followers, 2).await;
    let killed: Vec<i32> = sqlx::query_scalar(
        "WITH followers AS MATERIALIZED (
             SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'factlog follower'
         )
         SELECT pid FROM followers WHERE pg_terminate_backend(pid)",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminated");
    assert_eq!(killed.len(), 2);

    // Facts committed while the listeners may be gone: by a worker, and by the other
    // instance.
    publish_sql(&mut admin, r#"{"n": 2}"#, None, None)
        .await
        .expect("published");
    assert_eq!(a.append(&json!({"n": 3})).await, 3);
    publish_sql(&mut admin, r#"{"n": 4}"#, None, None)
        .await
        .expect("published");
    assert_consecutive(&on_b.take(3).await, 2);
    // Both instances listen again, on new connections.
    let pids = killed
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let new_followers = format!("{followers} AND pid NOT IN ({pids})");
    until_count(&mut admin, &new_followers, 2).await;

    // Every other connection of both instances, killed.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database()
           AND application_name IN ('factlog', 'factlog writer')",
    )
    .execute(&mut admin)
    .await
    .expect("terminated");
    assert_eq!(b.append(&json!({"n": 5})).await, 5);
    assert_eq!(a.append(&json!({"n": 6})).await, 6);
    assert_consecutive(&on_b.take(2).await, 5);
    assert_eq!(b.get_json("/facts/6").await.1["fact"], json!({"n": 6}));
}

/// The database server restarts under a running instance: while it is down, POST answers
/// 503 and `/healthz` says so; once it is back, the instance reconnects on its own, and
/// its streams continue without a gap.
#[tokio::test]
async fn a_database_restart_loses_nothing() {
    let Some(db) = pg::database("a_database_restart_loses_nothing") else {
        return;
    };
    let app = instance(&db).await;
    let mut stream = app.events("", None).await;
    assert_eq!(app.append(&json!({"n": 1})).await, 1);
    assert_eq!(stream.take(1).await[0].id(), 1);

    if !db.stop_server() {
        eprintln!("SKIPPED a_database_restart_loses_nothing: not our server to restart");
        return;
    }
    let refused = app.post_fact(&json!({"n": "lost?"})).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("a JSON error");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(app.get_json("/healthz").await.0, 503);
    db.start_server();

    assert_eq!(app.append(&json!({"n": 2})).await, 2);
    assert_eq!(stream.take(1).await[0].id(), 2);
    assert_eq!(app.get_json("/healthz").await.0, 200);
    let mut conn = db.connect().await;
    assert_eq!(table_ids(&mut conn).await, [1, 2]);
}

/// Managed PostgreSQL services want TLS: factlog reaches the database over TLS and checks
/// its certificate (`sslmode=verify-full`), and refuses to start when it cannot trust it.
#[tokio::test]
async fn the_database_is_reached_over_verified_tls() {
    let Some(db) = pg::tls_database("the_database_is_reached_over_verified_tls") else {
        return;
    };
    let app = instance(&db).await;
    let mut stream = app.events("", None).await;
    assert_eq!(app.append(&json!({"over": "tls"})).await, 1);
    assert_eq!(stream.take(1).await[0].id(), 1);

    let mut admin = db.connect().await;
    let connections: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = current_database() AND a.application_name LIKE 'factlog%'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("pg_stat_ssl");
    let names: HashSet<&str> = connections.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        HashSet::from(["factlog", "factlog writer", "factlog follower"])
    );
    assert!(connections.iter().all(|(_, ssl)| *ssl), "{connections:?}");

    // Without the CA the certificate is not trusted: a one-line refusal, not a start.
    let untrusted = db
        .url
        .split("&sslrootcert=")
        .next()
        .expect("a URL")
        .to_owned();
    let refused = factlog::App::build(factlog::Config::new(
        "127.0.0.1:0".parse().expect("an address"),
        untrusted,
    ))
    .await
    .err()
    .expect("refused");
    assert!(
        format!("{refused:#}").contains("certificate"),
        "{refused:#}"
    );
}

/// A background program publishes with `factlog_publish`: same checks, same idempotency
/// keys as `POST /facts`, and its facts reach every stream on every instance.
#[tokio::test]
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
    // The same key again, from SQL and over HTTP: the first record, not a new fact.
    assert_eq!(
        publish_sql(&mut worker, r#"{"v": 2}"#, Some("deploy"), Some("deploy-1"))
            .await
            .expect("published"),
        2
    );
    let retried = a
        .post_with_key("/facts?event=deploy", "deploy-1", &json!({"v": 3}))
        .await;
    assert_eq!(retried.status(), 200);
    assert_eq!(
        retried.json::<Value>().await.expect("a record")["fact"],
        json!({"v": 1})
    );

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

    let bodies: Vec<Value> = (0..30).map(|n| json!({"n": n})).collect();
    let same_key = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| instances[n % 3].post_with_key("/facts", "only-once", body));
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
