//! Files people share: uploads written streaming into content-addressed blobs, downloads with
//! ranges, and the collection of blobs nothing names any more.
//!
//! A blob is `DATA_DIR/media/blobs/ab/cd/abcd…` (its SHA-256, hex). An upload streams into
//! `media/tmp/` while it is hashed and counted (never held in memory), is fsynced, and is
//! renamed to its blob's name (or dropped, when that blob exists: the same bytes are stored
//! once); only then is its record committed, so an event can only name a file whose bytes are
//! on disk. Records are in the store ([`crate::store::media`]); a file is readable by its
//! uploader and by the members of the rooms where a message shares it.
//!
//! Collection (every ten minutes, and at start): uploads shared nowhere for a day (by default;
//! `limits.unshared_upload_grace_secs`) (never sent,
//! or every message naming them deleted) are forgotten, and blob files that no upload names
//! (those, and any left by a crash between the rename and the commit) are deleted, as are
//! leftovers in `media/tmp/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::ids::{ServerName, UserId, random_id};
use crate::store::Store;
use crate::store::media::{MediaRecord, Thumbnail, human_bytes};

pub mod images;

/// How often collection runs.
const COLLECT_EVERY: Duration = Duration::from_secs(600);
/// The upload route, whose requests may take up to [`UPLOAD_TIMEOUT`] in all.
pub const UPLOAD_PATH: &str = "/api/v1/media/upload";
/// Longest an upload may take.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest an upload may send nothing.
const UPLOAD_STALL: Duration = Duration::from_secs(30);
/// Longest an image may take to decode.
const DECODE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 255;
/// Bytes read from a blob at a time when serving it (tokio's 4 KiB default made downloads
/// ten times slower than the disk).
pub const READ_CHUNK: usize = 256 * 1024;
/// Bytes of an upload gathered before they are written.
const WRITE_CHUNK: usize = 1024 * 1024;

handle!(
    /// The file store. Cheap to clone.
    Media => MediaInner
);

/// What [`Media`] holds.
pub struct MediaInner {
    /// The database (records).
    pub store: Store,
    /// `DATA_DIR/media`.
    pub dir: PathBuf,
    /// This server's name: the server part of our `mxc://` URIs.
    pub server_name: ServerName,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Bytes each user may store.
    pub quota_bytes: u64,
    /// How long an upload shared nowhere is kept.
    pub unshared_grace: Duration,
    /// Bytes the copies of other servers' files may take.
    pub remote_cache_bytes: u64,
    /// Bytes they took at the last count (`/metrics`).
    pub remote_bytes: std::sync::atomic::AtomicU64,
    /// Held from an upload's rename to its commit, and by collection from its commit to the
    /// deletion of the files: a blob deleted by collection is never one an upload just found.
    pub blobs: tokio::sync::Mutex<()>,
    /// Images decoded at once (one per core).
    pub decoders: tokio::sync::Semaphore,
}

/// A finished upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    /// `mxc://server/id`.
    pub content_uri: String,
    /// Bytes.
    pub size: u64,
    /// The content type kept.
    pub content_type: String,
}

impl Media {
    /// The file store in `data_dir/media` (made if missing, private). Files left in its
    /// temporary directory are uploads a crash cut off (the store is open, so no other server
    /// uses this directory): they are deleted.
    pub fn open(
        store: Store,
        data_dir: &Path,
        server_name: ServerName,
        limits: &crate::config::Limits,
    ) -> std::result::Result<Media, String> {
        let dir = data_dir.join("media");
        for d in [dir.clone(), dir.join("blobs"), dir.join("tmp")] {
            crate::files::private_dir(&d).map_err(|e| format!("media directory: {e}"))?;
        }
        let cut_off = walk(&dir.join("tmp")).into_iter().filter(|p| std::fs::remove_file(p).is_ok()).count();
        if cut_off > 0 {
            tracing::info!(files = cut_off, "deleted uploads cut off by a crash");
        }
        Ok(Media::new(MediaInner {
            store,
            dir,
            server_name,
            max_upload_bytes: limits.max_upload_bytes,
            quota_bytes: limits.upload_quota_bytes,
            unshared_grace: Duration::from_secs(limits.unshared_upload_grace_secs),
            remote_cache_bytes: limits.remote_media_cache_bytes,
            remote_bytes: Default::default(),
            blobs: tokio::sync::Mutex::new(()),
            decoders: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }))
    }

    /// Where the blob with this SHA-256 (hex) is.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        let rel = crate::store::media::blob_relpath(sha256).unwrap_or_else(|| PathBuf::from("invalid"));
        self.dir.join("blobs").join(rel)
    }

    /// Checks an upload's announced size against the limits before a byte is read.
    pub fn check_announced(&self, user: &UserId, len: u64) -> Result<()> {
        if len > self.max_upload_bytes {
            return Err(too_big(self.max_upload_bytes));
        }
        let used = self.store.media_usage_of(user.as_str())?;
        if used.saturating_add(len) > self.quota_bytes {
            return Err(Error::TooLarge(format!(
                "this file would take you over your storage quota ({} of {} used)",
                human_bytes(used),
                human_bytes(self.quota_bytes)
            )));
        }
        Ok(())
    }

    /// Stores the bytes of `body` as a file of `user`'s: streamed to disk, hashed, fsynced,
    /// put in place, then recorded. `content_type` and `name` are as the client gave them.
    pub async fn upload(
        &self,
        user: &UserId,
        content_type: Option<&str>,
        name: Option<&str>,
        body: axum::body::Body,
    ) -> Result<Uploaded> {
        let name = clean_name(name)?;
        let content_type = content_type_of(content_type, name.as_deref());
        let mut tmp = self.tmp_file().await?;
        let mut stream = body.into_data_stream();
        let written = async {
            loop {
                let next = tokio::time::timeout(UPLOAD_STALL, stream.next()).await;
                let Ok(next) = next else {
                    return Err(Error::bad(format!("the upload stalled for {} s", UPLOAD_STALL.as_secs())));
                };
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(|e| Error::bad(format!("the upload was cut off: {e}")))?;
                tmp.write(&chunk).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            tmp.discard().await;
            return Err(e);
        }
        let key = format!("{}/{}", self.server_name, random_id()?);
        let rec = MediaRecord {
            sha256: String::new(),
            size: 0,
            content_type: content_type.clone(),
            name,
            uploader: user.to_string(),
            created_ms: crate::events::now_ms(),
            width: None,
            height: None,
            thumbnail: None,
            blurhash: None,
        };
        let rec = self.place(tmp, &key, rec, Some(self.quota_bytes)).await?;
        Ok(Uploaded { content_uri: format!("mxc://{key}"), size: rec.size, content_type: rec.content_type })
    }

    /// A new temporary file for a file's bytes, at most `max_upload_bytes` of them.
    pub async fn tmp_file(&self) -> Result<TmpFile> {
        let path = self.dir.join("tmp").join(random_id()?);
        let file = private_create(&path).await?;
        Ok(TmpFile { path, file, hasher: Sha256::new(), size: 0, limit: self.max_upload_bytes, buf: Vec::new() })
    }

    /// Puts the bytes of `tmp` in place as their blob (or drops them, when that blob exists)
    /// and commits `rec` (its hash and size filled in) under `key`; with `quota`, counted
    /// against the uploader's.
    pub async fn place(
        &self,
        tmp: TmpFile,
        key: &str,
        mut rec: MediaRecord,
        quota: Option<u64>,
    ) -> Result<MediaRecord> {
        let (path, size, sha256) = match tmp.finish().await {
            Ok(done) => done,
            Err((path, e)) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(e);
            }
        };
        let (mut path, mut size, mut sha256) = (path, size, sha256);
        let mut thumb: Option<(PathBuf, Thumbnail)> = None;
        if images::processable(&rec.content_type) {
            match self.process_image(&path, &rec.content_type).await {
                Ok(p) => {
                    rec.width = Some(p.width);
                    rec.height = Some(p.height);
                    rec.blurhash = p.blurhash;
                    if let Some(cleaned) = p.cleaned {
                        let (p2, s2, h2) = self.derived(&cleaned).await.inspect_err(|_| {
                            let _ = std::fs::remove_file(&path);
                        })?;
                        let _ = tokio::fs::remove_file(&path).await;
                        (path, size, sha256) = (p2, s2, h2);
                    }
                    if let Some((bytes, ty, w, h)) = p.thumbnail {
                        let (tp, ts, th) = self.derived(&bytes).await.inspect_err(|_| {
                            let _ = std::fs::remove_file(&path);
                        })?;
                        let t = Thumbnail { sha256: th, size: ts, content_type: ty.into(), width: w, height: h };
                        thumb = Some((tp, t));
                    }
                }
                Err(images::Refused::TooBig(px)) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(Error::TooLarge(format!(
                        "this image is too large: {} megapixels or more; at most {} megapixels and {} pixels a side are taken",
                        px / 1_000_000,
                        images::MAX_PIXELS / 1_000_000,
                        images::MAX_SIDE
                    )));
                }
                Err(images::Refused::Undecodable(why)) => {
                    // Not the image it says it is: kept, and offered only as a download.
                    tracing::info!(key, why, "an image that does not decode is kept as a file");
                    rec.content_type = "application/octet-stream".into();
                }
            }
        }
        rec.sha256 = sha256.clone();
        rec.size = size;
        let _guard = self.blobs.lock().await;
        let mut moves = vec![(path.clone(), sha256.clone())];
        if let Some((tp, t)) = &thumb {
            moves.push((tp.clone(), t.sha256.clone()));
            rec.thumbnail = Some(t.clone());
        }
        for (from, sha) in &moves {
            if let Err(e) = self.put_blob(from, sha).await {
                for (f, _) in &moves {
                    let _ = tokio::fs::remove_file(f).await;
                }
                return Err(e);
            }
        }
        let (k, r) = (key.to_string(), rec.clone());
        self.store.write(move |tx| tx.add_media(&k, &r, quota)).await?;
        Ok(rec)
    }

    /// Moves the finished temporary file `from` to the blob `sha256` (or drops it, when that
    /// blob exists). The caller holds `blobs`.
    async fn put_blob(&self, from: &Path, sha256: &str) -> Result<()> {
        let blob = self.blob_path(sha256);
        if tokio::fs::try_exists(&blob).await.unwrap_or(false) {
            tokio::fs::remove_file(from).await.map_err(io)?;
        } else {
            let parent = blob.parent().ok_or_else(|| Error::Internal("blob path".into()))?;
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
            tokio::fs::rename(from, &blob).await.map_err(io)?;
            sync_dir(parent).await;
        }
        Ok(())
    }

    /// Bytes made here (a cleaned image, a thumbnail) in a finished temporary file.
    async fn derived(&self, bytes: &[u8]) -> Result<(PathBuf, u64, String)> {
        let mut tmp = self.tmp_file().await?;
        tmp.limit = u64::MAX;
        tmp.write(bytes).await?;
        tmp.finish().await.map_err(|(p, e)| {
            let _ = std::fs::remove_file(p);
            e
        })
    }

    /// Processes an image (see [`images`]) off the async threads, one per core at a time,
    /// within [`DECODE_TIMEOUT`] (past it, it counts as undecodable).
    async fn process_image(
        &self,
        path: &Path,
        content_type: &str,
    ) -> std::result::Result<images::Processed, images::Refused> {
        let _permit = self.decoders.acquire().await.map_err(|e| images::Refused::Undecodable(e.to_string()))?;
        let (path, ty) = (path.to_path_buf(), content_type.to_string());
        let work = tokio::task::spawn_blocking(move || images::process(&path, &ty));
        match tokio::time::timeout(DECODE_TIMEOUT, work).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(images::Refused::Undecodable(format!("decoding failed: {e}"))),
            Err(_) => Err(images::Refused::Undecodable("decoding took too long".into())),
        }
    }

    /// Forgets uploads shared nowhere for a day and deletes the blob files no upload names, and
    /// leftovers of uploads cut off by a crash. Returns the files deleted.
    pub async fn collect(&self) -> Result<usize> {
        let grace = u64::try_from(self.unshared_grace.as_millis()).unwrap_or(u64::MAX);
        let before = crate::events::now_ms().saturating_sub(grace);
        let _guard = self.blobs.lock().await;
        let _gone = self.store.collect_media(self.server_name.to_string(), before).await?;
        let (_, left) =
            self.store.trim_remote_media(self.server_name.to_string(), self.remote_cache_bytes, None).await?;
        self.remote_bytes.store(left, std::sync::atomic::Ordering::Relaxed);
        let named = self.store.media_blobs()?;
        let blobs = self.dir.join("blobs");
        let tmp = self.dir.join("tmp");
        tokio::task::spawn_blocking(move || {
            let mut deleted = 0;
            for path in walk(&blobs) {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                if !named.contains(name) && std::fs::remove_file(&path).is_ok() {
                    deleted += 1;
                }
            }
            // Uploads in progress are younger than an hour.
            for path in walk(&tmp) {
                let old = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
                if old && std::fs::remove_file(&path).is_ok() {
                    deleted += 1;
                }
            }
            deleted
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Deletes the copies of other servers' files fetched longest ago while they take more
    /// than `limits.remote_media_cache_bytes`, never `keep` (a copy just fetched for someone).
    pub async fn trim_remote(&self, keep: &str) -> Result<()> {
        let _guard = self.blobs.lock().await;
        let (gone, left) = self
            .store
            .trim_remote_media(self.server_name.to_string(), self.remote_cache_bytes, Some(keep.to_string()))
            .await?;
        self.remote_bytes.store(left, std::sync::atomic::Ordering::Relaxed);
        if gone.is_empty() {
            return Ok(());
        }
        let paths: Vec<PathBuf> = gone.iter().map(|sha| self.blob_path(sha)).collect();
        let n = paths.len();
        tokio::task::spawn_blocking(move || paths.iter().for_each(|p| drop(std::fs::remove_file(p))))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(files = n, "copies of other servers' files deleted: over the cache's size");
        Ok(())
    }

    /// Runs [`Media::collect`] now and every ten minutes until `shutdown`.
    pub async fn collect_forever(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            match self.collect().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "media collected"),
                Err(e) => tracing::warn!(error = %e, "media collection failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(COLLECT_EVERY) => {}
            }
        }
    }
}

/// A file's bytes on their way in: written to a temporary file, counted against the size
/// limit, hashed.
pub struct TmpFile {
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    /// Bytes not yet handed to the file: written [`WRITE_CHUNK`] at a time (each write of a
    /// tokio file is a trip to the blocking pool, and request bodies come in small pieces).
    buf: Vec<u8>,
    limit: u64,
}

impl TmpFile {
    /// Appends `bytes`; over the size limit, a 413.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(too_big(self.limit));
        }
        self.hasher.update(bytes);
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(WRITE_CHUNK);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_CHUNK {
            self.file.write_all(&self.buf).await.map_err(io)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Deletes what was written.
    pub async fn discard(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }

    /// Flushes and fsyncs: (path, size, SHA-256 hex); on failure the path to delete.
    async fn finish(mut self) -> std::result::Result<(PathBuf, u64, String), (PathBuf, Error)> {
        let synced = async {
            self.file.write_all(&self.buf).await.map_err(io)?;
            self.file.flush().await.map_err(io)?;
            self.file.sync_all().await.map_err(io)
        }
        .await;
        if let Err(e) = synced {
            return Err((self.path, e));
        }
        let digest = self.hasher.finalize();
        Ok((self.path, self.size, digest.iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// Every file under `dir` (two levels of fan-out for blobs; none for tmp).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() && depth < 2 {
                stack.push((e.path(), depth + 1));
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

fn too_big(max: u64) -> Error {
    Error::TooLarge(format!("the file is larger than {}, the most this server takes", human_bytes(max)))
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(format!("media storage: {e}"))
}

async fn private_create(path: &Path) -> Result<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path).await.map_err(io)
}

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

/// A file name as kept: no path, no control characters, at most 255 characters; none if empty.
fn clean_name(name: Option<&str>) -> Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.chars().count() > MAX_NAME_CHARS {
        return Err(Error::bad(format!("a file name is at most {MAX_NAME_CHARS} characters")));
    }
    Ok((!clean.is_empty() && clean != "." && clean != "..").then(|| clean.to_string()))
}

/// The content type kept for an upload: the client's, if it is a well-formed `type/subtype`
/// (parameters dropped, lower case), else guessed from the name, else
/// `application/octet-stream`. It only labels the file: how it is served is decided by
/// [`inline_type`], never by trusting it.
pub fn content_type_of(given: Option<&str>, name: Option<&str>) -> String {
    let token = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    if let Some(t) = given {
        let essence = t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if let Some((a, b)) = essence.split_once('/')
            && token(a)
            && token(b)
        {
            return essence;
        }
    }
    if let Some(guess) = name.and_then(|n| mime_guess::from_path(n).first()) {
        return guess.essence_str().to_string();
    }
    "application/octet-stream".into()
}

/// Types a browser may show in the page (`Content-Disposition: inline`): images, audio and
/// video it decodes itself, and plain text. Everything else (HTML, SVG, XML, PDF, scripts…) is
/// sent as an attachment. Either way the response forbids sniffing and sandboxes the file.
pub fn inline_type(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "video/mp4"
            | "video/webm"
            | "video/ogg"
            | "audio/ogg"
            | "audio/opus"
            | "audio/webm"
            | "audio/mpeg"
            | "audio/mp4"
            | "audio/wav"
            | "audio/x-wav"
            | "audio/flac"
            | "text/plain"
    )
}

/// The type a file is served as: its own when a browser may show it ([`inline_type`]), else
/// `application/octet-stream`.
pub fn served_type(content_type: &str) -> &str {
    if inline_type(content_type) { content_type } else { "application/octet-stream" }
}

/// The `Content-Disposition` of a file of `content_type`: `inline` for types a browser may
/// show, else `attachment`, with its name (an ASCII fallback, and RFC 5987 UTF-8).
pub fn disposition(content_type: &str, name: Option<&str>) -> String {
    let kind = if inline_type(content_type) { "inline" } else { "attachment" };
    let Some(name) = name else { return kind.to_string() };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && !"\"\\;%".contains(c) || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_in_the_header() {
        assert_eq!(
            disposition("application/pdf", Some("résumé \"x\".pdf")),
            "attachment; filename=\"r_sum_ _x_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"
        );
        assert_eq!(disposition("image/png", None), "inline");
    }

    use super::*;

    #[test]
    fn content_types_are_well_formed_or_guessed() {
        assert_eq!(content_type_of(Some("image/PNG; charset=x"), None), "image/png");
        assert_eq!(content_type_of(Some("text/html\r\nX-Evil: 1"), Some("a.txt")), "text/plain");
        assert_eq!(content_type_of(Some("nonsense"), None), "application/octet-stream");
        assert_eq!(content_type_of(None, Some("photo.jpg")), "image/jpeg");
        assert!(!inline_type("image/svg+xml") && !inline_type("text/html") && inline_type("image/png"));
    }

    #[test]
    fn names_lose_paths_and_controls() {
        assert_eq!(clean_name(Some("../../etc/passwd")).unwrap().as_deref(), Some("passwd"));
        assert_eq!(clean_name(Some("C:\\x\\a\u{0}b.txt")).unwrap().as_deref(), Some("ab.txt"));
        assert_eq!(clean_name(Some("  ")).unwrap(), None);
        assert!(clean_name(Some(&"x".repeat(300))).is_err());
    }
}
