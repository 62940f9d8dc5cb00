//! Rooms across servers: the endpoints other servers call (directory, make_join/send_join,
//! invite, send, event, get_missing_events, backfill, state_ids) and the calls we make to them
//! (joining a remote room, inviting a remote user, receiving and catching up).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use redb::ReadableTable;
use serde::Deserialize;
use serde_json::{Value, json};

use super::FedRequest;
use super::FedState;
use super::pdu::{check_auth_events, parse_verified};
use crate::error::{Error, Result};
use crate::events::rules;
use crate::events::*;
use crate::ids::UserId;
use crate::rooms::aliases::{local_alias, parse_alias};
use crate::store::events::{
    StoredEvent, apply_state, enqueue, get_event, persist_received, persist_superseded, server_of,
};
use crate::store::rooms::RoomRecord;
use crate::store::tables::*;
use crate::store::{get_json, put_json};

/// Most events one `get_missing_events` or `backfill` answer carries.
pub const MAX_FETCH: usize = 100;
/// How many rounds of `get_missing_events` one received event may trigger.
const MISSING_ROUNDS: u32 = 10;
/// Most events of state plus auth chain a join accepts.
const MAX_JOIN_EVENTS: usize = 20_000;
/// Events of recent history fetched when joining a remote room.
const JOIN_HISTORY: usize = 50;
/// Inbound transaction ids remembered per origin are kept this long (ms).
const TXN_MEMORY_MS: u64 = 24 * 3600 * 1000;

/// Serialises the processing of received events per room, so that an event is stored only
/// after the events it follows.
#[derive(Default)]
pub struct RoomLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl RoomLocks {
    fn get(&self, room_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut m) = self.0.lock() else { return Arc::new(tokio::sync::Mutex::new(())) };
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(room_id.to_string()).or_default().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading what we have.

/// Whether `server` has joined members in `room` (the right to read the room's events).
fn server_in_room(room: &RoomRecord, server: &str) -> bool {
    room.servers.get(server).is_some_and(|n| *n > 0)
}

/// The room, if this server takes part in it (a local user joined and its state is here).
fn resident_room(state: &FedState, room_id: &str) -> Result<RoomRecord> {
    match state.store.room(room_id)? {
        Some(r) if !r.partial && server_in_room(&r, state.server_name.as_str()) => Ok(r),
        _ => Err(Error::NotFound("this server is not in that room".into())),
    }
}

/// A room the calling server may read: it has members in it and so do we.
fn readable_room(state: &FedState, room_id: &str, origin: &str) -> Result<RoomRecord> {
    let room = resident_room(state, room_id)?;
    if !server_in_room(&room, origin) {
        return Err(Error::Forbidden("your server has no members in that room".into()));
    }
    Ok(room)
}

/// The room's current state events.
fn current_state(state: &FedState, room_id: &str) -> Result<Vec<Event>> {
    let r = state.store.read()?;
    let table = r.open_table(ROOM_STATE)?;
    let events = r.open_table(EVENTS)?;
    let mut out = Vec::new();
    for row in table.range((room_id, "", "")..=(room_id, "\u{10ffff}", "\u{10ffff}"))? {
        let (_, v) = row?;
        if let Some(ev) = get_event(&events, v.value())? {
            out.push(ev.event);
        }
    }
    Ok(out)
}

/// Every event reachable through `auth_events` from `from`, not counting `from` itself.
fn auth_chain(state: &FedState, from: &[Event]) -> Result<Vec<Event>> {
    let r = state.store.read()?;
    let events = r.open_table(EVENTS)?;
    let mut seen: HashSet<String> = from.iter().map(|e| e.event_id.clone()).collect();
    let mut todo: Vec<String> = from.iter().flat_map(|e| e.auth_events.iter().cloned()).collect();
    let mut out = Vec::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) || out.len() >= MAX_JOIN_EVENTS {
            continue;
        }
        if let Some(ev) = get_event(&events, &id)? {
            todo.extend(ev.event.auth_events.iter().cloned());
            out.push(ev.event);
        }
    }
    Ok(out)
}

fn wire(state: &FedState, events: &[Event]) -> Result<Vec<Value>> {
    events.iter().map(|e| state.federation.wire_pdu(state.server_name.as_str(), e)).collect()
}

// ---------------------------------------------------------------------------------------------
// Endpoints.

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

async fn make_membership(
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
    let room = resident_room(&state, &room_id)?;
    let new = NewEvent::state(M_ROOM_MEMBER, user.as_str(), member_content(membership));
    let r = state.store.read()?;
    let members = r.open_table(ROOM_MEMBERS)?;
    rules::authorize(room.auth_state(), user.as_str(), &new, |u| {
        crate::store::rooms::membership_of(&members, &room_id, u)
    })?;
    let template = template(&state, &room, user.as_str(), new)?;
    Ok(axum::Json(json!({ "room_version": ROOM_VERSION, "event": template })))
}

/// The unsigned event another server's user would send next in `room`.
fn template(state: &FedState, room: &RoomRecord, sender: &str, new: NewEvent) -> Result<Value> {
    let r = state.store.read()?;
    let table = r.open_table(ROOM_STATE)?;
    let rid = room.room_id.as_str();
    let mut auth_events = Vec::new();
    // Room version 12: the create event is implied by the room id, not listed.
    for (kind, key) in [(M_ROOM_POWER_LEVELS, ""), (M_ROOM_JOIN_RULES, ""), (M_ROOM_MEMBER, sender)] {
        if let Some(id) = table.get((rid, kind, key))? {
            auth_events.push(id.value().to_string());
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

/// The shared part of `send_join` and `send_leave`: verify the caller's user's own membership
/// event, check it, store it and send it to the room's other servers. Returns the PDU.
async fn take_membership(
    state: &FedState,
    room_id: &str,
    event_id: &str,
    req: FedRequest,
    membership: Membership,
) -> Result<Value> {
    let pdu = req.content.ok_or_else(|| Error::bad("the membership event is missing"))?;
    let (state, room_id) = (state.clone(), room_id.to_string());
    resident_room(&state, &room_id)?;
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
                let mut room: RoomRecord = get_json(&tx.txn.open_table(ROOMS)?, &ev2.room_id)?
                    .ok_or_else(|| Error::NotFound("no such room".into()))?;
                authorize_now(tx, &room, &ev2)?;
                let stored = persist_received(tx, &mut room, ev2)?;
                enqueue(tx, &room, &stored, &[origin.as_str()])
            })
            .await?;
    }
    Ok(pdu)
}

/// Checks an event against the room's current state (soft-fail: an event that fails is not
/// stored and never shown).
fn authorize_now(tx: &crate::store::Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<()> {
    if ev.kind == M_ROOM_CREATE {
        return Err(Error::bad("a room is created only once"));
    }
    let members = tx.txn.open_table(ROOM_MEMBERS)?;
    let new = NewEvent { kind: ev.kind.clone(), state_key: ev.state_key.clone(), content: ev.content.clone() };
    rules::authorize(room.auth_state(), &ev.sender, &new, |u| {
        crate::store::rooms::membership_of(&members, &room.room_id, u)
    })
    .map_err(|e| Error::Forbidden(format!("soft-failed against current state: {e}")))
}

/// Checks `ev` against the state its own auth events name, all of which must be stored here
/// (or be among `queued`, accepted but not yet committed).
fn check_known_auth_events(state: &FedState, ev: &Event, queued: &HashMap<String, Event>) -> Result<()> {
    let r = state.store.read()?;
    let events = r.open_table(EVENTS)?;
    let mut auth: HashMap<String, Event> = HashMap::new();
    let create_id = format!("${}", ev.room_id.strip_prefix('!').unwrap_or_default());
    for id in ev.auth_events.iter().chain([&create_id]) {
        if let Some(a) = queued.get(id) {
            auth.insert(id.clone(), a.clone());
        } else if let Some(a) = get_event(&events, id)? {
            auth.insert(id.clone(), a.event);
        }
    }
    check_auth_events(ev, |id| auth.get(id))
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
    ev.sign(state.server_name.as_str(), &state.federation.key)?;
    let cosigned = ev.pdu();
    let stripped = StrippedState::read(&body.invite_room_state, &ev.sender);
    let origin = req.origin.clone();
    state
        .store
        .write(move |tx| {
            let existing: Option<RoomRecord> = get_json(&tx.txn.open_table(ROOMS)?, &ev.room_id)?;
            let mut room = match existing {
                // We are in the room already: the invite reaches us as a room event too.
                Some(r) if !r.partial => return Ok(()),
                Some(r) => r,
                None => stripped.stub_room(&ev.room_id, &origin),
            };
            if tx.txn.open_table(EVENTS)?.get(ev.event_id.as_str())?.is_some() {
                return Ok(());
            }
            if room.direct {
                let (me, peer) = (ev.state_key.clone().unwrap_or_default(), ev.sender.clone());
                let mut direct = tx.txn.open_table(DIRECT_ROOMS)?;
                direct.insert((me.as_str(), peer.as_str()), ev.room_id.as_str())?;
                direct.insert((peer.as_str(), me.as_str()), ev.room_id.as_str())?;
            }
            persist_received(tx, &mut room, ev).map(|_| ())
        })
        .await?;
    Ok(axum::Json(json!({ "event": cosigned })))
}

/// What an invitation tells about a room before joining it.
struct StrippedState {
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
                Some(M_ROOM_NAME) => s.name = text("name").chars().take(crate::rooms::MAX_NAME_CHARS).collect(),
                Some(M_ROOM_TOPIC) => s.topic = text("topic"),
                Some(M_ROOM_JOIN_RULES) if text("join_rule") == "public" => s.join_rule = JoinRule::Public,
                Some(M_ROOM_CREATE) => {
                    s.direct = e["content"]["chat.direct"].as_bool().unwrap_or(false);
                    if let Some(c) = e["sender"].as_str().filter(|c| UserId::parse(c).is_ok()) {
                        s.creator = c.to_string();
                    }
                }
                _ => {}
            }
        }
        s
    }

    fn stub_room(self, room_id: &str, origin: &str) -> RoomRecord {
        let pl = PowerLevels::for_new_room("");
        let mut room = RoomRecord::new(room_id, &self.creator, now_ms(), self.direct, self.join_rule, pl);
        room.name = self.name;
        room.topic = self.topic;
        room.servers = [(origin.to_string(), 0)].into_iter().collect();
        room.partial = true;
        room
    }
}

/// The body of `PUT /send/{txnId}`.
#[derive(Deserialize)]
pub struct TransactionBody {
    #[serde(default)]
    pdus: Vec<Value>,
}

/// `PUT /_matrix/federation/v1/send/{txnId}`: events from the origin server. Each PDU gets its
/// own result; a transaction id seen before is answered without processing it again.
pub async fn receive_transaction(
    State(state): State<FedState>,
    Path(txn_id): Path<String>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    if txn_id.is_empty() || txn_id.len() > 200 {
        return Err(Error::bad("bad transaction id"));
    }
    let body: TransactionBody =
        serde_json::from_value(req.content.ok_or_else(|| Error::bad("a transaction needs a body"))?)
            .map_err(|e| Error::bad(format!("bad transaction: {e}")))?;
    if body.pdus.len() > super::sender::MAX_PDUS {
        return Err(Error::TooLarge(format!("at most {} PDUs per transaction", super::sender::MAX_PDUS)));
    }
    let seen = {
        let r = state.store.read()?;
        r.open_table(FED_TXNS)?.get((req.origin.as_str(), txn_id.as_str()))?.is_some()
    };
    if seen {
        return Ok(axum::Json(json!({ "pdus": {} })));
    }
    // Checks run PDU by PDU; the write jobs of those that pass are queued without waiting, so
    // the whole transaction commits in one batch (one fsync), in order.
    let mut inflight = InFlight::default();
    let mut outcomes: Vec<(String, Option<Error>)> = Vec::with_capacity(body.pdus.len());
    for (i, pdu) in body.pdus.iter().enumerate() {
        match receive_pdu(&state, &req.origin, pdu, &mut inflight).await {
            Ok(id) => outcomes.push((id, None)),
            Err(e) => outcomes.push((pdu_id_hint(pdu, i), Some(e))),
        }
    }
    let mut committed = inflight.finish().await;
    let mut results = serde_json::Map::new();
    for (id, refused) in outcomes {
        let failed = refused.or_else(|| committed.remove(&id).and_then(|r| r.err()));
        let entry = match failed {
            None => json!({}),
            Some(e) => {
                tracing::info!(origin = %req.origin, error = %e, "refused an event");
                json!({ "error": e.to_string() })
            }
        };
        results.insert(id, entry);
    }
    let origin = req.origin.clone();
    state
        .store
        .write(move |tx| {
            let mut t = tx.txn.open_table(FED_TXNS)?;
            let now = now_ms();
            t.insert((origin.as_str(), txn_id.as_str()), now)?;
            // Forget this origin's transactions older than a day.
            t.retain_in((origin.as_str(), "")..=(origin.as_str(), "\u{10ffff}"), |_, at| at + TXN_MEMORY_MS > now)?;
            Ok(())
        })
        .await?;
    Ok(axum::Json(json!({ "pdus": results })))
}

/// A name for a refused PDU in the results map: its id, or its place if it has none.
fn pdu_id_hint(pdu: &Value, index: usize) -> String {
    let room = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default();
    Event::from_pdu(pdu, room).map(|e| e.event_id).unwrap_or_else(|_| format!("(unreadable PDU #{index})"))
}

/// Received events whose checks passed and whose write jobs are queued but not yet
/// committed: later events of the same transaction may follow them or name them as auth
/// events. Holds the locks of the rooms it touched until [`InFlight::finish`].
#[derive(Default)]
pub struct InFlight {
    events: HashMap<String, Event>,
    waiting: Vec<(String, crate::store::writer::Committed<()>)>,
    done: HashMap<String, Result<()>>,
    locks: HashMap<String, tokio::sync::OwnedMutexGuard<()>>,
}

impl InFlight {
    /// Takes the lock of `room_id`. At most one room lock is held at a time (what is queued
    /// for another room is committed and its lock released first), so two transactions that
    /// touch the same rooms in different orders cannot deadlock.
    async fn lock_room(&mut self, state: &FedState, room_id: &str) {
        if !self.locks.contains_key(room_id) {
            if !self.locks.is_empty() {
                self.flush().await;
                self.locks.clear();
            }
            let guard = state.federation.room_locks.get(room_id).lock_owned().await;
            self.locks.insert(room_id.to_string(), guard);
        }
    }

    /// Waits for every queued write; the events are then in the store.
    async fn flush(&mut self) {
        for (id, c) in self.waiting.drain(..) {
            let r = c.wait().await;
            self.done.insert(id, r);
        }
        self.events.clear();
    }

    /// Flushes and releases the room locks; returns each queued event's outcome.
    pub async fn finish(mut self) -> HashMap<String, Result<()>> {
        self.flush().await;
        self.done
    }

    fn has(&self, state: &FedState, id: &str) -> bool {
        self.events.contains_key(id) || state.store.event(id).ok().flatten().is_some()
    }
}

/// Receives one event sent by `origin`: verified, missing predecessors fetched first, checked
/// against its auth events; its write job (the check against the current state, then storing
/// it) is queued in `inflight`. Returns its id.
pub async fn receive_pdu(state: &FedState, origin: &str, pdu: &Value, inflight: &mut InFlight) -> Result<String> {
    let room_id = pdu.get("room_id").and_then(Value::as_str).ok_or_else(|| Error::bad("a PDU needs a room_id"))?;
    resident_room(state, room_id)?;
    let ev = Event::from_pdu(pdu, room_id)?;
    if server_of(&ev.sender) != origin {
        return Err(Error::Forbidden("a server may only send events of its own users".into()));
    }
    inflight.lock_room(state, room_id).await;
    accept(state, origin, pdu, ev, MISSING_ROUNDS, inflight).await
}

/// The part of [`receive_pdu`] under the room lock.
async fn accept(
    state: &FedState,
    origin: &str,
    pdu: &Value,
    ev: Event,
    rounds: u32,
    inflight: &mut InFlight,
) -> Result<String> {
    if inflight.events.contains_key(&ev.event_id) || state.store.event(&ev.event_id)?.is_some_and(|s| s.pos > 0) {
        return Ok(ev.event_id);
    }
    super::pdu::verify(state, pdu, &ev).await?;
    let missing = ev.prev_events.iter().any(|p| !inflight.has(state, p));
    if missing && rounds > 0 {
        // What is queued must be stored before asking what comes between it and this event.
        inflight.flush().await;
        match fetch_missing(state, origin, &ev).await {
            Ok(events) => {
                for (p, e) in events {
                    if let Err(err) = Box::pin(accept(state, origin, &p, e, rounds - 1, inflight)).await {
                        tracing::info!(origin, error = %err, "a missing event was refused");
                    }
                }
            }
            Err(e) => tracing::info!(origin, error = %e, "cannot fetch missing events; accepting with a gap"),
        }
    }
    check_known_auth_events(state, &ev, &inflight.events)?;
    let id = ev.event_id.clone();
    let pending = state.calls.pending.clone();
    let job_ev = ev.clone();
    let committed = state
        .store
        .submit(move |tx| {
            let ev = job_ev;
            if tx.txn.open_table(EVENTS)?.get(ev.event_id.as_str())?.is_some() {
                return Ok(());
            }
            let mut room: RoomRecord = get_json(&tx.txn.open_table(ROOMS)?, &ev.room_id)?
                .ok_or_else(|| Error::NotFound("no such room".into()))?;
            authorize_now(tx, &room, &ev)?;
            if crate::events::call::is_call_event(&ev.kind) {
                crate::calls::apply_received(tx, &ev, &pending)?;
            }
            if wins_its_slot(tx, &ev)? {
                persist_received(tx, &mut room, ev).map(|_| ())
            } else {
                persist_superseded(tx, &mut room, ev).map(|_| ())
            }
        })
        .await?;
    inflight.events.insert(id.clone(), ev);
    inflight.waiting.push((id.clone(), committed));
    Ok(id)
}

/// Whether a received event takes effect on the room's state: yes for non-state events, for
/// an empty slot, and when it follows the slot's holder; otherwise the two branches meet and
/// state resolution decides (see `stateres`).
fn wins_its_slot(tx: &crate::store::Tx<'_>, ev: &Event) -> Result<bool> {
    let Some(key) = ev.state_key.as_deref() else { return Ok(true) };
    let table = tx.txn.open_table(ROOM_STATE)?;
    let Some(holder) = table.get((ev.room_id.as_str(), ev.kind.as_str(), key))?.map(|v| v.value().to_string()) else {
        return Ok(true);
    };
    let events = tx.txn.open_table(EVENTS)?;
    let get = |id: &str| get_event(&events, id).ok().flatten().map(|s| s.event);
    let Some(holder_ev) = get(&holder) else { return Ok(true) };
    if super::stateres::is_ancestor(&holder_ev, ev, &get) {
        return Ok(true);
    }
    let mut current = std::collections::BTreeMap::new();
    let rid = ev.room_id.as_str();
    for row in table.range((rid, "", "")..=(rid, "\u{10ffff}", "\u{10ffff}"))? {
        let (k, v) = row?;
        let (_, kind, key) = k.value();
        current.insert((kind.to_string(), key.to_string()), v.value().to_string());
    }
    match super::stateres::resolve_slot(&current, ev, &get) {
        Ok(winner) => {
            tracing::info!(room = rid, kind = %ev.kind, winner, "concurrent state resolved");
            Ok(winner == ev.event_id)
        }
        Err(e) => {
            tracing::warn!(room = rid, error = %e, "state resolution failed; the current state stays");
            Ok(false)
        }
    }
}

/// Asks `origin` for the events between what we have of the room and `ev`, oldest first.
async fn fetch_missing(state: &FedState, origin: &str, ev: &Event) -> Result<Vec<(Value, Event)>> {
    let room = resident_room(state, &ev.room_id)?;
    let body = json!({
        "earliest_events": room.extremities,
        "latest_events": [ev.event_id],
        "limit": MAX_FETCH,
    });
    let path = format!("/_matrix/federation/v1/get_missing_events/{}", super::urlencode(&ev.room_id));
    let (status, answer) = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), origin, Method::POST, &path, Some(body))
        .await?;
    if status != StatusCode::OK {
        return Err(Error::Unavailable(format!("{origin} answered {status}")));
    }
    let mut out = Vec::new();
    for p in answer["events"].as_array().map(|a| a.iter().take(MAX_FETCH).cloned().collect()).unwrap_or_else(Vec::new) {
        let e = Event::from_pdu(&p, &ev.room_id)?;
        out.push((p, e));
    }
    out.sort_by_key(|(_, e)| e.depth);
    Ok(out)
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
    readable_room(&state, &room_id, &req.origin)?;
    let body: MissingBody = serde_json::from_value(req.content.unwrap_or(Value::Null))
        .map_err(|e| Error::bad(format!("bad get_missing_events body: {e}")))?;
    let limit = body.limit.unwrap_or(10).clamp(1, MAX_FETCH);
    let stop: HashSet<&str> = body.earliest_events.iter().take(100).map(String::as_str).collect();
    let r = state.store.read()?;
    let events = r.open_table(EVENTS)?;
    let mut seen: HashSet<String> = body.latest_events.iter().take(20).cloned().collect();
    let mut frontier: Vec<String> = Vec::new();
    for id in body.latest_events.iter().take(20) {
        if let Some(e) = get_event(&events, id)?.filter(|e| e.event.room_id == room_id) {
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
            if let Some(e) = get_event(&events, &id)?.filter(|e| e.event.room_id == room_id && e.pos > 0) {
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
    let ev = state.store.event(&event_id)?.ok_or_else(|| Error::NotFound("no such event".into()))?;
    readable_room(&state, &ev.event.room_id, &req.origin)?;
    Ok(axum::Json(json!({
        "origin": state.server_name.as_str(),
        "origin_server_ts": now_ms(),
        "pdus": [state.federation.wire_pdu(state.server_name.as_str(), &ev.event)?],
    })))
}

/// The query of `GET /backfill`.
#[derive(Deserialize)]
pub struct BackfillQuery {
    v: Option<String>,
    limit: Option<usize>,
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=$event&limit=N`: up to N events of the
/// room's timeline ending with `v` (without `v`: the newest), oldest first.
pub async fn backfill(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    q: std::result::Result<Query<BackfillQuery>, axum::extract::rejection::QueryRejection>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad(e.body_text()))?;
    readable_room(&state, &room_id, &req.origin)?;
    let limit = q.limit.unwrap_or(10).clamp(1, MAX_FETCH);
    let end = match q.v {
        Some(v) => {
            let ev = state.store.event(&v)?.filter(|e| e.event.room_id == room_id && e.pos > 0);
            ev.ok_or_else(|| Error::NotFound("no such event in that room".into()))?.pos + 1
        }
        None => u64::MAX,
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

/// `GET /_matrix/federation/v1/state_ids/{roomId}`: ids of the room's current state and its
/// auth chain. Only the current state is kept here, so `event_id` must be a forward extremity.
pub async fn state_ids(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    q: std::result::Result<Query<StateIdsQuery>, axum::extract::rejection::QueryRejection>,
    req: FedRequest,
) -> Result<axum::Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad(e.body_text()))?;
    let room = readable_room(&state, &room_id, &req.origin)?;
    if let Some(id) = q.event_id
        && !room.extremities.contains(&id)
    {
        return Err(Error::NotFound("only the state at the room's newest events is kept".into()));
    }
    let current = current_state(&state, &room_id)?;
    let chain = auth_chain(&state, &current)?;
    Ok(axum::Json(json!({
        "pdu_ids": current.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        "auth_chain_ids": chain.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
    })))
}

// ---------------------------------------------------------------------------------------------
// Aliases.

/// Resolves `#name:server` to a room id and servers to join through.
pub async fn resolve_alias(state: &FedState, alias: &str) -> Result<(String, Vec<String>)> {
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
        .map_err(|e| Error::Unavailable(format!("cannot reach {server}: {e}")))?;
    if status == StatusCode::NOT_FOUND {
        return Err(Error::NotFound(format!("no room is called {alias}")));
    }
    if status != StatusCode::OK {
        return Err(Error::Unavailable(format!("{server} answered {status}")));
    }
    let rid = v["room_id"].as_str().ok_or_else(|| Error::Unavailable(format!("{server} sent no room id")))?;
    crate::ids::parse_room_id(rid)?;
    let mut servers: Vec<String> = vec![server.clone()];
    for s in v["servers"].as_array().into_iter().flatten().take(10).filter_map(Value::as_str) {
        if crate::ids::ServerName::parse(s).is_ok() && !servers.iter().any(|x| x == s) {
            servers.push(s.to_string());
        }
    }
    Ok((rid.to_string(), servers))
}

// ---------------------------------------------------------------------------------------------
// Joining a room on another server.

/// Joins `user` to `room_id`, which this server is not in, through one of `via`.
pub async fn join_remote(state: &FedState, user: &UserId, room_id: &str, via: &[String]) -> Result<()> {
    let mut last = Error::NotFound("no server to join that room through".into());
    for server in via.iter().filter(|s| *s != state.server_name.as_str()).take(5) {
        match join_via(state, user, room_id, server).await {
            Ok(()) => return Ok(()),
            Err(e @ (Error::Forbidden(_) | Error::NotFound(_) | Error::BadRequest(_))) if via.len() == 1 => {
                return Err(e);
            }
            Err(e) => {
                tracing::info!(server, room_id, error = %e, "join through this server failed");
                last = e;
            }
        }
    }
    Err(last)
}

async fn call(state: &FedState, server: &str, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    let (status, v) = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), server, method, path, body)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot reach {server}: {e}")))?;
    let msg = v.get("error").and_then(Value::as_str).unwrap_or("").to_string();
    match status {
        StatusCode::OK => Ok(v),
        StatusCode::FORBIDDEN => Err(Error::Forbidden(format!("{server}: {msg}"))),
        StatusCode::NOT_FOUND => Err(Error::NotFound(format!("{server}: {msg}"))),
        s if s.is_client_error() => Err(Error::bad(format!("{server}: {msg}"))),
        s => Err(Error::Unavailable(format!("{server} answered {s}"))),
    }
}

/// The membership handshake with a resident server: `make_join`/`make_leave` gives the
/// event's place in the DAG; we build and sign the event here and send it with
/// `send_join`/`send_leave`. Returns the event and the server's answer.
async fn make_and_send(
    state: &FedState,
    user: &UserId,
    room_id: &str,
    server: &str,
    membership: Membership,
) -> Result<(Event, Value)> {
    let verb = if membership == Membership::Join { "join" } else { "leave" };
    let rid = super::urlencode(room_id);
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
    let new = NewEvent::state(M_ROOM_MEMBER, user.as_str(), member_content(membership));
    let ev = Event::build(Some(room_id), user.as_str(), new, parents, now_ms());
    let pdu = state.federation.wire_pdu(state.server_name.as_str(), &ev)?;
    let path = format!("/_matrix/federation/v2/send_{verb}/{rid}/{}", super::urlencode(&ev.event_id));
    let answer = call(state, server, Method::PUT, &path, Some(pdu)).await?;
    Ok((ev, answer))
}

/// Declines an invitation to a room on another server: the leave goes to the inviting server
/// (make_leave/send_leave), which adds it to the room.
pub async fn decline_remote(state: &FedState, user: &UserId, room_id: &str, via: &[String]) -> Result<()> {
    let mut last = Error::NotFound("no server to send the decline to".into());
    for server in via.iter().filter(|s| *s != state.server_name.as_str()).take(5) {
        match make_and_send(state, user, room_id, server, Membership::Leave).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn join_via(state: &FedState, user: &UserId, room_id: &str, server: &str) -> Result<()> {
    let rid = super::urlencode(room_id);
    let (join, answer) = make_and_send(state, user, room_id, server, Membership::Join).await?;
    // Everything the resident server sent is checked before any of it is used.
    let mut all: HashMap<String, Event> = HashMap::new();
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
    if create.room_id != room_id {
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
        &format!("/_matrix/federation/v1/backfill/{rid}?v={}&limit={JOIN_HISTORY}", super::urlencode(&join.event_id)),
        None,
    )
    .await
    .map(|v| v["pdus"].as_array().cloned().unwrap_or_default())
    .unwrap_or_default();
    let mut timeline = Vec::new();
    for p in history.iter().take(MAX_FETCH) {
        let Ok(ev) = parse_verified(state, p, room_id).await else { continue };
        if ev.event_id == join.event_id || check_auth_events(&ev, |id| all.get(id)).is_err() {
            continue;
        }
        timeline.push(ev);
    }
    timeline.sort_by_key(|e| e.depth);
    let mut states: Vec<Event> = state_ids.iter().filter_map(|id| all.get(id).cloned()).collect();
    states.sort_by_key(|e| e.depth);
    let chain: Vec<Event> = all.into_values().collect();
    let (rid, joined) = (room_id.to_string(), join);
    state.store.write(move |tx| store_joined_room(tx, &rid, chain, states, timeline, joined)).await
}

/// Writes a room joined through another server: its auth chain and state (not in the
/// timeline), recent history, then our join, which is published.
fn store_joined_room(
    tx: &mut crate::store::Tx<'_>,
    room_id: &str,
    chain: Vec<Event>,
    states: Vec<Event>,
    timeline: Vec<Event>,
    join: Event,
) -> Result<()> {
    let create = chain.iter().find(|e| e.kind == M_ROOM_CREATE).ok_or_else(|| Error::bad("no create event"))?;
    let direct = create.content.get("chat.direct").and_then(Value::as_bool).unwrap_or(false);
    let pl = PowerLevels::for_new_room(&create.sender);
    let mut room = RoomRecord::new(room_id, &create.sender, create.origin_server_ts, direct, JoinRule::Invite, pl);
    for ev in &chain {
        tx.put_outlier(room_id, ev)?;
    }
    // A partial room from an invitation leaves membership rows; the real state replaces them.
    for ev in &states {
        let key = ev.state_key.as_deref().unwrap_or_default();
        tx.txn.open_table(ROOM_STATE)?.insert((room_id, ev.kind.as_str(), key), ev.event_id.as_str())?;
        apply_state(tx, &mut room, ev, key)?;
        room.depth = room.depth.max(ev.depth);
    }
    for ev in timeline {
        let pos = tx.next_pos();
        tx.txn
            .open_table(ROOM_TIMELINE)?
            .insert((room_id, pos), (ev.event_id.as_str(), ev.sender.as_str(), ev.kind.as_str()))?;
        room.depth = room.depth.max(ev.depth);
        room.last_pos = pos;
        let id = ev.event_id.clone();
        put_json(&mut tx.txn.open_table(EVENTS)?, &id, &StoredEvent { pos, event: ev })?;
    }
    room.extremities = join.prev_events.clone();
    persist_received(tx, &mut room, join)?;
    Ok(())
}

/// Invites `target`, a user of another server: their server co-signs the invite before it is
/// added to the room.
pub async fn invite_remote(state: &FedState, sender: &UserId, room_id: &str, target: &UserId) -> Result<()> {
    let (s, rid, t) = (sender.to_string(), room_id.to_string(), target.to_string());
    let (ev, stripped) = state
        .store
        .write(move |tx| {
            let room: RoomRecord =
                get_json(&tx.txn.open_table(ROOMS)?, &rid)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
            let new = NewEvent::state(M_ROOM_MEMBER, &t, member_content(Membership::Invite));
            {
                let members = tx.txn.open_table(ROOM_MEMBERS)?;
                rules::authorize(room.auth_state(), &s, &new, |u| {
                    crate::store::rooms::membership_of(&members, &rid, u)
                })?;
            }
            let ev = crate::store::events::build_next(tx, &room, &s, new, now_ms())?;
            let mut stripped = Vec::new();
            let table = tx.txn.open_table(ROOM_STATE)?;
            let events = tx.txn.open_table(EVENTS)?;
            for (kind, key) in [(M_ROOM_CREATE, ""), (M_ROOM_NAME, ""), (M_ROOM_TOPIC, ""), (M_ROOM_JOIN_RULES, "")] {
                if let Some(id) = table.get((rid.as_str(), kind, key))?
                    && let Some(e) = get_event(&events, id.value())?
                {
                    stripped.push(
                        json!({ "type": kind, "state_key": key, "sender": e.event.sender, "content": e.event.content }),
                    );
                }
            }
            Ok((ev, stripped))
        })
        .await?;
    let pdu = state.federation.wire_pdu(state.server_name.as_str(), &ev)?;
    let answer = call(
        state,
        target.server(),
        Method::PUT,
        &format!("/_matrix/federation/v2/invite/{}/{}", super::urlencode(room_id), super::urlencode(&ev.event_id)),
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
            let mut room: RoomRecord = get_json(&tx.txn.open_table(ROOMS)?, &cosigned.room_id)?
                .ok_or_else(|| Error::NotFound("no such room".into()))?;
            authorize_now(tx, &room, &cosigned)?;
            crate::store::events::persist(tx, &mut room, cosigned).map(|_| ())
        })
        .await
}

/// Checks that `server` signed the event `pdu` (the invitee's server co-signing an invite).
async fn verify_cosignature(state: &FedState, pdu: &Value, server: &str) -> Result<()> {
    let sigs =
        pdu["signatures"][server].as_object().ok_or_else(|| Error::bad(format!("{server} did not sign the invite")))?;
    let mut keys = std::collections::BTreeMap::new();
    for key_id in sigs.keys().take(4) {
        if let Ok(k) = super::remote_key(state, server, key_id, now_ms()).await {
            keys.insert(key_id.clone(), ruma_common::serde::Base64::new(k));
        }
    }
    // ruma checks every server's signature on the object: ours (the inviter's) too.
    let own_key = ruma_common::serde::Base64::new(super::keys::unb64(&state.federation.key.public_b64())?);
    let own = std::collections::BTreeMap::from([(state.federation.key.id.clone(), own_key)]);
    let map = std::collections::BTreeMap::from([(server.to_string(), keys), (state.server_name.to_string(), own)]);
    let object = super::keys::to_canonical(pdu.clone())?;
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    let redacted = ruma_common::canonical_json::redact(object, &rules.redaction, None)
        .map_err(|e| Error::bad(format!("cannot redact the invite: {e}")))?;
    ruma_signatures::verify_json(&map, &redacted).map_err(|e| Error::bad(format!("{server}'s signature: {e}")))
}

/// At start: for every room shared with other servers, ask one of them for its newest events,
/// which fetches whatever we missed while down (and tells them we are back).
pub async fn catch_up(state: FedState) {
    let rooms: Vec<RoomRecord> = match state.store.read().and_then(|r| {
        let t = r.open_table(ROOMS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            if let Ok(room) = serde_json::from_slice::<RoomRecord>(v.value()) {
                out.push(room);
            }
        }
        Ok(out)
    }) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "catch-up: cannot list rooms");
            return;
        }
    };
    let local = state.server_name.to_string();
    for room in rooms.into_iter().filter(|r| !r.partial && server_in_room(r, &local)) {
        for server in room.servers.keys().filter(|s| **s != local).take(3) {
            if state.shutdown.is_cancelled() {
                return;
            }
            let path = format!("/_matrix/federation/v1/backfill/{}?limit=10", super::urlencode(&room.room_id));
            let Ok(v) = call(&state, server, Method::GET, &path, None).await else { continue };
            let pdus = v["pdus"].as_array().cloned().unwrap_or_default();
            let mut inflight = InFlight::default();
            inflight.lock_room(&state, &room.room_id).await;
            for p in pdus.iter().take(MAX_FETCH) {
                let Ok(ev) = Event::from_pdu(p, &room.room_id) else { continue };
                let origin = server_of(&ev.sender).to_string();
                if origin == local {
                    continue;
                }
                if let Err(e) = accept(&state, server, p, ev, MISSING_ROUNDS, &mut inflight).await {
                    tracing::debug!(server, origin, error = %e, "catch-up: event refused");
                }
            }
            for (id, r) in inflight.finish().await {
                if let Err(e) = r {
                    tracing::debug!(server, id, error = %e, "catch-up: event refused");
                }
            }
            break;
        }
    }
}
