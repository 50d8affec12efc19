//! Topics: named streams in one log and one id space. Publishing to a topic, reading and
//! listing topics, streams of one topic, of several and of all, resumed with one id across
//! a restart, the record format, and every bad input.

use serde_json::{Value, json};

use crate::support::*;
use factlog_testkit::*;

/// Posts `fact` to `topic` (201 expected) and returns its id.
async fn post_to(app: &TestApp, topic: &str, fact: Value) -> i64 {
    app.append_at(&format!("/topics/{topic}/facts"), &fact)
        .await
}

/// Every id of `query` (`topic=a&topic=b`), read page by page through `GET /facts`.
async fn ids_of_topics(app: &TestApp, query: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app
            .get_json(&format!("/facts?{query}&after={after}&limit=7"))
            .await;
        assert_eq!(status, 200, "{page}");
        ids.extend(ids_of(&page));
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return ids,
        }
    }
}

#[tokio::test]
async fn facts_posted_to_topics_are_read_back_by_topic() {
    facts_posted_to_topics_are_read_back_by_topic_on(spawn_app().await).await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn facts_posted_to_topics_are_read_back_by_topic_on(app: TestApp) {
    let response = app
        .post_json("/topics/orders.eu/facts?event=placed", &json!({"order": 1}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/facts/1");
    let record: Value = response.json().await.expect("a record");
    assert_eq!(record["topic"], "orders.eu");
    assert_eq!(record["event"], "placed");
    assert_eq!(post_to(&app, "chat.lobby", json!("hi")).await, 2);
    assert_eq!(app.append(&json!({"tutorial": true})).await, 3);
    assert_eq!(post_to(&app, "orders.eu", json!({"order": 2})).await, 4);

    let (_, one) = app.get_json("/facts/2").await;
    assert_eq!(
        (one["topic"].as_str(), one["fact"].as_str()),
        (Some("chat.lobby"), Some("hi"))
    );
    let (_, default) = app.get_json("/facts/3").await;
    assert_eq!(default["topic"], "default");

    let (status, page) = app.get_json("/topics/orders.eu/facts").await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&page), [1, 4]);
    assert!(
        page["facts"]
            .as_array()
            .expect("facts")
            .iter()
            .all(|f| f["topic"] == "orders.eu")
    );
    let (_, page) = app
        .get_json("/facts?topic=orders.eu&topic=chat.lobby")
        .await;
    assert_eq!(ids_of(&page), [1, 2, 4]);
    let (_, page) = app.get_json("/facts").await;
    assert_eq!(ids_of(&page), [1, 2, 3, 4], "without topic: every topic");
    let (_, page) = app.get_json("/topics/orders.eu/facts?before=4").await;
    assert_eq!(ids_of(&page), [1]);
    let (_, page) = app.get_json("/topics/nothing.here/facts").await;
    assert_eq!((ids_of(&page), page["next"].clone()), (vec![], Value::Null));

    let (status, topics) = app.get_json("/topics").await;
    assert_eq!(status, 200);
    assert_eq!(
        topics,
        json!({"topics": [
            {"name": "chat.lobby", "first_id": 2, "last_id": 2, "facts": 1},
            {"name": "default", "first_id": 3, "last_id": 3, "facts": 1},
            {"name": "orders.eu", "first_id": 1, "last_id": 4, "facts": 2},
        ], "next": null})
    );
    let (_, first) = app.get_json("/topics?limit=2").await;
    assert_eq!(first["next"], "default");
    let (_, rest) = app.get_json("/topics?limit=2&after=default").await;
    assert_eq!(rest["topics"][0]["name"], "orders.eu");
    assert_eq!(rest["next"], Value::Null);
    let (status, topic) = app.get_json("/topics/orders.eu").await;
    assert_eq!(status, 200);
    assert_eq!(
        topic,
        json!({"name": "orders.eu", "first_id": 1, "last_id": 4, "facts": 2})
    );
    let missing = get(&app, "/topics/nothing.here").await;
    let message = expect_error(missing, 404, "a topic with no facts").await;
    assert!(message.contains("nothing.here"), "{message}");
}

#[tokio::test]
async fn bad_topics_are_refused_and_write_nothing() {
    let app = app_with_one_fact().await;
    let long = "t".repeat(65);
    for path in [
        "/topics/a%20b/facts".to_owned(),
        "/topics/a%2Cb/facts".to_owned(),
        "/topics/caf%C3%A9/facts".to_owned(),
        format!("/topics/{long}/facts"),
    ] {
        let request = app.client.post(app.url(&path)).json(&json!(1));
        expect_refused(&app, request, 400, &path).await;
    }
    let too_many: String = (0..33).map(|i| format!("topic=t{i}&")).collect();
    for path in [
        "/facts?topic=a%20b".to_owned(),
        format!("/facts?{too_many}"),
        format!("/topics/{long}"),
        "/topics/a%20b/facts".to_owned(),
        "/topics?after=a%20b".to_owned(),
        "/topics?limit=0".to_owned(),
        "/topics?limit=1001".to_owned(),
        "/events?topic=".to_owned(),
        "/events?topic=a%20b".to_owned(),
        format!("/events?{too_many}"),
        "/events?format=xml".to_owned(),
        "/events?format=record&format=fact".to_owned(),
        "/topics/a/events?topic=b".to_owned(),
        "/topics/a%20b/events".to_owned(),
    ] {
        expect_error(get(&app, &path).await, 400, &path).await;
    }
    // 32 different topics is the most, and the same topic twice counts once.
    let most: String = (0..32).map(|i| format!("topic=t{i}&")).collect();
    assert_eq!(
        get(&app, &format!("/facts?{most}topic=t0")).await.status(),
        200
    );
    let mut stream = app.events(&format!("{most}topic=t0"), None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
}

#[tokio::test]
async fn a_stream_follows_its_topics_and_resumes_them_across_a_restart() {
    a_stream_follows_its_topics_and_resumes_them_across_a_restart_on(spawn_app().await).await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn a_stream_follows_its_topics_and_resumes_them_across_a_restart_on(app: TestApp) {
    let mut both = app.events("topic=orders.eu&topic=chat.lobby", None).await;
    let mut one = app.get_stream("/topics/chat.lobby/events").await;
    let mut quiet = app.get_stream("/topics/not.yet/events").await;
    for (topic, n) in [
        ("orders.eu", 1),
        ("deploys", 2),
        ("chat.lobby", 3),
        ("orders.eu", 4),
    ] {
        post_to(&app, topic, json!({ "n": n })).await;
    }
    let seen: Vec<i64> = both.take(3).await.iter().map(Event::id).collect();
    assert_eq!(seen, [1, 3, 4]);
    assert_eq!(one.next_event().await.map(|e| e.id()), Some(3));
    assert_eq!(
        quiet.status, 200,
        "a topic with no facts is a stream that waits"
    );
    assert_eq!(quiet.next_frame().await.as_deref(), Some("retry: 2000"));

    // The server restarts; facts arrive before the client is back; it resumes with the one
    // id it had, for both topics at once.
    let app = app.restart().await;
    for (topic, n) in [
        ("chat.lobby", 5),
        ("deploys", 6),
        ("orders.eu", 7),
        ("chat.lobby", 8),
    ] {
        post_to(&app, topic, json!({ "n": n })).await;
    }
    let mut resumed = app
        .events("topic=orders.eu&topic=chat.lobby", Some("4"))
        .await;
    let events = resumed.take(3).await;
    let ids: Vec<i64> = events.iter().map(Event::id).collect();
    assert_eq!(ids, [5, 7, 8]);
    assert_eq!(events[0].json(), json!({"n": 5}));
    post_to(&app, "deploys", json!({"n": 9})).await;
    post_to(&app, "orders.eu", json!({"n": 10})).await;
    assert_eq!(resumed.next_event().await.map(|e| e.id()), Some(10));
    assert_eq!(
        ids_of_topics(&app, "topic=orders.eu&topic=chat.lobby").await,
        [1, 3, 4, 5, 7, 8, 10]
    );
}

#[tokio::test]
async fn tail_of_topics_and_filters_by_event_type() {
    tail_of_topics_and_filters_by_event_type_on(spawn_app().await).await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn tail_of_topics_and_filters_by_event_type_on(app: TestApp) {
    for n in 1..=30 {
        let topic = ["a", "b", "c"][n % 3];
        let event = if n % 2 == 0 { "even" } else { "odd" };
        app.append_at(&format!("/topics/{topic}/facts?event={event}"), &json!(n))
            .await;
    }
    // `a` holds the multiples of 3, `b` those one above, `c` those two above.
    let a: Vec<i64> = (1..=30).filter(|n| n % 3 == 0).collect();
    let mut tail = app.get_stream("/topics/a/events?tail=3").await;
    let ids: Vec<i64> = tail.take(3).await.iter().map(Event::id).collect();
    assert_eq!(ids, a[a.len() - 3..]);
    let mut pair = app.events("topic=a&topic=c&tail=4", None).await;
    let ids: Vec<i64> = pair.take(4).await.iter().map(Event::id).collect();
    assert_eq!(ids, [26, 27, 29, 30]);
    post_to(&app, "a", json!("live")).await;
    assert_eq!(pair.next_event().await.map(|e| e.id()), Some(31));
    // Topics and event types together: both must match.
    let mut even_b = app.events("topic=b&event=even", None).await;
    let ids: Vec<i64> = even_b.take(5).await.iter().map(Event::id).collect();
    assert_eq!(ids, [4, 10, 16, 22, 28]);
    let mut tail_even_b = app.events("topic=b&event=even&tail=2", None).await;
    let ids: Vec<i64> = tail_even_b.take(2).await.iter().map(Event::id).collect();
    assert_eq!(ids, [22, 28]);
}

#[tokio::test]
async fn the_record_format_says_where_each_fact_came_from() {
    the_record_format_says_where_each_fact_came_from_on(spawn_app().await).await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn the_record_format_says_where_each_fact_came_from_on(app: TestApp) {
    let mut live = app.events("tail=0&format=record", None).await;
    assert_eq!(live.next_frame().await.as_deref(), Some("retry: 2000"));
    let posted = app
        .post_json("/topics/orders.eu/facts?event=placed", &json!({"order": 1}))
        .await;
    let record: Value = posted.json().await.expect("a record");
    post_to(&app, "chat.lobby", json!("hi")).await;
    let live_frames = [
        live.next_frame().await.expect("a frame"),
        live.next_frame().await.expect("a frame"),
    ];
    let first = parse_event(&live_frames[0]).expect("an event");
    assert_eq!(
        first.event.as_deref(),
        Some("placed"),
        "the event line stays"
    );
    assert_eq!(
        first.json(),
        record,
        "data is the whole record, as the API has it"
    );
    let second = parse_event(&live_frames[1]).expect("an event").json();
    assert_eq!(second["topic"], "chat.lobby");
    assert_eq!(second["event"], Value::Null);
    let (_, stored) = app.get_json("/facts/2").await;
    assert_eq!(second, stored);

    let mut replay = app.events("format=record", None).await;
    assert_eq!(replay.next_frame().await.as_deref(), Some("retry: 2000"));
    let replayed = [
        replay.next_frame().await.expect("a frame"),
        replay.next_frame().await.expect("a frame"),
    ];
    assert_eq!(
        replayed, live_frames,
        "replayed and live frames are the same bytes"
    );
    let mut plain = app.events("format=fact", None).await;
    assert_eq!(plain.take(1).await[0].json(), json!({"order": 1}));
}

/// Publishers on several topics at once; readers of one topic, of pairs, and of every
/// topic each see exactly the log filtered by their topics: strictly increasing, no gap,
/// no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_and_readers_of_topics_see_exactly_their_topics() {
    concurrent_publishers_and_readers_of_topics_see_exactly_their_topics_on(spawn_app().await)
        .await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn concurrent_publishers_and_readers_of_topics_see_exactly_their_topics_on(app: TestApp) {
    const PER_TOPIC: usize = 60;
    const TOPICS: [&str; 4] = ["t.a", "t.b", "t.c", "t.d"];
    let selections = [
        "topic=t.a",
        "topic=t.d",
        "topic=t.a&topic=t.b",
        "topic=t.c&topic=t.d",
        "",
    ];
    let mut streams = Vec::new();
    for selection in selections {
        streams.push(app.events(selection, None).await);
    }
    app.publish_concurrently(TOPICS.len(), PER_TOPIC, |p, i| {
        (format!("/topics/{}/facts", TOPICS[p]), json!({ "i": i }))
    })
    .await;
    for (selection, stream) in selections.iter().zip(&mut streams) {
        let expected = if selection.is_empty() {
            app.all_ids().await
        } else {
            ids_of_topics(&app, selection).await
        };
        let topics = match selection.matches("topic=").count() {
            0 => TOPICS.len(),
            n => n,
        };
        assert_eq!(expected.len(), PER_TOPIC * topics, "{selection}");
        let seen: Vec<i64> = stream
            .take(expected.len())
            .await
            .iter()
            .map(Event::id)
            .collect();
        assert_eq!(
            seen, expected,
            "{selection:?} sees exactly its topics, in order"
        );
    }
}

/// A reader of one topic that stops reading while thousands of facts are posted to it and
/// to another: it falls behind the in-memory buffer, is caught up from the database, and
/// gets every fact of its topic once, in order.
#[tokio::test]
async fn a_slow_reader_of_a_topic_is_caught_up_from_the_database() {
    const FACTS: usize = 1600;
    let app = spawn_with(|c| c.sync = factlog::config::SyncLevel::Normal).await;
    let mut stalled = app.get_stream("/topics/big/events").await;
    assert_eq!(stalled.next_frame().await.as_deref(), Some("retry: 2000"));
    // Large facts, one by one, so that each is a group of its own: far more bytes than
    // the socket buffers hold and more groups than the notifier keeps.
    let padding = "x".repeat(24 * 1024);
    for i in 0..FACTS {
        // Every fourth fact goes to another topic: the reader must skip them.
        let topic = if i % 4 == 0 { "other" } else { "big" };
        post_to(&app, topic, json!({ "i": i, "pad": padding })).await;
    }
    let expected = ids_of_topics(&app, "topic=big").await;
    assert_eq!(expected.len(), FACTS * 3 / 4);
    let seen: Vec<i64> = stalled
        .take(expected.len())
        .await
        .iter()
        .map(Event::id)
        .collect();
    assert_eq!(seen, expected);
    let metrics = get(&app, "/metrics").await.text().await.expect("metrics");
    assert!(
        metric(&metrics, "factlog_streams_caught_up_from_database_total").is_some_and(|n| n >= 1.0),
        "the reader went through the database"
    );
}

/// A replay of several topics long enough to take many pages, from topics of very
/// different sizes, arrives whole and in order, and so do paged reads forwards and
/// backwards.
#[tokio::test]
async fn reads_of_several_topics_cross_pages_without_gaps() {
    reads_of_several_topics_cross_pages_without_gaps_on(
        spawn_with(|c| c.sync = factlog::config::SyncLevel::Normal).await,
    )
    .await;
}

/// The test above, over the app given (SQLite's or PostgreSQL's).
pub async fn reads_of_several_topics_cross_pages_without_gaps_on(app: TestApp) {
    let mut expected = Vec::new();
    for n in 1..=700_i64 {
        // `dense` holds most facts, `sparse` one in fifty, `other` the rest.
        let topic = match n {
            n if n % 50 == 0 => "sparse",
            n if n % 3 == 0 => "other",
            _ => "dense",
        };
        if topic != "other" {
            expected.push(n);
        }
        post_to(&app, topic, json!({ "n": n, "pad": "y".repeat(300) })).await;
    }
    let mut stream = app.events("topic=dense&topic=sparse", None).await;
    let seen: Vec<i64> = stream
        .take(expected.len())
        .await
        .iter()
        .map(Event::id)
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        ids_of_topics(&app, "topic=sparse&topic=dense").await,
        expected
    );
    let (_, back) = app
        .get_json("/facts?topic=dense&topic=sparse&before=700&limit=5")
        .await;
    let tail: Vec<i64> = expected.iter().copied().filter(|&n| n < 700).collect();
    assert_eq!(ids_of(&back), tail[tail.len() - 5..]);
}
