//! Room services: create, join, leave, invite, direct messages and sending. Each action is one
//! write job: read state, check [`rules::authorize`], build the event, persist it.

pub mod aliases;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::ratelimit::RateLimiter;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::events::rules;
use crate::events::*;
use crate::ids::UserId;
use crate::ids::{EventId, RoomId, ServerName};
use crate::store::Store;
use crate::store::Tx;
use crate::store::events::{StoredEvent, build_next, persist, server_of};
use crate::store::rooms::RoomRecord;
use crate::store::writer::Committed;

handle!(
    /// What the room services work with. Cheap to clone.
    Rooms => RoomsInner
);

/// What [`Rooms`] holds.
pub struct RoomsInner {
    /// The database.
    pub store: Store,
    /// This server's name.
    pub server_name: ServerName,
    /// Size and rate limits.
    pub limits: Limits,
    /// Messages per sender.
    pub messages_per_user: RateLimiter,
    /// Rooms created per user.
    pub rooms_per_user: RateLimiter,
}

pub use crate::events::{MAX_NAME_CHARS, MAX_TOPIC_CHARS};
/// Most rooms a restricted room opens to.
pub const MAX_ALLOWED_ROOMS: usize = 10;
/// Longest client transaction id, in bytes.
pub const MAX_TXN_ID: usize = 64;

/// What a user asks for when creating a room.
#[derive(Debug, Clone)]
pub struct CreateRoom {
    /// Display name (required for group rooms).
    pub name: String,
    /// Optional topic.
    pub topic: String,
    /// Public (listed, anyone may join) or invite-only.
    pub join_rule: JoinRule,
    /// Optional alias name: the room is then `#name:this.server` too.
    pub alias: Option<String>,
}

/// The result of a send.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Id of the (first) event for this txn id.
    pub event_id: EventId,
    /// Its stream position.
    pub pos: u64,
}

/// Trims a room name or topic and checks it: not empty if `required`, at most `max_chars`
/// characters, no control characters but newlines. Public for the `api_body` fuzz target.
pub fn clean_text(label: &str, s: &str, max_chars: usize, required: bool) -> Result<String> {
    let t = s.trim();
    if required && t.is_empty() {
        return Err(Error::bad(format!("{label} must not be empty")));
    }
    if t.chars().count() > max_chars {
        return Err(Error::TooLarge(format!("{label} must be at most {max_chars} characters")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::bad(format!("{label} must not contain control characters")));
    }
    Ok(t.to_string())
}

/// Creates a room with the creator as its admin; returns the room id.
pub async fn create_room(state: &Rooms, creator: &UserId, req: CreateRoom) -> Result<RoomId> {
    let name = clean_text("room name", &req.name, MAX_NAME_CHARS, true)?;
    let topic = clean_text("topic", &req.topic, MAX_TOPIC_CHARS, false)?;
    state.rooms_per_user.check(creator.as_str())?;
    let alias = match req.alias.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => {
            let local = match a.split_once(':') {
                Some((l, server)) if server.eq_ignore_ascii_case(state.server_name.as_str()) => l,
                Some(_) => return Err(Error::bad("an alias can only name this server")),
                None => a,
            };
            Some(format!("#{}:{}", aliases::clean_alias_local(local)?, state.server_name))
        }
        None => None,
    };
    let creator = creator.to_string();
    state
        .store
        .write(move |tx| {
            if let Some(a) = alias.as_deref()
                && tx.alias(a)?.is_some()
            {
                return Err(Error::Conflict(format!("{a} is taken")));
            }
            let mut room = start_room(tx, &creator, req.join_rule, false)?;
            if let Some(a) = alias.as_deref() {
                tx.put_alias(a, &room.room_id)?;
            }
            add(tx, &mut room, &creator, NewEvent::state(M_ROOM_NAME, "", json!({ "name": name })))?;
            if !topic.is_empty() {
                add(tx, &mut room, &creator, NewEvent::state(M_ROOM_TOPIC, "", json!({ "topic": topic })))?;
            }
            Ok(room.room_id)
        })
        .await
}

/// A direct-message room as [`open_direct`] left it.
#[derive(Debug, Clone)]
pub struct DirectRoom {
    /// The room.
    pub room_id: RoomId,
    /// The peer is on another server and was not invited yet: their server must co-sign the
    /// invite (federation does that).
    pub invite_remote: bool,
}

/// Opens the direct-message room between `user` and `other`, creating it (and inviting
/// `other`, if local) if they have none that both are still in.
pub async fn open_direct(state: &Rooms, user: &UserId, other: &UserId) -> Result<DirectRoom> {
    if user == other {
        return Err(Error::bad("you cannot message yourself"));
    }
    let remote = other.server() != state.server_name.as_str();
    if !remote {
        require_local_user(state, other)?;
    }
    let (me, peer) = (user.to_string(), other.to_string());
    state
        .store
        .write(move |tx| {
            if let Some(rid) = tx.direct_room(&me, &peer)? {
                let mine = tx.membership(&rid, &me)?;
                let theirs = tx.membership(&rid, &peer)?;
                let peer_in = matches!(theirs, Membership::Join | Membership::Invite);
                if peer_in && mine == Membership::Join {
                    return Ok(DirectRoom { room_id: rid, invite_remote: false });
                }
                if peer_in && mine == Membership::Invite {
                    append(tx, &rid, &me, NewEvent::state(M_ROOM_MEMBER, &me, join_content(tx, &me)?))?;
                    return Ok(DirectRoom { room_id: rid, invite_remote: false });
                }
            }
            let mut room = start_room(tx, &me, JoinRule::Invite, true)?;
            if !remote {
                let mut invite = member_content(Membership::Invite);
                invite["is_direct"] = json!(true);
                add(tx, &mut room, &me, NewEvent::state(M_ROOM_MEMBER, &peer, invite))?;
            }
            tx.put_direct_room(&me, &peer, &room.room_id)?;
            Ok(DirectRoom { room_id: room.room_id, invite_remote: remote })
        })
        .await
}

/// Where a join takes place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinPlan {
    /// This server is in the room (or it is ours): join here.
    Here,
    /// Through another server, tried in this order.
    Through(Vec<String>),
}

/// Decides where `room_id` is joined: here if this server is in it (or it is ours);
/// otherwise through another server: `via`, then the servers the room is known to be on.
pub fn join_plan(state: &Rooms, room_id: &RoomId, via: &[String]) -> Result<JoinPlan> {
    let local = state.server_name.as_str();
    let room = state.store.room(room_id)?;
    let here = match &room {
        Some(r) if !r.partial => {
            let others = r.servers.keys().any(|s| s != local);
            r.servers.get(local).is_some_and(|n| *n > 0) || (!others && server_of(&r.creator) == local)
        }
        _ => false,
    };
    if here {
        return Ok(JoinPlan::Here);
    }
    let mut servers: Vec<String> = via.to_vec();
    if let Some(r) = &room {
        servers.extend(r.servers.keys().cloned());
        servers.push(server_of(&r.creator).to_string());
    }
    servers.retain(|s| !s.is_empty() && s != local);
    servers.dedup();
    if room.is_none() && servers.is_empty() {
        return Err(Error::NotFound("no such room".into()));
    }
    Ok(JoinPlan::Through(servers))
}

/// Joins a room this server is in (see [`join_plan`]): public, private with an invitation,
/// or restricted to the members of other rooms when the user is joined to one of them here.
pub async fn join_here(state: &Rooms, user: &UserId, room_id: &RoomId) -> Result<()> {
    let (u, rid, local) = (user.to_string(), room_id.clone(), state.server_name.to_string());
    state
        .store
        .write(move |tx| {
            // The rules allow a member to "join" again (that is how profile changes travel);
            // asking to join a room one is in is still a conflict here.
            if tx.membership(&rid, &u)? == Membership::Join {
                return Err(Error::Conflict("already a member".into()));
            }
            let mut content = join_content(tx, &u)?;
            let room = tx.require_room(&rid)?;
            if let Some(via) = restricted_authoriser(tx, &room, &u, &local)? {
                content["join_authorised_via_users_server"] = json!(via);
            }
            append(tx, &rid, &u, NewEvent::state(M_ROOM_MEMBER, &u, content)).map(|_| ())
        })
        .await
}

/// The rooms whose members a restricted room lets in (see [`crate::events::allowed_rooms`]).
pub fn allowed_rooms(tx: &Tx<'_>, room: &RoomRecord) -> Result<Vec<RoomId>> {
    let Some(id) = tx.state_event_id(&room.room_id, M_ROOM_JOIN_RULES, "")? else { return Ok(vec![]) };
    Ok(tx.event(&id)?.map(|ev| crate::events::allowed_rooms(&ev.event.content)).unwrap_or_default())
}

/// For `user` joining `room` under a restricted join rule: the member of this server (`local`)
/// who lets them in, when this server sees `user` joined to one of the allowed rooms and has a
/// joined member who may invite (the join then names them in `join_authorised_via_users_server`,
/// and this server co-signs it). `None` when the rule is not restricted, the user is already
/// let in another way (invited, joined), or nobody here can vouch.
pub fn restricted_authoriser(tx: &Tx<'_>, room: &RoomRecord, user: &str, local: &str) -> Result<Option<String>> {
    if !matches!(room.join_rule, JoinRule::Restricted | JoinRule::KnockRestricted)
        || !matches!(tx.membership(&room.room_id, user)?, Membership::Leave | Membership::Knock)
    {
        return Ok(None);
    }
    let mut member_of_allowed = false;
    for allowed in allowed_rooms(tx, room)? {
        if tx.room(&allowed)?.is_some_and(|r| !r.partial) && tx.membership(&allowed, user)? == Membership::Join {
            member_of_allowed = true;
            break;
        }
    }
    if !member_of_allowed {
        return Ok(None);
    }
    let pl = &room.power_levels;
    Ok(tx
        .joined_members(&room.room_id)?
        .into_iter()
        .filter(|m| server_of(m) == local)
        .max_by_key(|m| pl.level_of(room.creators(), m))
        .filter(|m| pl.level_of(room.creators(), m) >= pl.invite))
}

/// Asks to be let into a room whose join rule takes requests (`knock`), here: a moderator
/// may then invite the user (letting them in) or turn them away. `reason` is shown to them.
pub async fn knock_here(state: &Rooms, user: &UserId, room_id: &RoomId, reason: Option<&str>) -> Result<()> {
    let reason = knock_reason(reason)?;
    let (u, rid) = (user.to_string(), room_id.clone());
    state
        .store
        .write(move |tx| {
            let mut content = knock_content(tx, &u)?;
            if let Some(r) = reason {
                content["reason"] = json!(r);
            }
            append(tx, &rid, &u, NewEvent::state(M_ROOM_MEMBER, &u, content)).map(|_| ())
        })
        .await
}

/// The message a request to join carries, checked (at most 1,000 characters, no control
/// characters); `None` when empty.
pub fn knock_reason(reason: Option<&str>) -> Result<Option<String>> {
    Ok(reason.map(|r| clean_text("reason", r, MAX_TOPIC_CHARS, false)).transpose()?.filter(|r| !r.is_empty()))
}

/// The content of a knock by `user`: the membership and their display name.
pub fn knock_content(tx: &Tx<'_>, user: &str) -> Result<Value> {
    let mut content = join_content(tx, user)?;
    content["membership"] = json!("knock");
    Ok(content)
}

/// Checks that `sender` may answer `target`'s request to join `room_id` (letting in takes the
/// invite level, turning away the kick level), and that there is one to answer. Permission
/// first, so that others learn nothing of who asked.
pub fn check_knock_answer(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    accept: bool,
) -> Result<()> {
    let room = state.store.room(room_id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    let pl = &room.power_levels;
    let needed = if accept { pl.invite } else { pl.kick };
    if state.store.membership(room_id, sender.as_str())? != Membership::Join
        || pl.level_of(room.creators(), sender.as_str()) < needed
    {
        return Err(Error::Forbidden("you may not answer requests to join this room".into()));
    }
    if state.store.membership(room_id, target.as_str())? != Membership::Knock {
        return Err(Error::bad("that user has not asked to join"));
    }
    Ok(())
}

/// A moderator's answer to a request to join, here: `true` lets the user in (an invitation
/// they can accept; a user of another server gets it through their server, which is
/// federation's part), `false` turns them away.
pub async fn answer_knock(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    accept: bool,
) -> Result<()> {
    check_knock_answer(state, sender, room_id, target, accept)?;
    let (s, rid, t) = (sender.to_string(), room_id.clone(), target.to_string());
    state
        .store
        .write(move |tx| {
            // Asked again, or answered by another moderator, since the check.
            if tx.membership(&rid, &t)? != Membership::Knock {
                return Err(Error::bad("that user has not asked to join"));
            }
            let wanted = if accept { Membership::Invite } else { Membership::Leave };
            append(tx, &rid, &s, NewEvent::state(M_ROOM_MEMBER, &t, member_content(wanted))).map(|_| ())
        })
        .await
}

/// The servers to tell when `user` declines an invitation from another server to a room this
/// server is not in, or withdraws a request to join one; `None` when leaving is a local matter.
pub fn remote_invitation(state: &Rooms, user: &UserId, room_id: &RoomId) -> Result<Option<Vec<String>>> {
    if let Some(room) = state.store.room(room_id)?.filter(|r| r.partial)
        && matches!(state.store.membership(room_id, user.as_str())?, Membership::Invite | Membership::Knock)
    {
        let mut via: Vec<String> = room.servers.keys().cloned().collect();
        via.push(server_of(&room.creator).to_string());
        via.dedup();
        return Ok(Some(via));
    }
    Ok(None)
}

/// Leaves a room (or declines an invitation; one from another server is only recorded here:
/// telling that server is federation's part).
pub async fn leave(state: &Rooms, user: &UserId, room_id: &RoomId) -> Result<()> {
    let (u, rid) = (user.to_string(), room_id.clone());
    state
        .store
        .write(move |tx| {
            if tx.room(&rid)?.is_some_and(|r| r.partial) {
                // An invitation from another server to a room we are not in, or a request to
                // join one.
                if !matches!(tx.membership(&rid, &u)?, Membership::Invite | Membership::Knock) {
                    return Err(Error::Forbidden("you are not a member of this room".into()));
                }
                return tx.set_membership_only(&rid, &u, Membership::Leave);
            }
            append(tx, &rid, &u, NewEvent::state(M_ROOM_MEMBER, &u, member_content(Membership::Leave))).map(|_| ())
        })
        .await
}

/// Invites a user of this server into a room.
pub async fn invite_local(state: &Rooms, sender: &UserId, room_id: &RoomId, target: &UserId) -> Result<()> {
    require_local_user(state, target)?;
    let (s, rid, t) = (sender.to_string(), room_id.clone(), target.to_string());
    state
        .store
        .write(move |tx| {
            append(tx, &rid, &s, NewEvent::state(M_ROOM_MEMBER, &t, member_content(Membership::Invite))).map(|_| ())
        })
        .await
}

/// Renames a room and/or changes its topic (needs the state level, 50 by default).
pub async fn update_room(
    state: &Rooms,
    user: &UserId,
    room_id: &RoomId,
    name: Option<&str>,
    topic: Option<&str>,
    join_rule: Option<(JoinRule, Vec<RoomId>)>,
) -> Result<()> {
    let name = name.map(|n| clean_text("room name", n, MAX_NAME_CHARS, true)).transpose()?;
    if let Some((rule, allow)) = &join_rule {
        let restricted = matches!(rule, JoinRule::Restricted | JoinRule::KnockRestricted);
        if restricted && allow.is_empty() {
            return Err(Error::bad("a room open to the members of other rooms names at least one of them"));
        }
        if !restricted && !allow.is_empty() {
            return Err(Error::bad("only a room open to the members of other rooms names rooms"));
        }
        if allow.len() > MAX_ALLOWED_ROOMS || allow.contains(room_id) {
            return Err(Error::bad(format!("name 1 to {MAX_ALLOWED_ROOMS} other rooms")));
        }
    }
    let topic = topic.map(|t| clean_text("topic", t, MAX_TOPIC_CHARS, false)).transpose()?;
    if name.is_none() && topic.is_none() && join_rule.is_none() {
        return Err(Error::bad("nothing to change: give a name, a topic or a visibility"));
    }
    let (u, rid) = (user.to_string(), room_id.clone());
    state
        .store
        .write(move |tx| {
            if join_rule.as_ref().is_some_and(|(r, _)| *r != JoinRule::Invite) && tx.require_room(&rid)?.direct {
                return Err(Error::bad("a direct room stays private"));
            }
            if let Some(n) = name {
                append(tx, &rid, &u, NewEvent::state(M_ROOM_NAME, "", json!({ "name": n })))?;
            }
            if let Some(t) = topic {
                append(tx, &rid, &u, NewEvent::state(M_ROOM_TOPIC, "", json!({ "topic": t })))?;
            }
            if let Some((rule, allow)) = join_rule {
                let mut content = json!({ "join_rule": rule.as_str() });
                if !allow.is_empty() {
                    // The user must be in each room they open this one to: members of a room
                    // they cannot see are not theirs to let in.
                    for a in &allow {
                        if tx.membership(a, &u)? != Membership::Join {
                            return Err(Error::Forbidden(format!("you are not a member of {a}")));
                        }
                    }
                    let list: Vec<Value> =
                        allow.iter().map(|a| json!({ "type": "m.room_membership", "room_id": a })).collect();
                    content["allow"] = json!(list);
                }
                append(tx, &rid, &u, NewEvent::state(M_ROOM_JOIN_RULES, "", content))?;
            }
            Ok(())
        })
        .await
}

/// A local user's join: `membership: join` and their display name, if they set one (Matrix
/// keeps profiles in member events).
pub fn join_content(tx: &Tx<'_>, user: &str) -> Result<serde_json::Value> {
    let mut content = member_content(Membership::Join);
    let local = UserId::parse(user).map(|u| u.localpart().to_string()).unwrap_or_default();
    if let Some(name) = tx.display_name_of(&local)? {
        content["displayname"] = json!(name);
    }
    Ok(content)
}

/// Sets the name `user` goes by (or with an empty one, clears it): kept on the account, and
/// sent as a new member event into every room they are in (Matrix's profile propagation).
/// Returns the name as kept, and how many rooms it was sent to.
pub async fn set_display_name(state: &Rooms, user: &UserId, name: &str) -> Result<(Option<String>, usize)> {
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::bad(format!("a display name is at most {MAX_DISPLAY_NAME_CHARS} characters")));
    }
    let name = clean_display_name(name);
    state.messages_per_user.check(user.as_str())?;
    let (u, local) = (user.to_string(), user.localpart().to_string());
    state
        .store
        .write(move |tx| {
            tx.set_display_name(&local, name.clone())?;
            let content = join_content(tx, &u)?;
            let mut sent = 0;
            for rid in tx.joined_room_ids(&u)? {
                let Ok(rid) = RoomId::parse(&rid) else { continue };
                let now = tx.state_event_id(&rid, M_ROOM_MEMBER, &u)?.and_then(|id| tx.event(&id).ok().flatten());
                if now.is_some_and(|e| e.event.content == content) {
                    continue;
                }
                // A room where the rules no longer let the user change it is left as it is.
                match append(tx, &rid, &u, NewEvent::state(M_ROOM_MEMBER, &u, content.clone())) {
                    Ok(_) => sent += 1,
                    Err(Error::Forbidden(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((name, sent))
        })
        .await
}

/// Pins a message of the room in its header, or unpins it (`m.room.pinned_events`, needs that
/// event's state level: 50 by default). Pinning a pinned message, or unpinning one that is
/// not, changes nothing. At most [`MAX_PINNED`] messages are pinned. Returns the pins now.
pub async fn pin(
    state: &Rooms,
    user: &UserId,
    room_id: &RoomId,
    target: &EventId,
    pinned: bool,
) -> Result<Vec<String>> {
    let (u, rid, target) = (user.to_string(), room_id.clone(), target.to_string());
    state
        .store
        .write(move |tx| {
            let room = tx.require_room(&rid)?;
            if tx.membership(&rid, &u)? != Membership::Join {
                return Err(Error::Forbidden("you are not a member of this room".into()));
            }
            let mut list = room.pinned.clone();
            if pinned {
                if list.contains(&target) {
                    return Ok(list);
                }
                if !is_shown_message(&room_message(tx, &rid, &EventId::parse(&target)?)?) {
                    return Err(Error::bad("only a message can be pinned"));
                }
                if list.len() >= MAX_PINNED {
                    return Err(Error::bad(format!("at most {MAX_PINNED} messages can be pinned; unpin one first")));
                }
                list.push(target);
            } else {
                if !list.contains(&target) {
                    return Ok(list);
                }
                list.retain(|p| *p != target);
            }
            append(tx, &rid, &u, NewEvent::state(M_ROOM_PINNED_EVENTS, "", json!({ "pinned": list })))?;
            Ok(list)
        })
        .await
}

/// Whether `user` may change the room's name and topic (joined, with the level for them); the
/// settings form asks even when nothing changed, so its answer reveals nothing to others.
pub fn check_may_edit(state: &Rooms, user: &UserId, room_id: &RoomId) -> Result<()> {
    let room = state.store.room(room_id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    let pl = &room.power_levels;
    let level = pl.event_level(M_ROOM_NAME, true).max(pl.event_level(M_ROOM_TOPIC, true));
    if state.store.membership(room_id, user.as_str())? != Membership::Join
        || pl.level_of(room.creators(), user.as_str()) < level
    {
        return Err(Error::Forbidden("you may not change this room's settings".into()));
    }
    Ok(())
}

/// Sets a member's power level (0-100; 50 moderates, 100 administers). Nobody grants more
/// than their own level (see `rules`).
pub async fn set_power(state: &Rooms, user: &UserId, room_id: &RoomId, target: &UserId, level: i64) -> Result<()> {
    if !(0..=100).contains(&level) {
        return Err(Error::bad("a power level is 0-100"));
    }
    let (u, rid, t) = (user.to_string(), room_id.clone(), target.to_string());
    state
        .store
        .write(move |tx| {
            let room = tx.require_room(&rid)?;
            let mut pl = room.power_levels.clone();
            if t == room.creator {
                return Err(Error::Forbidden("the room's creator always has every right".into()));
            }
            if pl.level_of(room.creators(), &t) > pl.level_of(room.creators(), &u) {
                return Err(Error::Forbidden("you cannot change the level of someone above you".into()));
            }
            // Rooms made before version 12 rules list their creator: the entry goes (v12).
            pl.users.remove(&room.creator);
            if level == pl.users_default {
                pl.users.remove(&t);
            } else {
                pl.users.insert(t.clone(), level);
            }
            append(tx, &rid, &u, NewEvent::state(M_ROOM_POWER_LEVELS, "", pl.to_content())).map(|_| ())
        })
        .await
}

/// What a room moderator does to another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Remove from the room (they may join again if the room lets them).
    Kick,
    /// Remove and keep out.
    Ban,
    /// Lift a ban (the user is then out of the room, free to be invited or to join).
    Unban,
}

/// Kicks, bans or unbans `target`; the power levels decide who may (see `rules`).
pub async fn moderate(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    what: Moderation,
) -> Result<()> {
    if sender == target {
        return Err(Error::bad("use leave to leave a room"));
    }
    let wanted = match what {
        Moderation::Ban => Membership::Ban,
        Moderation::Kick | Moderation::Unban => Membership::Leave,
    };
    let (s, rid, t) = (sender.to_string(), room_id.clone(), target.to_string());
    state
        .store
        .write(move |tx| {
            // Permission first, so that someone who may not moderate learns nothing about the
            // target (banned or not) from the answer.
            let room = tx.room(&rid)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
            let pl = &room.power_levels;
            let needed = match what {
                Moderation::Kick => pl.kick,
                Moderation::Ban | Moderation::Unban => pl.ban,
            };
            let mine = pl.level_of(room.creators(), &s);
            if tx.membership(&rid, &s)? != Membership::Join || mine < needed || mine <= pl.level_of(room.creators(), &t)
            {
                return Err(Error::Forbidden("you may not do that in this room".into()));
            }
            let current = tx.membership(&rid, &t)?;
            match (what, current) {
                (Moderation::Unban, m) if m != Membership::Ban => return Err(Error::bad("that user is not banned")),
                (Moderation::Kick, Membership::Ban) => return Err(Error::bad("that user is banned, not a member")),
                _ => {}
            }
            append(tx, &rid, &s, NewEvent::state(M_ROOM_MEMBER, &t, member_content(wanted))).map(|_| ())
        })
        .await
}

/// Checks a message text (a body, or a formatted body from another server) against
/// `limits.max_message_bytes`: the one size rule for local sends and other servers' events.
pub fn check_message_size(limits: &Limits, text: &str) -> Result<()> {
    if text.len() > limits.max_message_bytes {
        return Err(Error::TooLarge(format!("message must be at most {} bytes", limits.max_message_bytes)));
    }
    Ok(())
}

/// Sends a text message. A repeated `txn_id` from the same user returns the first event.
/// With `reply_to`, it answers that message of the room.
pub async fn send_message(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    body: &str,
    txn_id: &str,
    reply_to: Option<&EventId>,
) -> Result<Sent> {
    submit_message(state, sender, room_id, body, txn_id, reply_to).await?.wait().await
}

/// Checks a message and queues it for the writer; the returned handle yields the result after
/// commit. Messages submitted one after another commit in that order.
pub async fn submit_message(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    body: &str,
    txn_id: &str,
    reply_to: Option<&EventId>,
) -> Result<Committed<Sent>> {
    submit(state, sender, room_id, body, txn_id, Relation::Reply(reply_to), None).await
}

/// A file to send: an upload of the sender's (`mxc://` URI) and what the browser measured of
/// it (an image's size, a recording's length), which only lays it out (an image's size as
/// the server measured it wins).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct FileRef {
    /// `mxc://server/id`, from the upload.
    pub content_uri: String,
    /// Width in pixels (images, video).
    #[serde(default)]
    pub w: Option<u32>,
    /// Height in pixels (images, video).
    #[serde(default)]
    pub h: Option<u32>,
    /// Length in milliseconds (audio, video).
    #[serde(default)]
    pub duration: Option<u64>,
    /// A voice message: its loudness over time (at most [`MAX_WAVEFORM`] values of 0-1024),
    /// sent as Matrix clients send it (`org.matrix.msc1767.audio`, `org.matrix.msc3245.voice`).
    #[serde(default)]
    pub waveform: Option<Vec<u16>>,
}

/// Most values in a voice message's waveform.
pub const MAX_WAVEFORM: usize = 256;

/// Sends a file the sender uploaded, with `caption` (may be empty) as its text: an `m.image`,
/// `m.video`, `m.audio` or `m.file` message (by the file's type) with its `url`, `filename`
/// and `info`. Queued like a message.
pub async fn submit_file(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    file: FileRef,
    caption: &str,
    txn_id: &str,
    reply_to: Option<&EventId>,
) -> Result<Committed<Sent>> {
    submit(state, sender, room_id, caption, txn_id, Relation::Reply(reply_to), Some(file)).await
}

/// Where an image's BlurHash goes in its `info` (MSC2448, as Element sends and reads it).
pub const BLURHASH: &str = "xyz.amorgan.blurhash";

/// Largest width or height taken from a client, pixels.
const MAX_DIMENSION: u32 = 100_000;
/// Longest length taken from a client, milliseconds (a day).
const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;

/// The content of a file message for the upload `rec` at `uri`; `caption` (with its
/// formatting in `text`) says something about it, else the file's name is its body.
fn file_content(uri: &str, rec: &crate::store::media::MediaRecord, file: &FileRef, text: &Value) -> Value {
    let major = rec.content_type.split('/').next().unwrap_or_default();
    let msgtype = match major {
        "image" if crate::media::inline_type(&rec.content_type) => "m.image",
        "video" => "m.video",
        "audio" => "m.audio",
        _ => "m.file",
    };
    let name = rec.name.clone().unwrap_or_else(|| "file".into());
    let mut info = json!({ "mimetype": rec.content_type, "size": rec.size });
    let fits = |d: Option<u32>| d.filter(|d| (1..=MAX_DIMENSION).contains(d));
    if matches!(msgtype, "m.image" | "m.video")
        && let (Some(w), Some(h)) = (fits(rec.width.or(file.w)), fits(rec.height.or(file.h)))
    {
        info["w"] = json!(w);
        info["h"] = json!(h);
    }
    if let Some(hash) = rec.blurhash.as_ref().filter(|_| msgtype == "m.image") {
        info[BLURHASH] = json!(hash);
    }
    if matches!(msgtype, "m.audio" | "m.video")
        && let Some(d) = file.duration.filter(|d| *d <= MAX_DURATION_MS)
    {
        info["duration"] = json!(d);
    }
    let mut content = json!({ "msgtype": msgtype, "body": name, "filename": name, "url": uri, "info": info });
    if msgtype == "m.audio"
        && let Some(wave) = file.waveform.as_ref().filter(|w| !w.is_empty() && w.len() <= MAX_WAVEFORM)
    {
        let wave: Vec<u16> = wave.iter().map(|v| (*v).min(1024)).collect();
        let duration = info.get("duration").cloned().unwrap_or(json!(0));
        content["org.matrix.msc1767.audio"] = json!({ "duration": duration, "waveform": wave });
        content["org.matrix.msc3245.voice"] = json!({});
    }
    if text.get("body").and_then(Value::as_str).is_some_and(|b| !b.trim().is_empty()) {
        content["body"] = text["body"].clone();
        if let Some(html) = text.get("formatted_body") {
            content["format"] = text["format"].clone();
            content["formatted_body"] = html.clone();
        }
    }
    content
}

/// Edits `original`, one of the sender's own messages in the room: its text becomes `body`
/// (an `m.replace` event carrying the new content in `m.new_content`). Queued like a message.
pub async fn submit_edit(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    original: &EventId,
    body: &str,
    txn_id: &str,
) -> Result<Committed<Sent>> {
    submit(state, sender, room_id, body, txn_id, Relation::Edit(original), None).await
}

/// What a message sent is to another: an answer (or nothing), or an edit.
enum Relation<'a> {
    Reply(Option<&'a EventId>),
    Edit(&'a EventId),
}

/// Sends (or, with `replaces`, edits) a message: [`submit_message`], [`submit_edit`].
async fn submit(
    state: &Rooms,
    sender: &UserId,
    room_id: &RoomId,
    body: &str,
    txn_id: &str,
    relation: Relation<'_>,
    file: Option<FileRef>,
) -> Result<Committed<Sent>> {
    let (replaces, reply_to) = match relation {
        Relation::Reply(to) => (None, to),
        Relation::Edit(original) => (Some(original), None),
    };
    check_message_size(&state.limits, body)?;
    if body.trim().is_empty() && file.is_none() {
        return Err(Error::bad("message must not be empty"));
    }
    let file = match file {
        Some(f) => {
            let key = crate::store::media::key_of(&f.content_uri)
                .filter(|k| k.starts_with(&format!("{}/", state.server_name)))
                .ok_or_else(|| Error::bad("content_uri must be the mxc:// URI of a file uploaded here"))?
                .to_string();
            Some((key, f))
        }
        None => None,
    };
    if body.contains('\0') {
        return Err(Error::bad("message must not contain NUL characters"));
    }
    check_txn_id(txn_id)?;
    state.messages_per_user.check(sender.as_str())?;
    let candidates = if replaces.is_some() { Vec::new() } else { mention_candidates(body, &state.server_name) };
    let room_mention = replaces.is_none() && mentions_room(body);
    let mut content = text_message(body);
    // Markdown to HTML here, on the request's task: never on the writer thread.
    if let Some(html) = crate::format::markdown_to_html(body) {
        if html.len() > state.limits.max_message_bytes {
            return Err(Error::TooLarge(format!(
                "message must be at most {} bytes once formatted",
                state.limits.max_message_bytes
            )));
        }
        content["format"] = json!(crate::format::MATRIX_HTML);
        content["formatted_body"] = json!(html);
    }
    if let Some(original) = replaces {
        // As Matrix clients send an edit: a fallback for clients without edits, the new
        // content, and the message it replaces.
        let mut edit = json!({
            "msgtype": "m.text",
            "body": format!("* {body}"),
            "m.new_content": content,
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        });
        if let Some(html) = edit["m.new_content"].get("formatted_body").and_then(|h| h.as_str()).map(str::to_string) {
            edit["format"] = json!(crate::format::MATRIX_HTML);
            edit["formatted_body"] = json!(format!("* {html}"));
        }
        content = edit;
    }
    if let Some(to) = reply_to {
        content["m.relates_to"] = json!({ "m.in_reply_to": { "event_id": to } });
    }
    let (replaces, reply_to) = (replaces.cloned(), reply_to.cloned());
    let (s, rid, txn) = (sender.to_string(), room_id.clone(), txn_id.to_string());
    state
        .store
        .submit(move |tx| {
            if let Some(sent) = earlier_send(tx, &s, &txn, &rid)? {
                return Ok(sent);
            }
            if let Some(original) = &replaces {
                let o = room_message(tx, &rid, original)?;
                if o.event.sender != s {
                    return Err(Error::Forbidden("you can only edit your own messages".into()));
                }
                if !is_shown_message(&o) || crate::store::edits::edited_event_id(&o.event).is_some() {
                    return Err(Error::bad("that event cannot be edited"));
                }
                if crate::store::media::url_of(&o.event).is_some() {
                    return Err(Error::bad("a file cannot be edited; delete it and send it again"));
                }
            }
            let mut mentioned: Vec<String> = Vec::new();
            if let Some(to) = &reply_to {
                let o = room_message(tx, &rid, to)?;
                if !is_shown_message(&o) {
                    return Err(Error::bad("that event cannot be answered"));
                }
                // As Matrix clients do: a reply mentions the sender of the message it answers.
                if o.event.sender != s {
                    mentioned.push(o.event.sender.to_string());
                }
            }
            let local = crate::ids::server_of(&s).to_string();
            for (localpart, uid) in candidates {
                if uid == s || mentioned.contains(&uid) {
                    continue;
                }
                let known = if crate::ids::server_of(&uid) == local {
                    tx.user_exists(&localpart)?
                } else {
                    tx.membership(&rid, &uid)? == Membership::Join
                };
                if known {
                    mentioned.push(uid);
                }
            }
            let everyone = room_mention && {
                let room = tx.require_room(&rid)?;
                room.power_levels.level_of(room.creators(), &s) >= room.power_levels.room_notification_level()
            };
            if !mentioned.is_empty() || everyone {
                content["m.mentions"] = json!({ "user_ids": mentioned });
                if everyone {
                    content["m.mentions"]["room"] = json!(true);
                }
            }
            if let Some((key, f)) = &file {
                let rec = tx.media(key)?.ok_or_else(|| Error::NotFound("no such file".into()))?;
                if rec.uploader != s {
                    return Err(Error::Forbidden("you can only send files you uploaded".into()));
                }
                let mentions = content.get("m.mentions").cloned();
                let relates = content.get("m.relates_to").cloned();
                content = file_content(&f.content_uri, &rec, f, &content);
                if let Some(m) = mentions {
                    content["m.mentions"] = m;
                }
                if let Some(r) = relates {
                    content["m.relates_to"] = r;
                }
            }
            let stored = append(tx, &rid, &s, NewEvent::message(M_ROOM_MESSAGE, content))?;
            tx.put_txn_event(&s, &txn, &stored.event.event_id)?;
            Ok(Sent { event_id: stored.event.event_id.clone(), pos: stored.pos })
        })
        .await
}

/// Where this server holds branches of a room with different states (events from other
/// servers made concurrently with others), sends an empty event that follows them all, as
/// one of the room's members here. Each server works out the state at that event the same
/// way, so a server that soft-failed an event of one branch (and so holds the room's state
/// without it) reaches the same state as the servers that did not, without waiting for the
/// room's next message. Returns whether it sent one.
pub async fn merge_branches(state: &Rooms, room_id: &RoomId) -> Result<bool> {
    let (rid, local) = (room_id.clone(), state.server_name.to_string());
    state
        .store
        .write(move |tx| {
            let Some(room) = tx.room(&rid)? else { return Ok(false) };
            if room.partial || !tx.has_branches(&room)? {
                return Ok(false);
            }
            let Some(sender) = tx.local_joined_member(&rid, &local)? else { return Ok(false) };
            append(tx, &rid, &sender, NewEvent::message(DUMMY_EVENT, json!({})))?;
            Ok(true)
        })
        .await
}

/// Longest reason given for a redaction, in characters.
const MAX_REASON_CHARS: usize = 500;

/// Redacts (deletes) an event of the room: one's own, or anyone's with the room's `redact`
/// level (see [`rules::may_redact`]). Returns the redaction's id; an event already redacted
/// gives the id of the redaction that took it.
pub async fn redact(
    state: &Rooms,
    user: &UserId,
    room_id: &RoomId,
    target: &EventId,
    reason: Option<&str>,
) -> Result<EventId> {
    let mut content = json!({ "redacts": target });
    if let Some(reason) = reason {
        content["reason"] = json!(clean_text("reason", reason, MAX_REASON_CHARS, false)?);
    }
    state.messages_per_user.check(user.as_str())?;
    let (u, rid, target) = (user.to_string(), room_id.clone(), target.clone());
    state
        .store
        .write(move |tx| {
            let room = tx.room(&rid)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
            if tx.membership(&rid, &u)? != Membership::Join {
                return Err(Error::Forbidden("you are not a member of this room".into()));
            }
            let stored = tx.event(&target)?.filter(|s| s.event.room_id == rid && s.pos > 0);
            let stored = stored.ok_or_else(|| Error::NotFound("no such event in this room".into()))?;
            if !rules::may_redact(room.auth_state(), &u, &stored.event.sender) {
                return Err(Error::Forbidden("you may only delete your own messages in this room".into()));
            }
            if let Some(earlier) = stored.redacted_because {
                return Ok(earlier);
            }
            append(tx, &rid, &u, NewEvent::message(M_ROOM_REDACTION, content)).map(|s| s.event.event_id.clone())
        })
        .await
}

/// Reacts to a message of the room with `key` (an emoji, or a short text): an `m.reaction`
/// annotating it. One reaction per user per key: a second is refused (409); a repeated
/// `txn_id` returns the first. Taking a reaction back is redacting it ([`redact`]).
pub async fn react(
    state: &Rooms,
    user: &UserId,
    room_id: &RoomId,
    target: &EventId,
    key: &str,
    txn_id: &str,
) -> Result<Sent> {
    if !crate::store::relations::valid_key(key) {
        return Err(Error::bad(format!(
            "a reaction key must be 1-{} bytes without control characters",
            crate::store::relations::MAX_KEY_BYTES
        )));
    }
    check_txn_id(txn_id)?;
    state.messages_per_user.check(user.as_str())?;
    let content = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": key } });
    let (u, rid, target, txn, key) =
        (user.to_string(), room_id.clone(), target.clone(), txn_id.to_string(), key.to_string());
    state
        .store
        .write(move |tx| {
            if let Some(sent) = earlier_send(tx, &u, &txn, &rid)? {
                return Ok(sent);
            }
            if tx.membership(&rid, &u)? != Membership::Join {
                return Err(Error::Forbidden("you are not a member of this room".into()));
            }
            let o = room_message(tx, &rid, &target)?;
            if !is_shown_message(&o) || crate::store::edits::edited_event_id(&o.event).is_some() {
                return Err(Error::bad("that event cannot be reacted to"));
            }
            if o.reactions.iter().any(|r| r.key == key && r.by.iter().any(|(s, _)| *s == u)) {
                return Err(Error::Conflict("you already reacted with that".into()));
            }
            if o.reactions.len() >= crate::store::relations::MAX_KEYS && !o.reactions.iter().any(|r| r.key == key) {
                return Err(Error::bad("that message has as many different reactions as it can hold"));
            }
            let stored = append(tx, &rid, &u, NewEvent::message(crate::store::relations::M_REACTION, content))?;
            tx.put_txn_event(&u, &txn, &stored.event.event_id)?;
            Ok(Sent { event_id: stored.event.event_id.clone(), pos: stored.pos })
        })
        .await
}

/// An event of the room's timeline, by id (404 when there is none).
fn room_message(tx: &Tx<'_>, room_id: &RoomId, id: &EventId) -> Result<crate::store::events::StoredEvent> {
    let found = tx.event(id)?.filter(|o| o.event.room_id == *room_id && o.pos > 0);
    found.ok_or_else(|| Error::NotFound("no such message in this room".into()))
}

/// Whether `o` is a message that still shows: not a state event, not deleted.
fn is_shown_message(o: &crate::store::events::StoredEvent) -> bool {
    o.event.kind == M_ROOM_MESSAGE && o.event.state_key.is_none() && o.redacted_because.is_none()
}

/// What `user` already sent with `txn_id` (a repeated send returns it), if anything; a
/// `txn_id` used in another room is a conflict.
fn earlier_send(tx: &Tx<'_>, user: &str, txn_id: &str, room_id: &RoomId) -> Result<Option<Sent>> {
    let Some(eid) = tx.txn_event(user, txn_id)? else { return Ok(None) };
    let ev = tx.event(&eid)?.ok_or_else(|| Error::Internal(format!("txn id points at missing event {eid}")))?;
    if ev.event.room_id != *room_id {
        return Err(Error::Conflict("txn_id already used in another room".into()));
    }
    Ok(Some(Sent { event_id: eid, pos: ev.pos }))
}

fn check_txn_id(txn_id: &str) -> Result<()> {
    if txn_id.is_empty() || txn_id.len() > MAX_TXN_ID || !txn_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::bad(format!("txn_id must be 1-{MAX_TXN_ID} printable ASCII characters")));
    }
    Ok(())
}

/// Most users one message can mention.
const MAX_MENTIONS: usize = 20;

/// Users named in a message: `@name` (a user of this server) or `@name:server` (of any
/// server): (localpart, user id) pairs, unique, at most `MAX_MENTIONS`. Whether they exist
/// (here) or are in the room (another server's) is checked in the write job. Public for the
/// `ws_frame` and `api_body` fuzz targets.
pub fn mention_candidates(body: &str, server: &crate::ids::ServerName) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let bytes = body.as_bytes();
    for (i, _) in body.match_indices('@') {
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.') {
            continue; // an e-mail address, not a mention
        }
        let rest = &body[i + 1..];
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))).unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches('.');
        let Ok(local) = crate::ids::normalize_username(name) else { continue };
        let after = &rest[name.len()..];
        let uid = match after.strip_prefix(':') {
            Some(remote) => {
                let end = remote
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
                    .unwrap_or(remote.len());
                let host = remote[..end].trim_end_matches(['.', ':']);
                match crate::ids::ServerName::parse(&host.to_ascii_lowercase()) {
                    Ok(theirs) => UserId::new(&local, &theirs).to_string(),
                    Err(_) => continue,
                }
            }
            None => UserId::new(&local, server).to_string(),
        };
        if !out.iter().any(|(_, u)| *u == uid) {
            out.push((local, uid));
        }
        if out.len() >= MAX_MENTIONS {
            break;
        }
    }
    out
}

/// Whether `body` says `@room` (a word of its own): a mention of everyone in the room, for
/// those whose level allows it (Matrix's `notifications.room`, 50 unless set).
pub fn mentions_room(body: &str) -> bool {
    body.match_indices("@room").any(|(i, _)| {
        let before = body[..i].chars().next_back();
        let after = body[i + 5..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '.')
            && !after.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
            // `@room:server` is a user id; `@room: …` is everyone.
            && !body[i + 5..].strip_prefix(':').is_some_and(|r| r.starts_with(|c: char| c.is_alphanumeric()))
    })
}

/// A read marker that moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMoved {
    /// The new position.
    pub pos: u64,
    /// Unread messages after it.
    pub unread: u64,
    /// Unread mentions after it.
    pub mentions: u64,
}

/// Moves a member's read marker to `pos` (clamped to the room's newest event); `Some` when it
/// moved (the live channel then tells the user's other tabs and the room).
pub async fn mark_read(state: &Rooms, user: &UserId, room_id: &RoomId, pos: u64) -> Result<Option<ReadMoved>> {
    let room = state.store.room(room_id)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    if state.store.membership(room_id, user.as_str())? != Membership::Join {
        return Err(Error::Forbidden("you are not a member of this room".into()));
    }
    let pos = pos.min(room.last_pos);
    if !state.store.mark_read(user.to_string(), room_id.clone(), pos).await? {
        return Ok(None);
    }
    let (unread, mentions) = state.store.unread_counts(user.as_str(), room_id)?;
    Ok(Some(ReadMoved { pos, unread, mentions }))
}

/// The one path for a user's event into an existing room: load, authorize, build, persist.
pub(crate) fn append_event(tx: &mut Tx<'_>, room_id: &RoomId, sender: &str, new: NewEvent) -> Result<Arc<StoredEvent>> {
    append(tx, room_id, sender, new)
}

fn append(tx: &mut Tx<'_>, room_id: &RoomId, sender: &str, new: NewEvent) -> Result<Arc<StoredEvent>> {
    let mut room = tx.require_room(room_id)?;
    rules::authorize(room.auth_state(), sender, &new, |u| tx.membership(room_id, u))?;
    let ev = build_next(tx, &room, sender, new, now_ms())?;
    if ev.state_key.is_some() {
        // A state change must also pass the Matrix rules (power-level changes in full), or
        // other Matrix servers would reject it.
        authorize_at_place(tx, &room, &ev)?;
    }
    persist(tx, &mut room, ev)
}

/// Checks an event against the state before it (the state after its predecessors, resolved
/// where they differ; for an event that follows the room's forward extremities, the current
/// state) by the Matrix authorization rules (ruma-state-res, room version 12). Writes nothing
/// but, at most, a cached resolution.
pub fn authorize_at_place(tx: &Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<()> {
    let before = crate::store::state::state_before(tx, room, ev)?;
    let slot = |kind: &str, key: &str| -> Option<Event> {
        let id = match &before {
            Some(state) => state.get(&(kind.to_string(), key.to_string())).and_then(|id| EventId::parse(id).ok()),
            None => tx.state_event_id(&room.room_id, kind, key).ok().flatten(),
        };
        id.and_then(|id| tx.event(&id).ok().flatten()).map(|s| s.event)
    };
    crate::events::stateres::check_rules(ev, &slot)
}

/// Checks an event against the room's current state by the Matrix authorization rules
/// (ruma-state-res, room version 12): the soft-fail check of a received event.
pub fn authorize_against_current(tx: &Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<()> {
    let slot = |kind: &str, key: &str| -> Option<Event> {
        let id = tx.state_event_id(&room.room_id, kind, key).ok().flatten()?;
        tx.event(&id).ok().flatten().map(|s| s.event)
    };
    crate::events::stateres::check_rules(ev, &slot)
}

/// Builds and persists an event already known to be allowed.
fn add(tx: &mut Tx<'_>, room: &mut RoomRecord, sender: &str, new: NewEvent) -> Result<Arc<StoredEvent>> {
    let ev = build_next(tx, room, sender, new, now_ms())?;
    persist(tx, room, ev)
}

/// Writes the create event and the creator's initial state: membership, power levels, join rule.
fn start_room(tx: &mut Tx<'_>, creator: &str, join_rule: JoinRule, direct: bool) -> Result<RoomRecord> {
    let ts = now_ms();
    let mut content = json!({ "room_version": ROOM_VERSION });
    if direct {
        content["chat.direct"] = json!(true);
    }
    // The create event's hash names the room, so two rooms created by the same user in the same
    // millisecond must still differ: a random nonce goes into the content.
    content["chat.nonce"] = json!(crate::auth::random_id()?);
    let create = Event::build(
        None,
        creator,
        NewEvent::state(M_ROOM_CREATE, "", content),
        Parents { prev_events: vec![], auth_events: vec![], depth: 1 },
        ts,
    );
    let pl = PowerLevels::for_new_room();
    let mut room = RoomRecord::new(&create.room_id, creator, ts, direct, join_rule, pl.clone());
    persist(tx, &mut room, create)?;
    let content = join_content(tx, creator)?;
    add(tx, &mut room, creator, NewEvent::state(M_ROOM_MEMBER, creator, content))?;
    add(tx, &mut room, creator, NewEvent::state(M_ROOM_POWER_LEVELS, "", pl.to_content()))?;
    add(tx, &mut room, creator, NewEvent::state(M_ROOM_JOIN_RULES, "", json!({ "join_rule": join_rule.as_str() })))?;
    Ok(room)
}

fn require_local_user(state: &Rooms, user: &UserId) -> Result<()> {
    if user.server() != state.server_name.as_str() {
        return Err(Error::bad("that user is on another server"));
    }
    if state.store.user(user.localpart())?.is_none() {
        return Err(Error::NotFound(format!("no such user {user}")));
    }
    Ok(())
}
