//! State resolution when branches of a room merge (room version 12 rules: state resolution
//! v2.1, from ruma-state-res).
//!
//! This server keeps the room's *current* state, not a snapshot per event. A state event from
//! another server either follows the event that holds its `(type, state_key)` now (the holder is
//! among its ancestors: it simply replaces it), or was made concurrently, on another branch.
//! Then ruma's `resolve` runs over two state maps, the current state and the current state with
//! the new event in that slot, and its answer holds the slot. Both servers see the same two
//! events competing over the same unconflicted state, so both reach the same answer whichever
//! arrived first. A fork in which the other branch changed several slots is resolved slot by
//! slot as its events arrive.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma_common::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use ruma_events::{StateEventType, TimelineEventType};
use ruma_state_res::StateMap;
use ruma_state_res::utils::event_id_set::EventIdSet;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::events::Event;

/// Most events looked at when deciding whether one event is an ancestor of another.
const MAX_WALK: usize = 10_000;

/// An event in the shape ruma-state-res works with.
#[derive(Clone, Debug)]
struct Pdu {
    id: OwnedEventId,
    room: OwnedRoomId,
    sender: OwnedUserId,
    ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev: Vec<OwnedEventId>,
    auth: Vec<OwnedEventId>,
}

impl Pdu {
    fn of(ev: &Event) -> Option<Pdu> {
        let ids = |v: &[String]| v.iter().filter_map(|i| EventId::parse(i).ok()).collect::<Vec<_>>();
        Some(Pdu {
            id: EventId::parse(&ev.event_id).ok()?,
            room: RoomId::parse(&ev.room_id).ok()?,
            sender: UserId::parse(&ev.sender).ok()?,
            ts: MilliSecondsSinceUnixEpoch::from_system_time(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ev.origin_server_ts),
            )?,
            kind: TimelineEventType::from(ev.kind.as_str()),
            content: serde_json::value::to_raw_value(&ev.content).ok()?,
            state_key: ev.state_key.clone(),
            prev: ids(&ev.prev_events),
            auth: ids(&ev.auth_events),
        })
    }
}

impl ruma_state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.id
    }

    fn room_id(&self) -> Option<&RoomId> {
        Some(&self.room)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        None
    }

    fn rejected(&self) -> bool {
        false
    }
}

/// Whether `ancestor` is reachable from `ev` through `prev_events` (looking no deeper than the
/// ancestor's depth, and at most [`MAX_WALK`] events; beyond that the answer is "no").
pub fn is_ancestor(ancestor: &Event, ev: &Event, get: &dyn Fn(&str) -> Option<Event>) -> bool {
    let mut todo: Vec<String> = ev.prev_events.clone();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(id) = todo.pop() {
        if id == ancestor.event_id {
            return true;
        }
        if seen.len() >= MAX_WALK || !seen.insert(id.clone()) {
            continue;
        }
        if let Some(e) = get(&id)
            && e.depth >= ancestor.depth
        {
            todo.extend(e.prev_events);
        }
    }
    false
}

/// The events reachable through `auth_events` from `from` (themselves included).
fn auth_ancestors(from: &[OwnedEventId], fetch: &dyn Fn(&EventId) -> Option<Pdu>) -> HashSet<OwnedEventId> {
    let mut out = HashSet::new();
    let mut todo: Vec<OwnedEventId> = from.to_vec();
    while let Some(id) = todo.pop() {
        if out.len() >= MAX_WALK || out.contains(&id) {
            continue;
        }
        if let Some(p) = fetch(&id) {
            todo.extend(p.auth.iter().cloned());
        }
        out.insert(id);
    }
    out
}

/// Which of `holder` (the event holding its slot now) and `incoming` (made on another branch)
/// holds the slot after the merge. `state` is the room's current state, `(type, state_key) ->
/// event id`; `get` loads stored events (the incoming one need not be stored).
pub fn resolve_slot(
    state: &BTreeMap<(String, String), crate::ids::EventId>,
    incoming: &Event,
    get: &dyn Fn(&str) -> Option<Event>,
) -> Result<String> {
    let failed = |what: &str| Error::Internal(format!("state resolution: {what}"));
    let incoming_pdu = Pdu::of(incoming).ok_or_else(|| failed("unreadable event"))?;
    let cache: std::cell::RefCell<HashMap<OwnedEventId, Pdu>> =
        std::cell::RefCell::new(HashMap::from([(incoming_pdu.id.clone(), incoming_pdu.clone())]));
    let fetch = |id: &EventId| -> Option<Pdu> {
        if let Some(p) = cache.borrow().get(id) {
            return Some(p.clone());
        }
        let p = get(id.as_str()).and_then(|e| Pdu::of(&e))?;
        cache.borrow_mut().insert(p.id.clone(), p.clone());
        Some(p)
    };
    let mut current: StateMap<OwnedEventId> = HashMap::new();
    for ((kind, key), id) in state {
        if let Ok(id) = EventId::parse(id.as_str()) {
            current.insert((StateEventType::from(kind.as_str()), key.clone()), id);
        }
    }
    let slot = (StateEventType::from(incoming.kind.as_str()), incoming.state_key.clone().unwrap_or_default());
    let mut theirs = current.clone();
    theirs.insert(slot.clone(), incoming_pdu.id.clone());
    let chain = |m: &StateMap<OwnedEventId>| -> EventIdSet<OwnedEventId> {
        let ids: Vec<OwnedEventId> = m.values().cloned().collect();
        auth_ancestors(&ids, &fetch).into_iter().collect()
    };
    let chains = vec![chain(&current), chain(&theirs)];
    // The conflicted state subgraph (v2.1): events on an auth path from one conflicted event to
    // another.
    let subgraph = |conflicted: &StateMap<Vec<OwnedEventId>>| -> Option<EventIdSet<OwnedEventId>> {
        let set: Vec<OwnedEventId> = conflicted.values().flatten().cloned().collect();
        let mut out = EventIdSet::new();
        for c in &set {
            for x in auth_ancestors(std::slice::from_ref(c), &fetch) {
                let above = auth_ancestors(std::slice::from_ref(&x), &fetch);
                if set.iter().any(|other| above.contains(other)) {
                    out.insert(x);
                }
            }
        }
        Some(out)
    };
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    let v2 = rules.state_res.v2_rules().ok_or_else(|| failed("no v2 rules"))?;
    let resolved = ruma_state_res::resolve(&rules.authorization, v2, [&current, &theirs], chains, fetch, subgraph)
        .map_err(|e| failed(&e.to_string()))?;
    resolved.get(&slot).map(|id| id.to_string()).ok_or_else(|| failed("the slot resolved to nothing"))
}
