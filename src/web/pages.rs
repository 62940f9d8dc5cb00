//! Server-rendered pages and the form posts that work without JavaScript.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Deserialize;

use super::api::{member_room, parse_cursor};
use super::extract::{Form, RoomPath};
use super::views::{self, Access, RoomView};
use crate::auth::session::same_origin;
use crate::auth::{PageSession, account};
use crate::error::{Error, Result};
use crate::events::{JoinRule, Membership};
use crate::ids::UserId;
use crate::rooms::{self, CreateRoom};
use crate::state::AppState;

/// Events on the first page of a room.
const FIRST_PAGE: usize = 50;

/// The `Set-Cookie` value for a session token.
pub fn session_cookie(token: &str, ttl: u64) -> String {
    format!("{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}", crate::auth::COOKIE)
}

fn clear_cookie() -> String {
    format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0", crate::auth::COOKIE)
}

/// An error as an HTML page with the right status.
pub fn error_page(e: Error) -> Response {
    let status = e.status();
    if let Error::Internal(cause) = &e {
        tracing::error!(%cause, "internal error");
    }
    (status, Html(views::error_page(status.as_u16(), &e.public_message()).into_string())).into_response()
}

fn page(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

fn or_error_page(r: Result<Response>) -> Response {
    r.unwrap_or_else(error_page)
}

/// `GET /`.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Redirect {
    match crate::auth::session::authenticate(&headers, &state) {
        Ok(_) => Redirect::to("/rooms"),
        Err(_) => Redirect::to("/login"),
    }
}

/// Username and password from a form.
#[derive(Deserialize)]
pub struct CredentialsForm {
    username: String,
    password: String,
}

/// `GET /login`.
pub async fn login_form() -> Response {
    page(views::auth_page(false, None, ""))
}

/// `GET /register`.
pub async fn register_form() -> Response {
    page(views::auth_page(true, None, ""))
}

fn signed_in(token: &str, ttl: u64) -> Response {
    let mut res = Redirect::to("/rooms").into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(token, ttl)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn auth_failed(register: bool, e: Error, username: &str) -> Response {
    let status = e.status();
    (status, Html(views::auth_page(register, Some(&e.public_message()), username).into_string())).into_response()
}

/// Form posts that sign in must come from our own pages (no login CSRF).
fn check_form_origin(headers: &HeaderMap) -> Result<()> {
    if same_origin(headers) { Ok(()) } else { Err(Error::Forbidden("cross-origin form refused".into())) }
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<CredentialsForm>>,
) -> Response {
    let Form(f) = match form.and_then(|f| check_form_origin(&headers).map(|_| f)) {
        Ok(f) => f,
        Err(e) => return auth_failed(false, e, ""),
    };
    match account::login(&state, &f.username, &f.password, peer.ip()).await {
        Ok(s) => signed_in(&s.token, state.tokens.ttl),
        Err(e) => auth_failed(false, e, &f.username),
    }
}

/// `POST /register`.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CredentialsForm>>,
) -> Response {
    let Form(f) = match form.and_then(|f| check_form_origin(&headers).map(|_| f)) {
        Ok(f) => f,
        Err(e) => return auth_failed(true, e, ""),
    };
    match account::register(&state, &f.username, &f.password).await {
        Ok(s) => signed_in(&s.token, state.tokens.ttl),
        Err(e) => auth_failed(true, e, &f.username),
    }
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, PageSession(s): PageSession) -> Response {
    if let Err(e) = account::logout(&state, &s).await {
        return error_page(e);
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `GET /rooms`: the home page.
pub async fn home(State(state): State<AppState>, PageSession(s): PageSession) -> Response {
    or_error_page((|| {
        let since = state.store.stream_pos()?;
        let mine = state.store.my_rooms(s.user.as_str())?;
        let public = state.store.public_rooms()?;
        Ok(page(views::home(s.user.as_str(), since, &mine, &public)))
    })())
}

/// `GET /fragments/rooms`: the room list alone, for live refresh.
pub async fn room_list_fragment(State(state): State<AppState>, PageSession(s): PageSession) -> Response {
    or_error_page(state.store.my_rooms(s.user.as_str()).map(|mine| page(views::room_list(&mine, None))))
}

/// The create-room form.
#[derive(Deserialize)]
pub struct NewRoomForm {
    name: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    visibility: String,
}

/// `POST /rooms`.
pub async fn create_room(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<NewRoomForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let join_rule = if f.visibility == "private" { JoinRule::Invite } else { JoinRule::Public };
            let id =
                rooms::create_room(&state, &s.user, CreateRoom { name: f.name, topic: f.topic, join_rule }).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// `GET /rooms/{id}`.
pub async fn room(State(state): State<AppState>, PageSession(s): PageSession, room_path: Result<RoomPath>) -> Response {
    or_error_page(
        async {
            let RoomPath(id) = room_path?;
            let user = s.user.as_str();
            let room = state.store.room(&id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
            let since = state.store.stream_pos()?;
            let access = match state.store.membership(&id, user)? {
                Membership::Join => Access::Member,
                Membership::Invite => Access::Invited,
                _ if room.join_rule == JoinRule::Public => Access::CanJoin,
                _ => return Err(Error::Forbidden("you are not a member of this room".into())),
            };
            let (mut events, next) = match access {
                Access::Member => state.store.timeline(&id, None, FIRST_PAGE)?,
                _ => (Vec::new(), None),
            };
            events.reverse();
            if let (Access::Member, Some(last)) = (&access, events.last()) {
                state.store.mark_read(user.to_string(), id.clone(), last.pos).await?;
            }
            let mine = state.store.my_rooms(user)?;
            let members = state.store.members(&id)?;
            let peer = mine.iter().find(|m| m.room.room_id == id).and_then(|m| m.peer.clone());
            let view = RoomView {
                user,
                since,
                room: &room,
                peer: peer.as_deref(),
                rooms: &mine,
                events: &events,
                next,
                members: &members,
                access,
            };
            Ok(page(views::room_page(&view)))
        }
        .await,
    )
}

/// `?before=`.
#[derive(Deserialize)]
pub struct Before {
    before: Option<String>,
}

/// `GET /rooms/{id}/history?before=`: older events as an HTML fragment (infinite scroll).
pub async fn history(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    Query(q): Query<Before>,
) -> Response {
    or_error_page((|| {
        member_room(&state, &s, &id)?;
        let before = parse_cursor(q.before.as_deref())?;
        let (mut events, next) = state.store.timeline(&id, before, FIRST_PAGE)?;
        events.reverse();
        Ok(page(views::history_fragment(&events, next)))
    })())
}

/// `GET /rooms/{id}/members`: the member list fragment.
pub async fn members_fragment(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
) -> Response {
    or_error_page((|| {
        let room = member_room(&state, &s, &id)?;
        Ok(page(views::member_list(&room, &state.store.members(&id)?)))
    })())
}

/// `POST /rooms/{id}/join`.
pub async fn join(State(state): State<AppState>, PageSession(s): PageSession, RoomPath(id): RoomPath) -> Response {
    or_error_page(
        rooms::join(&state, &s.user, &id).await.map(|_| Redirect::to(&format!("/rooms/{id}")).into_response()),
    )
}

/// `POST /rooms/{id}/leave`.
pub async fn leave(State(state): State<AppState>, PageSession(s): PageSession, RoomPath(id): RoomPath) -> Response {
    or_error_page(rooms::leave(&state, &s.user, &id).await.map(|_| Redirect::to("/rooms").into_response()))
}

/// A username field.
#[derive(Deserialize)]
pub struct UserForm {
    user: String,
}

/// `POST /rooms/{id}/invite`.
pub async fn invite(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    form: Result<Form<UserForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let target = UserId::parse_or_local(&f.user, &state.server_name)?;
            rooms::invite(&state, &s.user, &id, &target).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// `POST /dm`.
pub async fn direct(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<UserForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let other = UserId::parse_or_local(&f.user, &state.server_name)?;
            let id = rooms::open_direct(&state, &s.user, &other).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// The composer form (no-JS send).
#[derive(Deserialize)]
pub struct SendForm {
    body: String,
    txn_id: String,
}

/// `POST /rooms/{id}/send`: the no-JavaScript send; redirects back to the room.
pub async fn send(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    form: Result<Form<SendForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            rooms::send_message(&state, &s.user, &id, &f.body, &f.txn_id).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// `GET /settings`.
pub async fn settings(PageSession(s): PageSession) -> Response {
    page(views::settings(s.user.as_str(), None, None))
}

/// The change-password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    old_password: String,
    new_password: String,
}

/// `POST /settings/password`.
pub async fn change_password(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<PasswordForm>>,
) -> Response {
    let out = match form {
        Ok(Form(f)) => account::change_password(&state, &s, &f.old_password, &f.new_password).await,
        Err(e) => Err(e),
    };
    match out {
        Ok(()) => page(views::settings(s.user.as_str(), Some("Password changed."), None)),
        Err(e) => {
            let status = e.status();
            (status, Html(views::settings(s.user.as_str(), None, Some(&e.public_message())).into_string()))
                .into_response()
        }
    }
}

/// Unknown page.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Html(views::error_page(404, "page not found").into_string())).into_response()
}
