//! Retention (`--retain-facts`, `--retain-age`): the log keeps a bounded prefix-free tail,
//! and every reader whose position fell into what was deleted is told so (`reset` with
//! reason `expired` on a stream, `410` on a page), never skipped past it in silence. The
//! `_on` bodies are shared with PostgreSQL's tests (`postgres/retention.rs`).

use std::time::Instant;

use serde_json::{Value, json};

use crate::support::expect_error;
use factlog_testkit::*;

/// Waits until `/status` says the oldest kept fact is `want` (`null`: none is kept).
pub async fn until_first_id(app: &TestApp, want: Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = app.status().await;
        if status["first_id"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "first_id is {}, never {want}",
            status["first_id"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of the metric `name` on `app`'s `/metrics`.
pub async fn metric_of(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metric(&text, name).unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Waits until `/metrics` counts `want` facts deleted (the count follows the commit that
/// `/status` shows by a moment).
pub async fn until_deleted(app: &TestApp, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let deleted = metric_of(app, "factlog_facts_deleted_total").await;
        if deleted == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{deleted} facts deleted, never {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A stream's events up to and including the fact with id `last`.
async fn stream_until(app: &TestApp, query: &str, last: i64) -> Vec<Event> {
    app.events(query, None).await.until_id(last).await
}

/// The reset a stream opens with, as JSON, and the ids that follow it up to `last`.
async fn reset_then_ids(app: &TestApp, query: &str, last: i64) -> (Value, Vec<i64>) {
    let mut stream = app.events(query, None).await;
    let reset = stream.next_event().await.expect("an event");
    assert_eq!(
        reset.event.as_deref(),
        Some("reset"),
        "{query}: a reset first"
    );
    let ids = stream.until_id(last).await.iter().map(Event::id).collect();
    (reset.json(), ids)
}

#[tokio::test]
async fn retain_facts_keeps_the_newest_and_says_what_was_deleted() {
    retain_facts_keeps_the_newest_and_says_what_was_deleted_on(
        spawn_with(|c| c.retain_facts = Some(5)).await,
    )
    .await;
}

/// With `--retain-facts 5`, 12 facts leave 8..=12; the three kinds of start position
/// (expired, unknown, `0`) and the 410s; all of it again after a restart without the
/// bound, since the highest deleted id is stored with the log.
pub async fn retain_facts_keeps_the_newest_and_says_what_was_deleted_on(app: TestApp) {
    assert_eq!(app.status().await["first_id"], Value::Null, "empty log");
    for n in 1..=12 {
        app.append_at("/topics/t/facts", &json!({"n": n})).await;
    }
    until_first_id(&app, json!(8)).await;
    let mut app = app;
    for round in ["running", "restarted without the bound"] {
        assert_eq!(app.all_ids().await, (8..=12).collect::<Vec<_>>(), "{round}");
        assert_eq!(app.status().await["last_id"], 12, "{round}");

        // A position whose next facts were deleted: reset `expired`, then the kept log.
        for query in ["lastEventId=3", "after=6", "topic=t&lastEventId=1"] {
            let (reset, ids) = reset_then_ids(&app, query, 12).await;
            assert_eq!(
                reset,
                json!({"reason": "expired", "first_id": 8, "last_id": 12}),
                "{round}: {query}"
            );
            assert_eq!(ids, [8, 9, 10, 11, 12], "{round}: {query}");
        }
        // The highest deleted id itself missed nothing; `0` is the start, never expired.
        for query in ["lastEventId=7", "lastEventId=0"] {
            let events = stream_until(&app, query, 12).await;
            let ids: Vec<i64> = events.iter().map(Event::id).collect();
            assert_eq!(ids, [8, 9, 10, 11, 12], "{round}: {query}: no reset");
        }
        // Beyond the newest: reset `unknown`, then the log from its start.
        let (reset, ids) = reset_then_ids(&app, "lastEventId=99", 12).await;
        assert_eq!(
            reset,
            json!({"reason": "unknown", "last_id": 12}),
            "{round}"
        );
        assert_eq!(ids, [8, 9, 10, 11, 12], "{round}");

        // Pages: 410 with where the log starts, below the highest deleted id only.
        for path in [
            "/facts?after=3",
            "/topics/t/facts?after=6",
            "/facts?topic=t&after=1",
        ] {
            let response = app
                .client
                .get(app.url(path))
                .send()
                .await
                .expect("answered");
            assert_eq!(response.status(), 410, "{round}: {path}");
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["first_id"], 8, "{round}: {path}");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("deleted")),
                "{body}"
            );
        }
        for path in ["/facts?after=7", "/facts?after=0", "/facts"] {
            let (status, page) = app.get_json(path).await;
            assert_eq!(status, 200, "{round}: {path}");
            assert_eq!(page["facts"][0]["id"], 8, "{round}: {path}");
        }
        // One deleted fact: 410; one never issued: 404.
        let gone = app
            .client
            .get(app.url("/facts/2"))
            .send()
            .await
            .expect("answered");
        let body: Value = gone.json().await.expect("JSON");
        assert_eq!(body["first_id"], 8, "{round}");
        let response = app
            .client
            .get(app.url("/facts/2"))
            .send()
            .await
            .expect("answered");
        expect_error(response, 410, "a deleted fact").await;
        let response = app
            .client
            .get(app.url("/facts/99"))
            .send()
            .await
            .expect("answered");
        expect_error(response, 404, "a fact never issued").await;

        if round == "running" {
            until_deleted(&app, 7.0).await;
            let size = metric_of(&app, "factlog_database_size_bytes").await;
            assert!(size > 0.0, "the database has a size: {size}");
            let mut stopped = app.stop_for_restart().await;
            stopped.config.retain_facts = None;
            app = stopped.start().await;
        }
    }
    // Without a bound nothing more is deleted, and ids go on.
    assert_eq!(app.append(&json!({"n": 13})).await, 13);
    assert_eq!(app.all_ids().await, (8..=13).collect::<Vec<_>>());
}

#[tokio::test]
async fn retain_age_deletes_old_facts_and_ids_are_never_reused() {
    retain_age_deletes_old_facts_and_ids_are_never_reused_on(
        spawn_with(|c| c.retain_age = Some(1)).await,
    )
    .await;
}

/// With `--retain-age 1s`, every fact goes once a second old, the log is empty, and ids
/// still continue, also after a restart.
pub async fn retain_age_deletes_old_facts_and_ids_are_never_reused_on(app: TestApp) {
    for n in 1..=3 {
        app.append(&json!({"n": n})).await;
    }
    until_first_id(&app, Value::Null).await;
    assert_eq!(app.all_ids().await, Vec::<i64>::new());
    assert_eq!(app.status().await["last_id"], 3);
    until_deleted(&app, 3.0).await;
    // A reader that had 1: everything after it is gone, and nothing is kept yet.
    let mut stream = app.events("", Some("1")).await;
    let reset = stream.next_event().await.expect("a reset");
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(
        reset.json(),
        json!({"reason": "expired", "first_id": null, "last_id": 3})
    );
    let (status, body) = app.get_json("/facts?after=1").await;
    assert_eq!((status, &body["first_id"]), (410, &Value::Null));
    // The log was emptied: the next fact is still 4, before and after a restart, and the
    // stream that was reset goes on with it.
    assert_eq!(app.append(&json!({"n": 4})).await, 4);
    assert_eq!(stream.next_event().await.expect("the new fact").id(), 4);
    drop(stream);
    until_first_id(&app, Value::Null).await;
    let app = app.restart().await;
    assert_eq!(app.status().await["last_id"], 4);
    assert_eq!(app.append(&json!({"n": 5})).await, 5);
    assert_eq!(app.get_json("/facts/4").await.0, 410);
}

#[tokio::test]
async fn with_both_bounds_a_fact_outside_either_is_deleted() {
    with_both_bounds_a_fact_outside_either_is_deleted_on(
        spawn_with(|c| {
            c.retain_facts = Some(3);
            c.retain_age = Some(86_400);
        })
        .await,
    )
    .await;
}

/// `--retain-facts 3 --retain-age 1d`: the count bound deletes; restarted with a large
/// count and `--retain-age 1s`, the age bound deletes the rest.
pub async fn with_both_bounds_a_fact_outside_either_is_deleted_on(app: TestApp) {
    for n in 1..=6 {
        app.append(&json!({"n": n})).await;
    }
    until_first_id(&app, json!(4)).await;
    assert_eq!(app.all_ids().await, [4, 5, 6]);
    let mut stopped = app.stop_for_restart().await;
    stopped.config.retain_facts = Some(1000);
    stopped.config.retain_age = Some(1);
    let app = stopped.start().await;
    until_first_id(&app, Value::Null).await;
    assert_eq!(app.append(&json!({"n": 7})).await, 7);
}

#[tokio::test]
async fn a_slow_reader_overtaken_by_deletion_gets_a_reset_never_a_gap() {
    a_slow_reader_overtaken_by_deletion_gets_a_reset_never_a_gap_on(
        spawn_with(|c| c.retain_facts = Some(HALF as u64)).await,
    )
    .await;
}

/// Facts per half of the race below; at ~60 kB each, a half is far more than a loopback
/// connection's buffers hold, so a reader that stops is stopped in the middle of it.
pub const HALF: i64 = 400;

/// A stream replaying from the start stops reading after a few facts; meanwhile as many
/// facts again are appended, and retention deletes every fact the stream had not read
/// (between two of its replay pages). Reading on, the stream gets consecutive ids, then a
/// reset `expired`, then the kept log, consecutive: nothing skipped without a word.
pub async fn a_slow_reader_overtaken_by_deletion_gets_a_reset_never_a_gap_on(app: TestApp) {
    let big = "x".repeat(60_000);
    let post = {
        let big = big.clone();
        move |_: usize, _: usize| ("/facts".to_owned(), json!(big))
    };
    app.publish_concurrently(4, HALF as usize / 4, post.clone())
        .await;
    let mut stream = app.events("", Some("0")).await;
    let first = stream.take(3).await;
    assert_consecutive(&first, 1);
    app.publish_concurrently(4, HALF as usize / 4, post).await;
    until_first_id(&app, json!(HALF + 1)).await;

    let mut before = first;
    let reset = loop {
        let event = stream.next_event().await.expect("the stream goes on");
        if event.event.as_deref() == Some("reset") {
            break event;
        }
        before.push(event);
    };
    assert_consecutive(&before, 1);
    assert!(
        before.last().is_some_and(|e| e.id() < HALF),
        "the reader was overtaken: it stopped at {:?}",
        before.last().map(Event::id)
    );
    assert_eq!(
        reset.json(),
        json!({"reason": "expired", "first_id": HALF + 1, "last_id": 2 * HALF})
    );
    let after = stream.until_id(2 * HALF).await;
    assert_consecutive(&after, HALF + 1);
}

#[tokio::test]
async fn appends_and_streams_go_on_while_a_large_backlog_is_deleted() {
    appends_and_streams_go_on_while_a_large_backlog_is_deleted_on(spawn_app().await).await;
}

/// A log of 10,000 facts restarted with `--retain-facts 10`: while the writer deletes the
/// backlog, a live stream and new appends work as ever, and in the end 10 facts are kept.
pub async fn appends_and_streams_go_on_while_a_large_backlog_is_deleted_on(app: TestApp) {
    const BACKLOG: i64 = 10_000;
    app.publish_concurrently(16, BACKLOG as usize / 16, |p, i| {
        ("/facts".to_owned(), json!({"p": p, "i": i}))
    })
    .await;
    let mut stopped = app.stop_for_restart().await;
    stopped.config.retain_facts = Some(10);
    let app = stopped.start().await;
    let mut live = app.events("", Some(&BACKLOG.to_string())).await;
    for n in 1..=50 {
        assert_eq!(app.append(&json!({"new": n})).await, BACKLOG + n);
    }
    assert_consecutive(&live.take(50).await, BACKLOG + 1);
    until_first_id(&app, json!(BACKLOG + 41)).await;
    assert_eq!(
        app.all_ids().await,
        (BACKLOG + 41..=BACKLOG + 50).collect::<Vec<_>>()
    );
}
