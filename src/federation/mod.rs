//! Federation, first part: server identity and signed server-to-server requests.
//!
//! - Our ed25519 signing key (`keys.rs`), published self-signed at `GET /_matrix/key/v2/server`;
//!   other servers' keys fetched on demand, verified, cached in `server_keys`.
//! - `.well-known/matrix/server` delegation, served and followed (`client.rs`).
//! - Outbound HTTPS (rustls; system roots plus the `federation_ca` file), every request signed
//!   with `Authorization: X-Matrix` (`client.rs`).
//! - Inbound: [`FedRequest`] checks the `X-Matrix` header against the origin's key (as the
//!   Matrix spec signs requests: no time, so a repeated request is the same request, which
//!   every endpoint treats idempotently), the destination (us), the body size and the origin's
//!   request rate.
//!
//! Endpoints: the key document, `.well-known`, `GET /_matrix/federation/v1/version` and
//! `GET /_matrix/federation/v1/query/profile` (signed; asked of others in `profiles.rs`).

pub mod budget;
pub mod calls;
pub mod client;
pub mod ephemeral;
pub mod handshake;
pub mod keys;
pub mod media;
pub mod membership;
pub mod pdu;
pub mod profiles;
pub mod receive;
pub mod sender;
pub mod serve;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::ratelimit::RateLimiter;
use crate::calls::Calls;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::events::now_ms;
use crate::ids::{ServerName, UserId};
use crate::keys::{SigningKey, unb64};
use crate::rooms::Rooms;
use crate::store::Store;
use crate::store::keys::CachedKey;
use axum::extract::FromRef;
use client::FedClient;
use tokio_util::sync::CancellationToken;

handle!(
    /// What federation works with: the services below it and its own parts. Cheap to clone.
    FedState => FedStateInner
);

/// What [`FedState`] holds.
pub struct FedStateInner {
    /// The database.
    pub store: Store,
    /// This server's name.
    pub server_name: ServerName,
    /// Size and rate limits.
    pub limits: Limits,
    /// Our key, the client for other servers, the outbound queues.
    pub federation: std::sync::Arc<Federation>,
    /// Cancelled at shutdown; long-lived tasks watch it.
    pub shutdown: CancellationToken,
    /// The room services (joins and invites done here).
    pub rooms: Rooms,
    /// The call services (call signals from other servers).
    pub calls: Calls,
    /// The server's background tasks (the outbound lanes are some).
    pub tasks: tokio_util::task::TaskTracker,
    /// Typing notices and receipts from other servers, for the live channel to show (full:
    /// dropped).
    pub ephemeral: tokio::sync::mpsc::Sender<ephemeral::Incoming>,
    /// Files: ours served to other servers, theirs fetched and kept.
    pub media: crate::media::Media,
}

/// Largest inbound federation request body.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Federation's part of the server state.
pub struct Federation {
    /// Our signing key.
    pub key: std::sync::Arc<SigningKey>,
    /// HTTPS client to other servers.
    pub client: FedClient,
    /// Requests per origin.
    pub per_origin: RateLimiter,
    /// Key fetches caused by requests from one client address (naming an unknown key).
    key_fetches: RateLimiter,
    /// The outbound queues' senders and per-destination status.
    pub outbox: std::sync::Arc<sender::Outbox>,
    /// Received events are processed one room at a time.
    pub room_locks: receive::RoomLocks,
    /// Rates and budgets for what other servers send us (events, missing events, invites).
    pub budgets: budget::Budgets,
    /// Typing notices and receipts waiting to be sent, per destination.
    pub edus: ephemeral::EduQueues,
    /// Profiles of other servers' users, as their servers answered lately.
    pub profiles: profiles::ProfileCache,
}

impl Federation {
    /// Loads (or makes) our key and builds the client.
    pub async fn start(
        store: &crate::store::Store,
        config: &crate::Config,
        outbox: std::sync::Arc<sender::Outbox>,
    ) -> std::result::Result<Federation, String> {
        let key = std::sync::Arc::new(keys::load_signing_key(store).await.map_err(|e| format!("signing key: {e}"))?);
        let policy = crate::addrs::PeerPolicy::new(config.federation_private_addresses);
        let client =
            FedClient::new(config.federation_ca.as_deref(), policy, config.federation_dns, config.federation_http2)?
                .with_request_timeout(std::time::Duration::from_secs(config.limits.federation_request_timeout_secs));
        Ok(Federation {
            key,
            client,
            per_origin: RateLimiter::new(config.limits.federation_requests_per_origin_per_minute),
            key_fetches: RateLimiter::new(config.limits.federation_key_fetches_per_ip_per_minute),
            outbox,
            room_locks: receive::RoomLocks::default(),
            budgets: budget::Budgets::new(&config.limits),
            edus: Default::default(),
            profiles: Default::default(),
        })
    }

    /// An event as it goes to another server: ours signed now, others' as they came.
    pub fn wire_pdu(&self, local: &str, event: &crate::events::Event) -> Result<Value> {
        if crate::store::events::server_of(&event.sender) == local {
            self.signed_pdu(local, event)
        } else {
            Ok(event.pdu())
        }
    }

    /// An event as a signed PDU of this server, as other servers receive it. Events are signed
    /// when they leave the server, not when they are written: the signature covers the redacted
    /// PDU, which never changes, so signing later gives the same result, and the ed25519
    /// operation stays off the single writer thread (signing there cost 45% more CPU per
    /// message; see docs/benchmarks.md).
    pub fn signed_pdu(&self, server: &str, event: &crate::events::Event) -> Result<Value> {
        let mut ev = event.clone();
        ev.sign(server, &self.key)?;
        Ok(ev.pdu())
    }
}

/// The federation routes (mounted at the root: `/_matrix/...` and `/.well-known/...`).
pub fn routes<S>() -> crate::routes::Routes<S>
where
    S: Clone + Send + Sync + 'static,
    FedState: FromRef<S>,
{
    let matrix = crate::routes::Routes::default()
        .get("/key/v2/server", key_document)
        .get("/federation/v1/version", version)
        .get("/federation/v1/query/profile", serve_profile)
        .get("/federation/v1/query/directory", serve::query_directory)
        .get("/federation/v1/media/download/{media_id}", media::serve_download)
        .get("/federation/v1/make_join/{room_id}/{user_id}", handshake::make_join)
        .put("/federation/v2/send_join/{room_id}/{event_id}", handshake::send_join)
        .get("/federation/v1/make_leave/{room_id}/{user_id}", handshake::make_leave)
        .put("/federation/v2/send_leave/{room_id}/{event_id}", handshake::send_leave)
        .get("/federation/v1/make_knock/{room_id}/{user_id}", handshake::make_knock)
        .put("/federation/v1/send_knock/{room_id}/{event_id}", handshake::send_knock)
        .put("/federation/v2/invite/{room_id}/{event_id}", handshake::invite)
        .put("/federation/v1/send/{txn_id}", receive::receive_transaction)
        .post("/federation/v1/get_missing_events/{room_id}", serve::get_missing_events)
        .get("/federation/v1/event/{event_id}", serve::get_event_route)
        .get("/federation/v1/backfill/{room_id}", serve::backfill)
        .get("/federation/v1/state_ids/{room_id}", serve::state_ids)
        .get("/federation/v1/state/{room_id}", serve::state_events)
        .get("/federation/v1/event_auth/{room_id}/{event_id}", serve::event_auth)
        .post("/federation/unstable/chat.call/token/{room_id}", calls::serve_call_token);
    crate::routes::Routes::default().get("/.well-known/matrix/server", well_known).nest("/_matrix", matrix, |r| {
        r.fallback(unrecognized)
            .method_not_allowed_fallback(unrecognized)
            .layer(axum::middleware::from_fn(matrix_errors))
    })
}

/// What Matrix servers get for an endpoint we do not have: `404 M_UNRECOGNIZED` (the spec's
/// answer, which tells a peer to fall back, e.g. from a v2 endpoint to v1).
async fn unrecognized(method: Method) -> Response {
    let status = if method == Method::GET || method == Method::PUT || method == Method::POST {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    (status, axum::Json(json!({ "errcode": "M_UNRECOGNIZED", "error": "Unrecognized request" }))).into_response()
}

/// Error bodies under `/_matrix` in the Matrix shape, `{"errcode": "M_…", "error": text}`
/// (with `retry_after_ms` on 429), from our `{"error": code, "message": text}`.
async fn matrix_errors(req: Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    if res.status().is_success() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, axum::Json(json!({ "errcode": "M_UNKNOWN", "error": "error" }))).into_response();
    };
    let Ok(ours) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if ours.get("errcode").is_some() {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let errcode = match ours.get("error").and_then(Value::as_str).unwrap_or("") {
        "unauthorized" => "M_UNAUTHORIZED",
        "forbidden" => "M_FORBIDDEN",
        "not_found" => "M_NOT_FOUND",
        "too_large" => "M_TOO_LARGE",
        "rate_limited" => "M_LIMIT_EXCEEDED",
        "bad_request" => "M_BAD_JSON",
        "method_not_allowed" => "M_UNRECOGNIZED",
        _ => "M_UNKNOWN",
    };
    let mut matrix = json!({ "errcode": errcode, "error": ours.get("message").cloned().unwrap_or(Value::Null) });
    if let Some(secs) =
        parts.headers.get(axum::http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        matrix["retry_after_ms"] = json!(secs * 1000);
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::Json(matrix).into_response().into_body())
}

/// A signed request to `server` and its JSON answer; statuses other than 200 become our
/// errors (403 and 404 as such, other 4xx as bad requests, the rest as unavailable).
pub(crate) async fn call(
    state: &FedState,
    server: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let (status, v) = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), server, method, path, body)
        .await
        .map_err(|e| client::public(server, &e))?;
    let msg = v.get("error").and_then(Value::as_str).unwrap_or("").to_string();
    match status {
        StatusCode::OK => Ok(v),
        StatusCode::FORBIDDEN => Err(Error::Forbidden(format!("{server}: {msg}"))),
        StatusCode::NOT_FOUND => Err(Error::NotFound(format!("{server}: {msg}"))),
        s if s.is_client_error() => Err(Error::bad(format!("{server}: {msg}"))),
        s => Err(Error::Unavailable(format!("{server} answered {s}"))),
    }
}

async fn key_document(State(state): State<FedState>) -> Result<axum::Json<Value>> {
    Ok(axum::Json(state.federation.key.document(state.server_name.as_str(), now_ms())?))
}

async fn well_known(State(state): State<FedState>) -> axum::Json<Value> {
    axum::Json(json!({ "m.server": state.server_name.as_str() }))
}

async fn version() -> axum::Json<Value> {
    axum::Json(json!({ "server": { "name": "chat", "version": env!("CARGO_PKG_VERSION") } }))
}

/// The query of `GET /query/profile`.
#[derive(Deserialize)]
pub struct ProfileQuery {
    user_id: String,
    field: Option<String>,
}

/// `GET /_matrix/federation/v1/query/profile?user_id=@ben:us`: a local user's display name (their
/// localpart if they chose none).
async fn serve_profile(
    State(state): State<FedState>,
    q: std::result::Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    tracing::debug!(origin = %req.origin, "profile query");
    let Query(q) = q.map_err(|e| Error::bad(e.body_text()))?;
    let user = UserId::parse(&q.user_id)?;
    if user.server() != state.server_name.as_str() {
        return Err(Error::bad("that user is not on this server"));
    }
    let Some(record) = state.store.user(user.localpart())?.filter(|u| !u.disabled) else {
        return Err(Error::NotFound("no such user".into()));
    };
    let name = record.display_name.unwrap_or_else(|| user.localpart().to_string());
    Ok(axum::Json(match q.field.as_deref() {
        None | Some("displayname") => json!({ "displayname": name }),
        Some(_) => json!({}),
    }))
}

/// A verified request from another server: who sent it and its JSON body, if any.
pub struct FedRequest {
    /// The origin server, verified.
    pub origin: String,
    /// The request body.
    pub content: Option<Value>,
}

impl<S: Send + Sync> FromRequest<S> for FedRequest
where
    FedState: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Response> {
        let state = &FedState::from_ref(state);
        let (parts, body) = req.into_parts();
        // As sent: the path before any nesting stripped its prefix.
        let sent = parts.extensions.get::<axum::extract::OriginalUri>().map_or(&parts.uri, |o| &o.0);
        let uri = sent.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => return Err(Error::TooLarge("federation request too large".into()).into_response()),
        };
        verify(state, peer, &parts.method, &uri, &parts.headers, &bytes).await.map_err(|e| {
            tracing::debug!(error = %e, uri, "federation request refused");
            e.into_response()
        })
    }
}

/// `X-Matrix origin="..",destination="..",key="..",sig=".."` -> its parameters.
pub fn parse_x_matrix(header: &str) -> Option<HashMap<String, String>> {
    let (scheme, params) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("x-matrix") {
        return None;
    }
    let mut out = HashMap::new();
    for part in params.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        if v.contains('"') || out.insert(k.trim().to_ascii_lowercase(), v.to_string()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Checks a request's `X-Matrix` authorization; `peer` is the client address that sent it (a
/// request naming a key not known here costs one of that address's key fetches).
async fn verify(
    state: &FedState,
    peer: Option<std::net::IpAddr>,
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<FedRequest> {
    let unauthorized = |m: &str| Error::Unauthorized(m.to_string());
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("X-Matrix authorization required"))?;
    let p = parse_x_matrix(header).ok_or_else(|| unauthorized("malformed X-Matrix authorization"))?;
    let field = |k: &str| p.get(k).map(String::as_str).ok_or_else(|| unauthorized(&format!("X-Matrix without {k}")));
    let origin = ServerName::parse(field("origin")?).map_err(|_| unauthorized("bad origin"))?.to_string();
    // Servers must send `destination`; older ones may leave it out, which means us.
    if p.get("destination").is_some_and(|d| d != state.server_name.as_str()) {
        return Err(unauthorized("request meant for another server"));
    }
    if origin == state.server_name.as_str() {
        return Err(unauthorized("a request from ourselves"));
    }
    state.federation.per_origin.check(&origin)?;
    let content: Option<Value> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(body).map_err(|_| Error::bad("body is not JSON"))?)
    };
    let key_id = field("key")?;
    let sig = unb64(field("sig")?).map_err(|_| unauthorized("bad signature encoding"))?;
    let public = fetch_key(state, &origin, key_id, now_ms(), peer).await?;
    let text = client::SignedRequest {
        origin: &origin,
        destination: state.server_name.as_str(),
        method: method.as_str(),
        uri,
        content: content.as_ref(),
    }
    .canonical()?;
    ruma_signatures::verify_canonical_json_bytes(
        &ruma_signatures::SigningKeyAlgorithm::Ed25519,
        &public,
        &sig,
        text.as_bytes(),
    )
    .map_err(|_| unauthorized("bad X-Matrix signature"))?;
    state.federation.outbox.contacted(&origin);
    Ok(FedRequest { origin, content })
}

/// The public key `key_id` of `server`, valid at `at` (ms): from the cache, else fetched.
pub async fn remote_key(state: &FedState, server: &str, key_id: &str, at: u64) -> Result<Vec<u8>> {
    fetch_key(state, server, key_id, at, None).await
}

/// [`remote_key`]; a fetch caused by a request from `asker` is counted against that address
/// (an IPv6 client by its /64), so that forged origins cannot turn the server into a scanner.
async fn fetch_key(
    state: &FedState,
    server: &str,
    key_id: &str,
    at: u64,
    asker: Option<std::net::IpAddr>,
) -> Result<Vec<u8>> {
    let usable = |k: &CachedKey| if k.old { at < k.valid_until_ts } else { now_ms() < k.valid_until_ts };
    if let Some(k) = state.store.server_key(server, key_id)?
        && usable(&k)
    {
        return unb64(&k.key);
    }
    if let Some(ip) = asker {
        state.federation.key_fetches.check(&crate::addrs::client_key(ip).to_string())?;
    }
    let (status, doc) = state.federation.client.get(server, "/_matrix/key/v2/server").await.map_err(|e| {
        Error::Unauthorized(format!("cannot get the keys of {server} ({})", client::public(server, &e)))
    })?;
    if status != StatusCode::OK {
        tracing::info!(server, %status, "key document refused");
        return Err(Error::Unauthorized(format!("cannot get the keys of {server}")));
    }
    let fetched = keys::check_document(server, doc, now_ms())?;
    let wanted = fetched.get(key_id).cloned();
    state.store.put_server_keys(server.to_string(), fetched).await?;
    match wanted {
        Some(k) if usable(&k) => unb64(&k.key),
        _ => Err(Error::Unauthorized(format!("{server} has no key {key_id}"))),
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_x_matrix;

    #[test]
    fn x_matrix_headers() {
        let p = parse_x_matrix(r#"X-Matrix origin="a.test:8448",destination="b.test",key="ed25519:k1",sig="c2ln""#)
            .unwrap();
        assert_eq!(p["origin"], "a.test:8448");
        assert_eq!(p["destination"], "b.test");
        assert_eq!(p["key"], "ed25519:k1");
        assert_eq!(p["sig"], "c2ln");
        assert!(parse_x_matrix("Bearer abc").is_none());
        assert!(parse_x_matrix(r#"X-Matrix origin="a",origin="b""#).is_none());
        assert!(parse_x_matrix(r#"X-Matrix origin"#).is_none());
        assert!(parse_x_matrix(r#"X-Matrix origin="a"b""#).is_none());
    }
}
