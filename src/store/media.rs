//! Files: the record of each upload (`media`), how many uploads name each blob
//! (`media_blobs`), where each file is shared (`media_shares`, kept as events that name it
//! are stored and redacted), and each user's bytes (`media_usage`). The blobs themselves are
//! files in the data directory, written by the media service (`src/media`).

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::*;
use super::{Store, Tx, get_json, put_json};
use crate::error::{Error, Result};
use crate::events::{Event, M_ROOM_MESSAGE, Membership};

/// One file: uploaded here, or a copy of another server's. Key: `server/id`, as in its
/// `mxc://` URI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MediaRecord {
    /// SHA-256 of the bytes, hex: the blob's name.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The content type it was uploaded with (checked to be a well-formed type).
    pub content_type: String,
    /// The file name it was uploaded with, if any.
    pub name: Option<String>,
    /// Who uploaded it (empty for a copy of another server's file).
    pub uploader: String,
    /// When (ms since the epoch).
    pub created_ms: u64,
    /// An image's pixels across, as shown (measured here).
    #[serde(default)]
    pub width: Option<u32>,
    /// An image's pixels down.
    #[serde(default)]
    pub height: Option<u32>,
    /// A smaller copy of an image, for the timeline.
    #[serde(default)]
    pub thumbnail: Option<Thumbnail>,
    /// An image's BlurHash (its placeholder while it loads), when made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blurhash: Option<String>,
}

/// A thumbnail: a blob of its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thumbnail {
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

impl MediaRecord {
    /// The blobs it names: its bytes, and its thumbnail's.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.sha256.as_str()).chain(self.thumbnail.as_ref().map(|t| t.sha256.as_str()))
    }
}

/// Where the blob with this SHA-256 (hex) is, under the blob directory (`media/blobs` in the
/// data directory, `FILE.media` beside a backup): two levels of fan-out by its first bytes.
pub fn blob_relpath(sha256: &str) -> Option<std::path::PathBuf> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(std::path::Path::new(&sha256[..2]).join(&sha256[2..4]).join(sha256))
}

/// The `mxc://` URI an event's content names in `url`, if it is a message with one.
pub fn url_of(ev: &Event) -> Option<&str> {
    if ev.kind != M_ROOM_MESSAGE {
        return None;
    }
    ev.content.get("url").and_then(|u| u.as_str()).filter(|u| u.starts_with("mxc://") && u.len() <= 255)
}

/// `mxc://server/id` -> `server/id`.
pub fn key_of(mxc: &str) -> Option<&str> {
    mxc.strip_prefix("mxc://").filter(|k| k.split_once('/').is_some_and(|(s, id)| !s.is_empty() && !id.is_empty()))
}

/// Records where a stored message shares a file.
pub(super) fn on_persist(tx: &mut Tx<'_>, room_id: &str, ev: &Event) -> Result<()> {
    if let Some(url) = url_of(ev) {
        tx.txn.open_table(MEDIA_SHARES)?.insert((url, room_id, ev.event_id.as_str()), ())?;
    }
    Ok(())
}

/// A redacted message shares its file no more.
pub(super) fn on_redacted(tx: &mut Tx<'_>, room_id: &str, before: &Event) -> Result<()> {
    if let Some(url) = url_of(before) {
        tx.txn.open_table(MEDIA_SHARES)?.remove((url, room_id, before.event_id.as_str()))?;
    }
    Ok(())
}

/// A deleted room shares no file any more.
pub(super) fn forget_room(txn: &WriteTransaction, room_id: &str) -> Result<()> {
    txn.open_table(MEDIA_SHARES)?.retain(|(_, room, _), _| room != room_id)?;
    Ok(())
}

impl Tx<'_> {
    /// Records an upload whose blob is in place, counting it against `quota` bytes of the
    /// uploader's (a file fetched from another server counts against nobody's): over it,
    /// nothing is recorded (the blob, named by nothing, is collected).
    pub fn add_media(&mut self, key: &str, rec: &MediaRecord, quota: Option<u64>) -> Result<()> {
        if let Some(quota) = quota {
            let mut usage = self.txn.open_table(MEDIA_USAGE)?;
            let used = usage.get(rec.uploader.as_str())?.map_or(0, |v| v.value());
            if used.saturating_add(rec.size) > quota {
                return Err(Error::TooLarge(format!(
                    "this file would take you over your storage quota ({} of {} used)",
                    human_bytes(used),
                    human_bytes(quota)
                )));
            }
            usage.insert(rec.uploader.as_str(), used + rec.size)?;
        }
        let mut blobs = self.txn.open_table(MEDIA_BLOBS)?;
        for sha in rec.blobs() {
            let n = blobs.get(sha)?.map_or(0, |v| v.value());
            blobs.insert(sha, n + 1)?;
        }
        drop(blobs);
        put_json(&mut self.txn.open_table(MEDIA)?, key, rec)
    }

    /// The record of one of our uploads.
    pub fn media(&self, key: &str) -> Result<Option<MediaRecord>> {
        get_json(&self.txn.open_table(MEDIA)?, key)
    }
}

impl Store {
    /// The record of one of our uploads.
    pub fn media(&self, key: &str) -> Result<Option<MediaRecord>> {
        get_json(&self.read()?.open_table(MEDIA)?, key)
    }

    /// Whether `user` may download the file `mxc`: it is shared in a room they are joined to.
    pub fn media_shared_with(&self, mxc: &str, user: &str) -> Result<bool> {
        let r = self.read()?;
        let shares = r.open_table(MEDIA_SHARES)?;
        let members = r.open_table(ROOM_MEMBERS)?;
        let mut last_room = String::new();
        for row in shares.range((mxc, "", "")..=(mxc, "\u{10ffff}", ""))? {
            let (k, _) = row?;
            let room = k.value().1;
            if room == last_room {
                continue;
            }
            if super::rooms::membership_of(&members, room, user)? == Membership::Join {
                return Ok(true);
            }
            last_room = room.to_string();
        }
        Ok(false)
    }

    /// Whether the server `server` may fetch the file `mxc`: it is shared in a room where one
    /// of that server's users is joined.
    pub fn media_shared_with_server(&self, mxc: &str, server: &str) -> Result<bool> {
        let r = self.read()?;
        let shares = r.open_table(MEDIA_SHARES)?;
        let members = r.open_table(ROOM_MEMBERS)?;
        let mut rooms = std::collections::BTreeSet::new();
        for row in shares.range((mxc, "", "")..=(mxc, "\u{10ffff}", ""))? {
            rooms.insert(row?.0.value().1.to_string());
        }
        for room in rooms {
            for row in members.range((room.as_str(), "")..=(room.as_str(), "\u{10ffff}"))? {
                let (k, v) = row?;
                if crate::ids::server_of(k.value().1) == server && Membership::parse(v.value()) == Membership::Join {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Bytes of files `user` has stored.
    pub fn media_usage_of(&self, user: &str) -> Result<u64> {
        Ok(self.read()?.open_table(MEDIA_USAGE)?.get(user)?.map_or(0, |v| v.value()))
    }

    /// Bytes of files each user has stored, most first.
    pub fn media_usage(&self) -> Result<Vec<(String, u64)>> {
        let r = self.read()?;
        let mut out = Vec::new();
        for row in r.open_table(MEDIA_USAGE)?.iter()? {
            let (k, v) = row?;
            if v.value() > 0 {
                out.push((k.value().to_string(), v.value()));
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Every blob name some upload records (to tell which blob files are collected).
    pub fn media_blobs(&self) -> Result<std::collections::HashSet<String>> {
        let r = self.read()?;
        let mut out = std::collections::HashSet::new();
        for row in r.open_table(MEDIA_BLOBS)?.iter()? {
            out.insert(row?.0.value().to_string());
        }
        Ok(out)
    }

    /// Forgets uploads shared nowhere (never sent, or every message naming them deleted) that
    /// are older than `before_ms`; returns the blobs no upload names any more, for their files
    /// to be deleted.
    pub async fn collect_media(&self, local: String, before_ms: u64) -> Result<Vec<String>> {
        // Candidates from a snapshot, off the writer thread; the write job checks each again
        // (a message may have shared one since).
        let candidates: Vec<String> = {
            let r = self.read()?;
            let media = r.open_table(MEDIA)?;
            let shares = r.open_table(MEDIA_SHARES)?;
            let mut out = Vec::new();
            for row in media.iter()? {
                let (k, v) = row?;
                let Ok(rec) = serde_json::from_slice::<MediaRecord>(v.value()) else { continue };
                if rec.created_ms < before_ms && !shared(&shares, k.value())? {
                    out.push(k.value().to_string());
                }
            }
            out
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| {
            let mut gone = Vec::new();
            for key in candidates {
                let Some(rec) = get_json::<MediaRecord>(&tx.txn.open_table(MEDIA)?, &key)? else { continue };
                if shared(&tx.txn.open_table(MEDIA_SHARES)?, &key)? {
                    continue;
                }
                tx.txn.open_table(MEDIA)?.remove(key.as_str())?;
                // Our users' uploads counted against their quota; copies of other servers'
                // files against nobody's.
                if key.starts_with(&format!("{local}/")) {
                    let mut usage = tx.txn.open_table(MEDIA_USAGE)?;
                    let used = usage.get(rec.uploader.as_str())?.map_or(0, |v| v.value());
                    usage.insert(rec.uploader.as_str(), used.saturating_sub(rec.size))?;
                }
                release_blobs(tx, &rec, &mut gone)?;
            }
            Ok(gone)
        })
        .await
    }

    /// Forgets the copies of other servers' files fetched longest ago while together they take
    /// more than `cap` bytes (down to nine tenths of it), never `keep`. Their shares stay, so a
    /// member who opens one again has it fetched again. Returns the blobs (SHA-256) nothing
    /// names any more, and the bytes the copies kept take.
    pub async fn trim_remote_media(&self, local: String, cap: u64, keep: Option<String>) -> Result<(Vec<String>, u64)> {
        let ours = format!("{local}/");
        let (mut copies, total) = {
            let r = self.read()?;
            let media = r.open_table(MEDIA)?;
            let (mut copies, mut total) = (Vec::new(), 0u64);
            for row in media.iter()? {
                let (k, v) = row?;
                let Ok(rec) = serde_json::from_slice::<MediaRecord>(v.value()) else { continue };
                if k.value().starts_with(&ours) {
                    continue;
                }
                let bytes = rec.size + rec.thumbnail.as_ref().map_or(0, |t| t.size);
                total += bytes;
                copies.push((rec.created_ms, k.value().to_string(), bytes));
            }
            (copies, total)
        };
        if total <= cap {
            return Ok((Vec::new(), total));
        }
        copies.sort();
        let target = cap / 10 * 9;
        let mut left = total;
        let mut evict = Vec::new();
        for (_, key, bytes) in copies {
            if left <= target {
                break;
            }
            if keep.as_deref() == Some(key.as_str()) {
                continue;
            }
            left -= bytes;
            evict.push(key);
        }
        let gone = self
            .write(move |tx| {
                let mut gone = Vec::new();
                for key in evict {
                    let Some(rec) = get_json::<MediaRecord>(&tx.txn.open_table(MEDIA)?, &key)? else { continue };
                    tx.txn.open_table(MEDIA)?.remove(key.as_str())?;
                    release_blobs(tx, &rec, &mut gone)?;
                }
                Ok(gone)
            })
            .await?;
        Ok((gone, left))
    }
}

/// One record fewer names the blobs of `rec`; those nothing names any more go into `gone`.
fn release_blobs(tx: &mut Tx, rec: &MediaRecord, gone: &mut Vec<String>) -> Result<()> {
    let mut blobs = tx.txn.open_table(MEDIA_BLOBS)?;
    for sha in rec.blobs() {
        let n = blobs.get(sha)?.map_or(0, |v| v.value());
        if n <= 1 {
            blobs.remove(sha)?;
            gone.push(sha.to_string());
        } else {
            blobs.insert(sha, n - 1)?;
        }
    }
    Ok(())
}

/// Whether a message shares the file `key` (`server/id`) anywhere.
fn shared(shares: &impl ReadableTable<(&'static str, &'static str, &'static str), ()>, key: &str) -> Result<bool> {
    let mxc = format!("mxc://{key}");
    Ok(shares.range((mxc.as_str(), "", "")..=(mxc.as_str(), "\u{10ffff}", ""))?.next().is_some())
}

/// "1.5 MB", "300 KB", "12 bytes".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v < 10.0 { format!("{v:.1} {unit}") } else { format!("{v:.0} {unit}") };
        }
    }
    if n == 1 { "1 byte".into() } else { format!("{n} bytes") }
}
