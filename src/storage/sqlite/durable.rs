//! The durable watermark: with `--sync full`, a group is committed without waiting for the
//! disk, a second thread makes the write-ahead log durable while the writer commits the
//! next group, and only ids at or below the watermark exist for anyone outside the
//! writer. Every read caps its ids at [`Watermark::get`]; the writer's syncer raises it,
//! then publishes the group and answers its requests (`storage/syncer.rs`).
//!
//! # Why the watermark is sound under SQLite's WAL rules
//!
//! The writer's connection commits with `synchronous=NORMAL`: a commit writes the
//! group's frames into the `-wal` file, the last one marked as a commit, and returns
//! without an fsync. [`WalSync::sync`] then `fdatasync`s the `-wal` file through a
//! descriptor of its own. That covers SQLite's writes: a sync acts on the file (the
//! inode), not on the descriptor the writes went through, and `fdatasync` includes the
//! file's new length.
//!
//! - **What recovery keeps after a power cut.** Recovery reads the WAL's header, then its
//!   frames while each one's salts match the header's and its cumulative checksum holds,
//!   and keeps everything up to the last valid commit frame. Every frame of a group was
//!   written before its commit returned, so the sync that follows makes the group and
//!   everything before it in the WAL durable, and recovery keeps all of it: every id at
//!   or below the watermark.
//! - **What a checkpoint syncs.** Under `synchronous=NORMAL` a checkpoint syncs the WAL
//!   before it copies frames into the database file, and the database file after: what
//!   it copied is durable in the database file before the WAL may be reused.
//! - **When the WAL restarts.** After a complete checkpoint, the next commit starts the
//!   WAL over from its beginning with new salts. SQLite syncs that new header before it
//!   writes the first frame after it, at `NORMAL` too (its ticket ff5be73dee), so
//!   recovery can never pair frames of one generation with the header of another. A
//!   power cut before the next [`WalSync::sync`] loses at most the frames after the
//!   restart: groups that were never synced, whose ids are above the watermark, and whose
//!   publishers were never answered. Everything before the restart is in the database
//!   file.
//! - **The file itself.** The `-wal` file is deleted only when the last connection to the
//!   database closes; the writer's stays open until the syncer has ended. A size limit
//!   truncates the same file. So the descriptor opened at start names the WAL for the
//!   server's whole life.
//!
//! A retention step's delete is committed the same way and made durable by the next
//! sync; until then a power cut brings the deleted facts back, which costs a reader
//! nothing (`appender.rs`).
//!
//! With `--sync normal` commits are never synced, and the writer raises the watermark as
//! each commit returns, just before it publishes the group.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::domain::FactRecord;
use crate::storage::model::Publish;

/// The hidden environment variable naming a file whose presence holds [`WalSync::sync`]
/// (a test's way to keep facts committed but not yet durable; see CONTRIBUTING).
const HOLD_VARIABLE: &str = "FACTLOG_TEST_HOLD_SYNC";

/// The newest id every read may show: the newest durable one. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Watermark(Arc<AtomicI64>);

impl Watermark {
    /// A watermark at `id`.
    pub fn new(id: i64) -> Self {
        Self(Arc::new(AtomicI64::new(id)))
    }

    /// The newest id a read may show.
    pub fn get(&self) -> i64 {
        // Acquire pairs with `reveal`'s release: a reader that sees an id also sees the
        // group's commit that came before it (a read then starts a snapshot that has it).
        self.0.load(Ordering::Acquire)
    }

    /// Shows durable facts to the readers (raises the watermark to the last of them),
    /// then hands them to the streams: a stream that reads the log after it has them
    /// finds them there too.
    pub fn reveal(&self, streams: &dyn Publish, inserted: &[FactRecord]) {
        if let Some(last) = inserted.last() {
            self.0.fetch_max(last.id, Ordering::Release);
        }
        // This writer is the log's only source: its groups are the log, in order.
        streams.publish(inserted);
    }
}

/// The write-ahead log of the database file `db`: SQLite's `-wal` file beside it.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Makes the write-ahead log durable: the `-wal` file, opened once by path.
#[derive(Debug)]
pub struct WalSync {
    wal: File,
    /// While this file exists, a sync waits (the test hook).
    hold: Option<PathBuf>,
}

impl WalSync {
    /// Opens the write-ahead log of the database file `db` and syncs it and the database
    /// file once: what a previous process committed but never synced is made durable
    /// before it is shown to anyone.
    ///
    /// # Errors
    /// When either file cannot be opened or synced.
    pub fn open(db: &Path) -> std::io::Result<Self> {
        let wal = File::open(wal_path(db))?;
        wal.sync_data()?;
        File::open(db)?.sync_data()?;
        Ok(Self {
            wal,
            hold: std::env::var_os(HOLD_VARIABLE).map(PathBuf::from),
        })
    }

    /// Makes every frame written to the WAL so far durable.
    ///
    /// # Errors
    /// When the system cannot sync the file. What was written may then be lost, and a
    /// later sync that succeeds does not vouch for it.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(hold) = &self.hold {
            while hold.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.wal.sync_data()
    }
}
