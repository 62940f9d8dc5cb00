//! Ephemeral data across servers: typing notices, read receipts and presence, as Matrix EDUs
//! (`m.typing`, `m.receipt`, `m.presence`) in transactions, and who is in the calls a server
//! holds (`chat.call.roster`, ours; other servers ignore an EDU type they do not know).
//!
//! Outbound, an EDU waits in memory in its destination's queue (at most [`QUEUE_PER_PEER`],
//! the oldest dropped first) and goes in a transaction of its own on the destination's
//! message lane, after any events queued there ([`super::sender`]); one that cannot be sent
//! within [`MAX_AGE`] is dropped, as a typing notice or receipt that late says nothing true.
//! Inbound, an EDU counts only for users of the sending server who are joined to the room
//! here (presence: to some room here); a receipt moves the reader's read marker (stored, so a reload shows it) and both are
//! handed to the live channel as [`Incoming`] (this layer does not know the hub).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::FedState;
use crate::events::{Membership, now_ms};
use crate::ids::{EventId, RoomId, UserId, server_of};

/// Most EDUs in one transaction (Matrix's limit).
pub const MAX_EDUS: usize = 100;
/// Most EDUs waiting for one destination.
pub const QUEUE_PER_PEER: usize = 100;
/// An EDU not sent by then is dropped.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Most rooms, and readers per room, one received `m.receipt` may name; most users one
/// `m.presence` may name.
pub const MAX_RECEIPTS: usize = 100;
/// Most rooms of one user looked at for where their presence goes.
pub const MAX_PRESENCE_ROOMS: usize = 1000;

/// What another server told us, for the live channel to show.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A remote member started or stopped typing.
    Typing {
        /// The room.
        room: RoomId,
        /// Who.
        user: String,
        /// Started (true) or stopped.
        typing: bool,
    },
    /// A remote user's presence (`online`, `idle` or `offline`, as the live channel says it).
    Presence {
        /// Who.
        user: String,
        /// `online`, `idle` or `offline`.
        presence: &'static str,
        /// The rooms here they are joined to.
        rooms: Vec<RoomId>,
    },
    /// Who is in the calls another server holds in a room (`chat.call.roster`), checked.
    CallRoster {
        /// The room.
        room: RoomId,
        /// The server that holds the calls.
        origin: String,
        /// Its calls there now (none: they ended).
        calls: Vec<crate::calls::CallPeople>,
    },
    /// A remote member's read marker moved to `pos` (already stored).
    Receipt {
        /// The room.
        room: RoomId,
        /// Who.
        user: String,
        /// The stream position they have read up to.
        pos: u64,
    },
}

/// EDUs waiting per destination.
#[derive(Default)]
pub struct EduQueues(Mutex<HashMap<String, VecDeque<(Instant, Value)>>>);

impl EduQueues {
    fn push(&self, dest: &str, edu: Value) {
        let Ok(mut q) = self.0.lock() else { return };
        if !q.contains_key(dest) && q.len() >= super::sender::MAX_PEERS {
            return;
        }
        let queue = q.entry(dest.to_string()).or_default();
        if queue.len() >= QUEUE_PER_PEER {
            queue.pop_front();
        }
        queue.push_back((Instant::now(), edu));
    }

    /// Takes up to [`MAX_EDUS`] of `dest`'s waiting EDUs younger than [`MAX_AGE`], oldest first.
    pub fn take(&self, dest: &str) -> Vec<Value> {
        let Ok(mut q) = self.0.lock() else { return Vec::new() };
        let Some(queue) = q.get_mut(dest) else { return Vec::new() };
        let mut out = Vec::new();
        while out.len() < MAX_EDUS
            && let Some((at, edu)) = queue.pop_front()
        {
            if at.elapsed() < MAX_AGE {
                out.push(edu);
            }
        }
        if queue.is_empty() {
            q.remove(dest);
        }
        out
    }
}

/// The other servers with joined members in `room`.
fn destinations(state: &FedState, room: &RoomId) -> Vec<String> {
    let local = state.server_name.as_str();
    let mut out: Vec<String> = match state.store.members(room) {
        Ok(m) => m
            .into_iter()
            .filter(|(u, m)| *m == Membership::Join && server_of(u) != local)
            .map(|(u, _)| server_of(&u).to_string())
            .collect(),
        Err(e) => {
            tracing::warn!(%room, error = %e, "cannot list the room's servers for an EDU");
            Vec::new()
        }
    };
    out.sort_unstable();
    out.dedup();
    out
}

fn queue(state: &FedState, room: &RoomId, edu: Value) {
    send_to(state, destinations(state, room), edu);
}

/// Queues `edu` for each of `dests` and rings their lanes.
fn send_to(state: &FedState, dests: Vec<String>, edu: Value) {
    for dest in dests {
        state.federation.edus.push(&dest, edu.clone());
        super::sender::ring(state, &dest);
    }
}

/// Tells the room's other servers that our `user` started or stopped typing in `room`.
pub fn typing(state: &FedState, user: &UserId, room: &RoomId, typing: bool) {
    let content = json!({ "room_id": room.as_str(), "user_id": user.as_str(), "typing": typing });
    queue(state, room, json!({ "edu_type": "m.typing", "content": content }));
}

/// Tells the room's other servers that our `user` has read `room` up to stream position `pos`
/// (as a receipt for the event there), unless they keep their receipts private.
pub fn read(state: &FedState, user: &UserId, room: &RoomId, pos: u64) {
    let hidden = state.store.user(user.localpart()).map(|u| u.is_none_or(|u| u.hide_receipts));
    if hidden.unwrap_or(true) {
        return;
    }
    let Ok((events, _)) = state.store.timeline(room, Some(pos.saturating_add(1)), 1) else { return };
    let Some(ev) = events.first() else { return };
    let receipt = json!({ "event_ids": [ev.event.event_id.as_str()], "data": { "ts": now_ms() } });
    let content = json!({ room.as_str(): { "m.read": { user.as_str(): receipt } } });
    queue(state, room, json!({ "edu_type": "m.receipt", "content": content }));
}

/// Tells the room's other servers who is in the calls this server holds in `room`
/// (`chat.call.roster`; see [`crate::calls::host`]).
pub fn call_roster(state: &FedState, room: &RoomId, calls: &[crate::calls::CallPeople]) {
    let content = crate::calls::host::roster_content(room, calls);
    queue(state, room, json!({ "edu_type": "chat.call.roster", "content": content }));
}

/// Tells the servers of every room our `user` is in their presence (`online`, `idle`,
/// `offline`; Matrix says `unavailable` for idle).
pub fn presence(state: &FedState, user: &UserId, presence: &str) {
    let Ok(rooms) = state.store.joined_rooms(user.as_str()) else { return };
    let mut dests: Vec<String> = Vec::new();
    for room in rooms.iter().take(MAX_PRESENCE_ROOMS) {
        let Ok(room) = RoomId::parse(room) else { continue };
        dests.extend(destinations(state, &room));
    }
    dests.sort_unstable();
    dests.dedup();
    let matrix = if presence == "idle" { "unavailable" } else { presence };
    let push = json!({
        "user_id": user.as_str(),
        "presence": matrix,
        "currently_active": presence == "online",
        "last_active_ago": 0,
    });
    send_to(state, dests, json!({ "edu_type": "m.presence", "content": { "push": [push] } }));
}

/// The EDUs of a transaction from `origin`: typing notices and read receipts of its users in
/// rooms they are joined to here, and their presence if they share a room with us; anything
/// else is ignored, as the spec asks.
pub async fn receive(state: &FedState, origin: &str, edus: &[Value]) {
    for edu in edus.iter().take(MAX_EDUS) {
        let content = &edu["content"];
        match edu["edu_type"].as_str() {
            Some("m.typing") => {
                let (Some(room), Some(user)) = (content["room_id"].as_str(), content["user_id"].as_str()) else {
                    continue;
                };
                let Some(room) = member_room(state, origin, room, user) else { continue };
                let typing = content["typing"].as_bool().unwrap_or(false);
                let _ = state.ephemeral.try_send(Incoming::Typing { room, user: user.to_string(), typing });
            }
            Some("m.presence") => {
                for p in content["push"].as_array().into_iter().flatten().take(MAX_RECEIPTS) {
                    let Some(user) = p["user_id"].as_str() else { continue };
                    if !UserId::parse(user).is_ok_and(|u| u.server() == origin) {
                        continue;
                    }
                    let presence = match p["presence"].as_str() {
                        Some("online") => "online",
                        Some("unavailable") => "idle",
                        Some("offline") => "offline",
                        _ => continue,
                    };
                    let Ok(rooms) = state.store.joined_rooms(user) else { continue };
                    let rooms: Vec<RoomId> =
                        rooms.iter().take(MAX_PRESENCE_ROOMS).filter_map(|r| RoomId::parse(r).ok()).collect();
                    if rooms.is_empty() {
                        continue;
                    }
                    let _ = state.ephemeral.try_send(Incoming::Presence { user: user.to_string(), presence, rooms });
                }
            }
            Some("chat.call.roster") => {
                let Some((room, calls)) = crate::calls::host::roster_from(&state.store, origin, content) else {
                    continue;
                };
                let _ = state.ephemeral.try_send(Incoming::CallRoster { room, origin: origin.to_string(), calls });
            }
            Some("m.receipt") => {
                let Some(rooms) = content.as_object() else { continue };
                for (room, kinds) in rooms.iter().take(MAX_RECEIPTS) {
                    let Some(readers) = kinds["m.read"].as_object() else { continue };
                    for (user, receipt) in readers.iter().take(MAX_RECEIPTS) {
                        let Some(room) = member_room(state, origin, room, user) else { continue };
                        let ids = receipt["event_ids"].as_array().into_iter().flatten().take(MAX_RECEIPTS);
                        let pos = ids
                            .filter_map(|id| EventId::parse(id.as_str()?).ok())
                            .filter_map(|id| state.store.event(&id).ok().flatten())
                            .filter(|e| e.event.room_id == room && e.pos > 0)
                            .map(|e| e.pos)
                            .max();
                        let Some(pos) = pos else { continue };
                        match state.store.mark_read(user.clone(), room.clone(), pos).await {
                            Ok(true) => {
                                let _ = state.ephemeral.try_send(Incoming::Receipt { room, user: user.clone(), pos });
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(origin, error = %e, "cannot store a remote read receipt"),
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `room` if `user` is `origin`'s and joined to that room here.
fn member_room(state: &FedState, origin: &str, room: &str, user: &str) -> Option<RoomId> {
    let room = RoomId::parse(room).ok()?;
    let ok = UserId::parse(user).is_ok_and(|u| u.server() == origin)
        && state.store.membership(&room, user).is_ok_and(|m| m == Membership::Join);
    ok.then_some(room)
}
