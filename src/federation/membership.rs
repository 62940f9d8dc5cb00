//! Membership that may cross servers: the one entry point for joining, leaving, inviting and
//! opening a direct chat (each decides whether the room service does it here or the handshake
//! runs through another server), and our side of those handshakes: resolving aliases, joining
//! through a resident server, declining, and inviting users of other servers.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::FedState;
use super::call;
use super::pdu::{check_auth_events, parse_verified};
use super::receive::authorize_now;
use super::serve::MAX_FETCH;
use crate::error::{Error, Result};
use crate::events::rules;
use crate::events::*;
use crate::ids::{EventId, RoomId, UserId};
use crate::rooms::aliases::{local_alias, parse_alias};
use crate::rooms::{self, JoinPlan};
use crate::store::events::store_joined_room;

/// Joins a public room, or a private one the user was invited to.
pub async fn join(state: &FedState, user: &UserId, room_id: &RoomId) -> Result<()> {
    join_via(state, user, room_id, &[]).await
}

/// Joins a room by id or `#alias:server`; returns the room id.
pub async fn join_by_name(state: &FedState, user: &UserId, name: &str, via: &[String]) -> Result<RoomId> {
    let (rid, via) = room_named(state, name, via).await?;
    join_via(state, user, &rid, &via).await?;
    Ok(rid)
}

/// The room a user names by id or `#alias:server`, and the servers to go through: an
/// alias's servers (another server's alias is resolved by asking it), then `via`.
async fn room_named(state: &FedState, name: &str, via: &[String]) -> Result<(RoomId, Vec<String>)> {
    if name.starts_with('#') {
        let (rid, servers) = resolve_alias(state, name).await?;
        return Ok((rid, servers.into_iter().chain(via.iter().cloned()).collect()));
    }
    Ok((RoomId::parse(name)?, via.to_vec()))
}

/// Tries `attempt` through each of `via` but this server (at most 5) until one works. With a
/// single server, its refusal (forbidden, not found, bad request) is the answer; otherwise
/// the last failure is. `what` names the attempt in the log.
async fn through_one_of<T, F>(
    state: &FedState,
    via: &[String],
    room_id: &RoomId,
    what: &str,
    mut attempt: impl FnMut(String) -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut last = Error::NotFound(format!("no server to {what} through"));
    for server in via.iter().filter(|s| *s != state.server_name.as_str()).take(5) {
        match attempt(server.clone()).await {
            Ok(done) => return Ok(done),
            Err(e @ (Error::Forbidden(_) | Error::NotFound(_) | Error::BadRequest(_))) if via.len() == 1 => {
                return Err(e);
            }
            Err(e) => {
                tracing::info!(server, %room_id, error = %e, "{what} through this server failed");
                last = e;
            }
        }
    }
    Err(last)
}

/// Joins a room here if this server is in it (or it is ours); otherwise through another
/// server: `via`, then the servers the room is known to be on.
pub async fn join_via(state: &FedState, user: &UserId, room_id: &RoomId, via: &[String]) -> Result<()> {
    match rooms::join_plan(&state.rooms, room_id, via)? {
        JoinPlan::Here => rooms::join_here(&state.rooms, user, room_id).await,
        JoinPlan::Through(servers) => join_remote(state, user, room_id, &servers).await,
    }
}

/// Leaves a room, or declines an invitation. The server of an invitation to a room this
/// server is not in is told when it can be reached; the decline holds here either way.
pub async fn leave(state: &FedState, user: &UserId, room_id: &RoomId) -> Result<()> {
    if let Some(via) = rooms::remote_invitation(&state.rooms, user, room_id)?
        && let Err(e) = decline_remote(state, user, room_id, &via).await
    {
        tracing::info!(%room_id, error = %e, "the inviting server was not told of the decline");
    }
    rooms::leave(&state.rooms, user, room_id).await
}

/// Invites a user into a room; a user of another server through their server, which co-signs.
pub async fn invite(state: &FedState, sender: &UserId, room_id: &RoomId, target: &UserId) -> Result<()> {
    if target.server() != state.server_name.as_str() {
        return invite_remote(state, sender, room_id, target).await;
    }
    rooms::invite_local(&state.rooms, sender, room_id, target).await
}

/// Asks to be let into a room whose join rule takes requests (`knock`), by id or
/// `#alias:server`: here if this server is in it, otherwise through another server
/// (`make_knock`/`send_knock`). The room's moderators may then let the user in (an
/// invitation) or turn them away. Returns the room id.
pub async fn knock(
    state: &FedState,
    user: &UserId,
    name: &str,
    via: &[String],
    reason: Option<&str>,
) -> Result<RoomId> {
    let (rid, servers) = room_named(state, name, via).await?;
    match rooms::join_plan(&state.rooms, &rid, &servers)? {
        JoinPlan::Here => rooms::knock_here(&state.rooms, user, &rid, reason).await?,
        JoinPlan::Through(servers) => knock_remote(state, user, &rid, &servers, reason).await?,
    }
    Ok(rid)
}

/// A moderator's answer to `target`'s request to join: letting them in invites them (a user
/// of another server through their server), turning them away removes the request.
pub async fn answer_knock(
    state: &FedState,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    accept: bool,
) -> Result<()> {
    if accept && target.server() != state.server_name.as_str() {
        rooms::check_knock_answer(&state.rooms, sender, room_id, target, accept)?;
        return invite_remote(state, sender, room_id, target).await;
    }
    rooms::answer_knock(&state.rooms, sender, room_id, target, accept).await
}

/// Knocks on a room this server is not in through one of `via`, and keeps the request (with
/// what the resident server tells of the room) so the user sees it until they are let in.
async fn knock_remote(
    state: &FedState,
    user: &UserId,
    room_id: &RoomId,
    via: &[String],
    reason: Option<&str>,
) -> Result<()> {
    through_one_of(state, via, room_id, "knock", |server| async move {
        let server = server.as_str();
        let (ev, answer) = make_and_send(state, user, room_id, server, Membership::Knock, reason).await?;
        let summary = answer["knock_room_state"].as_array().cloned().unwrap_or_default();
        // Who made the room, as the resident server tells; never one of ours.
        let creator = summary
            .iter()
            .find(|e| e["type"] == M_ROOM_CREATE)
            .and_then(|e| e["sender"].as_str())
            .filter(|c| UserId::parse(c).is_ok_and(|u| u.server() != state.server_name.as_str()))
            .map_or_else(|| format!("@_:{server}"), str::to_string);
        super::handshake::keep_outside_membership(state, ev, &summary, server, &creator).await
    })
    .await
}

/// Opens the direct-message room between `user` and `other` (see [`rooms::open_direct`]);
/// returns the room id.
pub async fn open_direct(state: &FedState, user: &UserId, other: &UserId) -> Result<RoomId> {
    let direct = rooms::open_direct(&state.rooms, user, other).await?;
    if direct.invite_remote {
        // The peer's server co-signs the invite; if it cannot be reached, the room stays with
        // its creator alone and a later attempt invites again.
        invite_remote(state, user, &direct.room_id, other).await?;
    }
    Ok(direct.room_id)
}

// Our side of the handshakes.

/// Most events of state plus auth chain a join accepts.
pub(super) const MAX_JOIN_EVENTS: usize = 20_000;

/// Events of recent history fetched when joining a remote room.
pub(super) const JOIN_HISTORY: usize = 50;

/// Resolves `#name:server` to a room id and servers to join through.
pub async fn resolve_alias(state: &FedState, alias: &str) -> Result<(RoomId, Vec<String>)> {
    let (name, server) = parse_alias(alias)?;
    if server == state.server_name.as_str() {
        let rid = local_alias(&state.store, &state.server_name, &name)?
            .ok_or_else(|| Error::NotFound(format!("no room is called {alias}")))?;
        return Ok((rid, vec![]));
    }
    let path =
        format!("/_matrix/federation/v1/query/directory?room_alias={}", super::urlencode(&format!("#{name}:{server}")));
    let (status, v) = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), &server, Method::GET, &path, None)
        .await
        .map_err(|e| super::client::public(&server, &e))?;
    if status == StatusCode::NOT_FOUND {
        return Err(Error::NotFound(format!("no room is called {alias}")));
    }
    if status != StatusCode::OK {
        return Err(Error::Unavailable(format!("{server} answered {status}")));
    }
    let rid = v["room_id"].as_str().ok_or_else(|| Error::Unavailable(format!("{server} sent no room id")))?;
    let rid = RoomId::parse(rid)?;
    let mut servers: Vec<String> = vec![server.clone()];
    for s in v["servers"].as_array().into_iter().flatten().take(10).filter_map(Value::as_str) {
        if crate::ids::ServerName::parse(s).is_ok() && !servers.iter().any(|x| x == s) {
            servers.push(s.to_string());
        }
    }
    Ok((rid, servers))
}

/// Joins `user` to `room_id`, which this server is not in, through one of `via`.
pub async fn join_remote(state: &FedState, user: &UserId, room_id: &RoomId, via: &[String]) -> Result<()> {
    through_one_of(
        state,
        via,
        room_id,
        "join",
        |server| async move { join_through(state, user, room_id, &server).await },
    )
    .await
}

/// The membership handshake with a resident server: `make_join`/`make_leave` gives the
/// event's place in the DAG; we build and sign the event here and send it with
/// `send_join`/`send_leave`. Returns the event and the server's answer.
pub(super) async fn make_and_send(
    state: &FedState,
    user: &UserId,
    room_id: &RoomId,
    server: &str,
    membership: Membership,
    reason: Option<&str>,
) -> Result<(Event, Value)> {
    let (verb, send_version) = match membership {
        Membership::Join => ("join", "v2"),
        Membership::Knock => ("knock", "v1"),
        _ => ("leave", "v2"),
    };
    let rid = super::urlencode(room_id.as_str());
    let uid = super::urlencode(user.as_str());
    let made = call(
        state,
        server,
        Method::GET,
        &format!("/_matrix/federation/v1/make_{verb}/{rid}/{uid}?ver={ROOM_VERSION}"),
        None,
    )
    .await?;
    let t = &made["event"];
    let strings = |k: &str| -> Vec<String> {
        t[k].as_array().into_iter().flatten().take(MAX_REFS).filter_map(Value::as_str).map(str::to_string).collect()
    };
    let parents = Parents {
        prev_events: strings("prev_events"),
        auth_events: strings("auth_events"),
        depth: t["depth"].as_u64().ok_or_else(|| Error::bad(format!("make_{verb} template without depth")))?,
    };
    let mut content = member_content(membership);
    // A join to a restricted room: the resident server names the member who lets ours in,
    // and co-signs the event (see `join_through`).
    if let Some(via) = t["content"]["join_authorised_via_users_server"].as_str()
        && membership == Membership::Join
    {
        content["join_authorised_via_users_server"] = via.into();
    }
    if let Some(r) = reason {
        content["reason"] = r.into();
    }
    // The profile travels in the join (and a knock), as Matrix servers expect.
    if matches!(membership, Membership::Join | Membership::Knock)
        && let Some(name) = state.store.user(user.localpart())?.and_then(|u| u.display_name)
    {
        content["displayname"] = name.into();
    }
    let new = NewEvent::state(M_ROOM_MEMBER, user.as_str(), content);
    let ev = Event::build(Some(room_id), user.as_str(), new, parents, now_ms());
    let pdu = state.federation.wire_pdu(state.server_name.as_str(), &ev)?;
    let path =
        format!("/_matrix/federation/{send_version}/send_{verb}/{rid}/{}", super::urlencode(ev.event_id.as_str()));
    let answer = call(state, server, Method::PUT, &path, Some(pdu)).await?;
    Ok((ev, answer))
}

/// Declines an invitation to a room on another server: the leave goes to the inviting server
/// (make_leave/send_leave), which adds it to the room.
pub async fn decline_remote(state: &FedState, user: &UserId, room_id: &RoomId, via: &[String]) -> Result<()> {
    let mut last = Error::NotFound("no server to send the decline to".into());
    for server in via.iter().filter(|s| *s != state.server_name.as_str()).take(5) {
        match make_and_send(state, user, room_id, server, Membership::Leave, None).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub(super) async fn join_through(state: &FedState, user: &UserId, room_id: &RoomId, server: &str) -> Result<()> {
    let rid = super::urlencode(room_id.as_str());
    let (mut join, answer) = make_and_send(state, user, room_id, server, Membership::Join, None).await?;
    // A join authorised by a member of the resident server carries that server's signature
    // too: the copy it answers with is the one the room holds.
    if join.content.get("join_authorised_via_users_server").is_some() {
        let signed = parse_verified(state, &answer["event"], room_id).await?;
        if signed.event_id != join.event_id {
            return Err(Error::bad("the co-signed join is not the join we sent"));
        }
        join = signed;
    }
    // Everything the resident server sent is checked before any of it is used.
    let mut all: HashMap<EventId, Event> = HashMap::new();
    let mut state_ids = Vec::new();
    let list = |k: &str| answer[k].as_array().cloned().unwrap_or_default();
    let (state_pdus, chain_pdus) = (list("state"), list("auth_chain"));
    if state_pdus.len() + chain_pdus.len() > MAX_JOIN_EVENTS {
        return Err(Error::bad("the room's state is too large"));
    }
    for (p, is_state) in state_pdus.iter().map(|p| (p, true)).chain(chain_pdus.iter().map(|p| (p, false))) {
        let ev = parse_verified(state, p, room_id).await?;
        if is_state {
            if ev.state_key.is_none() {
                return Err(Error::bad("a state list entry is not a state event"));
            }
            state_ids.push(ev.event_id.clone());
        }
        all.insert(ev.event_id.clone(), ev);
    }
    let create = all.values().find(|e| e.kind == M_ROOM_CREATE).ok_or_else(|| Error::bad("no create event"))?;
    if create.room_id != *room_id {
        return Err(Error::bad("the create event names another room"));
    }
    for ev in all.values() {
        check_auth_events(ev, |id| all.get(id))?;
    }
    check_auth_events(&join, |id| all.get(id))?;
    // Recent history, for the first page; each event checked like the state.
    let history = call(
        state,
        server,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/backfill/{rid}?v={}&limit={JOIN_HISTORY}",
            super::urlencode(join.event_id.as_str())
        ),
        None,
    )
    .await
    .map(|v| v["pdus"].as_array().cloned().unwrap_or_default())
    .unwrap_or_default();
    let mut timeline = Vec::new();
    for p in history.iter().take(MAX_FETCH) {
        let Ok(ev) = parse_verified(state, p, room_id).await else { continue };
        let over_limits = super::budget::check_content(state, &ev).is_err();
        if ev.event_id == join.event_id || over_limits || check_auth_events(&ev, |id| all.get(id)).is_err() {
            continue;
        }
        timeline.push(ev);
    }
    timeline.sort_by_key(|e| e.depth);
    let mut states: Vec<Event> = state_ids.iter().filter_map(|id| all.get(id).cloned()).collect();
    states.sort_by_key(|e| e.depth);
    let chain: Vec<Event> = all.into_values().collect();
    let (rid, joined) = (room_id.clone(), join);
    state.store.write(move |tx| store_joined_room(tx, &rid, chain, states, timeline, joined)).await
}

/// Invites `target`, a user of another server: their server co-signs the invite before it is
/// added to the room.
pub async fn invite_remote(state: &FedState, sender: &UserId, room_id: &RoomId, target: &UserId) -> Result<()> {
    let (s, rid, t) = (sender.to_string(), room_id.clone(), target.to_string());
    let ev = state
        .store
        .write(move |tx| {
            let room = tx.require_room(&rid)?;
            let mut content = member_content(Membership::Invite);
            if room.direct {
                // Matrix clients (Element) show the invitation as a direct chat.
                content["is_direct"] = json!(true);
            }
            let new = NewEvent::state(M_ROOM_MEMBER, &t, content);
            rules::authorize(room.auth_state(), &s, &new, |u| tx.membership(&rid, u))?;
            crate::store::events::build_next(tx, &room, &s, new, now_ms())
        })
        .await?;
    let stripped = super::handshake::stripped_state(state, room_id)?;
    let pdu = state.federation.wire_pdu(state.server_name.as_str(), &ev)?;
    let answer = call(
        state,
        target.server(),
        Method::PUT,
        &format!(
            "/_matrix/federation/v2/invite/{}/{}",
            super::urlencode(room_id.as_str()),
            super::urlencode(ev.event_id.as_str())
        ),
        Some(json!({ "room_version": ROOM_VERSION, "event": pdu, "invite_room_state": stripped })),
    )
    .await?;
    let cosigned = Event::from_pdu(&answer["event"], room_id)?;
    if cosigned.event_id != ev.event_id {
        return Err(Error::bad(format!("{} changed the invite", target.server())));
    }
    verify_cosignature(state, &answer["event"], target.server()).await?;
    state
        .store
        .write(move |tx| {
            let mut room = tx.require_room(&cosigned.room_id)?;
            authorize_now(tx, &room, &cosigned)?;
            crate::store::events::persist(tx, &mut room, cosigned).map(|_| ())
        })
        .await
}

/// Checks that `server` signed the event `pdu` (the invitee's server co-signing an invite).
pub(super) async fn verify_cosignature(state: &FedState, pdu: &Value, server: &str) -> Result<()> {
    let sigs =
        pdu["signatures"][server].as_object().ok_or_else(|| Error::bad(format!("{server} did not sign the invite")))?;
    let mut keys = std::collections::BTreeMap::new();
    for key_id in sigs.keys().take(4) {
        if let Ok(k) = super::remote_key(state, server, key_id, now_ms()).await {
            keys.insert(key_id.clone(), ruma_common::serde::Base64::new(k));
        }
    }
    // ruma checks every server's signature on the object: ours (the inviter's) too.
    let own_key = ruma_common::serde::Base64::new(crate::keys::unb64(&state.federation.key.public_b64())?);
    let own = std::collections::BTreeMap::from([(state.federation.key.id.clone(), own_key)]);
    let map = std::collections::BTreeMap::from([(server.to_string(), keys), (state.server_name.to_string(), own)]);
    let object = crate::keys::to_canonical(pdu.clone())?;
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    let redacted = ruma_common::canonical_json::redact(object, &rules.redaction, None)
        .map_err(|e| Error::bad(format!("cannot redact the invite: {e}")))?;
    ruma_signatures::verify_json(&map, &redacted).map_err(|e| Error::bad(format!("{server}'s signature: {e}")))
}
