//! The JSON API (`/api/v1`), documented in `docs/api.md`. Handlers validate, call a service,
//! and answer; errors are `{error, message}` with the status from [`Error`].

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ClientIp, Json, RoomPath};
use crate::auth::{Session, account};
use crate::error::{Error, Result};
use crate::events::{JoinRule, Membership};
use crate::federation::membership;
use crate::ids::{EventId, RoomId, UserId};
use crate::rooms::{self, CreateRoom};
use crate::state::AppState;
use crate::store::directory::{DirectoryEntry, DirectoryQuery};
use crate::store::events::StoredEvent;
use crate::store::rooms::RoomRecord;

/// Most events returned by one history page.
pub const MAX_PAGE: usize = 200;

/// `{username, password}`.
#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// `POST /register` → `{user_id, token}`.
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(c): Json<Credentials>,
) -> Result<Json<Value>> {
    let s = account::register(&state.accounts, &c.username, &c.password, ip).await?;
    Ok(Json(json!({ "user_id": s.user_id, "token": s.token })))
}

/// `POST /login` → `{user_id, token}`.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(c): Json<Credentials>,
) -> Result<Json<Value>> {
    let s = account::login(&state.accounts, &c.username, &c.password, ip).await?;
    Ok(Json(json!({ "user_id": s.user_id, "token": s.token })))
}

/// `POST /logout`: revokes the session of the token used.
pub async fn logout(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    account::logout(&state.accounts, &session).await?;
    state.hub.end_session(&session.sid);
    Ok(Json(json!({})))
}

/// `{old_password, new_password}`.
#[derive(Deserialize)]
pub struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `POST /password`: other sessions are revoked; this one stays.
pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    Json(p): Json<PasswordChange>,
) -> Result<Json<Value>> {
    account::change_password(&state.accounts, &session, &p.old_password, &p.new_password, ip).await?;
    state.hub.end_other_sessions(session.user.as_str(), &session.sid);
    Ok(Json(json!({})))
}

/// `GET /me`.
pub async fn me(session: Session) -> Json<Value> {
    Json(json!({ "user_id": session.user }))
}

/// `{name, topic?, visibility}`.
#[derive(Deserialize)]
pub struct NewRoom {
    name: String,
    #[serde(default)]
    topic: String,
    visibility: Visibility,
    /// Optional alias: `name` or `#name:this.server`.
    #[serde(default)]
    alias: Option<String>,
}

/// Room visibility in the API.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Listed; anyone may join.
    Public,
    /// Invite-only.
    Private,
}

/// `POST /rooms` → `{room_id}`.
pub async fn create_room(
    State(state): State<AppState>,
    session: Session,
    Json(r): Json<NewRoom>,
) -> Result<Json<Value>> {
    let join_rule = match r.visibility {
        Visibility::Public => JoinRule::Public,
        Visibility::Private => JoinRule::Invite,
    };
    let room_id = rooms::create_room(
        &state.rooms,
        &session.user,
        CreateRoom { name: r.name, topic: r.topic, join_rule, alias: r.alias },
    )
    .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// `{via}` for joining.
#[derive(Deserialize, Default)]
pub struct JoinBody {
    #[serde(default)]
    via: Vec<String>,
}

/// `{via?, reason?}` for asking to join.
#[derive(Deserialize, Default)]
pub struct KnockBody {
    #[serde(default)]
    via: Vec<String>,
    reason: Option<String>,
}

/// `POST /knock/{room_id_or_alias}` (body `{via?, reason?}` optional) → `{room_id}`: asks to
/// be let into a room whose join rule takes requests, here or on another server.
pub async fn knock(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    let b: KnockBody = optional_body(&body)?;
    check_via(&b.via)?;
    let room_id = membership::knock(&state.fed, &session.user, name.trim(), &b.via, b.reason.as_deref()).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// `{user_id, accept}`.
#[derive(Deserialize)]
pub struct KnockAnswer {
    user_id: String,
    accept: bool,
}

/// `POST /rooms/{id}/requests {user_id, accept}`: a moderator lets in (invites) someone who
/// asked to join, or turns them away.
pub async fn answer_knock(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(a): Json<KnockAnswer>,
) -> Result<Json<Value>> {
    let target = UserId::parse_or_local(&a.user_id, &state.server_name)?;
    membership::answer_knock(&state.fed, &session.user, &id, &target, a.accept).await?;
    Ok(Json(json!({})))
}

/// A JSON body that may be left out (empty, or only whitespace): then its defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Error::bad(format!("invalid body: {e}")))
}

/// Checks the servers a join or knock names to go through.
fn check_via(via: &[String]) -> Result<()> {
    if via.len() > MAX_VIA {
        return Err(Error::bad(format!("at most {MAX_VIA} servers in via")));
    }
    for s in via {
        crate::ids::ServerName::parse(s)?;
    }
    Ok(())
}

/// Most servers a join may name to go through.
const MAX_VIA: usize = 10;

/// `POST /join/{room_id_or_alias}` (body `{via: [server]}` optional) → `{room_id}`: joins a room
/// here or on another server.
pub async fn join_any(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    let via = optional_body::<JoinBody>(&body)?.via;
    check_via(&via)?;
    let room_id = membership::join_by_name(&state.fed, &session.user, name.trim(), &via).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

fn room_json(r: &RoomRecord) -> Value {
    json!({
        "room_id": r.room_id,
        "name": r.name,
        "topic": r.topic,
        "visibility": if r.join_rule == JoinRule::Public { "public" } else { "private" },
        "join_rule": r.join_rule.as_str(),
        "direct": r.direct,
        "members": r.joined,
        "creator": r.creator,
        "power_levels": r.power_levels,
    })
}

/// `GET /rooms`: the caller's rooms (joined and invited) with unread counts.
pub async fn my_rooms(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    let rooms: Vec<Value> = state
        .store
        .my_rooms(session.user.as_str())?
        .iter()
        .map(|m| {
            let mut v = room_json(&m.room);
            v["membership"] = json!(m.membership.as_str());
            v["unread"] = json!(m.unread);
            v["mentions"] = json!(m.mentions);
            v["peer"] = json!(m.peer);
            // A direct chat to this user: ours (two people by the rules) or one they were
            // invited to as such.
            v["direct"] = json!(m.room.direct || m.peer.is_some());
            v
        })
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

/// `?limit=&since=&q=` of the public directory.
#[derive(Deserialize)]
pub struct DirectoryParams {
    limit: Option<usize>,
    since: Option<String>,
    /// The search text as given.
    pub q: Option<String>,
}

impl DirectoryParams {
    /// The query these parameters ask for (`400` if they are bad).
    pub fn query(&self) -> Result<DirectoryQuery> {
        DirectoryQuery::parse(self.limit, self.since.as_deref(), self.q.as_deref())
    }
}

/// A directory entry as the API shows it: the room object, plus its alias.
fn entry_json(e: &DirectoryEntry) -> Value {
    json!({
        "room_id": e.room_id,
        "name": e.name,
        "topic": e.topic,
        "alias": e.alias,
        "visibility": "public",
        "direct": e.direct,
        "members": e.joined,
        "creator": e.creator,
    })
}

/// `GET /rooms/public?limit=&since=&q=` → `{rooms, next_batch, prev_batch, total}`: one page
/// of the public directory, most members first, optionally searched.
pub async fn public_rooms(
    State(state): State<AppState>,
    _session: Session,
    params: std::result::Result<Query<DirectoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(params) = params.map_err(|e| Error::bad(e.body_text()))?;
    let page = state.store.public_rooms(&params.query()?)?;
    let rooms: Vec<Value> = page.rooms.iter().map(entry_json).collect();
    Ok(Json(json!({
        "rooms": rooms,
        "next_batch": page.next.map(|t| t.encode()),
        "prev_batch": page.prev.map(|t| t.encode()),
        "total": page.total,
    })))
}

/// Loads a room the caller has joined: 404 if it does not exist, 403 if not a member.
pub fn member_room(state: &AppState, session: &Session, room_id: &RoomId) -> Result<RoomRecord> {
    let room = state.store.room(room_id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    if state.store.membership(room_id, session.user.as_str())? != Membership::Join {
        return Err(Error::Forbidden("you are not a member of this room".into()));
    }
    Ok(room)
}

/// `GET /rooms/{id}`.
pub async fn room(State(state): State<AppState>, session: Session, RoomPath(id): RoomPath) -> Result<Json<Value>> {
    let room = member_room(&state, &session, &id)?;
    Ok(Json(room_json(&room)))
}

/// `GET /rooms/{id}/members`.
pub async fn members(State(state): State<AppState>, session: Session, RoomPath(id): RoomPath) -> Result<Json<Value>> {
    member_room(&state, &session, &id)?;
    let members: Vec<Value> =
        state.store.members(&id)?.into_iter().map(|(u, m)| json!({ "user_id": u, "membership": m.as_str() })).collect();
    Ok(Json(json!({ "members": members })))
}

/// `POST /rooms/{id}/join`.
pub async fn join(State(state): State<AppState>, session: Session, RoomPath(id): RoomPath) -> Result<Json<Value>> {
    membership::join(&state.fed, &session.user, &id).await?;
    Ok(Json(json!({ "room_id": id })))
}

/// `POST /rooms/{id}/leave`.
pub async fn leave(State(state): State<AppState>, session: Session, RoomPath(id): RoomPath) -> Result<Json<Value>> {
    membership::leave(&state.fed, &session.user, &id).await?;
    Ok(Json(json!({})))
}

/// `{user_id}`.
#[derive(Deserialize)]
pub struct UserRef {
    user_id: String,
}

/// `POST /rooms/{id}/invite`.
pub async fn invite(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(u): Json<UserRef>,
) -> Result<Json<Value>> {
    let target = UserId::parse_or_local(&u.user_id, &state.server_name)?;
    membership::invite(&state.fed, &session.user, &id, &target).await?;
    Ok(Json(json!({})))
}

/// `{name?, topic?, visibility?, allow?}`.
#[derive(Deserialize)]
pub struct RoomUpdate {
    name: Option<String>,
    topic: Option<String>,
    visibility: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
}

/// A join rule as the settings name it: `public`, `private` (invited people only), `knock`
/// (private, and anyone may ask to join), `restricted` (the members of the `allow` rooms may
/// join; others need an invitation) or `knock_restricted` (both).
pub fn join_rule_setting(visibility: &str, allow: &[String]) -> Result<(JoinRule, Vec<RoomId>)> {
    let rule = match visibility {
        "public" => JoinRule::Public,
        "private" => JoinRule::Invite,
        "knock" => JoinRule::Knock,
        "restricted" => JoinRule::Restricted,
        "knock_restricted" => JoinRule::KnockRestricted,
        _ => {
            return Err(Error::bad(
                "visibility must be \"public\", \"private\", \"knock\", \"restricted\" or \"knock_restricted\"",
            ));
        }
    };
    if allow.len() > rooms::MAX_ALLOWED_ROOMS {
        return Err(Error::bad(format!("at most {} rooms in allow", rooms::MAX_ALLOWED_ROOMS)));
    }
    let allow = allow
        .iter()
        .map(|a| RoomId::parse(a.trim()).map_err(|_| Error::bad(format!("allow: {a:?} is not a room id"))))
        .collect::<Result<Vec<_>>>()?;
    Ok((rule, allow))
}

/// `POST /rooms/{id}/settings {name?, topic?, visibility?}`: renames the room, changes its
/// topic, or makes it public or private (listed in the directory or not).
pub async fn update_room(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(r): Json<RoomUpdate>,
) -> Result<Json<Value>> {
    let join_rule = match r.visibility.as_deref() {
        None if r.allow.is_empty() => None,
        None => return Err(Error::bad("allow goes with visibility \"restricted\"")),
        Some(v) => Some(join_rule_setting(v, &r.allow)?),
    };
    rooms::update_room(&state.rooms, &session.user, &id, r.name.as_deref(), r.topic.as_deref(), join_rule).await?;
    Ok(Json(json!({})))
}

/// `{user_id, level}`.
#[derive(Deserialize)]
pub struct PowerChange {
    user_id: String,
    level: i64,
}

/// `POST /rooms/{id}/power {user_id, level}`: sets a member's power level.
pub async fn set_power(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(p): Json<PowerChange>,
) -> Result<Json<Value>> {
    let target = UserId::parse_or_local(&p.user_id, &state.server_name)?;
    rooms::set_power(&state.rooms, &session.user, &id, &target, p.level).await?;
    Ok(Json(json!({})))
}

/// `POST /rooms/{id}/kick {user_id}`: room moderators remove a member (or withdraw an invite).
pub async fn kick(state: State<AppState>, session: Session, room: RoomPath, u: Json<UserRef>) -> Result<Json<Value>> {
    moderate(state, session, room, u, rooms::Moderation::Kick).await
}

/// `POST /rooms/{id}/ban {user_id}`: remove and keep out.
pub async fn ban(state: State<AppState>, session: Session, room: RoomPath, u: Json<UserRef>) -> Result<Json<Value>> {
    moderate(state, session, room, u, rooms::Moderation::Ban).await
}

/// `POST /rooms/{id}/unban {user_id}`: lift a ban.
pub async fn unban(state: State<AppState>, session: Session, room: RoomPath, u: Json<UserRef>) -> Result<Json<Value>> {
    moderate(state, session, room, u, rooms::Moderation::Unban).await
}

async fn moderate(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(u): Json<UserRef>,
    what: rooms::Moderation,
) -> Result<Json<Value>> {
    let target = UserId::parse_or_local(&u.user_id, &state.server_name)?;
    rooms::moderate(&state.rooms, &session.user, &id, &target, what).await?;
    Ok(Json(json!({})))
}

/// `POST /dm {user_id}` → `{room_id}`: opens (or creates) the direct room with that user.
pub async fn direct(State(state): State<AppState>, session: Session, Json(u): Json<UserRef>) -> Result<Json<Value>> {
    let other = UserId::parse_or_local(&u.user_id, &state.server_name)?;
    let room_id = membership::open_direct(&state.fed, &session.user, &other).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// `{body, txn_id}`.
#[derive(Deserialize)]
pub struct NewMessage {
    /// The text (a file's caption: may be empty then).
    #[serde(default)]
    body: String,
    txn_id: String,
    /// A file uploaded by the sender, sent as the message.
    #[serde(default)]
    file: Option<rooms::FileRef>,
    /// An edit: the id of the sender's message whose text `body` replaces.
    #[serde(default)]
    replaces: Option<String>,
    /// A reply: the id of the room's message it answers.
    #[serde(default)]
    reply_to: Option<String>,
}

/// `POST /rooms/{id}/messages` → `{event_id, pos}`, answered after commit.
pub async fn send(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(m): Json<NewMessage>,
) -> Result<Json<Value>> {
    let sent = match m.replaces.as_deref().map(EventId::parse).transpose()? {
        Some(_) if m.file.is_some() => return Err(Error::bad("an edit changes text; it cannot carry a file")),
        Some(original) => {
            rooms::submit_edit(&state.rooms, &session.user, &id, &original, &m.body, &m.txn_id).await?.wait().await?
        }
        None => {
            let to = m.reply_to.as_deref().map(EventId::parse).transpose()?;
            match m.file {
                Some(file) => {
                    let sent =
                        rooms::submit_file(&state.rooms, &session.user, &id, file, &m.body, &m.txn_id, to.as_ref());
                    sent.await?.wait().await?
                }
                None => rooms::send_message(&state.rooms, &session.user, &id, &m.body, &m.txn_id, to.as_ref()).await?,
            }
        }
    };
    Ok(Json(json!({ "event_id": sent.event_id, "pos": sent.pos })))
}

/// `{display_name}`.
#[derive(Deserialize)]
pub struct Profile {
    display_name: String,
}

/// `PUT /profile` → `{display_name, rooms}`: the name the caller goes by (empty: none), sent
/// into every room they are in; `rooms` counts the rooms it changed in.
pub async fn set_profile(
    State(state): State<AppState>,
    session: Session,
    Json(p): Json<Profile>,
) -> Result<Json<Value>> {
    let (name, rooms) = rooms::set_display_name(&state.rooms, &session.user, &p.display_name).await?;
    Ok(Json(json!({ "display_name": name, "rooms": rooms })))
}

/// `GET /profile/{user_id}` → `{user_id, display_name}`: the name someone goes by (`null`:
/// none chosen). A user of another server is asked of their server (kept ten minutes): `404`
/// if it knows no such user, `503` if it cannot be reached.
pub async fn profile(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
) -> Result<Json<Value>> {
    let user = UserId::parse(&user_id)?;
    let display_name = if user.server() == state.server_name.as_str() {
        let record = state.store.user(user.localpart())?.filter(|u| !u.disabled);
        record.ok_or_else(|| Error::NotFound(format!("no user {user}")))?.display_name
    } else {
        crate::federation::profiles::remote_profile(&state.fed, &session.user, &user).await?.display_name
    };
    Ok(Json(json!({ "user_id": user, "display_name": display_name })))
}

/// `{event_id, pinned}`.
#[derive(Deserialize)]
pub struct PinChange {
    event_id: String,
    pinned: bool,
}

/// `POST /rooms/{id}/pins` → `{pinned: [ids]}`: pins a message in the room's header, or
/// unpins it; needs the level for `m.room.pinned_events` (50 by default).
pub async fn pin(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(p): Json<PinChange>,
) -> Result<Json<Value>> {
    let target = EventId::parse(&p.event_id)?;
    let pinned = rooms::pin(&state.rooms, &session.user, &id, &target, p.pinned).await?;
    Ok(Json(json!({ "pinned": pinned })))
}

/// `{event_id, key, txn_id}`.
#[derive(Deserialize)]
pub struct NewReaction {
    event_id: String,
    key: String,
    txn_id: String,
}

/// `POST /rooms/{id}/reactions` → `{event_id, pos}`: reacts to a message with `key`; 409 if
/// the user already did with that key. Taking it back is redacting the reaction.
pub async fn react(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(r): Json<NewReaction>,
) -> Result<Json<Value>> {
    let target = EventId::parse(&r.event_id)?;
    let sent = rooms::react(&state.rooms, &session.user, &id, &target, &r.key, &r.txn_id).await?;
    Ok(Json(json!({ "event_id": sent.event_id, "pos": sent.pos })))
}

/// `?before=&limit=`.
#[derive(Deserialize)]
pub struct Page {
    before: Option<String>,
    /// Newer events instead: those after this cursor, oldest first.
    after: Option<String>,
    limit: Option<usize>,
}

/// An event as the API shows it: the event plus its stream position.
pub fn event_json(e: &StoredEvent) -> Value {
    let mut v = serde_json::to_value(&e.event).unwrap_or(Value::Null);
    v["pos"] = json!(e.pos);
    if let Some(because) = &e.redacted_because {
        v["unsigned"] = json!({ "redacted_because": because });
    }
    // As Matrix's server-side aggregation shows an edit: its id and time; the message's new
    // content is the edit's `m.new_content` (`content_now` saves clients a lookup).
    if let Some(edit) = &e.edit {
        v["unsigned"]["m.relations"] =
            json!({ "m.replace": { "event_id": edit.event_id, "origin_server_ts": edit.ts } });
        v["content_now"] = edit.content.clone();
    }
    // Reactions counted on a message, and a reply's quote of the message it answers, as the
    // page shows them.
    if !e.reactions.is_empty() {
        v["reactions"] = e
            .reactions
            .iter()
            .map(|r| {
                let senders: Vec<&String> = r.by.iter().map(|(s, _)| s).collect();
                let ids: Vec<&String> = r.by.iter().map(|(_, id)| id).collect();
                json!({ "key": r.key, "count": r.by.len(), "senders": senders, "event_ids": ids })
            })
            .collect();
    }
    if let Some(q) = &e.quote {
        v["quote"] = json!({ "sender": q.sender, "text": q.text, "deleted": q.deleted, "pos": q.pos });
    }
    v
}

/// Parses a history cursor.
pub fn parse_cursor(s: Option<&str>) -> Result<Option<u64>> {
    match s {
        None | Some("") => Ok(None),
        Some(c) => c.parse().map(Some).map_err(|_| Error::bad("invalid cursor")),
    }
}

/// `GET /rooms/{id}/messages?before=&limit=` → `{events (newest first), next}`.
pub async fn messages(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    page: std::result::Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(page) = page.map_err(|e| Error::bad(e.body_text()))?;
    member_room(&state, &session, &id)?;
    let before = parse_cursor(page.before.as_deref())?;
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad(format!("limit must be 1-{MAX_PAGE}")));
    }
    let (events, next) = match (before, parse_cursor(page.after.as_deref())?) {
        (Some(_), Some(_)) => return Err(Error::bad("give before or after, not both")),
        (_, Some(after)) => state.store.timeline_after(&id, after, limit)?,
        (before, None) => state.store.timeline(&id, before, limit)?,
    };
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(json!({ "events": events, "next": next.map(|n| n.to_string()) })))
}

/// `{limit}`: events on each side (1-200, default 10).
#[derive(Deserialize)]
pub struct ContextPage {
    limit: Option<usize>,
}

/// `GET /rooms/{id}/context/{event_id}?limit=N` → `{event, before, after, before_cursor,
/// after_cursor}`: a message with up to N events on each side (`before` newest first,
/// `after` oldest first), and the cursors to page on with `/messages?before=` and `?after=`
/// (null: the beginning, or the newest, is in the answer). For opening history at a message.
pub async fn context(
    State(state): State<AppState>,
    session: Session,
    Path((room_id, event_id)): Path<(String, String)>,
    page: std::result::Result<Query<ContextPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(page) = page.map_err(|e| Error::bad(e.body_text()))?;
    let ev = timeline_event(&state, &session, &room_id, &event_id)?;
    let limit = page.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad(format!("limit must be 1-{MAX_PAGE}")));
    }
    let id = &ev.event.room_id;
    let (before, before_cursor) = state.store.timeline(id, Some(ev.pos), limit)?;
    let (after, after_cursor) = state.store.timeline_after(id, ev.pos, limit)?;
    Ok(Json(json!({
        "event": event_json(&ev),
        "before": before.iter().map(event_json).collect::<Vec<_>>(),
        "after": after.iter().map(event_json).collect::<Vec<_>>(),
        "before_cursor": before_cursor.map(|n| n.to_string()),
        "after_cursor": after_cursor.map(|n| n.to_string()),
    })))
}

/// `GET /rooms/{id}/events/{event_id}` → the event (with `pos`, and for an edited message
/// `unsigned.m.relations.m.replace`: its newest edit), for a member of the room.
pub async fn event(
    State(state): State<AppState>,
    session: Session,
    Path((room_id, event_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(Json(event_json(&timeline_event(&state, &session, &room_id, &event_id)?)))
}

/// An event of a room's timeline (not one kept only for the room's state: `pos` 0), for a
/// member of the room, from the path's ids.
fn timeline_event(state: &AppState, session: &Session, room_id: &str, event_id: &str) -> Result<StoredEvent> {
    let id = RoomId::parse(room_id)?;
    member_room(state, session, &id)?;
    let event_id = EventId::parse(event_id)?;
    let ev = state.store.event(&event_id)?.filter(|e| e.event.room_id == id && e.pos > 0);
    ev.ok_or_else(|| Error::NotFound("no such event in this room".into()))
}

/// `{event_id}`.
#[derive(Deserialize)]
pub struct ReadMarker {
    event_id: String,
}

/// `POST /rooms/{id}/read {event_id}`: moves the read marker to that event.
pub async fn read(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(r): Json<ReadMarker>,
) -> Result<Json<Value>> {
    member_room(&state, &session, &id)?;
    let event_id = EventId::parse(&r.event_id)?;
    let ev = state.store.event(&event_id)?.filter(|e| e.event.room_id == id);
    let ev = ev.ok_or_else(|| Error::NotFound("no such event in this room".into()))?;
    if let Some(moved) = rooms::mark_read(&state.rooms, &session.user, &id, ev.pos).await? {
        crate::federation::ephemeral::read(&state.fed, &session.user, &id, moved.pos);
        state.hub.read_moved(&id, session.user.as_str(), moved);
    }
    let (unread, mentions) = state.store.unread_counts(session.user.as_str(), &id)?;
    Ok(Json(json!({ "unread": unread, "mentions": mentions })))
}

/// `{event_id, reason?}`.
#[derive(Deserialize)]
pub struct Redaction {
    event_id: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /rooms/{id}/redact {event_id, reason?}` → `{event_id}` (the redaction's): deletes a
/// message, one's own or (with the room's `redact` level) anyone's.
pub async fn redact(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(r): Json<Redaction>,
) -> Result<Json<Value>> {
    let target = EventId::parse(&r.event_id)?;
    let redaction = rooms::redact(&state.rooms, &session.user, &id, &target, r.reason.as_deref()).await?;
    Ok(Json(json!({ "event_id": redaction })))
}

/// `GET /turn` → `{urls, username, credential, ttl}`: fresh TURN credentials for this user,
/// in the shape of an `RTCIceServer`.
pub async fn turn(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    let relay = state.turn.as_ref().ok_or_else(|| Error::NotFound("this server runs no TURN relay".into()))?;
    Ok(Json(json!(relay.ice_server(session.user.as_str(), &session.sid))))
}

/// `POST /rooms/{room_id}/call/host`: where the caller joins the room's calls through a media
/// server: here (`{"here": true}`, over the live socket), or at the room's call host server
/// (`{"here": false, "server", "url", "token"}`: its call socket and a call token it issued for
/// the caller, which the browser presents there).
pub async fn call_host(
    State(state): State<AppState>,
    session: Session,
    RoomPath(room): RoomPath,
) -> Result<Json<Value>> {
    use crate::federation::calls::CallHost;
    Ok(Json(match crate::federation::calls::call_host(&state.fed, &session.user, &room).await? {
        CallHost::Here => json!({ "here": true }),
        CallHost::At { server, url, token } => json!({ "here": false, "server": server, "url": url, "token": token }),
    }))
}

/// `GET /settings`: the caller's privacy settings.
pub async fn settings(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    Ok(Json(json!(account::privacy(&state.accounts, &session)?)))
}

/// `POST /settings {appear_offline, hide_receipts}`.
pub async fn set_settings(
    State(state): State<AppState>,
    session: Session,
    Json(p): Json<account::Privacy>,
) -> Result<Json<Value>> {
    let p = account::set_privacy(&state.accounts, &session, p).await?;
    state.hub.set_prefs(session.user.as_str(), p.into());
    Ok(Json(json!(p)))
}

/// Unknown API path.
pub async fn not_found() -> Error {
    Error::NotFound("no such endpoint".into())
}

/// Known API path, wrong method.
pub async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}
