//! Property-based fuzzing of every parser of outside input, and of the SSE framing, which
//! two parsers read back: the WHATWG algorithm written out here, and the
//! `eventsource-stream` crate, written by others, fed the bytes in arbitrary pieces as a
//! network delivers them. They must agree on everything the server renders.
//!
//! `cargo test --test fuzz` runs each property over 256 generated cases (what CI runs);
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz` is the long run. A failing case
//! is shrunk to a minimal one and saved under `proptest-regressions/`, to be committed.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eventsource_stream::Eventsource as _;
use factlog::domain::frame::{self, Format};
use factlog::domain::{
    EventName, FactRecord, IdempotencyKey, StartPosition, TopicName, parse_position,
    parse_urlencoded,
};
use futures_util::{FutureExt as _, StreamExt as _};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// An event as a WHATWG `text/event-stream` parser dispatches it.
#[derive(Debug, Default, PartialEq)]
struct Dispatched {
    id: Option<String>,
    event: String,
    data: String,
}

/// The event-stream interpretation algorithm of the HTML standard (section 9.2.6): lines
/// end with CRLF, LF or CR; a blank line dispatches; `:` starts a comment; one leading
/// space after the colon is removed; `data` lines are joined with LF; an `id` containing
/// NUL is ignored; the event type defaults to `message`.
fn whatwg_parse(stream: &str) -> Vec<Dispatched> {
    let mut events = Vec::new();
    let mut data = String::new();
    let mut event = String::new();
    let mut last_id: Option<String> = None;
    let normalized = stream.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                data.pop(); // the trailing LF
                events.push(Dispatched {
                    id: last_id.clone(),
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event.clone()
                    },
                    data: std::mem::take(&mut data),
                });
            }
            data.clear();
            event.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = Some(value.to_owned()),
            _ => {}
        }
    }
    events
}

/// An event as `eventsource-stream` dispatches it, with the reconnection delay its block
/// set.
#[derive(Debug, PartialEq)]
struct Other {
    dispatched: Dispatched,
    retry: Option<Duration>,
}

/// The second oracle: what `eventsource-stream` dispatches from `stream` delivered in
/// pieces cut at `cuts` (anywhere: inside a line, inside a character), as one would read
/// it from a socket.
fn eventsource_parse(stream: &[u8], cuts: &[Index]) -> Vec<Other> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
    at.push(stream.len());
    at.sort_unstable();
    let mut start = 0;
    let mut pieces = Vec::new();
    for end in at {
        pieces.push(Ok::<_, Infallible>(Bytes::copy_from_slice(
            &stream[start..end],
        )));
        start = end;
    }
    futures_util::stream::iter(pieces)
        .eventsource()
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("a stream in memory is always ready")
        .into_iter()
        .map(|event| {
            let event = event.expect("eventsource-stream parses the stream");
            Other {
                dispatched: Dispatched {
                    // The crate says "no id yet" with an empty one.
                    id: (!event.id.is_empty()).then_some(event.id),
                    event: event.event,
                    data: event.data,
                },
                retry: event.retry,
            }
        })
        .collect()
}

/// Both parsers read `stream` (the second in the pieces `cuts` make), agree, and the
/// first event carries the opening `retry:`; returns the events.
fn both_parse(stream: &str, cuts: &[Index]) -> Result<Vec<Dispatched>, TestCaseError> {
    let ours = whatwg_parse(stream);
    let theirs = eventsource_parse(stream.as_bytes(), cuts);
    let retries: Vec<Option<Duration>> = theirs.iter().map(|o| o.retry).collect();
    let theirs: Vec<Dispatched> = theirs.into_iter().map(|o| o.dispatched).collect();
    prop_assert_eq!(&ours, &theirs, "the two parsers disagree on {:?}", stream);
    if let Some((first, rest)) = retries.split_first() {
        prop_assert_eq!(*first, Some(Duration::from_millis(2000)));
        prop_assert!(rest.iter().all(Option::is_none));
    }
    Ok(ours)
}

/// Any JSON value, with strings drawn from all of Unicode (control characters, line and
/// paragraph separators, quotes and backslashes included).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\\u{2028}\u{2029}\u{85}]*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

proptest! {
    /// For any fact, id, topic and type, the frame a stream writes parses back, with both
    /// parsers, to exactly that fact (or, as a record, that whole record) with that id and
    /// type, and nothing else.
    #[test]
    fn frames_parse_back_to_the_fact(
        value in json_value(),
        id in 1..i64::MAX,
        topic in event_name(),
        event in proptest::option::of(event_name()),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let record = FactRecord {
            id,
            topic: topic.clone(),
            event: event.clone(),
            fact: serde_json::to_string(&value).expect("serializable"),
            created_at: "2026-11-30T12:00:00.000Z".into(),
        };
        for format in [Format::Fact, Format::Record] {
            let mut frames = BytesMut::new();
            record.render_frame(&mut frames, format);
            let text = std::str::from_utf8(&frames).expect("frames are UTF-8");
            // A stream as the server writes it: the opening `retry:`, the frame, an idle
            // stretch's comments, the frame again.
            let mut stream = String::from_utf8(frame::retry(2000).to_vec()).expect("UTF-8");
            for piece in [text.as_bytes(), frame::KEEP_ALIVE, frame::KEEP_ALIVE, text.as_bytes()] {
                stream.push_str(std::str::from_utf8(piece).expect("UTF-8"));
            }
            // Clients that dispatch every blank-line-ended block (fetch-event-source,
            // httpx-sse) see only blocks with data: no phantom events.
            let blocks: Vec<&str> = stream.split_terminator("\n\n").collect();
            prop_assert_eq!(blocks.len(), 2);
            for block in blocks {
                prop_assert!(block.lines().any(|line| line.starts_with("data:")));
            }
            let parsed = both_parse(&stream, &cuts)?;
            prop_assert_eq!(parsed.len(), 2);
            prop_assert_eq!(&parsed[0], &parsed[1]);
            let id_text = id.to_string();
            prop_assert_eq!(parsed[0].id.as_deref(), Some(id_text.as_str()));
            prop_assert_eq!(&parsed[0].event, event.as_deref().unwrap_or("message"));
            let back: Value = serde_json::from_str(&parsed[0].data).expect("the data is JSON");
            let expected = match format {
                Format::Fact => value.clone(),
                Format::Record => serde_json::json!({
                    "id": id, "topic": topic, "event": event, "fact": value,
                    "created_at": "2026-11-30T12:00:00.000Z",
                }),
            };
            prop_assert_eq!(back, expected);
        }
    }

    /// The stream's own events (`reset` of both kinds, `token-expired`), between facts and
    /// comments, read the same with both parsers, as the JSON the description gives, and
    /// leave the last id where the fact before them put it.
    #[test]
    fn the_streams_own_events_parse_alike(
        ids in prop::collection::vec(0..i64::MAX, 3),
        first in proptest::option::of(1..i64::MAX),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let (fact_id, last_id, token_last) = (ids[0].max(1), ids[1], ids[2]);
        let record = FactRecord {
            id: fact_id,
            topic: "t".into(),
            event: None,
            fact: "{}".into(),
            created_at: "2026-11-30T12:00:00.000Z".into(),
        };
        let mut fact = BytesMut::new();
        record.render_frame(&mut fact, Format::Fact);
        let pieces: [&[u8]; 7] = [
            &frame::retry(2000),
            &frame::reset_unknown(last_id),
            &fact,
            frame::KEEP_ALIVE,
            &frame::reset_expired(first, last_id),
            frame::KEEP_ALIVE,
            &frame::token_expired(token_last),
        ];
        let stream = String::from_utf8(pieces.concat()).expect("UTF-8");
        let parsed = both_parse(&stream, &cuts)?;
        let names: Vec<&str> = parsed.iter().map(|d| d.event.as_str()).collect();
        prop_assert_eq!(names, ["reset", "message", "reset", "token-expired"]);
        let data: Vec<Value> = parsed
            .iter()
            .map(|d| serde_json::from_str(&d.data).expect("the data is JSON"))
            .collect();
        prop_assert_eq!(&data[0], &serde_json::json!({"reason": "unknown", "last_id": last_id}));
        prop_assert_eq!(
            &data[2],
            &serde_json::json!({"reason": "expired", "first_id": first, "last_id": last_id})
        );
        prop_assert_eq!(&data[3], &serde_json::json!({"last_id": token_last}));
        let fact_id = fact_id.to_string();
        prop_assert_eq!(parsed[0].id.as_deref(), None);
        prop_assert_eq!(parsed[2].id.as_deref(), Some(fact_id.as_str()));
        prop_assert_eq!(parsed[3].id.as_deref(), Some(fact_id.as_str()));
    }

    /// Positions: never a panic; accepted exactly when they are 1 to 19 ASCII digits that
    /// fit in an i64, with that value.
    #[test]
    fn positions(raw in prop::collection::vec(any::<u8>(), 0..24)) {
        let parsed = parse_position("after", &raw);
        let expected = std::str::from_utf8(&raw)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<i64>().ok());
        prop_assert_eq!(parsed.ok(), expected);
    }

    /// Digit strings in particular, where the boundaries are.
    #[test]
    fn digit_positions(raw in "[0-9]{1,21}") {
        let parsed = parse_position("tail", raw.as_bytes()).ok();
        let expected = (raw.len() <= 19).then(|| raw.parse::<i64>().ok()).flatten();
        prop_assert_eq!(parsed, expected);
    }

    /// The start position never panics, and a malformed value anywhere is refused.
    #[test]
    fn start_positions(
        header in proptest::option::of(prop::collection::vec(any::<u8>(), 0..22)),
        query in proptest::option::of(".{0,22}"),
        after in proptest::option::of("[0-9a]{0,21}"),
        tail in proptest::option::of("[0-9-]{0,21}"),
    ) {
        let resolved = StartPosition::resolve(
            header.as_deref(),
            query.as_deref(),
            after.as_deref(),
            tail.as_deref(),
        );
        let valid = |v: &[u8]| parse_position("x", v).is_ok();
        let all_valid = header.as_deref().is_none_or(valid)
            && query.as_deref().is_none_or(|q| valid(q.as_bytes()))
            && after.as_deref().is_none_or(|a| valid(a.as_bytes()))
            && tail.as_deref().is_none_or(|t| valid(t.as_bytes()));
        prop_assert_eq!(resolved.is_ok(), all_valid);
    }

    /// Event names: accepted exactly when 1 to 64 of `A-Z a-z 0-9 _ . : -`.
    #[test]
    fn event_names(name in ".{0,70}") {
        let expected = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        let parsed = EventName::parse(&name);
        prop_assert_eq!(parsed.is_ok(), expected);
        if let Ok(parsed) = parsed {
            prop_assert_eq!(parsed.as_str(), name.as_str());
        }
    }

    /// Topic names: accepted exactly when 1 to 64 of `A-Z a-z 0-9 _ . : -`.
    #[test]
    fn topic_names(name in ".{0,70}") {
        let expected = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        let parsed = TopicName::parse(&name);
        prop_assert_eq!(parsed.is_ok(), expected);
        if let Ok(parsed) = parsed {
            prop_assert_eq!(parsed.as_str(), name.as_str());
        }
    }

    /// Idempotency keys: accepted exactly when 1 to 200 visible ASCII bytes.
    #[test]
    fn idempotency_keys(raw in prop::collection::vec(any::<u8>(), 0..210)) {
        let expected = !raw.is_empty()
            && raw.len() <= 200
            && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        let parsed = IdempotencyKey::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), expected);
        if let Ok(key) = parsed {
            prop_assert_eq!(key.as_str().as_bytes(), raw.as_slice());
        }
    }

    /// Form bodies and query strings: never a panic on any bytes.
    #[test]
    fn urlencoded_never_panics(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_urlencoded(&raw);
    }

    /// Any list of pairs, encoded as a browser would, decodes back to itself.
    #[test]
    fn urlencoded_round_trip(pairs in prop::collection::vec((".{0,12}", ".{0,12}"), 0..8)) {
        let encode = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        };
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let decoded = parse_urlencoded(body.as_bytes()).expect("valid");
        prop_assert_eq!(decoded, pairs);
    }
}
