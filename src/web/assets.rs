//! Static assets (JS, CSS, icons) embedded in the binary with rust-embed; no build step.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The `assets/` directory, embedded at compile time.
#[derive(RustEmbed)]
#[folder = "assets/"]
pub struct Assets;

/// `GET /assets/{*path}`, with an ETag so browsers revalidate cheaply.
pub async fn serve(Path(path): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!(
        "\"{}\"",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &file.metadata.sha256_hash()[..12])
    );
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let mut res = file.data.into_owned().into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
