//! Server-rendered pages and the form posts that work without JavaScript.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Deserialize;

use super::api::{DirectoryParams, member_room, parse_cursor};
use super::extract::PageSession;
use super::extract::{ClientIp, Form, RoomPath};
use crate::auth::Session;
use crate::auth::account;
use crate::auth::session::same_origin;
use crate::error::{Error, Result};
use crate::events::{JoinRule, Membership};
use crate::federation::membership;
use crate::ids::{EventId, RoomId, UserId};
use crate::render::{self as views, Access, Presences, RoomView};
use crate::rooms::{self, CreateRoom};
use crate::state::AppState;
use crate::store::events::StoredEvent;
use crate::store::rooms::{MyRoom, RoomRecord};
use std::collections::{HashMap, HashSet};

/// Events on the first page of a room.
const FIRST_PAGE: usize = 50;

/// The `Set-Cookie` value for a session token (`Secure` when the server speaks HTTPS).
pub fn session_cookie(token: &str, ttl: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{secure}", crate::auth::COOKIE)
}

fn clear_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

fn page(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

pub(super) fn or_error_page(r: Result<Response>) -> Response {
    r.unwrap_or_else(views::error_response)
}

/// `GET /offline`: the page the service worker keeps for when the server cannot be reached.
pub async fn offline() -> Response {
    page(views::offline())
}

/// `GET /`.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Redirect {
    match crate::auth::session::authenticate(&headers, &state.accounts) {
        Ok(_) => Redirect::to("/rooms"),
        Err(_) => Redirect::to("/login"),
    }
}

/// Username and password from a form.
#[derive(Deserialize)]
pub struct CredentialsForm {
    username: String,
    password: String,
    /// The page to go to afterwards (a path here).
    #[serde(default)]
    next: String,
}

/// `?next=`: the page to return to after signing in.
#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

impl NextQuery {
    fn page(&self) -> &str {
        next_page(self.next.as_deref().unwrap_or_default())
    }
}

/// The page to come back to after signing in, as the sign-in form carries it: a path on this
/// site, or empty for the room list (where signing in goes anyway).
fn next_page(next: &str) -> &str {
    match super::extract::safe_next(next) {
        "/rooms" => "",
        page => page,
    }
}

/// `GET /login?next=`.
pub async fn login_form(Query(q): Query<NextQuery>) -> Response {
    page(views::auth_page(false, None, "", q.page()))
}

/// `GET /register?next=`.
pub async fn register_form(Query(q): Query<NextQuery>) -> Response {
    page(views::auth_page(true, None, "", q.page()))
}

fn signed_in(state: &AppState, token: &str, next: &str) -> Response {
    let mut res = Redirect::to(super::extract::safe_next(next)).into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(token, state.accounts.tokens.ttl, state.https)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn auth_failed(register: bool, e: Error, username: &str, next: &str) -> Response {
    let status = e.status();
    let html = views::auth_page(register, Some(&e.public_message()), username, next_page(next));
    let mut res = (status, Html(html.into_string())).into_response();
    if let Error::TooManyRequests(secs) = e {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// Form posts that sign in must come from our own pages (no login CSRF).
fn check_form_origin(headers: &HeaderMap) -> Result<()> {
    if same_origin(headers) { Ok(()) } else { Err(Error::Forbidden("cross-origin form refused".into())) }
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<CredentialsForm>>,
) -> Response {
    let Form(f) = match form.and_then(|f| check_form_origin(&headers).map(|_| f)) {
        Ok(f) => f,
        Err(e) => return auth_failed(false, e, "", ""),
    };
    match account::login(&state.accounts, &f.username, &f.password, ip).await {
        Ok(s) => signed_in(&state, &s.token, &f.next),
        Err(e) => auth_failed(false, e, &f.username, &f.next),
    }
}

/// `POST /register`.
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<CredentialsForm>>,
) -> Response {
    let Form(f) = match form.and_then(|f| check_form_origin(&headers).map(|_| f)) {
        Ok(f) => f,
        Err(e) => return auth_failed(true, e, "", ""),
    };
    match account::register(&state.accounts, &f.username, &f.password, ip).await {
        Ok(s) => signed_in(&state, &s.token, &f.next),
        Err(e) => auth_failed(true, e, &f.username, &f.next),
    }
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, PageSession(s): PageSession) -> Response {
    if let Err(e) = account::logout(&state.accounts, &s).await {
        return views::error_response(e);
    }
    state.hub.end_session(&s.sid);
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(state.https)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `GET /rooms?since=&q=`: the home page, with one page of the public directory.
pub async fn home(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    params: std::result::Result<Query<DirectoryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    or_error_page((|| {
        let Query(params) = params.map_err(|e| Error::bad(e.body_text()))?;
        let query = params.query()?;
        let since = state.store.stream_pos()?;
        let mine = state.store.my_rooms(s.user.as_str())?;
        let public = state.store.public_rooms(&query)?;
        let joined: HashSet<&str> =
            mine.iter().filter(|m| m.membership == Membership::Join).map(|m| m.room.room_id.as_str()).collect();
        let q = params.q.as_deref().map(str::trim).unwrap_or_default();
        let directory = views::DirectoryView { page: &public, q, joined: &joined };
        let presence = presences(&state, &mine, std::iter::empty());
        let names = names_for(&state, None, &mine)?;
        Ok(page(views::with_names(names, || views::home(s.user.as_str(), since, &mine, &directory, &presence))))
    })())
}

/// `GET /fragments/rooms`: the room list alone, for live refresh.
pub async fn room_list_fragment(State(state): State<AppState>, PageSession(s): PageSession) -> Response {
    or_error_page(state.store.my_rooms(s.user.as_str()).and_then(|mine| {
        let presence = presences(&state, &mine, std::iter::empty());
        let names = names_for(&state, None, &mine)?;
        Ok(page(views::with_names(names, || views::room_list(s.user.as_str(), &mine, None, &presence))))
    }))
}

/// `GET /fragments/call`: the call screen's templates, fetched by the client when a call
/// starts or rings (kept out of every page).
pub async fn call_fragment(PageSession(_s): PageSession) -> Response {
    page(views::call_templates())
}

/// The create-room form.
#[derive(Deserialize)]
pub struct NewRoomForm {
    name: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    alias: String,
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
            let id = rooms::create_room(
                &state.rooms,
                &s.user,
                CreateRoom { name: f.name, topic: f.topic, join_rule, alias: Some(f.alias) },
            )
            .await?;
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
            room_page(&state, &s, &id, None).await
        }
        .await,
    )
}

/// `GET /rooms/{id}/events/{event_id}`: a link to a message. The room's page, which scrolls to
/// the message (loading older history as far back as it is) and marks it. `404` if the room
/// has no such message (or the viewer cannot read the room).
pub async fn room_event(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    path: std::result::Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    or_error_page(
        async {
            let Path((room, event)) = path.map_err(|e| Error::bad(e.body_text()))?;
            let (id, event) = (RoomId::parse(&room)?, EventId::parse(&event)?);
            // Only a member learns whether the room has that message.
            if state.store.membership(&id, s.user.as_str())? != Membership::Join {
                return room_page(&state, &s, &id, None).await;
            }
            let target = state.store.event(&event)?.filter(|e| e.event.room_id == id.as_str());
            let target = target.ok_or_else(|| Error::NotFound("this room has no such message".into()))?;
            room_page(&state, &s, &id, Some((event.as_str(), target.pos))).await
        }
        .await,
    )
}

/// The room page for `s`, opened at the message `jump` if there is one.
async fn room_page(state: &AppState, s: &Session, id: &RoomId, jump: Option<(&str, u64)>) -> Result<Response> {
    let user = s.user.as_str();
    let room = state.store.room(id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    let since = state.store.stream_pos()?;
    let membership = state.store.membership(id, user)?;
    let access = match membership {
        Membership::Join => Access::Member,
        Membership::Invite => Access::Invited,
        Membership::Leave if room.join_rule == JoinRule::Public => Access::CanJoin,
        _ => return outside(state, s, &room, membership),
    };
    // Who sent the invitation, or who removed the viewer from a public room (the sender of
    // the viewer's member event).
    let member_sender = match access {
        Access::Invited | Access::CanJoin => {
            own_member_event(state, id, user)?.map(|e| e.event.sender).filter(|sender| sender != user)
        }
        Access::Member => None,
    };
    let (inviter, removed_by) = match access {
        Access::Invited => (member_sender, None),
        _ => (None, member_sender),
    };
    // At a message: the events around it, and the cursors both ways; else the newest.
    let (mut events, next, newer) = match (&access, jump) {
        (Access::Member, Some((_, pos))) => {
            let (older, next) = state.store.timeline(id, Some(pos.saturating_add(1)), FIRST_PAGE / 2 + 1)?;
            let (after, newer) = state.store.timeline_after(id, pos, FIRST_PAGE / 2)?;
            let mut events: Vec<StoredEvent> = after.into_iter().rev().collect();
            events.extend(older);
            (events, next, newer)
        }
        (Access::Member, None) => {
            let (events, next) = state.store.timeline(id, None, FIRST_PAGE)?;
            (events, next, None)
        }
        _ => (Vec::new(), None, None),
    };
    events.reverse();
    let read_before = state.store.read_marker(user, id)?;
    // Opened in the middle of history, the newest is not shown yet: nothing is read.
    if let (Access::Member, Some(last), None) = (&access, events.last(), newer)
        && let Some(moved) = rooms::mark_read(&state.rooms, &s.user, id, last.pos).await?
    {
        state.hub.read_moved(id, s.user.as_str(), moved);
    }
    let mine = state.store.my_rooms(user)?;
    let members = state.store.members(id)?;
    let peer = mine.iter().find(|m| m.room.room_id == *id).and_then(|m| m.peer.clone());
    let presence = presences(state, &mine, members.iter().map(|(u, _)| u.as_str()));
    let receipts = match access {
        Access::Member => seen_by(state, user, id, &members, &events)?,
        _ => Default::default(),
    };
    let typing = state.hub.typing_in(id);
    let calls = state.hub.calls_in(id);
    let pins = match access {
        Access::Member => pinned_events(state, &room)?,
        _ => Vec::new(),
    };
    let view = RoomView {
        join_choices: join_choices(state, &room, &mine)?,
        pins: &pins,
        user,
        since,
        room: &room,
        peer: peer.as_deref(),
        rooms: &mine,
        events: &events,
        next,
        newer,
        members: &members,
        access,
        presence: &presence,
        read_before,
        receipts: &receipts,
        typing: &typing,
        calls: &calls,
        jump,
        max_upload: state.limits.max_upload_bytes,
        notify: state
            .push
            .prefs(user)
            .ok()
            .and_then(|p| p.rooms.get(room.room_id.as_str()).copied())
            .unwrap_or_default(),
        inviter: inviter.as_deref(),
        removed_by: removed_by.as_deref(),
    };
    let names = names_for(state, Some(id), &mine)?;
    Ok(page(views::with_names(names, || views::room_page(&view))))
}

/// `403` with a page that says why a private room cannot be seen (left, removed, banned, never
/// in it) and what to do; the room's name only to those who were in it.
fn outside(state: &AppState, s: &Session, room: &RoomRecord, membership: Membership) -> Result<Response> {
    let user = s.user.as_str();
    let title = views::room_title(room, None);
    let ask = matches!(room.join_rule, JoinRule::Knock | JoinRule::KnockRestricted) && !room.direct;
    let why = match (membership, own_member_event(state, &room.room_id, user)?) {
        (Membership::Ban, _) => views::Outside::Banned(title.clone()),
        (Membership::Knock, _) => views::Outside::Asked(title.clone()),
        // Asked, and turned down: they may ask again.
        (_, Some(ev))
            if ask && ev.prev_content.as_ref().and_then(Membership::of_content) == Some(Membership::Knock) =>
        {
            views::Outside::Never
        }
        (_, None) => views::Outside::Never,
        (_, Some(ev)) if ev.event.sender == user => views::Outside::Left(title.clone()),
        (_, Some(ev)) => views::Outside::Removed(title.clone(), ev.event.sender),
    };
    let html = views::outside_page(user, room.room_id.as_str(), &why, ask.then_some(title.as_str()));
    Ok((StatusCode::FORBIDDEN, Html(html.into_string())).into_response())
}

/// The user's member event in a room as the room's state has it now (who invited, removed or
/// banned them, or their own join or leave).
fn own_member_event(state: &AppState, room_id: &RoomId, user: &str) -> Result<Option<StoredEvent>> {
    let Some(id) = state.store.snapshot()?.state_event_id(room_id, crate::events::M_ROOM_MEMBER, user)? else {
        return Ok(None);
    };
    state.store.event(&id)
}

/// Presence of direct-message peers in `mine` and of `others`.
fn presences<'a>(state: &AppState, mine: &'a [MyRoom], others: impl Iterator<Item = &'a str>) -> Presences {
    let peers = mine.iter().filter_map(|m| m.peer.as_deref());
    peers.chain(others).map(|u| (u.to_string(), state.hub.presence_of(u).as_str())).collect()
}

/// Most members whose receipts a room page shows.
const MAX_RECEIPTS: usize = 50;

/// "Seen by": for each shown message, the members whose read marker is at it (their marker
/// rounded down to the last message shown). Nobody's receipts are shown to a viewer who hides
/// their own, and those of members who hide theirs are never shown.
fn seen_by(
    state: &AppState,
    viewer: &str,
    room_id: &RoomId,
    members: &[(String, Membership)],
    events: &[StoredEvent],
) -> Result<HashMap<u64, Vec<String>>> {
    let hides = |u: &str| -> Result<bool> {
        let user = UserId::parse_or_local(u, &state.server_name)?;
        if user.server() != state.server_name.as_str() {
            // Another server's user: their server sent the receipt, so they share it.
            return Ok(false);
        }
        Ok(state.store.user(user.localpart())?.is_none_or(|r| r.hide_receipts))
    };
    let mut out: HashMap<u64, Vec<String>> = HashMap::new();
    if hides(viewer)? {
        return Ok(out);
    }
    let readers: Vec<String> = members
        .iter()
        .filter(|(u, m)| *m == Membership::Join && u != viewer)
        .take(MAX_RECEIPTS)
        .map(|(u, _)| u.clone())
        .collect();
    let messages: Vec<u64> =
        events.iter().filter(|e| e.event.kind == crate::events::M_ROOM_MESSAGE).map(|e| e.pos).collect();
    for (reader, pos) in state.store.read_markers(room_id, &readers)? {
        if hides(&reader)? {
            continue;
        }
        if let Some(at) = messages.iter().rev().find(|p| **p <= pos) {
            out.entry(*at).or_default().push(reader);
        }
    }
    Ok(out)
}

/// `?before=` (older events) or `?after=` (newer).
#[derive(Deserialize)]
pub struct Before {
    before: Option<String>,
    after: Option<String>,
}

/// `GET /rooms/{id}/history?before=`: older events as an HTML fragment (infinite scroll);
/// `?after=`: newer ones, for a room opened at a message.
pub async fn history(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    Query(q): Query<Before>,
) -> Response {
    or_error_page((|| {
        member_room(&state, &s, &id)?;
        let names = state.store.member_names(&id, None)?;
        if let Some(after) = parse_cursor(q.after.as_deref())? {
            let (events, newer) = state.store.timeline_after(&id, after, FIRST_PAGE)?;
            return Ok(page(views::with_names(names, || views::newer_fragment(&events, newer))));
        }
        let before = parse_cursor(q.before.as_deref())?;
        let (mut events, next) = state.store.timeline(&id, before, FIRST_PAGE)?;
        events.reverse();
        Ok(page(views::with_names(names, || views::history_fragment(&events, next))))
    })())
}

/// The room's pinned messages that are stored here and not deleted, in pinning order.
fn pinned_events(state: &AppState, room: &crate::store::rooms::RoomRecord) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for id in &room.pinned {
        let Ok(id) = crate::ids::EventId::parse(id) else { continue };
        if let Some(e) = state.store.event(&id)?
            && e.event.room_id == room.room_id
            && e.pos > 0
            && e.redacted_because.is_none()
        {
            out.push(e);
        }
    }
    Ok(out)
}

/// `GET /rooms/{id}/pins`: the header's pinned messages (members only), for the live client.
pub async fn pins_fragment(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
) -> Response {
    or_error_page((|| {
        let room = member_room(&state, &s, &id)?;
        let (pins, names) = (pinned_events(&state, &room)?, state.store.member_names(&id, None)?);
        Ok(page(views::with_names(names, || views::pinned_list(&pins))))
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
        let members = state.store.members(&id)?;
        let presence = presences(&state, &[], members.iter().map(|(u, _)| u.as_str()));
        let names = state.store.member_names(&id, None)?;
        let choices = join_choices(&state, &room, &state.store.my_rooms(s.user.as_str())?)?;
        Ok(page(views::with_names(names, || views::member_list(s.user.as_str(), &room, &members, &presence, &choices))))
    })())
}

/// `POST /rooms/{id}/join`.
pub async fn join(State(state): State<AppState>, PageSession(s): PageSession, RoomPath(id): RoomPath) -> Response {
    // A member is already in: the room just opens.
    if matches!(state.store.membership(&id, s.user.as_str()), Ok(Membership::Join)) {
        return Redirect::to(&format!("/rooms/{id}")).into_response();
    }
    or_error_page(
        membership::join(&state.fed, &s.user, &id).await.map(|_| Redirect::to(&format!("/rooms/{id}")).into_response()),
    )
}

/// `POST /rooms/{id}/leave`.
pub async fn leave(State(state): State<AppState>, PageSession(s): PageSession, RoomPath(id): RoomPath) -> Response {
    or_error_page(membership::leave(&state.fed, &s.user, &id).await.map(|_| Redirect::to("/rooms").into_response()))
}

/// The room settings form.
#[derive(Deserialize)]
pub struct SettingsForm {
    name: String,
    #[serde(default)]
    topic: String,
    /// `public`, `private`, `knock` or `restricted`; absent leaves the join rule as it is.
    #[serde(default)]
    visibility: String,
    /// For `restricted`: the room whose members may join.
    #[serde(default)]
    allow: String,
}

/// `POST /rooms/{id}/settings`: renames the room, sets its topic and who can join (only what
/// changed).
pub async fn room_settings(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    form: Result<Form<SettingsForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let room = state.store.room(&id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
            let name = (f.name.trim() != room.name).then_some(f.name.as_str());
            let topic = (f.topic.trim() != room.topic).then_some(f.topic.as_str());
            let allow: Vec<String> = match f.visibility.as_str() {
                "restricted" => vec![f.allow.clone()],
                _ => vec![],
            };
            let wanted = match f.visibility.as_str() {
                "" => None,
                v => Some(super::api::join_rule_setting(v, &allow)?),
            };
            // Only a change: a `knock_restricted` room (made on a Matrix server) keeps its rule
            // when the form is saved as taking requests, as does one open to the same room.
            let join_rule = match wanted {
                Some((JoinRule::Knock, _)) if room.join_rule == JoinRule::KnockRestricted => None,
                Some((r, a))
                    if r == room.join_rule && (r != JoinRule::Restricted || allowed_now(&state, &room)? == a) =>
                {
                    None
                }
                other => other,
            };
            match name.is_some() || topic.is_some() || join_rule.is_some() {
                true => rooms::update_room(&state.rooms, &s.user, &id, name, topic, join_rule).await?,
                false => rooms::check_may_edit(&state.rooms, &s.user, &id)?,
            }
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// The viewer's other joined rooms, and the rooms `room` is open to now (settings' choices).
fn join_choices(state: &AppState, room: &RoomRecord, mine: &[MyRoom]) -> Result<views::JoinChoices> {
    let rooms = mine
        .iter()
        .filter(|m| m.membership == Membership::Join && m.room.room_id != room.room_id && !m.room.direct)
        .map(|m| (m.room.room_id.to_string(), views::room_title(&m.room, m.peer.as_deref())))
        .collect();
    let allowed = allowed_now(state, room)?.into_iter().map(|r| r.to_string()).collect();
    Ok(views::JoinChoices { rooms, allowed })
}

/// The rooms `room`'s join rules let the members of in (none unless it is restricted).
fn allowed_now(state: &AppState, room: &RoomRecord) -> Result<Vec<RoomId>> {
    let snapshot = state.store.snapshot()?;
    let Some(id) = snapshot.state_event_id(&room.room_id, crate::events::M_ROOM_JOIN_RULES, "")? else {
        return Ok(Vec::new());
    };
    Ok(snapshot.event(&id)?.map(|e| crate::events::allowed_rooms(&e.event.content)).unwrap_or_default())
}

/// The ask-to-join form.
#[derive(Deserialize)]
pub struct KnockForm {
    room: String,
    #[serde(default)]
    reason: String,
}

/// `POST /knock`: asks to be let into a room (by id or address), here or on another server.
pub async fn knock(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<KnockForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let id = membership::knock(&state.fed, &s.user, f.room.trim(), &[], Some(&f.reason)).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// A moderator's answer to a request to join.
#[derive(Deserialize)]
pub struct AnswerForm {
    user: String,
    /// `yes` lets them in; `no` turns them away.
    accept: String,
}

/// `POST /rooms/{id}/requests`: lets in, or turns away, someone who asked to join.
pub async fn answer_knock(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    form: Result<Form<AnswerForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let target = UserId::parse_or_local(&f.user, &state.server_name)?;
            let accept = match f.accept.as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(Error::bad("accept must be yes or no")),
            };
            membership::answer_knock(&state.fed, &s.user, &id, &target, accept).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// The join-by-address form.
#[derive(Deserialize)]
pub struct JoinForm {
    room: String,
}

/// `POST /join`: joins `#alias:server` or a room id, here or on another server.
pub async fn join_any(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<JoinForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let name = f.room.trim();
            // A room the user is in (by id, or by an alias known here) just opens.
            let known = if name.starts_with('#') { state.store.alias(name)? } else { RoomId::parse(name).ok() };
            if let Some(id) = known
                && state.store.membership(&id, s.user.as_str())? == Membership::Join
            {
                return Ok(Redirect::to(&format!("/rooms/{id}")).into_response());
            }
            let id = membership::join_by_name(&state.fed, &s.user, name, &[]).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
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
            membership::invite(&state.fed, &s.user, &id, &target).await?;
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
            let id = membership::open_direct(&state.fed, &s.user, &other).await?;
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
            rooms::send_message(&state.rooms, &s.user, &id, &f.body, &f.txn_id, None).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}

/// `GET /settings`.
pub async fn settings(State(state): State<AppState>, PageSession(s): PageSession) -> Response {
    or_error_page(account::privacy(&state.accounts, &s).map(|p| {
        page(views::settings(
            s.user.as_str(),
            &account_view(&state, &s),
            (p.appear_offline, p.hide_receipts),
            None,
            None,
        ))
    }))
}

/// The names a page shows: the room's members' (as its member events say), and the other
/// people of the viewer's direct chats (as each chat's member events say).
fn names_for(
    state: &AppState,
    room: Option<&crate::ids::RoomId>,
    mine: &[crate::store::rooms::MyRoom],
) -> Result<HashMap<String, String>> {
    let mut names = HashMap::new();
    for m in mine {
        if let Some(peer) = m.peer.as_deref() {
            names.extend(state.store.member_names(&m.room.room_id, Some(&[peer]))?);
        }
    }
    if let Some(id) = room {
        names.extend(state.store.member_names(id, None)?);
    }
    Ok(names)
}

/// What the settings page shows of the account.
fn account_view(state: &AppState, s: &crate::auth::Session) -> views::AccountView {
    let user = state.store.user(s.user.localpart()).ok().flatten();
    let me = s.user.as_str();
    views::AccountView {
        admin: user.as_ref().is_some_and(|u| u.admin),
        display_name: user.and_then(|u| u.display_name),
        notify: state.push.prefs(me).map(|p| (*p).clone()).unwrap_or_default(),
        devices: state.push.devices(me, &s.sid).unwrap_or_default(),
        push_key: state.push.public_key().to_string(),
    }
}

/// The profile form.
#[derive(Deserialize)]
pub struct ProfileForm {
    display_name: String,
}

/// `POST /settings/profile`: the name others see, sent into every room the user is in.
pub async fn set_profile(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<ProfileForm>>,
) -> Response {
    let out = match form {
        Ok(Form(f)) => rooms::set_display_name(&state.rooms, &s.user, &f.display_name).await.map(|_| ()),
        Err(e) => Err(e),
    };
    settings_after(&state, &s, out, "Name saved.")
}

/// The privacy form: unchecked boxes are absent.
#[derive(Deserialize)]
pub struct PrivacyForm {
    appear_offline: Option<String>,
    hide_receipts: Option<String>,
}

/// `POST /settings/privacy`.
pub async fn set_privacy(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<PrivacyForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            let p = account::Privacy {
                appear_offline: f.appear_offline.is_some(),
                hide_receipts: f.hide_receipts.is_some(),
            };
            let p = account::set_privacy(&state.accounts, &s, p).await?;
            state.hub.set_prefs(s.user.as_str(), p.into());
            Ok(page(views::settings(
                s.user.as_str(),
                &account_view(&state, &s),
                (p.appear_offline, p.hide_receipts),
                Some("Saved."),
                None,
            )))
        }
        .await,
    )
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
    ClientIp(ip): ClientIp,
    form: Result<Form<PasswordForm>>,
) -> Response {
    let out = match form {
        Ok(Form(f)) => account::change_password(&state.accounts, &s, &f.old_password, &f.new_password, ip)
            .await
            .map(|()| state.hub.end_other_sessions(s.user.as_str(), &s.sid)),
        Err(e) => Err(e),
    };
    settings_after(&state, &s, out, "Password changed.")
}

/// The settings page after a form was sent: `done` when it worked, else the error (with its
/// status).
pub(super) fn settings_after(state: &AppState, s: &crate::auth::Session, out: Result<()>, done: &str) -> Response {
    let privacy = account::privacy(&state.accounts, s).map(|p| (p.appear_offline, p.hide_receipts)).unwrap_or_default();
    let me = account_view(state, s);
    match out {
        Ok(()) => page(views::settings(s.user.as_str(), &me, privacy, Some(done), None)),
        Err(e) => {
            let html = views::settings(s.user.as_str(), &me, privacy, None, Some(&e.public_message()));
            (e.status(), Html(html.into_string())).into_response()
        }
    }
}

/// Unknown page.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Html(views::error_page(404, "page not found").into_string())).into_response()
}
