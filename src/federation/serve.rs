//! What other servers read of the rooms we are in: alias directory, single events, missing
//! events, history (backfill) and the current state's ids. Every route answers only servers
//! that are in the room (or invited to it).

use std::collections::HashSet;

use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FedRequest;
use super::FedState;
use super::membership::MAX_JOIN_EVENTS;
use crate::error::{Error, Result};
use crate::events::*;
use crate::ids::{EventId, RoomId};
use crate::rooms::aliases::{local_alias, parse_alias};
use crate::store::events::StoredEvent;
use crate::store::rooms::RoomRecord;
use crate::store::snapshot::Snapshot;

/// Most events one `get_missing_events` or `backfill` answer carries.
pub const MAX_FETCH: usize = 100;

/// Whether `server` has joined members in `room` (the right to read the room's events).
pub(super) fn server_in_room(room: &RoomRecord, server: &str) -> bool {
    room.servers.get(server).is_some_and(|n| *n > 0)
}

/// The room, if this server takes part in it (a local user joined and its state is here).
pub(super) fn resident_room(state: &FedState, room_id: &RoomId) -> Result<RoomRecord> {
    match state.store.room(room_id)? {
        Some(r) if !r.partial && server_in_room(&r, state.server_name.as_str()) => Ok(r),
        _ => Err(not_resident()),
    }
}

/// The room, if this server takes the events `origin` sends of it: it holds the room's full
/// copy, and a local user is joined or, by the state held here, `origin`'s users are. So a
/// server whose last member was removed by an event that state resolution then undoes (a
/// kick by someone demoted at the same moment) still takes the events that undo it.
pub(super) fn receiving_room(state: &FedState, room_id: &RoomId, origin: &str) -> Result<RoomRecord> {
    match state.store.room(room_id)? {
        Some(r) if !r.partial && (server_in_room(&r, state.server_name.as_str()) || server_in_room(&r, origin)) => {
            Ok(r)
        }
        _ => Err(not_resident()),
    }
}

fn not_resident() -> Error {
    Error::NotFound("this server is not in that room".into())
}

/// A room id from a peer's request path or PDU: a malformed one names no room this server is
/// in (the same answer as for a room it is not in).
pub(super) fn peer_room_id(raw: &str) -> Result<RoomId> {
    RoomId::parse(raw).map_err(|_| not_resident())
}

/// An event named by id in a DAG list (`prev_events`, `auth_events`) or a peer's request; one
/// with a malformed id is not stored here.
pub(super) fn named_event(snapshot: &Snapshot, id: &str) -> Result<Option<StoredEvent>> {
    match EventId::parse(id) {
        Ok(id) => snapshot.event(&id),
        Err(_) => Ok(None),
    }
}

/// A room the calling server may read: it has members in it and so do we.
pub(super) fn readable_room(state: &FedState, room_id: &RoomId, origin: &str) -> Result<RoomRecord> {
    let room = resident_room(state, room_id)?;
    if !server_in_room(&room, origin) {
        return Err(Error::Forbidden("your server has no members in that room".into()));
    }
    Ok(room)
}

/// The room's current state events.
pub(super) fn current_state(state: &FedState, room_id: &RoomId) -> Result<Vec<Event>> {
    let snapshot = state.store.snapshot()?;
    let mut out = Vec::new();
    for (_, id) in snapshot.state_ids(room_id)? {
        if let Some(ev) = snapshot.event(&id)? {
            out.push(ev.event);
        }
    }
    Ok(out)
}

/// Every event reachable through `auth_events` from `from`, not counting `from` itself.
pub(super) fn auth_chain(state: &FedState, from: &[Event]) -> Result<Vec<Event>> {
    let snapshot = state.store.snapshot()?;
    let mut seen: HashSet<String> = from.iter().map(|e| e.event_id.to_string()).collect();
    let mut todo: Vec<String> = from.iter().flat_map(|e| e.auth_events.iter().cloned()).collect();
    let mut out = Vec::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) || out.len() >= MAX_JOIN_EVENTS {
            continue;
        }
        if let Some(ev) = named_event(&snapshot, &id)? {
            todo.extend(ev.event.auth_events.iter().cloned());
            out.push(ev.event);
        }
    }
    Ok(out)
}

pub(super) fn wire(state: &FedState, events: &[Event]) -> Result<Vec<Value>> {
    events.iter().map(|e| state.federation.wire_pdu(state.server_name.as_str(), e)).collect()
}

/// The query of `GET /query/directory`.
#[derive(Deserialize)]
pub struct DirectoryQuery {
    room_alias: String,
}

/// `GET /_matrix/federation/v1/query/directory?room_alias=#name:us`.
pub async fn query_directory(
    State(state): State<FedState>,
    q: std::result::Result<Query<DirectoryQuery>, axum::extract::rejection::QueryRejection>,
    _req: FedRequest,
) -> Result<axum::Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad(e.body_text()))?;
    let alias = parse_alias(&q.room_alias)?;
    if alias.1 != state.server_name.as_str() {
        return Err(Error::bad("that alias is not on this server"));
    }
    let room_id = local_alias(&state.store, &state.server_name, &alias.0)?
        .ok_or_else(|| Error::NotFound("no such alias".into()))?;
    let room = state.store.room(&room_id)?.ok_or_else(|| Error::NotFound("no such alias".into()))?;
    let mut servers: Vec<&str> = vec![state.server_name.as_str()];
    servers.extend(room.servers.keys().map(String::as_str).filter(|s| *s != state.server_name.as_str()).take(9));
    Ok(axum::Json(json!({ "room_id": room_id, "servers": servers })))
}

/// The body of `POST /get_missing_events`.
#[derive(Deserialize)]
pub struct MissingBody {
    #[serde(default)]
    earliest_events: Vec<String>,
    latest_events: Vec<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`: events before `latest_events`
/// back to `earliest_events`, oldest first.
pub async fn get_missing_events(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let room_id = peer_room_id(&room_id)?;
    readable_room(&state, &room_id, &req.origin)?;
    let body: MissingBody = serde_json::from_value(req.content.unwrap_or(Value::Null))
        .map_err(|e| Error::bad(format!("bad get_missing_events body: {e}")))?;
    let limit = body.limit.unwrap_or(10).clamp(1, MAX_FETCH);
    let stop: HashSet<&str> = body.earliest_events.iter().take(100).map(String::as_str).collect();
    let snapshot = state.store.snapshot()?;
    let mut seen: HashSet<String> = body.latest_events.iter().take(20).cloned().collect();
    let mut frontier: Vec<String> = Vec::new();
    for id in body.latest_events.iter().take(20) {
        if let Some(e) = named_event(&snapshot, id)?.filter(|e| e.event.room_id == room_id) {
            frontier.extend(e.event.prev_events);
        }
    }
    let mut out: Vec<Event> = Vec::new();
    // Walk back breadth-first, newest first, so a limit keeps the events nearest the latest.
    while !frontier.is_empty() && out.len() < limit {
        let mut next = Vec::new();
        for id in frontier {
            if out.len() >= limit {
                break;
            }
            if stop.contains(id.as_str()) || !seen.insert(id.clone()) {
                continue;
            }
            if let Some(e) = named_event(&snapshot, &id)?.filter(|e| e.event.room_id == room_id && e.pos > 0) {
                next.extend(e.event.prev_events.iter().cloned());
                out.push(e.event);
            }
        }
        frontier = next;
    }
    out.sort_by_key(|e| e.depth);
    Ok(axum::Json(json!({ "events": wire(&state, &out)? })))
}

/// `GET /_matrix/federation/v1/event/{eventId}`.
pub async fn get_event_route(
    State(state): State<FedState>,
    Path(event_id): Path<String>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let no_such = || Error::NotFound("no such event".into());
    let event_id = EventId::parse(&event_id).map_err(|_| no_such())?;
    let ev = state.store.event(&event_id)?.ok_or_else(no_such)?;
    readable_room(&state, &ev.event.room_id, &req.origin)?;
    Ok(axum::Json(json!({
        "origin": state.server_name.as_str(),
        "origin_server_ts": now_ms(),
        "pdus": [state.federation.wire_pdu(state.server_name.as_str(), &ev.event)?],
    })))
}

/// Most `v` parameters of one `GET /backfill` looked at.
const MAX_BACKFILL_FROM: usize = 20;

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=$event&v=$other&limit=N`: up to N events
/// of the room's timeline ending with the newest of the `v` events we hold (Matrix servers
/// name each of their backward extremities; without `v`: the newest), oldest first.
pub async fn backfill(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    q: std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad(e.body_text()))?;
    let room_id = peer_room_id(&room_id)?;
    readable_room(&state, &room_id, &req.origin)?;
    let mut limit = 10;
    let mut from = Vec::new();
    for (k, v) in q {
        match k.as_str() {
            "limit" => limit = v.parse::<usize>().map_err(|_| Error::bad("limit must be a number"))?,
            "v" if from.len() < MAX_BACKFILL_FROM => from.push(v),
            _ => {}
        }
    }
    let limit = limit.clamp(1, MAX_FETCH);
    let end = if from.is_empty() {
        u64::MAX
    } else {
        let mut newest = None;
        for v in &from {
            let Ok(id) = EventId::parse(v) else { continue };
            if let Some(ev) = state.store.event(&id)?.filter(|e| e.event.room_id == room_id && e.pos > 0) {
                newest = newest.max(Some(ev.pos));
            }
        }
        newest.ok_or_else(|| Error::NotFound("no such event in that room".into()))? + 1
    };
    let (mut page, _) = state.store.timeline(&room_id, Some(end), limit)?;
    page.reverse();
    let events: Vec<Event> = page.into_iter().map(|s| s.event).collect();
    Ok(axum::Json(json!({
        "origin": state.server_name.as_str(),
        "origin_server_ts": now_ms(),
        "pdus": wire(&state, &events)?,
    })))
}

/// The query of `GET /state_ids`.
#[derive(Deserialize)]
pub struct StateIdsQuery {
    event_id: Option<String>,
}

/// The state before the queried `event_id` (or the current state, without one) and its auth
/// chain, for a server in the room: what `state_ids` and `state` answer.
fn state_at(
    state: &FedState,
    room_id: &str,
    q: std::result::Result<Query<StateIdsQuery>, axum::extract::rejection::QueryRejection>,
    origin: &str,
) -> Result<(Vec<Event>, Vec<Event>)> {
    let Query(q) = q.map_err(|e| Error::bad(e.body_text()))?;
    let room_id = &peer_room_id(room_id)?;
    readable_room(state, room_id, origin)?;
    let events = match q.event_id.as_deref() {
        None => current_state(state, room_id)?,
        Some(id) => {
            let snapshot = state.store.snapshot()?;
            let unknown = || Error::NotFound("no state of that event here".into());
            let ev = named_event(&snapshot, id)?.filter(|e| e.event.room_id == *room_id).ok_or_else(unknown)?;
            let ids = snapshot.state_before(&ev.event)?.ok_or_else(unknown)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids.values() {
                if let Some(e) = named_event(&snapshot, id)? {
                    out.push(e.event);
                }
            }
            out
        }
    };
    let chain = auth_chain(state, &events)?;
    Ok((events, chain))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`: ids of the room's state before
/// the event (without `event_id`, its current state) and of that state's auth chain. `404` for
/// an event whose state this server does not hold (one of a gap, or stored before it kept the
/// state per event).
pub async fn state_ids(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    q: std::result::Result<Query<StateIdsQuery>, axum::extract::rejection::QueryRejection>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let (events, chain) = state_at(&state, &room_id, q, &req.origin)?;
    Ok(axum::Json(json!({
        "pdu_ids": events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        "auth_chain_ids": chain.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
    })))
}

/// `GET /_matrix/federation/v1/state/{roomId}?event_id=`: the same as `state_ids`, with the
/// events themselves (`pdus`, `auth_chain`).
pub async fn state_events(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    q: std::result::Result<Query<StateIdsQuery>, axum::extract::rejection::QueryRejection>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let (events, chain) = state_at(&state, &room_id, q, &req.origin)?;
    Ok(axum::Json(json!({ "pdus": wire(&state, &events)?, "auth_chain": wire(&state, &chain)? })))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`: the event's whole auth chain,
/// the room's create event included.
pub async fn event_auth(
    State(state): State<FedState>,
    Path((room_id, event_id)): Path<(String, String)>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let room_id = peer_room_id(&room_id)?;
    readable_room(&state, &room_id, &req.origin)?;
    let snapshot = state.store.snapshot()?;
    let ev = named_event(&snapshot, &event_id)?
        .filter(|e| e.event.room_id == room_id)
        .ok_or_else(|| Error::NotFound("no such event in that room".into()))?;
    let mut chain = auth_chain(&state, std::slice::from_ref(&ev.event))?;
    // Room version 12 names no create event in `auth_events`; it authorises every event.
    let create = room_id.create_event_id();
    if !chain.iter().any(|e| e.event_id == create)
        && let Some(c) = snapshot.event(&create)?
    {
        chain.push(c.event);
    }
    Ok(axum::Json(json!({ "auth_chain": wire(&state, &chain)? })))
}
