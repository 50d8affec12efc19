//! Reading an event stream as a client does: frames split at blank lines, each parsed
//! field by field as the SSE specification says.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use serde_json::Value;

use crate::WAIT;

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines, joined.
    pub data: String,
}

impl Event {
    /// The id as a number.
    pub fn id(&self) -> i64 {
        self.id
            .as_deref()
            .expect("an id")
            .parse()
            .expect("a numeric id")
    }

    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// An open event stream, read frame by frame.
pub struct SseStream {
    /// The response's status.
    pub status: u16,
    /// The response's headers.
    pub headers: reqwest::header::HeaderMap,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl SseStream {
    /// Reads `response` as an event stream.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next raw frame, or `None` when the stream ended: the lines before a blank line,
    /// or a `retry:` or comment line on its own, as the server sends those (with no blank
    /// line after them, so that no client sees an empty event).
    pub async fn next_frame(&mut self) -> Option<String> {
        loop {
            let blank = self.buf.iter().take_while(|&&b| b == b'\n').count();
            self.buf.drain(..blank);
            if let Some(eol) = self.buf.iter().position(|&b| b == b'\n') {
                let line = &self.buf[..eol];
                if line.starts_with(b":") || line.starts_with(b"retry:") {
                    let line: Vec<u8> = self.buf.drain(..=eol).take(eol).collect();
                    return Some(String::from_utf8(line).expect("UTF-8 lines"));
                }
            }
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                return Some(String::from_utf8(frame).expect("UTF-8 frames"));
            }
            match tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("a frame in time")
            {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event, skipping comments and the `retry:` frame, parsed field by field as
    /// the SSE specification does.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let frame = self.next_frame().await?;
            if let Some(event) = parse_event(&frame) {
                return Some(event);
            }
        }
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            events.push(self.next_event().await.expect("the stream goes on"));
        }
        events
    }

    /// Events until (and including) the one with id `last`.
    pub async fn until_id(&mut self, last: i64) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await.expect("the stream goes on");
            let id = event.id();
            events.push(event);
            if id >= last {
                return events;
            }
        }
    }
}

/// Parses one frame's fields; `None` when it carries no data (comments, `retry:`).
pub fn parse_event(frame: &str) -> Option<Event> {
    let mut event = Event {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in frame.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line
            .split_once(':')
            .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}

/// Asserts ids strictly increase by one from `first`, with no gap and no duplicate.
pub fn assert_consecutive(events: &[Event], first: i64) {
    let ids: Vec<i64> = events.iter().map(Event::id).collect();
    let expected: Vec<i64> = (first..first + ids.len() as i64).collect();
    assert_eq!(ids, expected, "ids must be consecutive from {first}");
}
