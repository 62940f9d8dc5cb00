//! `GET /assets/…`: the embedded web client (see [`crate::assets`]). Under the current
//! version an asset is cached for good (`immutable`); under no version, or an older one (a
//! page of the last release), it is revalidated each time. Compressible assets go out
//! gzipped to a browser that takes gzip.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::assets::{VERSION, is_version};

/// `GET /assets/{*path}`: `VERSION/name`, or a bare `name`.
pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let (name, current) = match path.split_once('/') {
        Some((v, rest)) if v == VERSION.as_str() => (rest, true),
        Some((v, rest)) if is_version(v) => (rest, false),
        _ => (path.as_str(), false),
    };
    let Some(asset) = crate::assets::get(name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    crate::assets::count_served();
    let gzip = asset.gzipped.filter(|_| takes_gzip(&headers));
    let mut etag = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &asset.sha256[..12]);
    if gzip.is_some() {
        etag.push_str("-gz");
    }
    let etag = format!("\"{etag}\"");
    let mut h = HeaderMap::new();
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    let caching = if current { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(caching));
    if asset.gzipped.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    match gzip {
        Some(gz) => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (h, gz).into_response()
        }
        None => (h, asset.data.into_owned()).into_response(),
    }
}

/// Whether the request's `Accept-Encoding` takes gzip (not with `q=0`).
fn takes_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
}

/// `GET /manifest.webmanifest`: what makes the app installable (name, icons, colours, where
/// it opens).
pub async fn manifest() -> Response {
    let icon = |path: &str, sizes: &str, purpose: &str| {
        let ty = if path.ends_with(".svg") { "image/svg+xml" } else { "image/png" };
        serde_json::json!({ "src": crate::assets::url(path), "sizes": sizes, "type": ty, "purpose": purpose })
    };
    let body = serde_json::json!({
        "name": "chat",
        "short_name": "chat",
        "description": "Chat and calls with your family, friends and team, on your own server.",
        "id": "/rooms",
        "start_url": "/rooms",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f6f7f9",
        "theme_color": crate::assets::THEME_COLOUR,
        "icons": [
            icon("icon.svg", "any", "any"),
            icon("icon-192.png", "192x192", "any"),
            icon("icon-512.png", "512x512", "any"),
            icon("icon-maskable-512.png", "512x512", "maskable"),
        ],
    });
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/manifest+json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (h, body.to_string()).into_response()
}

/// `GET /sw.js`: the service worker, with this release's version and app shell (it must be
/// served from the root to look after every page; browsers check it for changes on each visit).
pub async fn service_worker() -> Response {
    let Some(template) = crate::assets::get("sw.js") else {
        return (StatusCode::NOT_FOUND, "no service worker").into_response();
    };
    let shell = serde_json::to_string(&crate::assets::shell()).unwrap_or_else(|_| "[]".into());
    let text =
        String::from_utf8_lossy(&template.data).replace("__VERSION__", VERSION.as_str()).replace("__SHELL__", &shell);
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (h, text).into_response()
}
