//! Topics on PostgreSQL: the same tests as SQLite's (`tests/api/topics.rs`), each over a
//! database of its own, and a worker publishing to a topic through SQL.

use serde_json::{Value, json};

use super::*;
use crate::topics;
use factlog_testkit::pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn facts_posted_to_topics_are_read_back_by_topic() {
    let Some(db) = pg::database("facts_posted_to_topics_are_read_back_by_topic") else {
        return;
    };
    topics::facts_posted_to_topics_are_read_back_by_topic_on(instance(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn a_stream_follows_its_topics_and_resumes_them_across_a_restart() {
    let Some(db) = pg::database("a_stream_follows_its_topics_and_resumes_them_across_a_restart")
    else {
        return;
    };
    topics::a_stream_follows_its_topics_and_resumes_them_across_a_restart_on(instance(&db).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn tail_of_topics_and_filters_by_event_type() {
    let Some(db) = pg::database("tail_of_topics_and_filters_by_event_type") else {
        return;
    };
    topics::tail_of_topics_and_filters_by_event_type_on(instance(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn the_record_format_says_where_each_fact_came_from() {
    let Some(db) = pg::database("the_record_format_says_where_each_fact_came_from") else {
        return;
    };
    topics::the_record_format_says_where_each_fact_came_from_on(instance(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn concurrent_publishers_and_readers_of_topics_see_exactly_their_topics() {
    let Some(db) =
        pg::database("concurrent_publishers_and_readers_of_topics_see_exactly_their_topics")
    else {
        return;
    };
    topics::concurrent_publishers_and_readers_of_topics_see_exactly_their_topics_on(
        instance(&db).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn reads_of_several_topics_cross_pages_without_gaps() {
    let Some(db) = pg::database("reads_of_several_topics_cross_pages_without_gaps") else {
        return;
    };
    topics::reads_of_several_topics_cross_pages_without_gaps_on(instance(&db).await).await;
}

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn a_key_reused_for_another_fact_is_refused_with_422() {
    let Some(db) = pg::database("a_key_reused_for_another_fact_is_refused_with_422") else {
        return;
    };
    crate::idempotency::a_key_reused_for_another_fact_is_refused_with_422_on(instance(&db).await)
        .await;
}

/// A worker publishes to a topic through SQL (`topic =>`); readers of that topic on
/// another instance receive it, and its idempotency key is scoped to the topic.
#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn workers_publish_to_topics_through_sql() {
    let Some(db) = pg::database("workers_publish_to_topics_through_sql") else {
        return;
    };
    let app = instance(&db).await;
    let mut orders = app.get_stream("/topics/orders.eu/events").await;
    let mut worker = db.connect().await;
    let publish = |topic: &'static str, key: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT factlog_publish('{\"order\": 42}', idempotency_key => $1, topic => $2)",
        )
        .bind(key)
        .bind(topic)
    };
    assert_eq!(
        publish("orders.eu", "o-42")
            .fetch_one(&mut worker)
            .await
            .expect("published"),
        1
    );
    assert_eq!(
        publish("orders.us", "o-42")
            .fetch_one(&mut worker)
            .await
            .expect("published"),
        2
    );
    assert_eq!(
        publish("orders.eu", "o-42")
            .fetch_one(&mut worker)
            .await
            .expect("the same"),
        1
    );
    let event = orders.next_event().await.expect("the worker's fact");
    assert_eq!((event.id(), event.json()), (1, json!({"order": 42})));
    let (_, record) = app.get_json("/facts/2").await;
    assert_eq!(record["topic"], "orders.us");
    let bad = sqlx::query_scalar::<_, i64>("SELECT factlog_publish('1', topic => 'a b')")
        .fetch_one(&mut worker)
        .await
        .expect_err("a bad topic name is refused");
    assert!(bad.to_string().contains("topic"), "{bad}");
    let (_, topics) = app.get_json("/topics").await;
    let names: Vec<&Value> = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(names, [&json!("orders.eu"), &json!("orders.us")]);
}
