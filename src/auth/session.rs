//! Request extractors: a handler that takes a [`Session`] cannot run without a valid token whose
//! session still exists; cookie-authenticated state changes must come from our own origin.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};

use super::{Accounts, COOKIE, Claims};
use crate::error::{Error, Result};
use crate::ids::UserId;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Session {
    /// The caller's user id.
    pub user: UserId,
    /// The session id named by the token.
    pub sid: String,
    /// The token came from the browser cookie (not an `Authorization` header).
    pub via_cookie: bool,
    /// The verified claims.
    pub claims: Claims,
}

impl<S: Send + Sync> FromRequestParts<S> for Session
where
    Accounts: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let session = authenticate(&parts.headers, &Accounts::from_ref(state))?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if session.via_cookie && !safe && !same_origin(&parts.headers) {
            return Err(Error::Forbidden("cross-origin request refused".into()));
        }
        Ok(session)
    }
}

/// Checks the token in the `Authorization: Bearer` header, or else the cookie, and that its
/// session still exists.
pub fn authenticate(headers: &HeaderMap, state: &Accounts) -> Result<Session> {
    let (token, via_cookie) = match bearer(headers) {
        Some(t) => (t, false),
        None => (cookie(headers, COOKIE).ok_or_else(|| Error::Unauthorized("sign in first".into()))?, true),
    };
    let claims = state.tokens.verify(token)?;
    let rec =
        state.store.session(&claims.sid)?.ok_or_else(|| Error::Unauthorized("session ended; sign in again".into()))?;
    if rec.user_id != claims.sub {
        return Err(Error::Unauthorized("invalid token".into()));
    }
    let user = UserId::parse_or_local(&claims.sub, &state.server_name)
        .map_err(|_| Error::Unauthorized("invalid token".into()))?;
    Ok(Session { user, sid: claims.sid.clone(), via_cookie, claims })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of a cookie from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request's `Origin` (or, without one, `Referer`) names the host it was sent to.
/// A request with neither is not considered same-origin.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let source = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    match source.and_then(origin_authority) {
        Some(auth) => auth.eq_ignore_ascii_case(host),
        None => false,
    }
}

/// Whether an `Origin` header, if present, names the host the request was sent to. Absent is
/// allowed (non-browser clients); "null" and foreign origins are not.
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(_) => same_origin(headers),
    }
}

/// `scheme://authority/...` -> `authority`.
fn origin_authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let ok = headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "http://127.0.0.1:8080")]);
        assert!(same_origin(&ok));
        let evil = headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "http://evil.test")]);
        assert!(!same_origin(&evil));
        assert!(!origin_allowed(&evil));
        let referer = headers(&[(header::HOST, "a:1"), (header::REFERER, "https://a:1/rooms")]);
        assert!(same_origin(&referer));
        let none = headers(&[(header::HOST, "a:1")]);
        assert!(!same_origin(&none));
        assert!(origin_allowed(&none));
        let null = headers(&[(header::HOST, "a:1"), (header::ORIGIN, "null")]);
        assert!(!origin_allowed(&null));
    }

    #[test]
    fn cookies() {
        let h = headers(&[(header::COOKIE, "a=1; chat_token=xyz; b=2")]);
        assert_eq!(cookie(&h, "chat_token"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
