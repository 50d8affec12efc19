//! Replay pages: a stream's read of the log after its cursor, rendered into SSE frames.
//!
//! Both engines read a page as one string of packed rows, `<id>,<event>,<fact>` each
//! ended by a line feed (an empty event for a fact without a type), which the database
//! joins itself: one row for sqlx to carry across instead of one per fact, which was most
//! of a replay's cost. No field can hold the separators: ids are digits, event names have
//! no `,` and no line break, and a fact is compact JSON (no raw line break; a `,` in it is
//! fine, since it is the last field). The frames are then rendered here by
//! [`crate::domain::frame`], the one owner of frame text, exactly as live groups are.

use bytes::{Bytes, BytesMut};

use super::model::StorageError;
use crate::domain::frame;

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
}

impl FramePage {
    /// Renders packed rows (`None` when the database found none), read with a limit of
    /// `asked` rows. Rendering stops after the frame that reaches `max_bytes`, so that a
    /// page of facts far larger than expected costs at most that much memory (and the one
    /// frame crossing it); the rest is read again by the next page.
    ///
    /// # Errors
    /// [`StorageError::Internal`] when a row is not in the packed form.
    pub fn render(
        packed: Option<&str>,
        asked: i64,
        max_bytes: usize,
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
            let (id, rest) = row.split_once(',').ok_or_else(malformed)?;
            let (event, fact) = rest.split_once(',').ok_or_else(malformed)?;
            let id: i64 = id.parse().map_err(|_| malformed())?;
            frame::fact(&mut frames, id, Some(event).filter(|e| !e.is_empty()), fact);
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_packed_rows_as_frames() {
        let page =
            FramePage::render(Some("7,,1\n8,a,{\"x\":\"y,z\"}\n"), 10, 1 << 20).expect("a page");
        assert_eq!(
            &page.frames[..],
            b"id: 7\ndata: 1\n\nid: 8\nevent: a\ndata: {\"x\":\"y,z\"}\n\n"
        );
        assert_eq!((page.last_id, page.rendered, page.more), (8, 2, false));
        // As many rows as asked: the log may go on.
        assert!(
            FramePage::render(Some("7,,1\n8,,2\n"), 2, 1 << 20)
                .expect("a page")
                .more
        );
        let empty = FramePage::render(None, 10, 1 << 20).expect("a page");
        assert_eq!(
            (empty.frames.len(), empty.last_id, empty.more),
            (0, 0, false)
        );
        assert!(FramePage::render(Some("7;1\n"), 10, 1 << 20).is_err());
    }

    #[test]
    fn stops_after_the_frame_that_reaches_the_limit() {
        let packed = "7,,1\n8,a,22\n9,,3\n";
        // The limit falls inside the second frame: keep it whole, and stop after it.
        let page = FramePage::render(Some(packed), 10, 20).expect("a page");
        assert_eq!(
            &page.frames[..],
            b"id: 7\ndata: 1\n\nid: 8\nevent: a\ndata: 22\n\n"
        );
        assert_eq!((page.last_id, page.more), (8, true));
        // The limit falls inside the first frame.
        assert_eq!(
            FramePage::render(Some(packed), 10, 1)
                .expect("a page")
                .last_id,
            7
        );
        // Reached only by the last frame: nothing is left over.
        let page = FramePage::render(Some(packed), 10, 46).expect("a page");
        assert_eq!((page.last_id, page.more), (9, false));
    }
}
