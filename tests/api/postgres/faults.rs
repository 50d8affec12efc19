//! When the database goes away: killed connections, a restarted server, TLS.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::*;
use factlog_testkit::pg;
use factlog_testkit::*;

/// The listening connection killed from the database side: the follower listens again
/// and reads from its last id, so streams continue without a gap. Writer and reader
/// connections killed too: the next requests get new ones.
#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
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
#[cfg_attr(
    no_pg_cluster,
    ignore = "needs a throwaway PostgreSQL cluster: install Debian's postgresql (not with FACTLOG_TEST_POSTGRES_URL)"
)]
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
    let (status, health) = app.get_json("/healthz").await;
    assert_eq!(status, 503);
    // Both say it in words for a person; the driver's error text is for the log only.
    assert_eq!(health["error"], body["error"]);
    let said = body["error"].as_str().unwrap_or_default();
    for internal in ["os error", "communicating", "pool", "Connection refused"] {
        assert!(!said.contains(internal), "{said:?} leaks {internal:?}");
    }
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
#[cfg_attr(
    no_pg_cluster,
    ignore = "needs a throwaway PostgreSQL cluster: install Debian's postgresql (not with FACTLOG_TEST_POSTGRES_URL)"
)]
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

/// On PostgreSQL too, ids come from the counter that hands them out: with every fact
/// deleted, the log keeps its newest id across a restart and the next fact follows it.
#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn deleting_facts_takes_no_id_back() {
    let Some(db) = pg::database("deleting_facts_takes_no_id_back") else {
        return;
    };
    let app = instance(&db).await;
    for n in 1..=3 {
        app.append(&json!({ "n": n })).await;
    }
    let stopped = app.stop_for_restart().await;
    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM facts")
        .execute(&mut conn)
        .await
        .expect("every fact is deleted");
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
