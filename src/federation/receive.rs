//! Receiving events from other servers: transactions (`send`), each PDU verified, held to the
//! limits of [`budget`](super::budget), its missing predecessors fetched within a budget and
//! with no room lock held, checked against its auth events and the current state, and
//! committed with the rest of its transaction; catch-up at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::FedRequest;
use super::FedState;
use super::budget::{self, FetchBudget};
use super::call;
use super::pdu::check_auth_events;
use super::serve::{MAX_FETCH, named_event, peer_room_id, receiving_room, server_in_room};
use crate::error::{Error, Result};
use crate::events::*;
use crate::ids::{EventId, RoomId};
use crate::store::events::{persist_received, persist_soft_failed, server_of};
use crate::store::rooms::RoomRecord;

/// Inbound transaction ids remembered per origin are kept this long (ms).
pub(super) const TXN_MEMORY_MS: u64 = 24 * 3600 * 1000;

/// Serialises the processing of received events per room, so that an event is stored only
/// after the events it follows.
#[derive(Default)]
pub struct RoomLocks(Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<()>>>>);

impl RoomLocks {
    pub(super) fn get(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut m) = self.0.lock() else { return Arc::new(tokio::sync::Mutex::new(())) };
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(room_id.clone()).or_default().clone()
    }
}

/// Checks an event against the room's current state by the Matrix authorization rules
/// (soft-fail: an event that fails is stored apart and never shown).
pub(super) fn authorize_now(tx: &crate::store::Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<()> {
    if ev.kind == M_ROOM_CREATE {
        return Err(Error::bad("a room is created only once"));
    }
    crate::rooms::authorize_against_current(tx, room, ev)
        .map_err(|e| Error::Forbidden(format!("soft-failed against current state: {e}")))
}

/// Checks `ev` against the state its own auth events name, all of which must be stored here
/// (or be among `queued`, accepted but not yet committed).
pub(super) fn check_known_auth_events(state: &FedState, ev: &Event, queued: &HashMap<EventId, Event>) -> Result<()> {
    let snapshot = state.store.snapshot()?;
    let mut auth: HashMap<String, Event> = HashMap::new();
    let create_id = ev.room_id.create_event_id();
    for id in ev.auth_events.iter().map(String::as_str).chain([create_id.as_str()]) {
        if let Some(a) = queued.get(id) {
            auth.insert(id.to_string(), a.clone());
        } else if let Some(a) = named_event(&snapshot, id)? {
            auth.insert(id.to_string(), a.event);
        }
    }
    check_auth_events(ev, |id| auth.get(id))
}

/// The body of `PUT /send/{txnId}`.
#[derive(Deserialize)]
pub struct TransactionBody {
    #[serde(default)]
    pdus: Vec<Value>,
    #[serde(default)]
    edus: Vec<Value>,
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
    if body.edus.len() > super::ephemeral::MAX_EDUS {
        return Err(Error::TooLarge(format!("at most {} EDUs per transaction", super::ephemeral::MAX_EDUS)));
    }
    if state.store.transaction_seen(&req.origin, &txn_id)? {
        return Ok(axum::Json(json!({ "pdus": {} })));
    }
    // Checks run PDU by PDU; the write jobs of those that pass are queued without waiting, so
    // the whole transaction commits in one batch (one fsync), in order.
    let mut inflight = InFlight::default();
    let mut fetches = FetchBudget::per_transaction();
    let mut outcomes: Vec<(String, Option<Error>)> = Vec::with_capacity(body.pdus.len());
    // Once an event is refused for a rate, the rest of the transaction is refused the same way
    // (without taking from any budget), so a sender that sends them again keeps their order.
    let mut over_rate: Option<u64> = None;
    for (i, pdu) in body.pdus.iter().enumerate() {
        if let Some(secs) = over_rate {
            state.federation.budgets.counters.events_rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            outcomes.push((pdu_id_hint(pdu, i), Some(Error::TooManyRequests(secs))));
            continue;
        }
        match receive_pdu(&state, &req.origin, pdu, &mut inflight, &mut fetches).await {
            Ok(id) => outcomes.push((id.to_string(), None)),
            Err(e) => {
                if let Error::TooManyRequests(secs) = e {
                    over_rate = Some(secs);
                }
                outcomes.push((pdu_id_hint(pdu, i), Some(e)));
            }
        }
    }
    let rooms = std::mem::take(&mut inflight.rooms);
    let mut committed = inflight.finish().await;
    // Branches whose states differ are joined at once (see `rooms::merge_branches`).
    for room_id in rooms {
        if let Err(e) = crate::rooms::merge_branches(&state.rooms, &room_id).await {
            tracing::warn!(room = %room_id, error = %e, "could not join the room's branches");
        }
    }
    // After the events, so a receipt can name one of them.
    super::ephemeral::receive(&state, &req.origin, &body.edus).await;
    let mut results = serde_json::Map::new();
    let mut limited = false;
    for (id, refused) in outcomes {
        let failed = refused.or_else(|| committed.remove(id.as_str()).and_then(|r| r.err()));
        let entry = match failed {
            None => json!({}),
            Some(Error::TooManyRequests(secs)) => {
                limited = true;
                let e = Error::TooManyRequests(secs);
                json!({ "error": e.to_string(), "errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": secs.saturating_mul(1000) })
            }
            Some(e) => {
                tracing::info!(origin = %req.origin, error = %e, "refused an event");
                json!({ "error": e.to_string() })
            }
        };
        results.insert(id, entry);
    }
    if limited {
        tracing::info!(origin = %req.origin, "events over a rate were refused; the sender may send them again");
    } else {
        // Remembered for a day. A transaction with events refused for a rate is not: sent
        // again, it is processed again (what was taken is found by id and not stored twice).
        state.store.remember_transaction(req.origin.clone(), txn_id, now_ms(), TXN_MEMORY_MS).await?;
    }
    Ok(axum::Json(json!({ "pdus": results })))
}

/// A name for a refused PDU in the results map: its id, or its place if it has none.
pub(super) fn pdu_id_hint(pdu: &Value, index: usize) -> String {
    let room = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default();
    RoomId::parse(room)
        .and_then(|room| Event::from_pdu(pdu, &room))
        .map(|e| e.event_id.to_string())
        .unwrap_or_else(|_| format!("(unreadable PDU #{index})"))
}

/// Received events whose checks passed and whose write jobs are queued but not yet
/// committed: later events of the same transaction may follow them or name them as auth
/// events. Holds the locks of the rooms it touched until [`InFlight::finish`].
#[derive(Default)]
pub struct InFlight {
    events: HashMap<EventId, Event>,
    waiting: Vec<(EventId, crate::store::writer::Committed<Option<Error>>)>,
    done: HashMap<EventId, Result<()>>,
    locks: HashMap<RoomId, tokio::sync::OwnedMutexGuard<()>>,
    /// Every room an event was queued for.
    rooms: std::collections::BTreeSet<RoomId>,
}

impl InFlight {
    /// Takes the lock of `room_id`. At most one room lock is held at a time (what is queued
    /// for another room is committed and its lock released first), so two transactions that
    /// touch the same rooms in different orders cannot deadlock.
    async fn lock_room(&mut self, state: &FedState, room_id: &RoomId) {
        if !self.locks.contains_key(room_id) {
            if !self.locks.is_empty() {
                self.flush().await;
                self.locks.clear();
            }
            let guard = state.federation.room_locks.get(room_id).lock_owned().await;
            self.locks.insert(room_id.clone(), guard);
        }
    }

    /// Waits for every queued write; the events are then in the store.
    async fn flush(&mut self) {
        for (id, c) in self.waiting.drain(..) {
            let r = c.wait().await.and_then(|soft_failed| soft_failed.map_or(Ok(()), Err));
            self.done.insert(id, r);
        }
        self.events.clear();
    }

    /// Waits for every queued write and releases the room lock (before asking another server
    /// anything, so no room waits on its answer).
    async fn release(&mut self) {
        self.flush().await;
        self.locks.clear();
    }

    /// Flushes and releases the room locks; returns each queued event's outcome.
    pub async fn finish(mut self) -> HashMap<EventId, Result<()>> {
        self.flush().await;
        self.done
    }

    fn has(&self, state: &FedState, id: &str) -> bool {
        self.events.contains_key(id)
            || EventId::parse(id).ok().and_then(|id| state.store.event(&id).ok().flatten()).is_some()
    }
}

/// Receives one event sent by `origin`: verified, held to the content limits and rates
/// ([`budget`]), its missing predecessors fetched (within `fetches`, with no room lock held),
/// then checked against its auth events; its write job (the check against the current state,
/// then storing it) is queued in `inflight`. Returns its id.
pub async fn receive_pdu(
    state: &FedState,
    origin: &str,
    pdu: &Value,
    inflight: &mut InFlight,
    fetches: &mut FetchBudget,
) -> Result<EventId> {
    let room_id = pdu.get("room_id").and_then(Value::as_str).ok_or_else(|| Error::bad("a PDU needs a room_id"))?;
    let room_id = &peer_room_id(room_id)?;
    if let Some(stub) = state.store.room(room_id)?.filter(|r| r.partial) {
        return outside_membership(state, origin, pdu, &stub).await;
    }
    receiving_room(state, room_id, origin)?;
    let ev = Event::from_pdu(pdu, room_id)?;
    if taken(state, inflight, &ev.event_id)? {
        return Ok(ev.event_id);
    }
    // The origin need not be the sender's server: a resident server relays the events of the
    // servers it lets in (a join through it reaches the room's other servers that way). Such
    // an event counts only if its sender's server signed it, and it passes the same auth
    // rules; an unsigned or forged one is refused here.
    super::pdu::verify(state, pdu, &ev).await?;
    budget::check_content(state, &ev)?;
    budget::admit_sent(state, origin, &ev)?;
    take_with_predecessors(state, origin, ev, inflight, fetches).await
}

/// An event of a room this server is not in (a stub kept for an invitation or a request to
/// join): only the answer to one of our users' invitation or request is taken (a turned-down
/// request, a withdrawn invitation, a ban), signed by its sender's server, with the same trust
/// as the stub itself and only from a server the stub came from (the inviting server, or the
/// one the request went through); anything else is refused as for any room we are not in.
async fn outside_membership(state: &FedState, origin: &str, pdu: &Value, stub: &RoomRecord) -> Result<EventId> {
    let room_id = &stub.room_id;
    let ev = Event::from_pdu(pdu, room_id)?;
    let target = ev.state_key.as_deref().unwrap_or_default();
    let ends = matches!(Membership::of_content(&ev.content), Some(Membership::Leave | Membership::Ban));
    let ours = server_of(target) == state.server_name.as_str() && target != ev.sender;
    let waiting = matches!(state.store.membership(room_id, target)?, Membership::Invite | Membership::Knock);
    let known = stub.servers.contains_key(origin) && stub.servers.contains_key(server_of(&ev.sender));
    if ev.kind != M_ROOM_MEMBER || !ends || !ours || !waiting || !known {
        return Err(Error::NotFound("this server is not in that room".into()));
    }
    super::pdu::verify(state, pdu, &ev).await?;
    let id = ev.event_id.clone();
    super::handshake::keep_outside_membership(state, ev, &[], origin, "").await?;
    Ok(id)
}

/// Whether the event is stored in the timeline here, or queued in `inflight`.
fn taken(state: &FedState, inflight: &InFlight, id: &EventId) -> Result<bool> {
    Ok(inflight.events.contains_key(id) || state.store.event(id)?.is_some_and(|s| s.pos > 0))
}

/// Fetches what is missing before `ev` from `origin` (no room lock is held while it answers),
/// then takes the room lock and queues the fetched events, oldest first, and `ev`. What cannot
/// be fetched within `fetches` stays a gap before `ev`.
async fn take_with_predecessors(
    state: &FedState,
    origin: &str,
    ev: Event,
    inflight: &mut InFlight,
    fetches: &mut FetchBudget,
) -> Result<EventId> {
    let missing = ev.prev_events.iter().any(|p| !inflight.has(state, p));
    if missing && fetches.spent() {
        // No request left in this transaction: a gap at once, without waiting for what is queued.
        let refused = &state.federation.budgets.counters.missing_fetches_refused;
        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else if missing {
        // What is queued is stored first, so the question names what we have.
        inflight.release().await;
        let fetched = fetch_gap(state, origin, &ev, fetches).await;
        inflight.lock_room(state, &ev.room_id).await;
        for e in fetched {
            if taken(state, inflight, &e.event_id)? {
                continue;
            }
            if !state.federation.budgets.room_allows(&e) {
                tracing::info!(origin, room = %e.room_id, "the room's budget for remote events is spent; a gap stays");
                break;
            }
            if let Err(err) = queue_event(state, e, inflight).await {
                tracing::info!(origin, error = %err, "a missing event was refused");
            }
        }
    }
    inflight.lock_room(state, &ev.room_id).await;
    queue_event(state, ev, inflight).await
}

/// The part under the room lock: `ev`'s auth events must be known; its write job checks it
/// against the state before it by the Matrix rules (failing: rejected, not stored), then
/// against the current state, and stores it: in the timeline if it passes, soft-failed if not
/// (then its result is an error, but it is kept, so events that follow it find it).
async fn queue_event(state: &FedState, ev: Event, inflight: &mut InFlight) -> Result<EventId> {
    if taken(state, inflight, &ev.event_id)? {
        return Ok(ev.event_id);
    }
    check_known_auth_events(state, &ev, &inflight.events)?;
    let id = ev.event_id.clone();
    let pending = state.calls.pending.clone();
    let job_ev = ev.clone();
    let committed = state
        .store
        .submit(move |tx| {
            let ev = job_ev;
            if tx.has_event(&ev.event_id)? {
                return Ok(None);
            }
            let mut room = tx.require_room(&ev.room_id)?;
            if let Err(e) = crate::rooms::authorize_at_place(tx, &room, &ev) {
                // Rejected: not stored, and nothing else was written.
                return Ok(Some(e));
            }
            if let Err(e) = authorize_now(tx, &room, &ev) {
                persist_soft_failed(tx, &mut room, &ev)?;
                return Ok(Some(e));
            }
            if crate::events::call::is_call_event(&ev.kind) {
                match crate::calls::apply_received(tx, &ev, &pending) {
                    Err(e @ (Error::Internal(_) | Error::Unavailable(_))) => return Err(e),
                    // Stored all the same: it passed the auth rules, and later events name it.
                    Err(e) => tracing::debug!(event = %ev.event_id, error = %e, "a call signal its record ignores"),
                    Ok(()) => {}
                }
            }
            persist_received(tx, &mut room, ev).map(|_| None)
        })
        .await?;
    inflight.rooms.insert(ev.room_id.clone());
    inflight.events.insert(id.clone(), ev);
    inflight.waiting.push((id.clone(), committed));
    Ok(id)
}

/// Asks `origin` for the events between what we have of the room and `ev`, round after round
/// while some are still missing and `fetches` allows; returns those that are verified (the
/// sender's server signature, the content limits), oldest first. No lock is held.
async fn fetch_gap(state: &FedState, origin: &str, ev: &Event, fetches: &mut FetchBudget) -> Vec<Event> {
    let known = |id: &str| EventId::parse(id).ok().and_then(|id| state.store.event(&id).ok().flatten()).is_some();
    let mut got: HashMap<EventId, Event> = HashMap::new();
    let mut latest = vec![ev.event_id.to_string()];
    while !latest.is_empty() && fetches.take(state, origin) {
        let answer = match fetch_missing(state, origin, &ev.room_id, &latest).await {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(origin, error = %e, "cannot fetch missing events; a gap stays");
                break;
            }
        };
        let counter = &state.federation.budgets.counters.missing_events;
        counter.fetch_add(answer.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut new = 0;
        for (p, e) in answer {
            if got.contains_key(&e.event_id) || known(e.event_id.as_str()) {
                continue;
            }
            let checked = match super::pdu::verify(state, &p, &e).await {
                Ok(()) => budget::check_content(state, &e),
                Err(err) => Err(err),
            };
            match checked {
                Ok(()) => {
                    got.insert(e.event_id.clone(), e);
                    new += 1;
                }
                Err(err) => tracing::info!(origin, error = %err, "a missing event was refused"),
            }
        }
        if new == 0 {
            break;
        }
        // The next round starts from the fetched events whose predecessors are still missing.
        latest = got
            .values()
            .filter(|e| e.prev_events.iter().any(|p| !got.contains_key(p.as_str()) && !known(p)))
            .map(|e| e.event_id.to_string())
            .take(20)
            .collect();
    }
    let mut out: Vec<Event> = got.into_values().collect();
    out.sort_by_key(|e| e.depth);
    out
}

/// One `get_missing_events` request: the events before `latest` back to the room's newest
/// events here, as (PDU, event).
async fn fetch_missing(
    state: &FedState,
    origin: &str,
    room_id: &RoomId,
    latest: &[String],
) -> Result<Vec<(Value, Event)>> {
    let room = receiving_room(state, room_id, origin)?;
    let body = json!({
        "earliest_events": room.extremities,
        "latest_events": latest,
        "limit": MAX_FETCH,
    });
    let path = format!("/_matrix/federation/v1/get_missing_events/{}", super::urlencode(room_id.as_str()));
    let answer = call(state, origin, Method::POST, &path, Some(body)).await?;
    let mut out = Vec::new();
    for p in answer["events"].as_array().into_iter().flatten().take(MAX_FETCH) {
        match Event::from_pdu(p, room_id) {
            Ok(e) => out.push((p.clone(), e)),
            Err(e) => tracing::info!(origin, error = %e, "an unreadable missing event"),
        }
    }
    Ok(out)
}

/// At start: for every room shared with other servers, ask up to three of them for history
/// (`backfill` from one of our forward extremities, as the spec shapes it). What that answers
/// is mostly known; the point is the signed request itself, which tells the server we are back:
/// a server of ours then retries its queue at once, Synapse resets its backoff and sends what
/// we missed (the newest event of each room, whose gap we then fetch).
pub async fn catch_up(state: FedState) {
    let rooms: Vec<RoomRecord> = match state.store.rooms() {
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
            let Some(from) = room.extremities.first() else { break };
            let path = format!(
                "/_matrix/federation/v1/backfill/{}?v={}&limit=10",
                super::urlencode(room.room_id.as_str()),
                super::urlencode(from)
            );
            let Ok(v) = call(&state, server, Method::GET, &path, None).await else { continue };
            let pdus = v["pdus"].as_array().cloned().unwrap_or_default();
            let mut inflight = InFlight::default();
            let mut fetches = FetchBudget::per_transaction();
            for p in pdus.iter().take(MAX_FETCH) {
                let Ok(ev) = Event::from_pdu(p, &room.room_id) else { continue };
                let origin = server_of(&ev.sender).to_string();
                if origin == local || taken(&state, &inflight, &ev.event_id).unwrap_or(true) {
                    continue;
                }
                let checked = match super::pdu::verify(&state, p, &ev).await {
                    Ok(()) => budget::check_content(&state, &ev),
                    Err(e) => Err(e),
                };
                if let Err(e) = checked {
                    tracing::debug!(server, origin, error = %e, "catch-up: event refused");
                    continue;
                }
                if !state.federation.budgets.room_allows(&ev) {
                    break;
                }
                if let Err(e) = take_with_predecessors(&state, server, ev, &mut inflight, &mut fetches).await {
                    tracing::debug!(server, origin, error = %e, "catch-up: event refused");
                }
            }
            for (id, r) in inflight.finish().await {
                if let Err(e) = r {
                    tracing::debug!(server, %id, error = %e, "catch-up: event refused");
                }
            }
            break;
        }
    }
}
