//! Consistent backups and restores of the whole database.
//!
//! A backup copies every table from one read transaction (a snapshot of everything committed
//! when it began; writes go on meanwhile) into a new redb file next to the destination, syncs
//! it, and renames it into place: a backup file is either complete or absent, even if the
//! process is killed half-way. A restore checks the file opens, has every table and a schema
//! this build understands, then copies it into an empty data directory the same way.
//!
//! Files go beside the backup: every blob the snapshot names, in `FILE.media/` (hard links
//! when on the same file system: blobs never change), written before `FILE` itself, so a
//! backup file that exists has its files. A restore copies them into `media/blobs` first.
//!
//! The same copy scrubs the database: redb frees the pages a change replaced but does not
//! clear them, so a deleted message's text stays in the file's free space until the space is
//! used again. A redaction (or a deleted room) marks the database; the next time the server
//! starts, it copies what is live into a fresh file and puts it in place of the old one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::tables::*;
use super::{DB_FILE, SCHEMA_VERSION};

/// What a backup wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupStats {
    /// Events copied.
    pub events: u64,
    /// Rows copied over all tables.
    pub rows: u64,
    /// Size of the backup file.
    pub bytes: u64,
    /// Stream position of the snapshot (the newest event in the backup).
    pub stream_pos: u64,
    /// Time taken, seconds.
    pub secs: f64,
    /// Files (blobs) put beside it, in `FILE.media`.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
}

/// Copies one table of `src` into `dst`; returns the rows copied. A table the source lacks
/// (written by an older schema, which the server upgrades when it opens the restored file) is
/// skipped.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &redb::WriteTransaction,
    table: redb::TableDefinition<K, V>,
) -> Result<u64, String> {
    let from = match src.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.to_string()),
    };
    let mut to = dst.open_table(table).map_err(|e| e.to_string())?;
    let mut rows = 0;
    for row in from.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        to.insert(k.value(), v.value()).map_err(|e| e.to_string())?;
        rows += 1;
    }
    Ok(rows)
}

/// The directory of a backup's files: `FILE.media` beside `FILE`.
pub fn media_dir_of(backup: &Path) -> PathBuf {
    let mut name = backup.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".media");
    backup.with_file_name(name)
}

/// Puts every blob the snapshot `src` names from `blobs` (the data directory's `media/blobs`)
/// into `to` (through `to.partial` and a rename): linked where it can be, else copied and
/// synced. Returns the files and their bytes.
fn copy_blobs(src: &ReadTransaction, blobs: &Path, to: &Path, link: bool) -> Result<(u64, u64), String> {
    let names: Vec<String> = {
        let table = match src.open_table(MEDIA_BLOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, 0)),
            Err(e) => return Err(e.to_string()),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| e.to_string())? {
            out.push(row.map_err(|e| e.to_string())?.0.value().to_string());
        }
        out
    };
    if names.is_empty() {
        return Ok((0, 0));
    }
    let partial = partial_path(to);
    let _ = std::fs::remove_dir_all(&partial);
    crate::files::private_dir(&partial)?;
    let (mut files, mut bytes) = (0u64, 0u64);
    for sha in &names {
        let Some(rel) = super::media::blob_relpath(sha) else { continue };
        let (from, into) = (blobs.join(&rel), partial.join(&rel));
        if let Some(parent) = into.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let linked = link && std::fs::hard_link(&from, &into).is_ok();
        if !linked {
            std::fs::copy(&from, &into).map_err(|e| format!("file {}: {e}", from.display()))?;
            std::fs::File::open(&into).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        }
        files += 1;
        bytes += std::fs::metadata(&into).map(|m| m.len()).unwrap_or(0);
    }
    let _ = std::fs::remove_dir_all(to);
    std::fs::rename(&partial, to).map_err(|e| format!("cannot move the files to {}: {e}", to.display()))?;
    sync_dir(to);
    Ok((files, bytes))
}

/// Copies every table of the snapshot `src` into a new database at `dest` (through a temporary
/// file and a rename), after the files it names (from `blobs`, when given) into
/// `dest.media`.
pub fn write_backup_with_media(
    src: &ReadTransaction,
    dest: &Path,
    blobs: Option<&Path>,
) -> Result<BackupStats, String> {
    if dest.exists() {
        return Err(format!("{} exists; choose a new file name", dest.display()));
    }
    let (files, file_bytes) = match blobs {
        Some(b) => copy_blobs(src, b, &media_dir_of(dest), true)?,
        None => (0, 0),
    };
    let mut stats = write_backup(src, dest)?;
    stats.files = files;
    stats.file_bytes = file_bytes;
    Ok(stats)
}

/// Copies every table of the snapshot `src` into a new database at `dest` (through a temporary
/// file and a rename).
pub fn write_backup(src: &ReadTransaction, dest: &Path) -> Result<BackupStats, String> {
    let start = Instant::now();
    if dest.exists() {
        return Err(format!("{} exists; choose a new file name", dest.display()));
    }
    let partial = partial_path(dest);
    let _ = std::fs::remove_file(&partial);
    let out = (|| {
        crate::files::private_file(&partial)?;
        let db = Database::create(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        let mut rows = 0u64;
        macro_rules! copy_each {
            ($($table:ident),+) => {
                $( rows += copy_table(src, &txn, $table)?; )+
            };
        }
        every_table!(copy_each);
        txn.commit().map_err(|e| e.to_string())?;
        drop(db);
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        Ok::<u64, String>(rows)
    })();
    let rows = match out {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, dest).map_err(|e| format!("cannot move the backup to {}: {e}", dest.display()))?;
    sync_dir(dest);
    let events = src.open_table(EVENTS).map_err(|e| e.to_string())?.len().map_err(|e| e.to_string())?;
    let stream_pos = read_pos(src)?;
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupStats { events, rows, bytes, stream_pos, secs: start.elapsed().as_secs_f64(), files: 0, file_bytes: 0 })
}

fn read_pos(r: &ReadTransaction) -> Result<u64, String> {
    super::stream_pos_in(r).map_err(|e| e.to_string())
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    dest.with_file_name(name)
}

/// Makes a rename durable (the directory entry), best effort.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// Backs up a data directory whose server is not running (the CLI's path when no server
/// answers on the admin socket).
pub fn backup_offline(data_dir: &Path, dest: &Path) -> Result<BackupStats, String> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(format!("no database at {}", path.display()));
    }
    let db = Database::open(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            format!("{} is in use by a running chat server that did not answer on its admin socket", path.display())
        }
        other => format!("cannot open {}: {other}", path.display()),
    })?;
    let r = db.begin_read().map_err(|e| e.to_string())?;
    write_backup_with_media(&r, dest, Some(&data_dir.join("media").join("blobs")))
}

/// Checks a backup file and copies it into `data_dir`, which must hold no database yet.
/// Returns the number of events and the stream position in it.
pub fn restore(data_dir: &Path, file: &Path) -> Result<(u64, u64), String> {
    let target = data_dir.join(DB_FILE);
    if target.exists() {
        return Err(format!("{} already holds a database; restore into an empty data directory", data_dir.display()));
    }
    let (events, pos) = {
        let db = Database::open(file).map_err(|e| format!("{} is not a chat backup: {e}", file.display()))?;
        let r = db.begin_read().map_err(|e| e.to_string())?;
        let version = {
            let meta = r.open_table(META).map_err(|e| format!("{} is not a chat backup: {e}", file.display()))?;
            let v = meta.get("schema_version").map_err(|e| e.to_string())?;
            v.and_then(|v| <[u8; 4]>::try_from(v.value()).ok()).map(u32::from_le_bytes)
        };
        match version {
            None => return Err(format!("{} is not a chat backup (no schema version)", file.display())),
            Some(v) if v > SCHEMA_VERSION => {
                return Err(format!(
                    "{} was written by a newer chat (schema {v}; this build understands up to {SCHEMA_VERSION})",
                    file.display()
                ));
            }
            Some(_) => {}
        }
        let events = r.open_table(EVENTS).map_err(|e| e.to_string())?.len().map_err(|e| e.to_string())?;
        (events, read_pos(&r)?)
    };
    crate::files::private_dir(data_dir)?;
    // The files first: a data directory with a database has them.
    let files = media_dir_of(file);
    if files.is_dir() {
        let blobs = data_dir.join("media").join("blobs");
        crate::files::private_dir(&data_dir.join("media"))?;
        let db = Database::open(file).map_err(|e| e.to_string())?;
        let r = db.begin_read().map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&blobs);
        copy_blobs(&r, &files, &blobs, false)?;
    }
    let partial = partial_path(&target);
    crate::files::private_file(&partial)?;
    std::fs::copy(file, &partial).map_err(|e| format!("cannot copy into {}: {e}", data_dir.display()))?;
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &target).map_err(|e| e.to_string())?;
    sync_dir(&target);
    Ok((events, pos))
}

/// Marks the database for a [`rewrite`] at the next start: content was deleted.
pub(super) fn mark_for_scrub(txn: &redb::WriteTransaction) -> redb::Result<(), redb::Error> {
    txn.open_table(META)?.insert(SCRUB_KEY, [1u8].as_slice())?;
    Ok(())
}

const SCRUB_KEY: &str = "scrub_pending";

/// Whether content was deleted since the file was last rewritten.
pub(super) fn scrub_pending(db: &Database) -> Result<bool, String> {
    let r = db.begin_read().map_err(|e| e.to_string())?;
    let meta = r.open_table(META).map_err(|e| e.to_string())?;
    Ok(meta.get(SCRUB_KEY).map_err(|e| e.to_string())?.is_some())
}

/// Copies what is live in `db` (at `path`) into a fresh file and puts it in place of the old
/// one, so deleted content is gone from the file. Killed half-way, the old file stays as it
/// was (still marked) and the copy is made again at the next start.
pub(super) fn rewrite(db: Database, path: &Path) -> Result<(Database, BackupStats), String> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".scrub");
    let fresh = path.with_file_name(name);
    let _ = std::fs::remove_file(&fresh);
    let stats = {
        let r = db.begin_read().map_err(|e| e.to_string())?;
        write_backup(&r, &fresh)?
    };
    {
        let copy = Database::open(&fresh).map_err(|e| e.to_string())?;
        let txn = copy.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(META).map_err(|e| e.to_string())?.remove(SCRUB_KEY).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
    }
    drop(db);
    std::fs::rename(&fresh, path).map_err(|e| format!("cannot put the scrubbed copy in place: {e}"))?;
    sync_dir(path);
    let db = Database::create(path).map_err(|e| format!("cannot open the scrubbed database: {e}"))?;
    Ok((db, stats))
}
