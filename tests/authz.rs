//! The authorization matrix: every HTTP route and every WebSocket action, called by every kind
//! of caller, with the outcome each must get. The route list is read from `src/web/mod.rs`: a
//! route added there without a row here fails `every_route_has_a_row`.
//!
//! Callers: `anon` (no credentials), `bad` (a forged token), `other` (signed in, never in the
//! room), `left` (joined the room once, then left), `invited`, `member`, `banned`, `radmin`
//! (the room's creator, power 100), `sadmin` (a server administrator who is not in the room).
//! Each cell runs on a fresh invite-only room with all of them in place (set up through the API,
//! as the users themselves would), with a working session for the caller (signed in again if
//! an earlier cell ended it), so what one cell does (leave, logout, ban) cannot change another.
//! The server-administration routes act on `subject`, an account that plays no other part.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;
use chat_testkit::tokio_tungstenite;

use std::collections::BTreeSet;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CALLERS: [&str; 9] = ["anon", "bad", "other", "left", "invited", "member", "banned", "radmin", "sadmin"];

/// One row: method, route as written in the router, the body, and the outcome per caller in
/// [`CALLERS`] order. Outcomes: a status code, `login` (303 to /login), `303` (a redirect
/// elsewhere: a form post that worked), `101` (a WebSocket opened).
struct Row {
    method: &'static str,
    route: &'static str,
    body: Body,
    expect: [&'static str; 9],
}

#[derive(Clone, Copy)]
enum Body {
    None,
    Json(fn(&Ctx) -> Value),
    Form(fn(&Ctx) -> Vec<(&'static str, String)>),
}

/// What a cell's request may refer to.
struct Ctx {
    room: String,
    /// A joined member with no power, the target of kick and ban.
    victim: String,
    /// A banned user, the target of unban.
    banned: String,
    /// A user in no room, the target of invite and DM.
    outsider: String,
    /// An event of the room, for read markers.
    event_id: String,
    /// Unique per cell (names, transaction ids).
    n: usize,
}

/// A subscription as a browser makes it (a valid P-256 key), at an endpoint unique per cell.
fn push_subscription(n: usize) -> serde_json::Value {
    use base64::Engine;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let key = p256::SecretKey::from_slice(&[7u8; 32]).unwrap().public_key();
    json!({"endpoint": format!("https://push.example/authz/{n}"),
           "keys": {"p256dh": b64(key.as_affine().to_encoded_point(false).as_bytes()), "auth": b64(&[1u8; 16])}})
}

fn rows() -> Vec<Row> {
    use Body::*;
    const ALL_SIGNED: [&str; 9] = ["401", "401", "200", "200", "200", "200", "200", "200", "200"];
    const OPEN: [&str; 9] = ["200"; 9];
    const MEMBERS_ONLY: [&str; 9] = ["401", "401", "403", "403", "403", "200", "403", "200", "403"];
    const PAGE_SIGNED: [&str; 9] = ["login", "login", "200", "200", "200", "200", "200", "200", "200"];
    const PAGE_MEMBERS: [&str; 9] = ["login", "login", "403", "403", "403", "200", "403", "200", "403"];
    const PAGE_ADMIN: [&str; 9] = ["login", "login", "403", "403", "403", "403", "403", "403", "200"];
    let user = |c: &Ctx| json!({ "user_id": c.victim });
    vec![
        // JSON API.
        Row {
            method: "POST",
            route: "/api/v1/register",
            body: Json(|c| json!({"username": format!("new{}", c.n), "password": "password123"})),
            expect: OPEN,
        },
        Row {
            method: "POST",
            route: "/api/v1/login",
            body: Json(|_| json!({"username": "outsider", "password": "password123"})),
            expect: OPEN,
        },
        Row { method: "POST", route: "/api/v1/logout", body: Json(|_| json!({})), expect: ALL_SIGNED },
        Row {
            method: "POST",
            route: "/api/v1/password",
            body: Json(|_| json!({"old_password": "password123", "new_password": "password123"})),
            expect: ALL_SIGNED,
        },
        Row { method: "GET", route: "/api/v1/me", body: None, expect: ALL_SIGNED },
        Row { method: "GET", route: "/api/v1/profile/{user_id}", body: None, expect: ALL_SIGNED },
        // Any signed-in user may upload; a file nobody shared with them is not found.
        Row { method: "POST", route: "/api/v1/media/upload", body: Json(|_| json!({"a": 1})), expect: ALL_SIGNED },
        Row {
            method: "GET",
            route: "/api/v1/media/download/{server}/{media_id}",
            body: None,
            expect: ["401", "401", "404", "404", "404", "404", "404", "404", "404"],
        },
        Row {
            method: "GET",
            route: "/api/v1/media/thumbnail/{server}/{media_id}",
            body: None,
            expect: ["401", "401", "404", "404", "404", "404", "404", "404", "404"],
        },
        Row {
            method: "PUT",
            route: "/api/v1/profile",
            body: Json(|c| json!({"display_name": format!("N {}", c.n)})),
            expect: ALL_SIGNED,
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms",
            body: Json(|c| json!({"name": format!("r{}", c.n), "visibility": "public"})),
            expect: ALL_SIGNED,
        },
        Row { method: "GET", route: "/api/v1/rooms", body: None, expect: ALL_SIGNED },
        Row { method: "GET", route: "/api/v1/rooms/public", body: None, expect: ALL_SIGNED },
        Row { method: "GET", route: "/api/v1/rooms/{room_id}", body: None, expect: MEMBERS_ONLY },
        Row { method: "GET", route: "/api/v1/rooms/{room_id}/members", body: None, expect: MEMBERS_ONLY },
        // Invite-only room: only the invited may join; members are already in (409).
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/join",
            body: Json(|_| json!({})),
            expect: ["401", "401", "403", "403", "200", "409", "403", "409", "403"],
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/leave",
            body: Json(|_| json!({})),
            expect: ["401", "401", "403", "403", "200", "200", "403", "200", "403"],
        },
        // Any member may invite (invite level 0); not the invited, banned or outsiders.
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/invite",
            body: Json(|c| json!({"user_id": c.outsider})),
            expect: MEMBERS_ONLY,
        },
        // Kick and ban need power 50: only the room's admin.
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/kick",
            body: Json(user),
            expect: ["401", "401", "403", "403", "403", "403", "403", "200", "403"],
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/ban",
            body: Json(user),
            expect: ["401", "401", "403", "403", "403", "403", "403", "200", "403"],
        },
        // The banned caller names itself here: "use leave" (400) before any power check.
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/unban",
            body: Json(|c| json!({"user_id": c.banned})),
            expect: ["401", "401", "403", "403", "403", "403", "400", "200", "403"],
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/messages",
            body: Json(|c| json!({"body": "hi", "txn_id": format!("t{}", c.n)})),
            expect: MEMBERS_ONLY,
        },
        Row { method: "GET", route: "/api/v1/rooms/{room_id}/messages", body: None, expect: MEMBERS_ONLY },
        Row { method: "GET", route: "/api/v1/rooms/{room_id}/events/{event_id}", body: None, expect: MEMBERS_ONLY },
        Row { method: "GET", route: "/api/v1/rooms/{room_id}/context/{event_id}", body: None, expect: MEMBERS_ONLY },
        // Anyone signed in may search (their own rooms): without words, a 400 saying so.
        Row {
            method: "GET",
            route: "/api/v1/search",
            body: None,
            expect: ["401", "401", "400", "400", "400", "400", "400", "400", "400"],
        },
        // The event is the member's own message: the member may delete it, the room's admin
        // (redact level 50) anyone's; a member deleting another's gets 403 (federation_rooms).
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/redact",
            body: Json(|c| json!({"event_id": c.event_id, "reason": "oops"})),
            expect: MEMBERS_ONLY,
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/reactions",
            body: Json(|c| json!({"event_id": c.event_id, "key": "👍", "txn_id": format!("r{}", c.n)})),
            expect: MEMBERS_ONLY,
        },
        // Pinning needs level 50: only the room's admin may (a member gets 403).
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/pins",
            body: Json(|c| json!({"event_id": c.event_id, "pinned": true})),
            expect: ["401", "401", "403", "403", "403", "403", "403", "200", "403"],
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/read",
            body: Json(|c| json!({"event_id": c.event_id})),
            expect: MEMBERS_ONLY,
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/settings",
            body: Json(|c| json!({"name": format!("renamed {}", c.n)})),
            expect: ["401", "401", "403", "403", "403", "403", "403", "200", "403"],
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/power",
            body: Json(|c| json!({"user_id": c.outsider, "level": 50})),
            expect: ["401", "401", "403", "403", "403", "403", "403", "200", "403"],
        },
        Row {
            method: "POST",
            route: "/api/v1/join/{room}",
            body: Json(|_| json!({})),
            expect: ["401", "401", "403", "403", "200", "409", "403", "409", "403"],
        },
        // The room takes no requests to join (invite-only).
        Row {
            method: "POST",
            route: "/api/v1/knock/{room}",
            body: Json(|_| json!({})),
            expect: ["401", "401", "403", "403", "403", "403", "403", "403", "403"],
        },
        // Answering takes the kick level (turning away); nobody asked, which only the room's
        // admin learns.
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/requests",
            body: Json(|c| json!({"user_id": c.victim, "accept": false})),
            expect: ["401", "401", "403", "403", "403", "403", "403", "400", "403"],
        },
        Row { method: "POST", route: "/api/v1/dm", body: Json(|c| json!({"user_id": c.outsider})), expect: ALL_SIGNED },
        Row { method: "GET", route: "/api/v1/settings", body: None, expect: ALL_SIGNED },
        Row {
            method: "POST",
            route: "/api/v1/settings",
            body: Json(|_| json!({"appear_offline": false, "hide_receipts": false})),
            expect: ALL_SIGNED,
        },
        Row { method: "GET", route: "/api/v1/turn", body: None, expect: ALL_SIGNED },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/call/host",
            body: Json(|_| json!({})),
            expect: MEMBERS_ONLY,
        },
        Row { method: "GET", route: "/api/v1/notifications", body: None, expect: ALL_SIGNED },
        Row {
            method: "POST",
            route: "/api/v1/notifications",
            body: Json(|_| json!({"sound": false})),
            expect: ALL_SIGNED,
        },
        Row {
            method: "POST",
            route: "/api/v1/rooms/{room_id}/notifications",
            body: Json(|_| json!({"level": "all"})),
            expect: MEMBERS_ONLY,
        },
        Row { method: "GET", route: "/api/v1/push", body: None, expect: ALL_SIGNED },
        Row {
            method: "POST",
            route: "/api/v1/push/subscriptions",
            body: Json(|c| push_subscription(c.n)),
            expect: ALL_SIGNED,
        },
        // One's own devices only: another's id is not found.
        Row {
            method: "POST",
            route: "/api/v1/push/subscriptions/{id}/delete",
            body: Json(|_| json!({})),
            expect: ["401", "401", "404", "404", "404", "404", "404", "404", "404"],
        },
        // Pages and form posts (cookie and same-origin, as a browser sends them).
        Row {
            method: "GET",
            route: "/",
            body: None,
            expect: ["login", "login", "303", "303", "303", "303", "303", "303", "303"],
        },
        Row { method: "GET", route: "/login", body: None, expect: OPEN },
        // (Another account than the API row's: logins are limited to 10 a minute per account.)
        Row {
            method: "POST",
            route: "/login",
            body: Form(|_| vec![("username", "victim".into()), ("password", "password123".into())]),
            expect: ["303"; 9],
        },
        Row { method: "GET", route: "/register", body: None, expect: OPEN },
        Row {
            method: "POST",
            route: "/register",
            body: Form(|c| vec![("username", format!("form{}", c.n)), ("password", "password123".into())]),
            expect: ["303"; 9],
        },
        // Signed out (or never signed in), the browser lands on the sign-in page either way.
        Row { method: "POST", route: "/logout", body: Form(|_| vec![]), expect: ["login"; 9] },
        Row { method: "GET", route: "/rooms", body: None, expect: PAGE_SIGNED },
        Row {
            method: "POST",
            route: "/rooms",
            body: Form(|c| vec![("name", format!("p{}", c.n)), ("visibility", "public".into())]),
            expect: ["login", "login", "303", "303", "303", "303", "303", "303", "303"],
        },
        // The invited see the invitation (name, topic, members, Join/Decline), no history.
        Row {
            method: "GET",
            route: "/rooms/{room_id}",
            body: None,
            expect: ["login", "login", "403", "403", "200", "200", "403", "200", "403"],
        },
        // A link to a message: the room's page (the invited see the invitation).
        Row {
            method: "GET",
            route: "/rooms/{room_id}/events/{event_id}",
            body: None,
            expect: ["login", "login", "403", "403", "200", "200", "403", "200", "403"],
        },
        Row { method: "GET", route: "/rooms/{room_id}/history", body: None, expect: PAGE_MEMBERS },
        Row { method: "GET", route: "/rooms/{room_id}/members", body: None, expect: PAGE_MEMBERS },
        Row { method: "GET", route: "/rooms/{room_id}/pins", body: None, expect: PAGE_MEMBERS },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/join",
            body: Form(|_| vec![]),
            // A member's join just opens the room.
            expect: ["login", "login", "403", "403", "303", "303", "403", "303", "403"],
        },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/leave",
            body: Form(|_| vec![]),
            expect: ["login", "login", "403", "403", "303", "303", "403", "303", "403"],
        },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/invite",
            body: Form(|c| vec![("user", c.outsider.clone())]),
            expect: ["login", "login", "403", "403", "403", "303", "403", "303", "403"],
        },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/settings",
            body: Form(|c| vec![("name", format!("renamed {}", c.n)), ("topic", String::new())]),
            expect: ["login", "login", "403", "403", "403", "403", "403", "303", "403"],
        },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/send",
            body: Form(|c| vec![("body", "hi".into()), ("txn_id", format!("f{}", c.n))]),
            expect: ["login", "login", "403", "403", "403", "303", "403", "303", "403"],
        },
        Row { method: "GET", route: "/fragments/rooms", body: None, expect: PAGE_SIGNED },
        Row { method: "GET", route: "/fragments/call", body: None, expect: PAGE_SIGNED },
        Row {
            method: "POST",
            route: "/join",
            body: Form(|c| vec![("room", c.room.clone())]),
            expect: ["login", "login", "403", "403", "303", "303", "403", "303", "403"],
        },
        Row {
            method: "POST",
            route: "/knock",
            body: Form(|c| vec![("room", c.room.clone()), ("reason", String::new())]),
            expect: ["login", "login", "403", "403", "403", "403", "403", "403", "403"],
        },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/requests",
            // Letting in takes the invite level, which members have (0).
            body: Form(|c| vec![("user", c.victim.clone()), ("accept", "yes".into())]),
            expect: ["login", "login", "403", "403", "403", "400", "403", "400", "403"],
        },
        Row {
            method: "POST",
            route: "/dm",
            body: Form(|c| vec![("user", c.outsider.clone())]),
            expect: ["login", "login", "303", "303", "303", "303", "303", "303", "303"],
        },
        Row { method: "GET", route: "/settings", body: None, expect: PAGE_SIGNED },
        Row { method: "GET", route: "/search", body: None, expect: PAGE_SIGNED },
        Row {
            method: "POST",
            route: "/settings/password",
            body: Form(|_| vec![("old_password", "password123".into()), ("new_password", "password123".into())]),
            expect: PAGE_SIGNED,
        },
        Row { method: "POST", route: "/settings/privacy", body: Form(|_| vec![]), expect: PAGE_SIGNED },
        Row { method: "POST", route: "/settings/notifications", body: Form(|_| vec![]), expect: PAGE_SIGNED },
        Row {
            method: "POST",
            route: "/settings/push/{id}/delete",
            body: Form(|_| vec![]),
            expect: ["login", "login", "404", "404", "404", "404", "404", "404", "404"],
        },
        Row {
            method: "POST",
            route: "/rooms/{room_id}/notifications",
            body: Form(|_| vec![("level", "mentions".into())]),
            expect: ["login", "login", "403", "403", "403", "303", "403", "303", "403"],
        },
        Row {
            method: "POST",
            route: "/settings/profile",
            body: Form(|_| vec![("display_name", "Someone".into())]),
            expect: PAGE_SIGNED,
        },
        Row { method: "GET", route: "/admin", body: None, expect: PAGE_ADMIN },
        Row {
            method: "POST",
            route: "/admin/users",
            body: Form(|c| vec![("username", format!("adm{}", c.n)), ("password", "password123".into())]),
            expect: PAGE_ADMIN,
        },
        Row {
            method: "POST",
            route: "/admin/users/{name}/disabled",
            body: Form(|_| vec![("on", "1".into())]),
            expect: PAGE_ADMIN,
        },
        Row {
            method: "POST",
            route: "/admin/users/{name}/admin",
            body: Form(|_| vec![("on", "0".into())]),
            expect: PAGE_ADMIN,
        },
        Row { method: "POST", route: "/admin/users/{name}/password", body: Form(|_| vec![]), expect: PAGE_ADMIN },
        Row {
            method: "POST",
            route: "/admin/rooms/{room_id}/delete",
            body: Form(|_| vec![("confirm", "yes".into())]),
            expect: PAGE_ADMIN,
        },
        Row {
            method: "GET",
            route: "/ws",
            body: None,
            expect: ["401", "401", "101", "101", "101", "101", "101", "101", "101"],
        },
        // The call socket opens for anyone; a session token (of any caller) is not a call token.
        Row { method: "GET", route: "/ws/call", body: None, expect: ["unauthorized"; 9] },
        Row { method: "GET", route: "/healthz", body: None, expect: OPEN },
        Row { method: "GET", route: "/readyz", body: None, expect: OPEN },
        Row { method: "GET", route: "/assets/{*path}", body: None, expect: OPEN },
        Row { method: "GET", route: "/manifest.webmanifest", body: None, expect: OPEN },
        Row { method: "GET", route: "/sw.js", body: None, expect: OPEN },
        Row { method: "GET", route: "/offline", body: None, expect: OPEN },
        // Federation: public key material, and server-signed requests only (a user's token is
        // not a server's signature).
        Row { method: "GET", route: "/_matrix/key/v2/server", body: None, expect: OPEN },
        Row { method: "GET", route: "/.well-known/matrix/server", body: None, expect: OPEN },
        Row { method: "GET", route: "/_matrix/federation/v1/version", body: None, expect: OPEN },
        Row { method: "GET", route: "/_matrix/federation/v1/query/profile", body: None, expect: ["401"; 9] },
        Row {
            method: "GET",
            route: "/_matrix/federation/v1/media/download/{media_id}",
            body: None,
            expect: ["401"; 9],
        },
        Row { method: "GET", route: "/_matrix/federation/v1/query/directory", body: None, expect: ["401"; 9] },
        Row {
            method: "GET",
            route: "/_matrix/federation/v1/make_join/{room_id}/{user_id}",
            body: None,
            expect: ["401"; 9],
        },
        Row {
            method: "PUT",
            route: "/_matrix/federation/v2/send_join/{room_id}/{event_id}",
            body: Json(|_| json!({})),
            expect: ["401"; 9],
        },
        Row {
            method: "GET",
            route: "/_matrix/federation/v1/make_leave/{room_id}/{user_id}",
            body: None,
            expect: ["401"; 9],
        },
        Row {
            method: "PUT",
            route: "/_matrix/federation/v2/send_leave/{room_id}/{event_id}",
            body: Json(|_| json!({})),
            expect: ["401"; 9],
        },
        Row {
            method: "GET",
            route: "/_matrix/federation/v1/make_knock/{room_id}/{user_id}",
            body: None,
            expect: ["401"; 9],
        },
        Row {
            method: "PUT",
            route: "/_matrix/federation/v1/send_knock/{room_id}/{event_id}",
            body: Json(|_| json!({})),
            expect: ["401"; 9],
        },
        Row {
            method: "PUT",
            route: "/_matrix/federation/v2/invite/{room_id}/{event_id}",
            body: Json(|_| json!({})),
            expect: ["401"; 9],
        },
        Row {
            method: "PUT",
            route: "/_matrix/federation/v1/send/{txn_id}",
            body: Json(|_| json!({"pdus": []})),
            expect: ["401"; 9],
        },
        Row {
            method: "POST",
            route: "/_matrix/federation/v1/get_missing_events/{room_id}",
            body: Json(|_| json!({"latest_events": []})),
            expect: ["401"; 9],
        },
        Row { method: "GET", route: "/_matrix/federation/v1/event/{event_id}", body: None, expect: ["401"; 9] },
        Row { method: "GET", route: "/_matrix/federation/v1/backfill/{room_id}", body: None, expect: ["401"; 9] },
        Row { method: "GET", route: "/_matrix/federation/v1/state_ids/{room_id}", body: None, expect: ["401"; 9] },
        Row { method: "GET", route: "/_matrix/federation/v1/state/{room_id}", body: None, expect: ["401"; 9] },
        Row {
            method: "GET",
            route: "/_matrix/federation/v1/event_auth/{room_id}/{event_id}",
            body: None,
            expect: ["401"; 9],
        },
        Row {
            method: "POST",
            route: "/_matrix/federation/unstable/chat.call/token/{room_id}",
            body: Json(|c| json!({"user_id": c.victim})),
            expect: ["401"; 9],
        },
    ]
}

/// `(method, path)` of every route, from the declarations that build the router (the web app
/// and federation).
fn routes_of_the_router() -> BTreeSet<(String, String)> {
    chat::web::routes().list().iter().map(|(m, p)| (m.to_string(), p.clone())).collect()
}

#[test]
fn every_route_has_a_row() {
    let source = routes_of_the_router();
    assert!(source.len() > 40, "the router lists only {source:?}");
    let table: BTreeSet<(String, String)> =
        rows().iter().map(|r| (r.method.to_string(), r.route.to_string())).collect();
    let missing: Vec<_> = source.difference(&table).collect();
    let stale: Vec<_> = table.difference(&source).collect();
    assert!(missing.is_empty(), "routes without an authorization row: {missing:?}");
    assert!(stale.is_empty(), "rows for routes that do not exist: {stale:?}");
}

struct World {
    s: TestServer,
    /// username -> user id
    ids: std::collections::HashMap<&'static str, String>,
    /// username -> the token of a session of theirs (checked before each use).
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl World {
    async fn new() -> Self {
        // Cells sign in again after a logout: more than a person's per-account allowance.
        let s = TestServer::start_tuned(|c| c.limits.logins_per_account_per_minute = 1_000_000).await;
        let (mut ids, mut tokens) = (std::collections::HashMap::new(), std::collections::HashMap::new());
        for name in
            ["other", "left", "invited", "member", "banned", "radmin", "sadmin", "victim", "outsider", "subject"]
        {
            let u = s.register(name).await;
            ids.insert(name, u.id);
            tokens.insert(name.to_string(), u.token);
        }
        let o = common::cli_async(&s.dir, &["admin", "user", "make-admin", "sadmin"], None).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        World { s, ids, tokens: std::sync::Mutex::new(tokens) }
    }

    fn id(&self, name: &str) -> String {
        self.ids[name].clone()
    }

    /// A working session token for `name`: the last one, or a new sign-in if a cell ended it.
    async fn token(&self, name: &str) -> String {
        let last = self.tokens.lock().unwrap().get(name).cloned();
        if let Some(t) = last
            && self.s.get(Some(&t), "/api/v1/me").await.0 == StatusCode::OK
        {
            return t;
        }
        let (st, v) = self.s.post(None, "/api/v1/login", json!({"username": name, "password": "password123"})).await;
        assert_eq!(st, StatusCode::OK, "{name} signs in: {v}");
        let t = v["token"].as_str().unwrap().to_string();
        self.tokens.lock().unwrap().insert(name.to_string(), t.clone());
        t
    }

    /// `name` posts `body` to the JSON API; the answer must be 200.
    async fn act(&self, name: &str, path: &str, body: Value) -> Value {
        let (st, v) = self.s.post(Some(&self.token(name).await), path, body).await;
        assert_eq!(st, StatusCode::OK, "{name} {path}: {v}");
        v
    }

    /// A fresh invite-only room with every kind of caller in place.
    async fn room(&self, n: usize) -> Ctx {
        let made = self.act("radmin", "/api/v1/rooms", json!({"name": format!("m{n}"), "visibility": "private"})).await;
        let room = made["room_id"].as_str().unwrap().to_string();
        let to = |what: &str| format!("/api/v1/rooms/{room}/{what}");
        for who in ["left", "invited", "member", "banned", "victim"] {
            self.act("radmin", &to("invite"), json!({"user_id": self.id(who)})).await;
        }
        for who in ["left", "member", "banned", "victim"] {
            self.act(who, &to("join"), json!({})).await;
        }
        self.act("left", &to("leave"), json!({})).await;
        self.act("radmin", &to("ban"), json!({"user_id": self.id("banned")})).await;
        let sent = self.act("member", &to("messages"), json!({"body": "hello", "txn_id": format!("seed{n}")})).await;
        Ctx {
            room,
            victim: self.id("victim"),
            banned: self.id("banned"),
            outsider: self.id("outsider"),
            event_id: sent["event_id"].as_str().unwrap().to_string(),
            n,
        }
    }

    /// Runs one cell; returns the outcome in the table's terms.
    async fn call(&self, row: &Row, caller: &str, ctx: &Ctx) -> String {
        let token = match caller {
            "anon" => None,
            "bad" => Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJAeDp5Iiwic2lkIjoieCJ9.AAAA".to_string()),
            name => Some(self.token(name).await),
        };
        let path = row
            .route
            .replace("{room_id}", &ctx.room)
            .replace("{room}", &ctx.room)
            .replace("{name}", "subject")
            .replace("{*path}", "app.js")
            .replace("{user_id}", if row.route.starts_with("/api/") { &ctx.victim } else { "@victim:127.0.0.1" })
            // The API and pages read the member's message; federation routes name an unknown event.
            .replace(
                "{event_id}",
                if !row.route.starts_with("/_matrix/") {
                    &ctx.event_id
                } else {
                    "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                },
            )
            .replace("{txn_id}", "t1")
            .replace("{server}", "127.0.0.1")
            .replace("{media_id}", "nothing")
            .replace("{id}", "0123456789abcdef");
        if row.route == "/ws" {
            return self.ws_upgrade(token.as_deref()).await;
        }
        if row.route == "/ws/call" {
            return self.call_socket(token.as_deref()).await;
        }
        let url = format!("{}{path}", self.s.url);
        let mut req = match row.method {
            "GET" => self.s.http.get(&url),
            "PUT" => self.s.http.put(&url),
            _ => self.s.http.post(&url),
        };
        let page = !path.starts_with("/api/");
        if let Some(t) = &token {
            req = if page { req.header("cookie", format!("chat_token={t}")) } else { req.bearer_auth(t) };
        }
        if page && row.method == "POST" {
            req = req.header("origin", &self.s.url);
        }
        req = match row.body {
            Body::None => req,
            Body::Json(f) => req.json(&f(ctx)),
            Body::Form(f) => req.form(&f(ctx)),
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        if status == StatusCode::SEE_OTHER {
            let to = res.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
            return if to == "/login" || to.starts_with("/login?next=/") { "login".into() } else { "303".into() };
        }
        status.as_u16().to_string()
    }

    async fn ws_upgrade(&self, token: Option<&str>) -> String {
        let mut req = format!("ws://{}/ws", self.s.addr).into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok(_) => "101".into(),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16().to_string(),
            Err(e) => format!("ws error {e}"),
        }
    }
}

impl World {
    /// Opens a call socket and presents `token` as its call token: the error code of the
    /// answer, or `ready`.
    async fn call_socket(&self, token: Option<&str>) -> String {
        let req = format!("ws://{}/ws/call", self.s.addr).into_client_request().unwrap();
        let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(ws) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => return r.status().as_u16().to_string(),
            Err(e) => return format!("ws error {e}"),
        };
        let auth = json!({ "t": "call_auth", "token": token.unwrap_or_default() }).to_string();
        ws.send(Message::Text(auth.into())).await.unwrap();
        let f = next_json(&mut ws).await;
        if f["t"] == "ready" { "ready".into() } else { f["error"].as_str().unwrap_or("?").to_string() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_by_caller() {
    let w = World::new().await;
    let mut n = 0;
    let mut wrong = Vec::new();
    let mut cells = 0;
    for row in rows() {
        for (i, caller) in CALLERS.iter().enumerate() {
            n += 1;
            let ctx = w.room(n).await;
            let got = w.call(&row, caller, &ctx).await;
            cells += 1;
            if got != row.expect[i] {
                wrong.push(format!("{} {} as {caller}: got {got}, want {}", row.method, row.route, row.expect[i]));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} cells wrong:\n{}", wrong.len(), wrong.join("\n"));
    println!("authorization matrix: {} routes x {} callers = {cells} cells", rows().len(), CALLERS.len());
}

/// The next JSON text frame (within 5 s).
async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The WebSocket actions, by caller (anonymous and forged tokens cannot open a socket: see
/// the `/ws` row). Outcome: `ok` (acknowledged or, for actions without an ack, no error) or
/// the error code of the `error` frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_actions_by_caller() {
    let w = World::new().await;
    type Frame = fn(&Ctx) -> Value;
    let actions: Vec<(&str, Frame, [&str; 7])> = vec![
        (
            "send",
            |c| json!({"t": "send", "room_id": c.room, "body": "hi", "txn_id": format!("w{}", c.n)}),
            ["forbidden", "forbidden", "forbidden", "ok", "forbidden", "ok", "forbidden"],
        ),
        (
            "read",
            |c| json!({"t": "read", "room_id": c.room, "pos": 1}),
            ["forbidden", "forbidden", "forbidden", "ok", "forbidden", "ok", "forbidden"],
        ),
        (
            "typing",
            |c| json!({"t": "typing", "room_id": c.room, "typing": true}),
            ["forbidden", "forbidden", "forbidden", "ok", "forbidden", "ok", "forbidden"],
        ),
        (
            "call",
            |c| {
                json!({"t": "call", "room_id": c.room, "type": "m.call.invite", "txn_id": format!("c{}", c.n), "content": {
            "call_id": format!("call{}", c.n), "version": "1", "lifetime": 30000, "party_id": "p1", "invitee": c.victim,
            "offer": {"type": "offer", "sdp": "v=0\r\n"}}})
            },
            ["forbidden", "forbidden", "forbidden", "ok", "forbidden", "ok", "forbidden"],
        ),
        (
            "call_join",
            |c| json!({"t": "call_join", "room_id": c.room, "conf_id": format!("conf{}", c.n)}),
            ["forbidden", "forbidden", "forbidden", "ok", "forbidden", "ok", "forbidden"],
        ),
        ("presence", |_| json!({"t": "presence", "state": "idle"}), ["ok"; 7]),
        ("ping", |_| json!({"t": "ping"}), ["ok"; 7]),
    ];
    let callers = &CALLERS[2..];
    let mut wrong = Vec::new();
    let mut cells = 0;
    let mut n = 10_000;
    for (name, frame, expect) in &actions {
        for (i, caller) in callers.iter().enumerate() {
            n += 1;
            let ctx = w.room(n).await;
            let token = w.token(caller).await;
            let mut req = format!("ws://{}/ws", w.s.addr).into_client_request().unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            ws.send(Message::Text(frame(&ctx).to_string().into())).await.unwrap();
            // Then a ping: its pong marks the end of what the action caused.
            ws.send(Message::Text(json!({"t": "ping"}).to_string().into())).await.unwrap();
            let mut got = "ok".to_string();
            let (mut acked, mut pongs) = (false, if *name == "ping" { 2 } else { 1 });
            // A send or call signal is answered (ack or error) after the writer job, which may
            // come before or after the pong.
            let answered = matches!(*name, "send" | "call");
            while pongs > 0 || (answered && got == "ok" && !acked) {
                let v = next_json(&mut ws).await;
                match v["t"].as_str().unwrap() {
                    "pong" => pongs -= 1,
                    "error" => got = v["error"].as_str().unwrap().to_string(),
                    "ack" => acked = true,
                    _ => {}
                }
            }
            // A read marker is moved in a task of its own and a success is not answered: a
            // refusal may still come after the pong, so allow it a moment.
            if *name == "read" && got == "ok" {
                let window = std::time::Duration::from_secs(1);
                while let Ok(Some(Ok(msg))) = tokio::time::timeout(window, ws.next()).await {
                    let v: Value = serde_json::from_str(msg.to_text().unwrap_or("{}")).unwrap_or_default();
                    if v["t"] == "error" {
                        got = v["error"].as_str().unwrap().to_string();
                        break;
                    }
                }
            }
            cells += 1;
            if got != expect[i] {
                wrong.push(format!("ws {name} as {caller}: got {got}, want {}", expect[i]));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {cells} cells wrong:\n{}", wrong.len(), wrong.join("\n"));
    println!("authorization matrix: {} WebSocket actions x {} callers = {cells} cells", actions.len(), callers.len());
}
