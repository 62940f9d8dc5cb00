//! Request bodies and query strings of the HTTP API and the HTML forms, through our extractors
//! (`web::extract::Json` and `web::extract::Form`, which turn rejections into our `Error`) into
//! the handlers' own request types, then the checks the handlers make before touching the store
//! (usernames and passwords, user ids, room names and topics, mentions in message bodies, event
//! ids, history cursors).
//!
//! Input: the first line names the route (`register`, `rooms`, `form_send`, `query_messages`,
//! …, see `ROUTES`); the rest is the body (or query string).
//!
//! Checks: a bad body is always a 4xx in our error shape, never a 5xx or a panic; what the checks
//! accept is within the documented limits.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Query};
use axum::http::{Request, Uri, header};
use chat::auth::{account, password};
use chat::error::{Error, Result};
use chat::ids::{self, ServerName, UserId};
use chat::web::extract::{Form, Json};
use chat::web::{api, pages};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

const ROUTES: [&str; 20] = [
    "register",
    "login",
    "password",
    "rooms",
    "invite",
    "dm",
    "messages",
    "read",
    "settings",
    "form_login",
    "form_rooms",
    "form_invite",
    "form_send",
    "form_privacy",
    "form_password",
    "form_settings",
    "query_messages",
    "query_history",
    "query_directory",
    "query_ws",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

fn request(content_type: &str, body: &[u8]) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("request")
}

/// `Json<T>` as a handler receives it.
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    runtime().block_on(Json::<T>::from_request(request("application/json", body), &())).map(|Json(v)| v)
}

/// `Form<T>` as a handler receives it.
fn form<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let req = request("application/x-www-form-urlencoded", body);
    runtime().block_on(Form::<T>::from_request(req, &())).map(|Form(v)| v)
}

/// A handler's `Query<T>` (rejections become `Error::bad`, as in the handlers).
fn query<T: DeserializeOwned>(q: &[u8]) -> Result<T> {
    let uri = [b"/?".as_slice(), q].concat();
    let uri = Uri::try_from(uri).map_err(|e| Error::bad(e.to_string()))?;
    Query::<T>::try_from_uri(&uri).map(|Query(v)| v).map_err(|e| Error::bad(e.to_string()))
}

fn client_error<T>(r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(e.status().is_client_error(), "bad input answered with {}: {e}", e.status());
            assert!(!e.public_message().is_empty());
            None
        }
    }
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn username(name: &str) {
    if let Some(u) = client_error(ids::normalize_username(name)) {
        assert!((2..=32).contains(&u.len()) && u == u.to_ascii_lowercase());
    }
}

fn new_password(pw: &str) {
    if client_error(password::check_rules(pw)).is_some() {
        assert!(pw.chars().count() >= password::MIN_LEN && pw.len() <= password::MAX_LEN);
    }
}

fn user_ref(user: &str, server: &ServerName) {
    if let Some(id) = client_error(UserId::parse_or_local(user, server)) {
        assert!(id.as_str().len() <= ids::MAX_ID_LEN, "{id} is longer than an id may be");
    }
}

fn room_text(name: &str, topic: &str) {
    for (label, s, max, required) in
        [("room name", name, chat::rooms::MAX_NAME_CHARS, true), ("topic", topic, chat::rooms::MAX_TOPIC_CHARS, false)]
    {
        if let Some(t) = client_error(chat::rooms::clean_text(label, s, max, required)) {
            assert!(t.chars().count() <= max && t == t.trim() && !(required && t.is_empty()));
            assert!(!t.chars().any(|c| c.is_control() && c != '\n'));
        }
    }
}

fn message(body: &str, server: &ServerName) {
    let found = chat::rooms::mention_candidates(body, server);
    assert!(found.len() <= 20);
    for (local, uid) in &found {
        assert!(uid == &format!("@{local}:{server}") || uid.starts_with(&format!("@{local}:")), "{uid}");
        assert!(chat::ids::UserId::parse(uid).is_ok(), "{uid} is no user id");
    }
}

fn cursor(before: Option<&str>) {
    client_error(api::parse_cursor(before));
}

/// The directory's `limit`, `since` and `q`: a 4xx or within the documented bounds, and a token
/// reads back as itself.
fn directory(params: &api::DirectoryParams) -> bool {
    use chat::store::directory::{MAX_LIMIT, MAX_SEARCH_CHARS, PageToken};
    let Some(q) = client_error(params.query()) else { return false };
    assert!((1..=MAX_LIMIT).contains(&q.limit));
    assert!(q.search.as_ref().is_none_or(|s| !s.is_empty() && s.chars().count() <= MAX_SEARCH_CHARS));
    if let Some(t) = q.since {
        assert_eq!(PageToken::parse(&t.encode()).expect("our own token"), t);
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (name, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let route = ROUTES.iter().position(|r| r.as_bytes() == name).unwrap_or(name.len() % ROUTES.len());
    let server = ServerName::parse("chat.test").expect("a valid server name");

    // The handler's own type first (what decides 4xx or not), then its fields as JSON or a map.
    let ok = match ROUTES[route] {
        "register" | "login" => client_error(json::<api::Credentials>(body)).is_some(),
        "password" => client_error(json::<api::PasswordChange>(body)).is_some(),
        "rooms" => client_error(json::<api::NewRoom>(body)).is_some(),
        "invite" | "dm" => client_error(json::<api::UserRef>(body)).is_some(),
        "messages" => client_error(json::<api::NewMessage>(body)).is_some(),
        "read" => client_error(json::<api::ReadMarker>(body)).is_some(),
        "settings" => client_error(json::<account::Privacy>(body)).is_some(),
        "form_login" => client_error(form::<pages::CredentialsForm>(body)).is_some(),
        "form_rooms" => client_error(form::<pages::NewRoomForm>(body)).is_some(),
        "form_invite" => client_error(form::<pages::UserForm>(body)).is_some(),
        "form_send" => client_error(form::<pages::SendForm>(body)).is_some(),
        "form_privacy" => client_error(form::<pages::PrivacyForm>(body)).is_some(),
        "form_password" | "form_settings" => client_error(form::<pages::PasswordForm>(body)).is_some(),
        "query_messages" => client_error(query::<api::Page>(body)).is_some(),
        "query_history" => client_error(query::<pages::Before>(body)).is_some(),
        "query_directory" => client_error(query::<api::DirectoryParams>(body)).is_some_and(|p| directory(&p)),
        _ => client_error(query::<chat::live::socket::WsQuery>(body)).is_some(),
    };
    if !ok {
        return;
    }
    let route = ROUTES[route];
    if let Some(kind) = route.strip_prefix("query_") {
        let q: HashMap<String, String> = query(body).unwrap_or_default();
        match kind {
            "messages" | "history" => cursor(q.get("before").map(String::as_str)),
            _ => {}
        }
        return;
    }
    let v: Value = if route.starts_with("form_") {
        let pairs: HashMap<String, String> = form(body).unwrap_or_default();
        pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
    } else {
        serde_json::from_slice(body).unwrap_or_default()
    };
    match route {
        "register" => {
            username(field(&v, "username"));
            new_password(field(&v, "password"));
        }
        "login" | "form_login" => username(field(&v, "username")),
        "password" | "form_password" | "form_settings" => new_password(field(&v, "new_password")),
        "rooms" | "form_rooms" => room_text(field(&v, "name"), field(&v, "topic")),
        "invite" | "dm" => user_ref(field(&v, "user_id"), &server),
        "form_invite" => user_ref(field(&v, "user"), &server),
        "messages" | "form_send" => message(field(&v, "body"), &server),
        "read" => {
            client_error(ids::EventId::parse(field(&v, "event_id")));
        }
        _ => {}
    }
});
