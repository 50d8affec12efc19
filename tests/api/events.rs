//! `GET /events`: headers, framing, start positions, filters, bad positions, keep-alive and
//! the subscriber limit.

use futures_util::StreamExt as _;
use serde_json::json;

use factlog_testkit::*;

/// An app holding facts 1..=5: three plain ones (1, 3, 5) and two typed `a` (2) and `b` (4).
async fn app_with_five_facts() -> TestApp {
    let app = spawn_app().await;
    for (i, event) in [None, Some("a"), None, Some("b"), None]
        .into_iter()
        .enumerate()
    {
        let path = match event {
            Some(e) => format!("/facts?event={e}"),
            None => "/facts".to_string(),
        };
        let response = app.post_json(&path, &json!({ "n": i + 1 })).await;
        assert_eq!(response.status(), 201);
    }
    app
}

fn ids(events: &[Event]) -> Vec<i64> {
    events.iter().map(Event::id).collect()
}

#[tokio::test]
async fn stream_headers_and_first_frame() {
    let app = spawn_with(|c| c.retry_ms = 1234).await;
    let mut stream = app.events("", None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    assert!(stream.headers.get("content-encoding").is_none());
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 1234"));
}

#[tokio::test]
async fn frames_carry_id_event_and_compact_data() {
    let app = spawn_app().await;
    let mut stream = app.events("", None).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    app.post_raw(
        "/facts",
        "application/json",
        "{ \"info\" : \"line\\nbreak\",\n \"z\": 1, \"a\": [1, 2] }",
    )
    .await;
    app.post_json("/facts?event=user.created", &json!("typed"))
        .await;
    assert_eq!(
        stream.next_frame().await.as_deref(),
        Some("id: 1\ndata: {\"info\":\"line\\nbreak\",\"z\":1,\"a\":[1,2]}")
    );
    assert_eq!(
        stream.next_frame().await.as_deref(),
        Some("id: 2\nevent: user.created\ndata: \"typed\"")
    );
}

#[tokio::test]
async fn no_position_replays_the_whole_log_then_goes_live() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("", None).await;
    let replayed = stream.take(5).await;
    assert_consecutive(&replayed, 1);
    assert_eq!(replayed[1].event.as_deref(), Some("a"));
    assert_eq!(replayed[0].json(), json!({ "n": 1 }));
    let id = app.append(&json!({ "n": 6 })).await;
    assert_eq!(stream.next_event().await.map(|e| e.id()), Some(id));
}

#[tokio::test]
async fn last_event_id_header_resumes_after_it() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("", Some("3")).await;
    assert_eq!(ids(&stream.take(2).await), [4, 5]);
    app.append(&json!("live")).await;
    assert_eq!(stream.next_event().await.map(|e| e.id()), Some(6));
}

#[tokio::test]
async fn query_positions_for_first_connections() {
    let app = app_with_five_facts().await;
    let mut by_last_event_id = app.events("lastEventId=2", None).await;
    assert_eq!(ids(&by_last_event_id.take(3).await), [3, 4, 5]);
    let mut by_after = app.events("after=4", None).await;
    assert_eq!(ids(&by_after.take(1).await), [5]);
}

#[tokio::test]
async fn the_header_wins_over_the_query() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("lastEventId=1&after=1&tail=5", Some("4")).await;
    assert_eq!(ids(&stream.take(1).await), [5]);
    // lastEventId wins over after, and both over tail.
    let mut stream = app.events("lastEventId=3&after=1&tail=5", None).await;
    assert_eq!(ids(&stream.take(2).await), [4, 5]);
}

#[tokio::test]
async fn tail_gives_the_newest_facts_then_live() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("tail=2", None).await;
    assert_eq!(ids(&stream.take(2).await), [4, 5]);
    app.append(&json!("live")).await;
    assert_eq!(ids(&stream.take(1).await), [6]);

    let mut more_than_the_log = app.events("tail=100", None).await;
    assert_eq!(ids(&more_than_the_log.take(6).await), [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn tail_zero_is_live_only() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("tail=0", None).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    let id = app.append(&json!("live")).await;
    assert_eq!(ids(&stream.take(1).await), [id]);
}

#[tokio::test]
async fn a_position_beyond_the_log_sends_reset_then_everything() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("", Some("999")).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    assert_eq!(
        stream.next_frame().await.as_deref(),
        Some("event: reset\ndata: {\"reason\":\"unknown\",\"last_id\":5}")
    );
    assert_eq!(ids(&stream.take(5).await), [1, 2, 3, 4, 5]);

    // The same through the query, and on an empty log.
    let empty = spawn_app().await;
    let mut stream = empty.events("lastEventId=7", None).await;
    stream.next_frame().await;
    assert_eq!(
        stream.next_frame().await.as_deref(),
        Some("event: reset\ndata: {\"reason\":\"unknown\",\"last_id\":0}")
    );
    let id = empty.append(&json!("first")).await;
    assert_eq!(ids(&stream.take(1).await), [id]);
}

#[tokio::test]
async fn the_newest_id_itself_is_not_a_reset() {
    let app = app_with_five_facts().await;
    let mut stream = app.events("", Some("5")).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    app.append(&json!("next")).await;
    let event = stream.next_event().await.expect("an event");
    assert_eq!(event.event, None);
    assert_eq!(event.id(), 6);
}

#[tokio::test]
async fn event_filters_in_replay_and_live() {
    let app = app_with_five_facts().await;
    let mut only_a = app.events("event=a", None).await;
    let mut a_and_b = app.events("event=a&event=b", None).await;
    let mut plain = app.events("event=message", None).await;
    let mut b_from_3 = app.events("event=b&lastEventId=3", None).await;
    assert_eq!(ids(&only_a.take(1).await), [2]);
    assert_eq!(ids(&a_and_b.take(2).await), [2, 4]);
    assert_eq!(ids(&plain.take(3).await), [1, 3, 5]);
    assert_eq!(ids(&b_from_3.take(1).await), [4]);

    app.post_json("/facts?event=b", &json!(6)).await;
    app.post_json("/facts?event=a", &json!(7)).await;
    app.post_json("/facts", &json!(8)).await;
    assert_eq!(ids(&only_a.take(1).await), [7]);
    assert_eq!(ids(&a_and_b.take(2).await), [6, 7]);
    assert_eq!(ids(&plain.take(1).await), [8]);
    assert_eq!(ids(&b_from_3.take(1).await), [6]);

    let mut tail_of_a = app.events("event=a&tail=1", None).await;
    assert_eq!(ids(&tail_of_a.take(1).await), [7]);
}

#[tokio::test]
async fn bad_start_positions_are_refused() {
    let app = app_with_five_facts().await;
    let bad_values = [
        "",
        "-1",
        "+1",
        "1.5",
        "abc",
        "1e3",
        " 1",
        "0x10",
        "12345678901234567890",
        "9223372036854775808",
    ];
    for value in bad_values {
        for name in ["lastEventId", "after", "tail"] {
            let encoded: String = value.replace(' ', "%20").replace('+', "%2B");
            let response = app
                .client
                .get(app.url(&format!("/events?{name}={encoded}")))
                .send()
                .await
                .expect("answered");
            assert_eq!(response.status(), 400, "{name}={value:?}");
            let body: serde_json::Value = response.json().await.expect("JSON error");
            assert!(
                body["error"].as_str().is_some_and(|e| e.contains(name)),
                "{body}"
            );
        }
        if !value.is_empty() && !value.starts_with(' ') {
            let response = app
                .client
                .get(app.url("/events"))
                .header("last-event-id", value)
                .send()
                .await
                .expect("answered");
            assert_eq!(response.status(), 400, "Last-Event-ID: {value:?}");
        }
    }
    // Bytes a browser can be made to put in a header.
    for raw in [&b"\xff\xfe"[..], b"1 2", b"1\t2"] {
        let value = reqwest::header::HeaderValue::from_bytes(raw).expect("a header value");
        let response = app
            .client
            .get(app.url("/events"))
            .header("last-event-id", value)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 400, "Last-Event-ID bytes {raw:?}");
    }
    // A bad value is refused even when another, valid, position would win.
    let mut stream_request = app.client.get(app.url("/events?tail=x"));
    stream_request = stream_request.header("last-event-id", "3");
    assert_eq!(stream_request.send().await.expect("answered").status(), 400);
    // Bad filters.
    for query in ["event=", "event=a%0Ab", "event=a%00", "event=a%20b"] {
        let response = app
            .client
            .get(app.url(&format!("/events?{query}")))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 400, "{query}");
    }
    let thousands: String = (0..5000).map(|i| format!("event=e{i}&")).collect();
    let response = app
        .client
        .get(app.url(&format!("/events?{thousands}")))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400);
    assert_eq!(app.status().await["clients"], 0);
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let app = spawn_with(|c| c.keep_alive_secs = 1).await;
    let mut stream = app.events("", None).await;
    assert_eq!(stream.next_frame().await.as_deref(), Some("retry: 2000"));
    assert_eq!(stream.next_frame().await.as_deref(), Some(": keep-alive"));
    assert_eq!(stream.next_frame().await.as_deref(), Some(": keep-alive"));
}

/// Clients that dispatch every block ended by a blank line (fetch-event-source, httpx-sse)
/// would hand an application an empty event for a `retry:` or comment block; the server
/// sends those lines with no blank line after them.
#[tokio::test]
async fn no_block_of_the_stream_is_an_event_without_data() {
    let app = spawn_with(|c| c.keep_alive_secs = 1).await;
    app.append(&json!({"n": 1})).await;
    app.append(&json!({"n": 2})).await;
    let response = app
        .client
        .get(app.url("/events"))
        .send()
        .await
        .expect("answered");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while text.matches(": keep-alive\n").count() < 2 {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("bytes in time")
            .expect("the stream goes on")
            .expect("bytes");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    assert!(
        text.starts_with(
            "retry: 2000\nid: 1\ndata: {\"n\":1}\n\nid: 2\ndata: {\"n\":2}\n\n: keep-alive\n: keep-alive\n"
        ),
        "{text:?}"
    );
    // The blocks such a client dispatches: those a blank line has ended.
    let ended = &text[..text.rfind("\n\n").map_or(0, |end| end + 2)];
    for block in ended.split_terminator("\n\n") {
        assert!(block.lines().any(|l| l.starts_with("data:")), "{block:?}");
    }
}

#[tokio::test]
async fn streams_beyond_the_limit_get_503_with_retry_after() {
    // A closed connection is noticed at the stream's next write, so keep-alives are
    // frequent here.
    let app = spawn_with(|c| {
        c.max_subscribers = 2;
        c.keep_alive_secs = 1;
    })
    .await;
    let mut first = app.events("", None).await;
    let second = app.events("", None).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(app.status().await["clients"], 2);
    let refused = app
        .client
        .get(app.url("/events"))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    assert!(body["error"].is_string());

    // Closing a stream frees its place.
    drop(second);
    first.next_frame().await;
    let mut reopened = None;
    for _ in 0..200 {
        let stream = app.events("", None).await;
        if stream.status == 200 {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a closed stream's place is given back");
}

#[tokio::test]
async fn status_counts_open_streams() {
    let app = spawn_app().await;
    assert_eq!(app.status().await["clients"], 0);
    let mut a = app.events("", None).await;
    let mut b = app.events("tail=0", None).await;
    a.next_frame().await;
    b.next_frame().await;
    assert_eq!(app.status().await["clients"], 2);
}

#[tokio::test]
async fn control_bytes_in_last_event_id_are_refused_cleanly() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_app().await;
    for header in [&b"1\x00"[..], b"1\r2", b"\x007"] {
        let mut socket = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connect");
        let mut request = b"GET /events HTTP/1.1\r\nHost: test\r\nLast-Event-ID: ".to_vec();
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        socket.write_all(&request).await.expect("sent");
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, socket.read_to_end(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{header:?}: {answer}");
    }
    assert_eq!(app.status().await["clients"], 0);
}

/// Live frames are rendered in Rust, replayed ones by SQLite: a reader must not be able to
/// tell which path a fact came by.
#[tokio::test]
async fn replayed_frames_are_byte_for_byte_the_live_ones() {
    let app = spawn_app().await;
    let mut live = app.events("tail=0", None).await;
    assert_eq!(live.next_frame().await.as_deref(), Some("retry: 2000"));
    let facts = [
        (None, json!({ "n": 1 })),
        (
            Some("a.b:c-d_9"),
            json!({ "s": "é\u{2028}\"\\\n\t", "x": [1, 2.5, -3e10, null] }),
        ),
        (None, json!("just a string")),
        (Some("message"), json!(12345678901234567_i64)),
        (
            None,
            json!({ "emoji": "🦀", "nested": { "deep": [[], {}] } }),
        ),
    ];
    for (event, fact) in &facts {
        let path = event.map_or("/facts".to_owned(), |e| format!("/facts?event={e}"));
        assert_eq!(app.post_json(&path, fact).await.status(), 201);
    }
    let mut live_frames = Vec::new();
    for _ in 0..facts.len() {
        live_frames.push(live.next_frame().await.expect("a live frame"));
    }
    let mut replay = app.events("", None).await;
    assert_eq!(replay.next_frame().await.as_deref(), Some("retry: 2000"));
    let mut replayed_frames = Vec::new();
    for _ in 0..facts.len() {
        replayed_frames.push(replay.next_frame().await.expect("a replayed frame"));
    }
    assert_eq!(replayed_frames, live_frames);
    for (frame, (event, fact)) in live_frames.iter().zip(&facts) {
        let parsed = parse_event(frame).expect("an event");
        assert_eq!(parsed.event.as_deref(), *event);
        assert_eq!(&parsed.json(), fact);
    }
}

/// A replay long enough to take many pages, of facts small and large, arrives whole and in
/// order, and so does a filtered one.
#[tokio::test]
async fn long_replays_cross_pages_without_gaps() {
    let app = spawn_with(|c| c.sync = factlog::config::SyncLevel::Normal).await;
    let big = "x".repeat(40_000);
    let mut typed = Vec::new();
    for i in 0..3000 {
        // Mostly small facts, with runs of large ones that make pages cut short.
        let fact = if (1000..1040).contains(&i) || i % 500 == 7 {
            json!({ "i": i, "pad": big })
        } else {
            json!({ "i": i })
        };
        let path = if i % 3 == 0 {
            "/facts?event=third"
        } else {
            "/facts"
        };
        let id = app.append_at(path, &fact).await;
        if i % 3 == 0 {
            typed.push(id);
        }
    }
    let mut stream = app.events("", None).await;
    let events = stream.until_id(3000).await;
    assert_consecutive(&events, 1);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.json()["i"],
            json!(i),
            "fact {} holds its own content",
            i + 1
        );
    }
    let mut filtered = app.events("event=third", None).await;
    let events = filtered.until_id(*typed.last().expect("typed facts")).await;
    assert_eq!(events.iter().map(Event::id).collect::<Vec<_>>(), typed);
}
