//! Retention on PostgreSQL: the same tests as SQLite's (`tests/api/retention.rs`), each
//! over a database of its own, and two instances deleting under one advisory lock.

use serde_json::json;

use super::*;
use crate::retention::{self, until_first_id};
use factlog_testkit::pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn retain_facts_keeps_the_newest_and_says_what_was_deleted() {
    let Some(db) = pg::database("retain_facts_keeps_the_newest_and_says_what_was_deleted") else {
        return;
    };
    retention::retain_facts_keeps_the_newest_and_says_what_was_deleted_on(
        instance_with(&db, |c| c.retain_facts = Some(5)).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn retain_age_deletes_old_facts_and_ids_are_never_reused() {
    let Some(db) = pg::database("retain_age_deletes_old_facts_and_ids_are_never_reused") else {
        return;
    };
    retention::retain_age_deletes_old_facts_and_ids_are_never_reused_on(
        instance_with(&db, |c| c.retain_age = Some(1)).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn with_both_bounds_a_fact_outside_either_is_deleted() {
    let Some(db) = pg::database("with_both_bounds_a_fact_outside_either_is_deleted") else {
        return;
    };
    retention::with_both_bounds_a_fact_outside_either_is_deleted_on(
        instance_with(&db, |c| {
            c.retain_facts = Some(3);
            c.retain_age = Some(86_400);
        })
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn a_slow_reader_overtaken_by_deletion_gets_a_reset_never_a_gap() {
    let Some(db) = pg::database("a_slow_reader_overtaken_by_deletion_gets_a_reset_never_a_gap")
    else {
        return;
    };
    retention::a_slow_reader_overtaken_by_deletion_gets_a_reset_never_a_gap_on(
        instance_with(&db, |c| c.retain_facts = Some(retention::HALF as u64)).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn appends_and_streams_go_on_while_a_large_backlog_is_deleted() {
    let Some(db) = pg::database("appends_and_streams_go_on_while_a_large_backlog_is_deleted")
    else {
        return;
    };
    retention::appends_and_streams_go_on_while_a_large_backlog_is_deleted_on(instance(&db).await)
        .await;
}

/// Two instances with `--retain-facts 10`, appending in turn: together they delete each
/// old fact once (their counters add up to exactly what is gone), both keep the same 10,
/// and a stream on each, open from the start, gets every fact once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn two_instances_delete_each_fact_once() {
    let Some(db) = pg::database("two_instances_delete_each_fact_once") else {
        return;
    };
    let a = instance_with(&db, |c| c.retain_facts = Some(10)).await;
    let b = instance_with(&db, |c| c.retain_facts = Some(10)).await;
    let mut on_a = a.events("", Some("0")).await;
    let mut on_b = b.events("", Some("0")).await;
    for n in 1..=100 {
        let app = if n % 2 == 0 { &a } else { &b };
        assert_eq!(app.append(&json!({"n": n})).await, n);
    }
    assert_consecutive(&on_a.until_id(100).await, 1);
    assert_consecutive(&on_b.until_id(100).await, 1);
    until_first_id(&a, json!(91)).await;
    until_first_id(&b, json!(91)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let deleted = retention::metric_of(&a, "factlog_facts_deleted_total").await
            + retention::metric_of(&b, "factlog_facts_deleted_total").await;
        if deleted == 90.0 {
            break;
        }
        assert!(deleted < 90.0, "{deleted} deletions of 90 facts");
        assert!(
            Instant::now() < deadline,
            "{deleted} facts deleted, never 90"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = db.connect().await;
    assert_eq!(table_ids(&mut conn).await, (91..=100).collect::<Vec<_>>());
    // A reader of either instance that had 50 learns what was deleted.
    for app in [&a, &b] {
        let mut stream = app.events("", Some("50")).await;
        let reset = stream.next_event().await.expect("a reset");
        assert_eq!(
            reset.json(),
            json!({"reason": "expired", "first_id": 91, "last_id": 100})
        );
        assert_consecutive(&stream.until_id(100).await, 91);
    }
}
