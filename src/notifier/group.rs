//! One committed group, rendered once for every stream.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::domain::frame::{self, Fields, Format};
use crate::domain::{EventFilter, FactRecord, TopicSet};

/// One committed group's facts, rendered: every fact's frame in each format, back to back
/// in id order, so that a stream that writes them all sends one zero-copy slice.
#[derive(Debug)]
pub struct Group {
    /// The facts' frames with the fact as `data:`.
    frames: Bytes,
    /// The facts' frames with the whole record as `data:`, and where each ends; rendered
    /// when a stream first asks for them, once for all such streams.
    records: OnceLock<(Bytes, Vec<usize>)>,
    facts: Vec<Rendered>,
    /// The topics of the group's facts, in name order, each once: what the notifier routes
    /// the group by.
    topics: Vec<Arc<str>>,
}

/// What is kept of one fact of a [`Group`].
#[derive(Debug)]
struct Rendered {
    id: i64,
    topic: Arc<str>,
    event: Option<Box<str>>,
    created_at: Arc<str>,
    /// Where its frame ends in `frames`.
    end: usize,
    /// Where its fact's JSON text starts in `frames` (it ends two bytes before `end`).
    fact: usize,
}

impl Group {
    /// Renders these records, which must be in increasing id order.
    pub fn render(records: &[FactRecord]) -> Self {
        let mut buf = BytesMut::new();
        let mut topics: Vec<Arc<str>> = Vec::new();
        let mut time: Option<Arc<str>> = None;
        let facts = records
            .iter()
            .map(|record| {
                record.render_frame(&mut buf, Format::Fact);
                let end = buf.len();
                let topic = match topics.iter().find(|t| ***t == *record.topic) {
                    Some(topic) => Arc::clone(topic),
                    None => {
                        let topic: Arc<str> = Arc::from(record.topic.as_str());
                        topics.push(Arc::clone(&topic));
                        topic
                    }
                };
                // A group's facts usually share their commit time.
                let created_at = match &time {
                    Some(t) if **t == *record.created_at => Arc::clone(t),
                    _ => Arc::clone(time.insert(Arc::from(record.created_at.as_str()))),
                };
                Rendered {
                    id: record.id,
                    topic,
                    event: record.event.as_deref().map(Box::from),
                    created_at,
                    end,
                    fact: end - 2 - record.fact.len(),
                }
            })
            .collect();
        topics.sort_unstable();
        Self {
            frames: buf.freeze(),
            records: OnceLock::new(),
            facts,
            topics,
        }
    }

    /// The newest id in this group.
    pub fn last_id(&self) -> Option<i64> {
        self.facts.last().map(|f| f.id)
    }

    /// The group's topics, in name order.
    pub fn topics(&self) -> &[Arc<str>] {
        &self.topics
    }

    /// Whether the group holds a fact of one of `topics` (of any, when `None`).
    pub fn touches(&self, topics: Option<&TopicSet>) -> bool {
        topics.is_none_or(|set| self.topics.iter().any(|t| set.contains(t)))
    }

    /// The frames, in `format`, of the facts after `cursor` of the selected topics and
    /// event types, ready to write; `None` when there are none.
    pub fn frames_after(
        &self,
        cursor: i64,
        topics: Option<&TopicSet>,
        events: Option<&EventFilter>,
        format: Format,
    ) -> Option<Bytes> {
        let first = self.facts.partition_point(|f| f.id <= cursor);
        if first == self.facts.len() {
            return None;
        }
        let (frames, ends) = match format {
            Format::Fact => (&self.frames, None),
            Format::Record => {
                let (frames, ends) = self.records.get_or_init(|| self.render_records());
                (frames, Some(ends))
            }
        };
        let end_of = |i: usize| ends.map_or(self.facts[i].end, |ends| ends[i]);
        let start_of = |i: usize| if i == 0 { 0 } else { end_of(i - 1) };
        let wanted = |fact: &Rendered| {
            topics.is_none_or(|set| set.contains(&fact.topic))
                && events.is_none_or(|filter| filter.matches(fact.event.as_deref()))
        };
        let rest = &self.facts[first..];
        // The wanted facts, when they are one run (every fact after the cursor, or the one
        // fact of a topic stream's in a group of several topics), are one slice of the
        // shared buffer; only scattered ones are copied out.
        let from = rest.iter().position(wanted)?;
        let to = rest.iter().rposition(wanted).unwrap_or(from);
        if rest[from..=to].iter().all(wanted) {
            return Some(frames.slice(start_of(first + from)..end_of(first + to)));
        }
        let mut out = BytesMut::new();
        for (i, fact) in rest.iter().enumerate().map(|(i, f)| (i + first, f)) {
            if wanted(fact) {
                out.extend_from_slice(&frames[start_of(i)..end_of(i)]);
            }
        }
        Some(out.freeze())
    }

    /// The record frames of every fact, and where each ends.
    fn render_records(&self) -> (Bytes, Vec<usize>) {
        let mut buf = BytesMut::with_capacity(self.frames.len() * 2);
        let mut ends = Vec::with_capacity(self.facts.len());
        for fact in &self.facts {
            let text = &self.frames[fact.fact..fact.end - 2];
            // Rendered from our own frame of a fact that was UTF-8: cannot fail.
            let text = std::str::from_utf8(text).unwrap_or_default();
            let fields = Fields {
                id: fact.id,
                topic: &fact.topic,
                event: fact.event.as_deref(),
                created_at: &fact.created_at,
                fact: text,
            };
            frame::fact(&mut buf, Format::Record, &fields);
            ends.push(buf.len());
        }
        (buf.freeze(), ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventName, TopicName};

    fn record(id: i64, topic: &str, event: Option<&str>) -> FactRecord {
        FactRecord {
            id,
            topic: topic.to_owned(),
            event: event.map(str::to_owned),
            fact: id.to_string(),
            created_at: "2026-11-30T12:00:00.000Z".to_owned(),
        }
    }

    fn topics(names: &[&str]) -> TopicSet {
        let names = names
            .iter()
            .map(|n| TopicName::parse(n).expect("valid"))
            .collect();
        TopicSet::new(names).expect("valid").expect("a set")
    }

    #[test]
    fn frames_after_cursor_topics_and_events() {
        let group = Group::render(&[
            record(3, "a", None),
            record(4, "b", Some("x")),
            record(5, "a", None),
        ]);
        let names: Vec<&str> = group.topics().iter().map(|t| &**t).collect();
        assert_eq!(names, ["a", "b"]);
        let all = group.frames_after(0, None, None, Format::Fact);
        assert_eq!(
            all.as_deref(),
            Some(&b"id: 3\ndata: 3\n\nid: 4\nevent: x\ndata: 4\n\nid: 5\ndata: 5\n\n"[..])
        );
        assert_eq!(
            group.frames_after(4, None, None, Format::Fact).as_deref(),
            Some(&b"id: 5\ndata: 5\n\n"[..])
        );
        assert_eq!(group.frames_after(5, None, None, Format::Fact), None);
        let only_x = EventFilter::new(vec![EventName::parse("x").expect("valid")])
            .expect("one name")
            .expect("a filter");
        assert_eq!(
            group
                .frames_after(0, None, Some(&only_x), Format::Fact)
                .as_deref(),
            Some(&b"id: 4\nevent: x\ndata: 4\n\n"[..])
        );
        let a = topics(&["a"]);
        assert_eq!(
            group
                .frames_after(0, Some(&a), None, Format::Fact)
                .as_deref(),
            Some(&b"id: 3\ndata: 3\n\nid: 5\ndata: 5\n\n"[..])
        );
        assert!(group.touches(Some(&a)) && !group.touches(Some(&topics(&["c"]))));
        assert_eq!(
            group.frames_after(0, Some(&a), Some(&only_x), Format::Fact),
            None
        );
    }

    #[test]
    fn record_frames_match_what_storage_renders() {
        let records = [record(7, "a", Some("x")), record(8, "b", None)];
        let group = Group::render(&records);
        let mut expected = BytesMut::new();
        for record in &records {
            record.render_frame(&mut expected, Format::Record);
        }
        assert_eq!(
            group.frames_after(0, None, None, Format::Record).as_deref(),
            Some(&expected[..])
        );
        let mut b_only = BytesMut::new();
        records[1].render_frame(&mut b_only, Format::Record);
        assert_eq!(
            group
                .frames_after(0, Some(&topics(&["b"])), None, Format::Record)
                .as_deref(),
            Some(&b_only[..])
        );
    }
}
