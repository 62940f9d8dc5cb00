//! The only code that touches redb: table definitions, the group-commit writer, and typed
//! reads and writes per aggregate (accounts, rooms, events).

pub mod accounts;
pub mod admin;
pub mod backup;
pub mod calls;
pub mod directory;
pub mod edits;
pub mod events;
pub mod keys;
pub mod media;
pub mod outbox;
pub mod push;
pub mod redactions;
pub mod relations;
pub mod rooms;
pub mod snapshot;
pub mod state;
pub mod stream;
mod tables;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use tables::*;
pub use writer::{OnCommit, Tx, Writer, WriterStats, WriterThread};

/// Version of the table layout this build reads and writes. Each version's change, and the step
/// that upgrades a database of the version before, is in [`upgrade`].
pub const SCHEMA_VERSION: u32 = 10;
/// File name of the database inside the data directory.
pub const DB_FILE: &str = "chat.redb";

/// Handle to the database and its writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: Writer,
}

impl Store {
    /// Opens (or creates) the database in `data_dir`, checks its schema version and starts the
    /// writer thread. `on_commit` receives each committed batch's events in stream order.
    pub fn open(data_dir: &Path, on_commit: OnCommit) -> Result<(Store, WriterThread), String> {
        Store::open_with_cache(data_dir, on_commit, None)
    }

    /// [`Store::open`] with the database's page cache limited to `cache_bytes` (redb's
    /// default, 1 GiB, when none).
    pub fn open_with_cache(
        data_dir: &Path,
        on_commit: OnCommit,
        cache_bytes: Option<usize>,
    ) -> Result<(Store, WriterThread), String> {
        crate::files::private_dir(data_dir).map_err(|e| format!("data directory: {e}"))?;
        let path = data_dir.join(DB_FILE);
        crate::files::private_file(&path)?;
        let mut builder = redb::Builder::new();
        if let Some(bytes) = cache_bytes {
            builder.set_cache_size(bytes);
        }
        let db = builder.create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                format!("the database {} is already in use by another chat process", path.display())
            }
            other => format!("cannot open database {}: {other}", path.display()),
        })?;
        init_schema(&db).map_err(|e| format!("database {}: {e}", path.display()))?;
        let db = if backup::scrub_pending(&db)? {
            let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let (db, stats) = backup::rewrite(db, &path).map_err(|e| format!("scrubbing {}: {e}", path.display()))?;
            tracing::info!(
                bytes_before = before,
                bytes_after = stats.bytes,
                secs = stats.secs,
                "deleted content scrubbed: the database was copied into a fresh file"
            );
            db
        } else {
            db
        };
        let pos = writer::load_stream_pos(&db).map_err(|e| e.to_string())?;
        let db = Arc::new(db);
        let (writer, thread) = Writer::start(db.clone(), pos, on_commit);
        Ok((Store { db, writer }, thread))
    }

    /// Starts a read transaction: a consistent snapshot of everything committed so far (raw:
    /// only the store's modules read tables; others use [`Store::snapshot`] or typed reads).
    fn read(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    /// Runs `f` in the next group-committed batch; see [`writer`] for the rules a job follows.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Queues `f` and returns once it is queued; see [`Writer::submit`].
    pub async fn submit<T, F>(&self, f: F) -> Result<writer::Committed<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// Writes a consistent backup of everything committed now to `dest`, and the files it
    /// names from `blobs` into `dest.media` (blocking; run it off the async threads). Writes go
    /// on meanwhile.
    pub fn backup_to(&self, dest: &Path, blobs: Option<&Path>) -> Result<backup::BackupStats> {
        let r = self.read()?;
        backup::write_backup_with_media(&r, dest, blobs).map_err(Error::Internal)
    }

    /// Tells the writer this server's name, so that events of local senders are queued for the
    /// other servers of their rooms. Set once at start; offline tools leave it unset.
    pub fn set_local_server(&self, name: &str) {
        self.writer.set_local_server(name);
    }

    /// Whether writes can be made (the writer thread runs).
    pub fn writer_alive(&self) -> bool {
        self.writer.alive()
    }

    /// Counters of the writer.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// How many handles share the database (the store clones plus the writer thread).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.db)
    }
}

/// Creates every table, upgrades a database written by an older schema (in the same
/// transaction: an upgrade is all or nothing), records the schema version, and refuses a
/// database written by a newer version.
fn init_schema(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let found = {
        let meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let v = meta.get("schema_version").map_err(|e| e.to_string())?;
        v.and_then(|v| <[u8; 4]>::try_from(v.value()).ok()).map(u32::from_le_bytes)
    };
    match found {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(format!(
                "it was written by a newer version of chat (schema {v}; this build understands up to {SCHEMA_VERSION}). Run a newer chat, or restore a backup made by this version."
            ));
        }
        Some(v) => {
            create_tables(&txn).map_err(|e| e.to_string())?;
            for from in v..SCHEMA_VERSION {
                upgrade(&txn, from).map_err(|e| format!("upgrading schema {from} to {}: {e}", from + 1))?;
                tracing::info!(from, to = from + 1, "database schema upgraded");
            }
        }
        None => create_tables(&txn).map_err(|e| e.to_string())?,
    }
    let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(|e| e.to_string())?;
    drop(meta);
    txn.commit().map_err(|e| e.to_string())
}

fn create_tables(txn: &WriteTransaction) -> Result<()> {
    macro_rules! create_each {
        ($($table:ident),+) => {
            $( txn.open_table($table)?; )+
        };
    }
    every_table!(create_each);
    Ok(())
}

/// Upgrades a database of schema `from` to `from + 1`, inside the opening transaction.
fn upgrade(txn: &WriteTransaction, from: u32) -> Result<()> {
    match from {
        // 2 adds `room_outliers`: the events stored without a timeline position (position 0),
        // indexed by room.
        1 => {
            let events = txn.open_table(EVENTS)?;
            let mut outliers = txn.open_table(ROOM_OUTLIERS)?;
            for row in events.iter()? {
                let (_, v) = row?;
                let stored: events::StoredEvent = serde_json::from_slice(v.value())?;
                if stored.pos == 0 {
                    outliers.insert((stored.event.room_id.as_str(), stored.event.event_id.as_str()), ())?;
                }
            }
            Ok(())
        }
        // 3 adds the public directory (`public_rooms`, `public_room_keys`) and `room_aliases`,
        // built from `rooms` and `aliases`.
        2 => directory::build(txn),
        // 4 adds `redactions`, empty: redactions stored before it are not applied.
        3 => Ok(()),
        // 5 adds the state at each event (`state_groups`, `state_merges`; events name their
        // group), empty: a room's current state becomes its first group when its next event is
        // stored.
        4 => Ok(()),
        // 6 adds `edits` (and messages name their newest edit), empty: there were no edits.
        5 => Ok(()),
        // 7 adds `relations` (replies quote, messages count reactions), empty: there were
        // neither.
        6 => Ok(()),
        // 8 adds files (`media`, `media_blobs`, `media_shares`, `media_usage`), empty: there
        // were none.
        7 => Ok(()),
        // 9 adds notification settings and Web Push (`notify_prefs`, `push_subs`,
        // `push_pending`, `push_retry`), empty.
        8 => Ok(()),
        // 10 adds `stream` (every timeline event by position, across rooms), built from
        // `room_timeline`.
        9 => {
            let timeline = txn.open_table(ROOM_TIMELINE)?;
            let mut stream = txn.open_table(STREAM)?;
            for row in timeline.iter()? {
                let (k, v) = row?;
                let (room, pos) = k.value();
                stream.insert(pos, (room, v.value().0))?;
            }
            Ok(())
        }
        _ => Err(Error::Internal(format!("no upgrade from schema {from}"))),
    }
}

/// Reads and decodes a JSON record.
fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Encodes and writes a JSON record.
fn put_json<T: Serialize>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Reads and decodes a JSON record under a pair key.
fn get_json_pair<T: DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: (&str, &str),
) -> Result<Option<T>> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Encodes and writes a JSON record under a pair key.
fn put_json_pair<T: Serialize>(
    table: &mut redb::Table<'_, (&'static str, &'static str), &'static [u8]>,
    key: (&str, &str),
    value: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Reads the 32-byte token signing secret, creating it on first use.
pub async fn token_secret(store: &Store) -> Result<Vec<u8>> {
    secret(store, "jwt_secret").await
}

/// `meta` key of the server name the server last started with (what offline admin commands
/// name new accounts with).
pub const SERVER_NAME_KEY: &str = "server_name";

/// Reads a text value of `meta`.
pub fn meta_text(store: &Store, name: &str) -> Result<Option<String>> {
    let r = store.read()?;
    let meta = r.open_table(META)?;
    Ok(meta.get(name)?.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
}

/// Writes a text value of `meta`.
pub async fn set_meta_text(store: &Store, name: &'static str, value: String) -> Result<()> {
    store
        .write(move |tx| {
            tx.txn.open_table(META)?.insert(name, value.as_bytes())?;
            Ok(())
        })
        .await
}

/// Reads the 32-byte secret kept in `meta` under `name`, creating it on first use.
pub async fn secret(store: &Store, name: &'static str) -> Result<Vec<u8>> {
    let existing = {
        let r = store.read()?;
        let meta = r.open_table(META)?;
        meta.get(name)?.map(|v| v.value().to_vec())
    };
    if let Some(s) = existing {
        return Ok(s);
    }
    store
        .write(move |tx| {
            let mut meta = tx.txn.open_table(META)?;
            if let Some(v) = meta.get(name)? {
                return Ok(v.value().to_vec());
            }
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| Error::Internal(e.to_string()))?;
            meta.insert(name, secret.as_slice())?;
            Ok(secret)
        })
        .await
}

impl Store {
    /// The newest committed stream position.
    pub fn stream_pos(&self) -> Result<u64> {
        stream_pos_in(&self.read()?)
    }
}

/// The newest committed stream position as seen by the snapshot `r`.
pub fn stream_pos_in(r: &ReadTransaction) -> Result<u64> {
    let meta = r.open_table(META)?;
    let v = meta.get("stream_pos")?;
    Ok(v.and_then(|v| <[u8; 8]>::try_from(v.value()).ok()).map(u64::from_le_bytes).unwrap_or(0))
}
