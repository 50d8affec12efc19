//! `factlog backup`: a consistent copy of a live SQLite log, made with `VACUUM INTO` on a
//! read-only connection. In WAL mode the copy is one read transaction's snapshot: servers
//! go on appending and answering while it is made, and every fact committed before it
//! began is in it, with its id, its key and the log's identity.

use std::fs::File;
use std::path::Path;

use anyhow::Context as _;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use super::connect::options;
use super::durable::wal_path;

/// What a backup holds.
#[derive(Debug)]
pub struct Copied {
    /// The newest id the copy has handed out (0 for an empty log).
    pub newest_id: i64,
    /// The copy's size on disk.
    pub bytes: u64,
}

/// Copies the SQLite log at `url` into the new file `out`.
///
/// # Errors
/// When `out` exists (a backup never overwrites), the log cannot be opened or read, or the
/// copy cannot be written; the message names which.
pub async fn backup(url: &str, out: &Path) -> anyhow::Result<Copied> {
    if out.exists() {
        anyhow::bail!(
            "{} exists: a backup never overwrites a file; name a new one",
            out.display()
        );
    }
    let name = out
        .file_name()
        .with_context(|| format!("{} names no file to write", out.display()))?;
    // Written under a temporary name beside the final one (so the rename below stays on
    // one file system), and a leftover of an interrupted backup is no backup: removed.
    let partial = out.with_file_name(format!("{}.partial", name.to_string_lossy()));
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot remove {}", partial.display()));
        }
    }
    let target = partial
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", partial.display()))?;

    let mut conn = options(url)?
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    // Not a query with rows to check: sqlx's macros have nothing to verify here.
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot copy {url} into {}", partial.display()))?;
    conn.close().await?;

    // The copy may hold a group a server has committed but not yet synced (with `--sync
    // full` its syncer does that just after the commit; see `durable.rs`). Syncing the
    // write-ahead log here makes every fact in the copy durable in the log too, so that a
    // power cut cannot leave the backup with facts the log has lost and would then hand out
    // again under the same ids. No write-ahead log: no server has the log open, and
    // everything is in the database file, which the last one synced.
    sync_wal(url, &options(url)?)?;

    // VACUUM INTO does not sync what it wrote. Synced, then given its final name, then
    // the folder synced: after a power cut the final name holds a whole copy or is not
    // there.
    File::open(&partial)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {}", partial.display()))?;
    give_final_name(&partial, out)?;
    let folder = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync the folder {}", folder.display()))?;

    // What the copy holds, read from the copy.
    let mut copy = SqliteConnectOptions::new()
        .filename(out)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open the copy {}", out.display()))?;
    let newest_id = sqlx::query_scalar!(
        r#"SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'facts'), 0)
               AS "id!: i64""#
    )
    .fetch_one(&mut copy)
    .await
    .with_context(|| format!("cannot read the copy {}", out.display()))?;
    copy.close().await?;
    let bytes = std::fs::metadata(out)
        .with_context(|| format!("cannot read the size of {}", out.display()))?
        .len();
    Ok(Copied { newest_id, bytes })
}

/// Gives the finished copy `partial` the name `out`, never replacing a file of that name
/// (one made while the copy was written, by another backup or anything else). A hard
/// link fails when the name exists, where a rename would replace it; on a file system
/// without hard links the copy is renamed after one more look.
fn give_final_name(partial: &Path, out: &Path) -> anyhow::Result<()> {
    let exists = || {
        anyhow::anyhow!(
            "{} exists: a backup never overwrites a file; name a new one (the copy is left in {})",
            out.display(),
            partial.display()
        )
    };
    match std::fs::hard_link(partial, out) {
        Ok(()) => std::fs::remove_file(partial)
            .with_context(|| format!("cannot remove {}", partial.display())),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(_) if out.exists() => Err(exists()),
        Err(_) => std::fs::rename(partial, out)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display())),
    }
}

/// Syncs the write-ahead log of the SQLite log at `url`, if it has one.
fn sync_wal(url: &str, options: &SqliteConnectOptions) -> anyhow::Result<()> {
    match File::open(wal_path(options.get_filename())) {
        Ok(file) => file
            .sync_data()
            .with_context(|| format!("cannot sync the write-ahead log of {url}")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot open the write-ahead log of {url}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_taken_while_the_copy_was_written_is_not_replaced() {
        let dir = tempfile::TempDir::new().expect("a directory");
        let (partial, out) = (dir.path().join("out.db.partial"), dir.path().join("out.db"));
        std::fs::write(&partial, "the copy").expect("written");
        std::fs::write(&out, "someone else's").expect("written");
        let err = give_final_name(&partial, &out).expect_err("refused");
        assert!(err.to_string().contains("exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&out).expect("read"),
            "someone else's"
        );
        assert_eq!(std::fs::read_to_string(&partial).expect("read"), "the copy");
    }

    #[test]
    fn the_copy_takes_a_free_name() {
        let dir = tempfile::TempDir::new().expect("a directory");
        let (partial, out) = (dir.path().join("out.db.partial"), dir.path().join("out.db"));
        std::fs::write(&partial, "the copy").expect("written");
        give_final_name(&partial, &out).expect("named");
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "the copy");
        assert!(!partial.exists());
    }
}
