//! Extractors whose rejections are our [`Error`]: bad JSON, forms and paths get a clear 4xx in
//! our error shape instead of the framework's plain-text bodies.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use crate::auth::Session;
use crate::error::Error;
use crate::state::AppState;

/// A JSON body.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge("request body too large".into()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::bad("expected Content-Type: application/json")),
            Err(e) => Err(Error::bad(e.body_text())),
        }
    }
}

/// A form body.
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Form(v)),
            Err(FormRejection::BytesRejection(e)) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge("request body too large".into()))
            }
            Err(e) => Err(Error::bad(e.body_text())),
        }
    }
}

/// The `{room_id}` path segment, parsed (a malformed one is a room that does not exist).
pub struct RoomPath(pub crate::ids::RoomId);

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let axum::extract::Path(id) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::bad(e.body_text()))?;
        Ok(RoomPath(crate::ids::RoomId::parse(&id)?))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// The client's IP address: the TCP peer, or, when the peer is one of the configured
/// `trusted_proxies`, the address that proxy (and any trusted proxy before it) put in
/// `X-Forwarded-For`: read from the right, the first address that is not a trusted proxy.
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<crate::state::AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &crate::state::AppState) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| Error::Internal("no peer address".into()))?;
        Ok(ClientIp(client_ip(peer, &parts.headers, &state.trusted_proxies)))
    }
}

/// See [`ClientIp`]. Unparsable entries end the walk (the last trusted hop is then the client).
pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// A session for HTML pages: without one the browser is sent to the sign-in page.
pub struct PageSession(pub Session);

impl FromRequestParts<AppState> for PageSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Session::from_request_parts(parts, state).await {
            Ok(s) => Ok(PageSession(s)),
            Err(Error::Unauthorized(_)) => Err(Redirect::to(&login_then(parts)).into_response()),
            Err(e) => Err(crate::render::error_response(e)),
        }
    }
}

/// The sign-in page, and for a page other than the room list the page to return to after it
/// (`next`): a link to a room opened while signed out leads to that room.
fn login_then(parts: &Parts) -> String {
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if parts.method != axum::http::Method::GET || target == "/rooms" || target == "/" || target.len() > MAX_NEXT {
        return "/login".into();
    }
    format!("/login?next={}", crate::render::encode_query(target))
}

/// Longest `next` kept.
pub const MAX_NEXT: usize = 2048;

/// The page to go to after signing in: `next` when it is a path on this site (not `//host`
/// or `/\host`, which browsers read as another site), else the room list.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= MAX_NEXT
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local { next } else { "/rooms" }
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7, 203.0.113.9, 10.1.2.3"));
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // Through two trusted hops: the first untrusted address from the right.
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        // An untrusted peer's header is ignored.
        assert_eq!(client_ip(ip("192.0.2.1"), &h, &trusted), ip("192.0.2.1"));
        // Nothing trusted configured: the peer.
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
        // Garbage ends the walk at the last good hop.
        let mut bad = HeaderMap::new();
        bad.append("x-forwarded-for", HeaderValue::from_static("nonsense, 10.9.9.9"));
        assert_eq!(client_ip(ip("127.0.0.1"), &bad, &trusted), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted), ip("127.0.0.1"));
    }
}
