//! Files across servers, as Matrix's authenticated media does it: our files served to other
//! servers (`GET /_matrix/federation/v1/media/download/{mediaId}`, signed, a `multipart/mixed`
//! answer of `{}` and the file), and other servers' files fetched the same way when one of our
//! users opens one, then kept here (a copy, collected like ours once nothing shares it).
//!
//! A server gets one of our files only when one of its users is joined to a room where a
//! message shares it; we fetch another server's file only for a user who may see it (a member
//! of a room where it is shared), so our server is nobody's open proxy.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::{FedRequest, FedState};
use crate::error::{Error, Result};
use crate::media::{disposition, served_type};
use crate::store::media::MediaRecord;

/// Longest a fetch may take in all.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Most bytes of a multipart answer before the file's own bytes begin.
const MAX_HEAD: usize = 64 * 1024;

/// `GET /_matrix/federation/v1/media/download/{mediaId}`: one of our files, to a server with
/// a user in a room where it is shared (`404` otherwise, and for files we do not have).
pub async fn serve_download(
    State(state): State<FedState>,
    Path(media_id): Path<String>,
    req: FedRequest,
) -> Result<Response> {
    let key = format!("{}/{media_id}", state.server_name);
    let mxc = format!("mxc://{key}");
    let not_found = || Error::NotFound("no such file".into());
    let rec = state.store.media(&key)?.filter(|r| !r.uploader.is_empty()).ok_or_else(not_found)?;
    if !state.store.media_shared_with_server(&mxc, &req.origin)? {
        return Err(not_found());
    }
    let file = tokio::fs::File::open(state.media.blob_path(&rec.sha256))
        .await
        .map_err(|e| Error::Internal(format!("the file's content is missing: {e}")))?;
    let boundary = crate::ids::random_id()?.replace(['-', '_'], "x");
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {}\r\n\
         Content-Disposition: {}\r\n\r\n",
        served_type(&rec.content_type),
        disposition(&rec.content_type, rec.name.as_deref()),
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(axum::body::Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::with_capacity(file, crate::media::READ_CHUNK))
        .chain(futures_util::stream::once(async move { Ok(axum::body::Bytes::from(tail)) }));
    let content_type = format!("multipart/mixed; boundary={boundary}");
    let mut res = (StatusCode::OK, Body::from_stream(body)).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(|e| Error::Internal(e.to_string()))?,
    );
    Ok(res)
}

/// The record of `key` (`server/id`, another server's file), fetched from that server now if
/// we have no copy yet.
pub async fn fetch(state: &FedState, key: &str) -> Result<MediaRecord> {
    if let Some(rec) = state.store.media(key)? {
        return Ok(rec);
    }
    let (server, media_id) = key.split_once('/').ok_or_else(|| Error::NotFound("no such file".into()))?;
    if server == state.server_name.as_str() || crate::ids::ServerName::parse(server).is_err() {
        return Err(Error::NotFound("no such file".into()));
    }
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_from(state, server, media_id, key)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Unavailable(format!("{server} took too long to send the file"))),
    }
}

async fn fetch_from(state: &FedState, server: &str, media_id: &str, key: &str) -> Result<MediaRecord> {
    let path = format!("/_matrix/federation/v1/media/download/{}", super::urlencode(media_id));
    let fed = &state.federation;
    let res = fed
        .client
        .signed_stream(&fed.key, state.server_name.as_str(), server, &path)
        .await
        .map_err(|e| super::client::public(server, &e))?;
    match res.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => {
            return Err(Error::NotFound(format!("{server} does not give out that file")));
        }
        s => return Err(Error::Unavailable(format!("{server} answered {s} for the file"))),
    }
    let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = boundary_of(content_type)
        .ok_or_else(|| Error::Unavailable(format!("{server} sent the file in an unknown form")))?;
    let mut stream = Body::new(res.into_body()).into_data_stream();
    let mut tmp = state.media.tmp_file().await?;
    let stall = Duration::from_secs(state.limits.federation_request_timeout_secs.max(1));
    let copied = async {
        // The head: both parts' headers, up to the file's first byte.
        let mut buf: Vec<u8> = Vec::new();
        let part = loop {
            if let Some(p) = file_part(&buf, &boundary)? {
                break p;
            }
            if buf.len() > MAX_HEAD {
                return Err(Error::Unavailable(format!("{server} sent a malformed file answer")));
            }
            match tokio::time::timeout(stall, stream.next()).await {
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => return Err(Error::Unavailable(format!("{server}: {e}"))),
                Ok(None) => return Err(Error::Unavailable(format!("{server} cut the file off"))),
                Err(_) => return Err(Error::Unavailable(format!("{server} stalled sending the file"))),
            }
        };
        // The file's bytes, all but a tail that may hold the closing delimiter.
        let delimiter = format!("\r\n--{boundary}");
        let keep = delimiter.len() + 64;
        let mut pending: Vec<u8> = buf.split_off(part.start);
        loop {
            if pending.len() > keep {
                let cut = pending.len() - keep;
                tmp.write(&pending[..cut]).await?;
                pending.drain(..cut);
            }
            match tokio::time::timeout(stall, stream.next()).await {
                Ok(Some(Ok(chunk))) => pending.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => return Err(Error::Unavailable(format!("{server}: {e}"))),
                Ok(None) => break,
                Err(_) => return Err(Error::Unavailable(format!("{server} stalled sending the file"))),
            }
        }
        let end = find_last(&pending, delimiter.as_bytes())
            .ok_or_else(|| Error::Unavailable(format!("{server} cut the file off")))?;
        tmp.write(&pending[..end]).await?;
        Ok(part)
    }
    .await;
    let part = match copied {
        Ok(p) => p,
        Err(e) => {
            tmp.discard().await;
            return Err(e);
        }
    };
    let rec = MediaRecord {
        sha256: String::new(),
        size: 0,
        content_type: crate::media::content_type_of(part.content_type.as_deref(), part.name.as_deref()),
        name: part.name,
        uploader: String::new(),
        created_ms: crate::events::now_ms(),
        width: None,
        height: None,
        thumbnail: None,
        blurhash: None,
    };
    let rec = state.media.place(tmp, key, rec, None).await?;
    if let Err(e) = state.media.trim_remote(key).await {
        tracing::warn!(error = %e, "trimming the copies of other servers' files failed");
    }
    Ok(rec)
}

/// `boundary` of a `multipart/mixed` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 200).then(|| v.to_string())
    })
}

/// Where the file's bytes start in a multipart answer's head, and its headers.
struct FilePart {
    start: usize,
    content_type: Option<String>,
    name: Option<String>,
}

/// Finds the second part's headers in `buf`: `None` while they are not all there yet.
fn file_part(buf: &[u8], boundary: &str) -> Result<Option<FilePart>> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let Some(first) = find(buf, d, 0) else { return Ok(None) };
    let Some(second) = find(buf, d, first + d.len()) else { return Ok(None) };
    let headers_start = second + d.len();
    let Some(headers_end) = find(buf, b"\r\n\r\n", headers_start) else { return Ok(None) };
    let headers = std::str::from_utf8(&buf[headers_start..headers_end]).unwrap_or_default();
    let mut part = FilePart { start: headers_end + 4, content_type: None, name: None };
    for line in headers.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-type" => part.content_type = Some(v.to_string()),
            "content-disposition" => part.name = disposition_name(v),
            "location" => return Err(Error::Unavailable("the file is elsewhere (a redirect we do not follow)".into())),
            _ => {}
        }
    }
    Ok(Some(part))
}

/// The file name in a `Content-Disposition` value (`filename*=UTF-8''…` preferred).
fn disposition_name(v: &str) -> Option<String> {
    let mut plain = None;
    for p in v.split(';').map(str::trim) {
        if let Some(enc) = p.strip_prefix("filename*=") {
            let enc = enc.trim_matches('"');
            let raw = enc.strip_prefix("UTF-8''").or_else(|| enc.strip_prefix("utf-8''"))?;
            return percent_decode(raw);
        }
        if let Some(n) = p.strip_prefix("filename=") {
            plain = Some(n.trim_matches('"').to_string());
        }
    }
    plain
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_heads_are_read() {
        assert_eq!(boundary_of("multipart/mixed; boundary=\"abc\"").as_deref(), Some("abc"));
        assert_eq!(boundary_of("application/json"), None);
        let head = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nContent-Type: image/png\r\n\
                     Content-Disposition: inline; filename*=UTF-8''caf%C3%A9.png\r\n\r\nDATA";
        assert!(file_part(&head[..20], "b").unwrap().is_none());
        let p = file_part(head, "b").unwrap().unwrap();
        assert_eq!(
            (&head[p.start..], p.content_type.as_deref(), p.name.as_deref()),
            (&b"DATA"[..], Some("image/png"), Some("café.png"))
        );
        let moved = b"--b\r\n\r\n{}\r\n--b\r\nLocation: https://x.example/f\r\n\r\n";
        assert!(file_part(moved, "b").is_err());
        assert_eq!(disposition_name("attachment; filename=\"a b.txt\"").as_deref(), Some("a b.txt"));
    }
}
