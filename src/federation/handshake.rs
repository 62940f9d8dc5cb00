//! The resident side of membership handshakes: other servers' users join (`make_join` and
//! `send_join`), leave or decline (`make_leave` and `send_leave`), and our users are invited
//! from other servers (`invite`, which we co-sign).

use std::collections::HashMap;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FedRequest;
use super::FedState;
use super::pdu::parse_verified;
use super::receive::{authorize_now, check_known_auth_events};
use super::serve::{auth_chain, current_state, peer_room_id, resident_room, wire};
use crate::error::{Error, Result};
use crate::events::rules;
use crate::events::*;
use crate::ids::{RoomId, UserId};
use crate::store::events::{enqueue, persist_received, server_of};
use crate::store::rooms::RoomRecord;

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`: a join event for the caller's
/// user to sign, if the rules let them join now.
pub async fn make_join(
    state: State<FedState>,
    Path((room_id, user_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    make_membership(state, room_id, user_id, req, Membership::Join).await
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`: a leave event (declining an
/// invitation, or leaving) for the caller's user to sign.
pub async fn make_leave(
    state: State<FedState>,
    Path((room_id, user_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    make_membership(state, room_id, user_id, req, Membership::Leave).await
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`: a knock (asking to be let in)
/// for the caller's user to sign, if the room takes them.
pub async fn make_knock(
    state: State<FedState>,
    Path((room_id, user_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    make_membership(state, room_id, user_id, req, Membership::Knock).await
}

pub(super) async fn make_membership(
    State(state): State<FedState>,
    room_id: String,
    user_id: String,
    req: FedRequest,
    membership: Membership,
) -> Result<axum::Json<Value>> {
    let user = UserId::parse(&user_id)?;
    if user.server() != req.origin {
        return Err(Error::Forbidden("you can only make membership events for your own users".into()));
    }
    let room_id = peer_room_id(&room_id)?;
    let room = resident_room(&state, &room_id)?;
    let mut content = member_content(membership);
    if membership == Membership::Join
        && let Some(via) = authoriser(&state, &room, user.as_str()).await?
    {
        content["join_authorised_via_users_server"] = json!(via);
    }
    let new = NewEvent::state(M_ROOM_MEMBER, user.as_str(), content);
    let snapshot = state.store.snapshot()?;
    rules::authorize(room.auth_state(), user.as_str(), &new, |u| snapshot.membership(&room_id, u))?;
    let template = template(&state, &room, user.as_str(), new)?;
    Ok(axum::Json(json!({ "room_version": ROOM_VERSION, "event": template })))
}

/// Our member who lets `user` into a restricted `room` (see [`crate::rooms::restricted_authoriser`]).
async fn authoriser(state: &FedState, room: &RoomRecord, user: &str) -> Result<Option<String>> {
    if !matches!(room.join_rule, JoinRule::Restricted | JoinRule::KnockRestricted) {
        return Ok(None);
    }
    let (room, user, local) = (room.clone(), user.to_string(), state.server_name.to_string());
    // A read inside a (writeless) write job: the checks of a local join, on the same state.
    state.store.write(move |tx| crate::rooms::restricted_authoriser(tx, &room, &user, &local)).await
}

/// The unsigned event another server's user would send next in `room`.
pub(super) fn template(state: &FedState, room: &RoomRecord, sender: &str, new: NewEvent) -> Result<Value> {
    let snapshot = state.store.snapshot()?;
    let rid = &room.room_id;
    let mut auth_events = Vec::new();
    for (kind, key) in crate::store::events::auth_slots(sender, &new) {
        if let Some(id) = snapshot.state_event_id(rid, kind, key)? {
            auth_events.push(id);
        }
    }
    Ok(json!({
        "room_id": rid,
        "sender": sender,
        "type": new.kind,
        "state_key": new.state_key,
        "content": new.content,
        "origin_server_ts": now_ms(),
        "depth": room.depth + 1,
        "prev_events": room.extremities,
        "auth_events": auth_events,
    }))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`: the caller's user joins; we add
/// the join to the room, send it to the room's other servers, and answer with the room's state
/// and its auth chain.
pub async fn send_join(
    State(state): State<FedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let pdu = take_membership(&state, &room_id, &event_id, req, Membership::Join).await?;
    // Checked by `take_membership`.
    let room_id = peer_room_id(&room_id)?;
    let current = current_state(&state, &room_id)?;
    let chain = auth_chain(&state, &current)?;
    Ok(axum::Json(json!({
        "origin": state.server_name.as_str(),
        "members_omitted": false,
        "state": wire(&state, &current)?,
        "auth_chain": wire(&state, &chain)?,
        "event": pdu,
    })))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`: the caller's user declines an
/// invitation or leaves; we add the leave to the room and send it on.
pub async fn send_leave(
    State(state): State<FedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    take_membership(&state, &room_id, &event_id, req, Membership::Leave).await?;
    Ok(axum::Json(json!({})))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: the caller's user asks to be
/// let in; we add the knock to the room (its moderators see it) and answer with what the user
/// may see of the room before they are let in.
pub async fn send_knock(
    State(state): State<FedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    take_membership(&state, &room_id, &event_id, req, Membership::Knock).await?;
    let room_id = peer_room_id(&room_id)?;
    Ok(axum::Json(json!({ "knock_room_state": stripped_state(&state, &room_id)? })))
}

/// What a user outside a room may see of it (an invitation's or a knock's room state): the
/// create event whole (room version 12: the receiving server checks it names the room), the
/// name, topic and join rules stripped.
pub(super) fn stripped_state(state: &FedState, room_id: &RoomId) -> Result<Vec<Value>> {
    let snapshot = state.store.snapshot()?;
    let mut out = Vec::new();
    if let Some(create) = snapshot.event(&room_id.create_event_id())? {
        out.push(state.federation.wire_pdu(state.server_name.as_str(), &create.event)?);
    }
    for kind in [M_ROOM_NAME, M_ROOM_TOPIC, M_ROOM_JOIN_RULES] {
        if let Some(id) = snapshot.state_event_id(room_id, kind, "")?
            && let Some(e) = snapshot.event(&id)?
        {
            out.push(json!({ "type": kind, "state_key": "", "sender": e.event.sender, "content": e.event.content }));
        }
    }
    Ok(out)
}

/// The shared part of `send_join` and `send_leave`: verify the caller's user's own membership
/// event, check it, store it and send it to the room's other servers. Returns the PDU. The
/// ids are the request path's, checked here in the order the answers have always come.
pub(super) async fn take_membership(
    state: &FedState,
    room_id: &str,
    event_id: &str,
    req: FedRequest,
    membership: Membership,
) -> Result<Value> {
    let mut pdu = req.content.ok_or_else(|| Error::bad("the membership event is missing"))?;
    let (state, room_id) = (state.clone(), peer_room_id(room_id)?);
    let room = resident_room(&state, &room_id)?;
    // A join that names one of our members as the one letting the user in (a restricted
    // room): we co-sign it, after checking again that the user may be let in that way.
    let local = state.server_name.to_string();
    let via = pdu["content"]["join_authorised_via_users_server"].as_str().map(str::to_string);
    if membership == Membership::Join && via.is_some_and(|v| server_of(&v) == local) {
        let mut join = Event::from_pdu(&pdu, &room_id)?;
        if authoriser(&state, &room, &join.sender).await?.is_none() {
            return Err(Error::Forbidden("the user is not a member of a room that lets them in".into()));
        }
        join.sign(&local, &state.federation.key)?;
        pdu = join.pdu();
    }
    let ev = parse_verified(&state, &pdu, &room_id).await?;
    if ev.event_id != event_id {
        return Err(Error::bad("the event id does not match the event"));
    }
    let own = ev.kind == M_ROOM_MEMBER
        && ev.state_key.as_deref() == Some(ev.sender.as_str())
        && Membership::of_content(&ev.content) == Some(membership);
    if !own {
        return Err(Error::bad(format!("this takes a {} of the sender", membership.as_str())));
    }
    if server_of(&ev.sender) != req.origin {
        return Err(Error::Forbidden("a server may only send its own users' membership".into()));
    }
    let lock = state.federation.room_locks.get(&room_id);
    let _guard = lock.lock().await;
    if state.store.event(&ev.event_id)?.is_none() {
        check_known_auth_events(&state, &ev, &HashMap::new())?;
        let origin = req.origin.clone();
        let ev2 = ev.clone();
        state
            .store
            .write(move |tx| {
                let mut room = tx.require_room(&ev2.room_id)?;
                authorize_now(tx, &room, &ev2)?;
                let stored = persist_received(tx, &mut room, ev2)?;
                enqueue(tx, &room, &stored, &[origin.as_str()])
            })
            .await?;
    }
    Ok(pdu)
}

/// The body of `PUT /v2/invite`.
#[derive(Deserialize)]
pub struct InviteBody {
    event: Value,
    #[serde(default)]
    invite_room_state: Vec<Value>,
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: a user of ours is invited to a room on
/// another server. We co-sign the invite, and keep it so the user sees it.
pub async fn invite(
    State(state): State<FedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let body: InviteBody = serde_json::from_value(req.content.ok_or_else(|| Error::bad("invite needs a body"))?)
        .map_err(|e| Error::bad(format!("bad invite body: {e}")))?;
    // A malformed room id is one the event cannot belong to.
    let room_id = RoomId::parse(&room_id).map_err(|_| Error::bad("the event belongs to another room"))?;
    let mut ev = parse_verified(&state, &body.event, &room_id).await?;
    if ev.event_id != event_id {
        return Err(Error::bad("the event id does not match the event"));
    }
    if ev.kind != M_ROOM_MEMBER || Membership::of_content(&ev.content) != Some(Membership::Invite) {
        return Err(Error::bad("not an invite"));
    }
    if server_of(&ev.sender) != req.origin {
        return Err(Error::Forbidden("a server may only invite on behalf of its own users".into()));
    }
    let target = UserId::parse(ev.state_key.as_deref().unwrap_or_default())?;
    if target.server() != state.server_name.as_str() {
        return Err(Error::bad("that user is not on this server"));
    }
    if state.store.user(target.localpart())?.is_none_or(|u| u.disabled) {
        return Err(Error::NotFound("no such user".into()));
    }
    // Every invitation makes a stub room in the invitee's list: bounded per server and per
    // invitee, and refused (nothing stored) beyond.
    super::budget::admit_invite(&state, &req.origin, &ev.sender, &target)?;
    ev.sign(state.server_name.as_str(), &state.federation.key)?;
    let cosigned = ev.pdu();
    let inviter = ev.sender.clone();
    keep_outside_membership(&state, ev, &body.invite_room_state, &req.origin, &inviter).await?;
    Ok(axum::Json(json!({ "event": cosigned })))
}

/// Keeps an invitation for, or a knock by, one of our users in a room this server is not in:
/// in a stub made from what the other server told of the room (`summary`, its stripped
/// state; `creator` stands for the room's creator in it), or in the copy kept from an
/// earlier membership. No room event reaches such a room, so the membership is kept now.
pub(super) async fn keep_outside_membership(
    state: &FedState,
    ev: Event,
    summary: &[Value],
    origin: &str,
    creator: &str,
) -> Result<()> {
    let stripped = StrippedState::read(summary, creator);
    let (origin, local) = (origin.to_string(), state.server_name.to_string());
    state
        .store
        .write(move |tx| {
            let mut room = match tx.room(&ev.room_id)? {
                // A local user is in the room: the membership reaches us as a room event too.
                Some(r) if !r.partial && super::serve::server_in_room(&r, &local) => return Ok(()),
                // A stub from an earlier invitation, or the copy kept after our last member
                // was kicked, banned or left: no room event comes here, so the membership is
                // kept now, with the same trust as a stub's (the other server signed it; the
                // join goes through a resident server, which checks it).
                Some(r) => r,
                None => stripped.stub_room(&ev.room_id, &origin),
            };
            if tx.has_event(&ev.event_id)? {
                return Ok(());
            }
            // Our direct rooms, and a Matrix server's invitation marked `is_direct` (Element's
            // direct chat), are the invitee's direct chat with the inviter.
            let invite = Membership::of_content(&ev.content) == Some(Membership::Invite);
            if invite && (room.direct || ev.content.get("is_direct").and_then(Value::as_bool) == Some(true)) {
                let me = ev.state_key.clone().unwrap_or_default();
                tx.put_direct_room(&me, &ev.sender, &ev.room_id)?;
            }
            persist_received(tx, &mut room, ev).map(|_| ())
        })
        .await
}

/// What an invitation tells about a room before joining it.
pub(super) struct StrippedState {
    name: String,
    topic: String,
    join_rule: JoinRule,
    creator: String,
    direct: bool,
}

impl StrippedState {
    fn read(events: &[Value], inviter: &str) -> StrippedState {
        let mut s = StrippedState {
            name: String::new(),
            topic: String::new(),
            join_rule: JoinRule::Invite,
            creator: inviter.to_string(),
            direct: false,
        };
        for e in events.iter().take(20) {
            let text = |k: &str| e["content"][k].as_str().unwrap_or_default().chars().take(1000).collect::<String>();
            match e["type"].as_str() {
                Some(M_ROOM_NAME) => s.name = capped_text(&text("name"), MAX_NAME_CHARS),
                Some(M_ROOM_TOPIC) => s.topic = capped_text(&text("topic"), MAX_TOPIC_CHARS),
                Some(M_ROOM_JOIN_RULES) => s.join_rule = JoinRule::of_content(&e["content"]),
                // The creator stays the inviter: stripped state is the inviting server's word,
                // and could name one of our own users.
                Some(M_ROOM_CREATE) => s.direct = e["content"]["chat.direct"].as_bool().unwrap_or(false),
                _ => {}
            }
        }
        s
    }

    fn stub_room(self, room_id: &RoomId, origin: &str) -> RoomRecord {
        let pl = PowerLevels::for_new_room();
        let mut room = RoomRecord::new(room_id, &self.creator, now_ms(), self.direct, self.join_rule, pl);
        room.name = self.name;
        room.topic = self.topic;
        room.servers = [(origin.to_string(), 0)].into_iter().collect();
        room.partial = true;
        room
    }
}
