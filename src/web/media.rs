//! File routes: `POST /api/v1/media/upload` (the body is the file) and
//! `GET /api/v1/media/download/{server}/{id}` (authenticated media, with ranges).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::extract::Json;
use crate::auth::Session;
use crate::error::{Error, Result};
use crate::media::{disposition, served_type};
use crate::state::AppState;

/// The query of an upload.
#[derive(Deserialize)]
pub struct UploadQuery {
    filename: Option<String>,
}

/// `POST /media/upload?filename=` with the file as the body → `{content_uri, size,
/// content_type}`. A `Content-Length` over the limits is refused before a byte is read.
pub async fn upload(
    State(state): State<AppState>,
    session: Session,
    query: std::result::Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>> {
    let Query(q) = query.map_err(|e| Error::bad(e.body_text()))?;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        state.media.check_announced(&session.user, len)?;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let up = state.media.upload(&session.user, content_type, q.filename.as_deref(), body).await?;
    Ok(Json(json!({ "content_uri": up.content_uri, "size": up.size, "content_type": up.content_type })))
}

/// `GET /media/download/{server}/{id}`: the file, for its uploader and the members of a room
/// where it is shared (`404` for anyone else: whether a file exists is not told); another
/// server's file is fetched from it the first time (see `federation::media`). Single
/// `Range`s are answered with `206`. Images, audio, video and plain text are `inline`,
/// anything else an `attachment`; the response cannot be sniffed into another type and runs
/// nothing (a sandboxing CSP).
pub async fn download(
    State(state): State<AppState>,
    session: Session,
    Path((server, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    serve(&state, &session, &server, &id, &headers, false).await
}

/// `GET /media/thumbnail/{server}/{id}`: an image's thumbnail (at most 800 pixels a side),
/// made when it was stored; the file itself when it has none (small images, other files).
/// Who may: as for the download.
pub async fn thumbnail(
    State(state): State<AppState>,
    session: Session,
    Path((server, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    serve(&state, &session, &server, &id, &headers, true).await
}

async fn serve(
    state: &AppState,
    session: &Session,
    server: &str,
    id: &str,
    headers: &HeaderMap,
    thumb: bool,
) -> Result<Response> {
    let key = format!("{server}/{id}");
    let mxc = format!("mxc://{key}");
    let not_found = || Error::NotFound("no such file".into());
    let rec = if server == state.server_name.as_str() {
        let rec = state.store.media(&key)?.ok_or_else(not_found)?;
        if rec.uploader != session.user.as_str() && !state.store.media_shared_with(&mxc, session.user.as_str())? {
            return Err(not_found());
        }
        rec
    } else {
        // Another server's file: only for a member of a room where it is shared, fetched from
        // its server the first time.
        if !state.store.media_shared_with(&mxc, session.user.as_str())? {
            return Err(not_found());
        }
        crate::federation::media::fetch(&state.fed, &key).await?
    };
    // A thumbnail is served as the file it is (a JPEG or PNG made here), inline.
    let (sha256, size, content_type, name) = match (&rec.thumbnail, thumb) {
        (Some(t), true) => (t.sha256.clone(), t.size, t.content_type.clone(), None),
        _ => (rec.sha256.clone(), rec.size, rec.content_type.clone(), rec.name.clone()),
    };
    let etag = format!("\"{sha256}\"");
    let mut h = HeaderMap::new();
    let shown_type = served_type(&content_type);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(shown_type).map_err(|e| Error::Internal(e.to_string()))?);
    let kind = disposition(&content_type, name.as_deref());
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&kind).unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).map_err(|e| Error::Internal(e.to_string()))?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let path = state.media.blob_path(&sha256);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        // A copy of another server's file, deleted from the cache just now: fetched again on
        // the next request.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && server != state.server_name.as_str() => {
            return Err(Error::Unavailable("the file was just dropped from this server's cache; try again".into()));
        }
        Err(e) => {
            tracing::error!(blob = %path.display(), error = %e, "a recorded file's blob is missing");
            return Err(Error::Internal("the file's content is missing".into()));
        }
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, size) {
            Some(r) => Some(r),
            None => {
                h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
            }
        },
    };
    let (status, start, len) = match range {
        Some((start, end)) => {
            let v = format!("bytes {start}-{end}/{size}");
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&v).expect("ascii"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| Error::Internal(e.to_string()))?;
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file.take(len), crate::media::READ_CHUNK));
    Ok((status, h, body).into_response())
}

/// One `bytes=` range of a `size`-byte file, as (first, last) byte; `None` when it cannot be
/// served (several ranges, malformed, or past the end).
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        return Some((size.saturating_sub(n), size - 1));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() { size - 1 } else { b.parse::<u64>().ok()?.min(size - 1) };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
