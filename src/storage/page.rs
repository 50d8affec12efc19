//! Replay pages: a stream's read of the log after its cursor, rendered into SSE frames.
//!
//! Both engines read a page as one string of packed rows,
//! `<id>,<topic>,<event>,<created_at>,<fact>` each ended by a line feed (an empty event
//! for a fact without a type), which the database joins itself: one row for sqlx to carry
//! across instead of one per fact, which was most of a replay's cost. No field can hold
//! the separators: ids are digits, topic and event names have no `,` and no line break,
//! times are RFC 3339, and a fact is compact JSON (no raw line break; a `,` in it is fine,
//! since it is the last field). The frames are then rendered here by
//! [`crate::domain::frame`], the one owner of frame text, exactly as live groups are.

use bytes::{Bytes, BytesMut};

use super::model::{Bounds, StorageError};
use crate::domain::frame::{self, Fields, Format};

/// A page of rendered frames.
#[derive(Debug)]
pub struct FramePage {
    /// The frames, back to back; empty when there were no facts.
    pub frames: Bytes,
    /// The id of the last fact rendered (0 when none).
    pub last_id: i64,
    /// How many facts were rendered.
    pub rendered: usize,
    /// Whether the log may hold more after `last_id`: the page was full, or rendering
    /// stopped at the byte limit before its end.
    pub more: bool,
    /// The log's bounds, read in the same statement as the page: a cursor below its
    /// highest deleted id means facts the stream wanted were deleted before this read.
    pub bounds: Bounds,
}

impl FramePage {
    /// Renders packed rows (`None` when the database found none), read with a limit of
    /// `asked` rows together with the log's `bounds`, in `format`. Rendering stops after the frame that reaches
    /// `max_bytes`, so that a page of facts far larger than expected costs at most that
    /// much memory (and the one frame crossing it); the rest is read again by the next
    /// page.
    ///
    /// # Errors
    /// [`StorageError::Internal`] when a row is not in the packed form.
    pub fn render(
        packed: Option<&str>,
        bounds: Bounds,
        asked: i64,
        max_bytes: usize,
        format: Format,
    ) -> Result<Self, StorageError> {
        let packed = packed.unwrap_or_default();
        let rows = memchr::memchr_iter(b'\n', packed.as_bytes()).count();
        let mut frames = BytesMut::with_capacity(packed.len() + packed.len() / 4);
        let mut last_id = 0;
        let mut rendered = 0;
        for row in packed.split_terminator('\n') {
            let malformed = || {
                StorageError::Internal(anyhow::anyhow!(
                    "a replay page holds a malformed row after id {last_id}"
                ))
            };
            let mut fields = row.splitn(5, ',');
            let mut next = || fields.next().ok_or_else(malformed);
            let (id, topic, event, created_at, fact) =
                (next()?, next()?, next()?, next()?, next()?);
            let id: i64 = id.parse().map_err(|_| malformed())?;
            let fields = Fields {
                id,
                topic,
                event: Some(event).filter(|e| !e.is_empty()),
                created_at,
                fact,
            };
            frame::fact(&mut frames, format, &fields);
            last_id = id;
            rendered += 1;
            if frames.len() >= max_bytes {
                break;
            }
        }
        let full = i64::try_from(rows).is_ok_and(|rows| rows >= asked);
        Ok(Self {
            frames: frames.freeze(),
            last_id,
            rendered,
            more: rendered < rows || full,
            bounds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-11-30T12:00:00.000Z";

    fn render(packed: &str, asked: i64, limit: usize, format: Format) -> FramePage {
        FramePage::render(Some(packed), Bounds::default(), asked, limit, format).expect("a page")
    }

    #[test]
    fn renders_packed_rows_as_frames() {
        let packed = format!("7,t,,{T},1\n8,t,a,{T},{{\"x\":\"y,z\"}}\n");
        let page = render(&packed, 10, 1 << 20, Format::Fact);
        assert_eq!(
            &page.frames[..],
            b"id: 7\ndata: 1\n\nid: 8\nevent: a\ndata: {\"x\":\"y,z\"}\n\n"
        );
        assert_eq!((page.last_id, page.rendered, page.more), (8, 2, false));
        let record = render(&packed, 10, 1 << 20, Format::Record);
        let text = std::str::from_utf8(&record.frames).expect("UTF-8");
        assert!(text.ends_with(&format!(
            "data: {{\"id\":8,\"topic\":\"t\",\"event\":\"a\",\"fact\":{{\"x\":\"y,z\"}},\"created_at\":\"{T}\"}}\n\n"
        )));
        // As many rows as asked: the log may go on.
        assert!(
            render(
                &format!("7,t,,{T},1\n8,t,,{T},2\n"),
                2,
                1 << 20,
                Format::Fact
            )
            .more
        );
        let empty =
            FramePage::render(None, Bounds::default(), 10, 1 << 20, Format::Fact).expect("a page");
        assert_eq!(
            (empty.frames.len(), empty.last_id, empty.more),
            (0, 0, false)
        );
        assert!(
            FramePage::render(Some("7;1\n"), Bounds::default(), 10, 1 << 20, Format::Fact).is_err()
        );
    }

    #[test]
    fn stops_after_the_frame_that_reaches_the_limit() {
        let packed = format!("7,t,,{T},1\n8,t,a,{T},22\n9,t,,{T},3\n");
        // The limit falls inside the second frame: keep it whole, and stop after it.
        let page = render(&packed, 10, 20, Format::Fact);
        assert_eq!(
            &page.frames[..],
            b"id: 7\ndata: 1\n\nid: 8\nevent: a\ndata: 22\n\n"
        );
        assert_eq!((page.last_id, page.more), (8, true));
        // The limit falls inside the first frame.
        assert_eq!(render(&packed, 10, 1, Format::Fact).last_id, 7);
        // Reached only by the last frame: nothing is left over.
        let page = render(&packed, 10, 46, Format::Fact);
        assert_eq!((page.last_id, page.more), (9, false));
    }
}
