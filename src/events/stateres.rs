//! State resolution when branches of a room merge (room version 12 rules: state resolution
//! v2.1, from ruma-state-res).
//!
//! The store keeps the state at every event (see `store::state`). Where an event follows
//! several events whose states differ, and where the room's branches (its forward extremities)
//! hold different states, the state there is the resolution of those states: power events
//! first in a deterministic order, each checked against the state resolved so far, then the
//! rest. So an event made on one branch that the other branch's changes take the power for
//! (a rename by someone demoted concurrently, a kick by someone demoted concurrently) loses on
//! every server, whichever order the server received the two in.

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

/// A room's state as event ids: (event type, state key) -> id of the event holding the slot.
pub type StateIds = BTreeMap<(String, String), String>;

/// The state of a room where branches meet: state resolution over the states at each branch
/// (at least two). `get` loads events by id (every event of the states and their auth chains
/// that this server holds). Each server that resolves the same states gets the same answer,
/// whatever order it received the events in.
pub fn resolve(states: &[StateIds], get: &dyn Fn(&str) -> Option<Event>) -> Result<StateIds> {
    let failed = |what: &str| Error::Internal(format!("state resolution: {what}"));
    let cache: std::cell::RefCell<HashMap<OwnedEventId, Pdu>> = std::cell::RefCell::new(HashMap::new());
    let fetch = |id: &EventId| -> Option<Pdu> {
        if let Some(p) = cache.borrow().get(id) {
            return Some(p.clone());
        }
        let p = get(id.as_str()).and_then(|e| Pdu::of(&e))?;
        cache.borrow_mut().insert(p.id.clone(), p.clone());
        Some(p)
    };
    let maps: Vec<StateMap<OwnedEventId>> = states
        .iter()
        .map(|state| {
            let mut map: StateMap<OwnedEventId> = HashMap::new();
            for ((kind, key), id) in state {
                if let Ok(id) = EventId::parse(id.as_str()) {
                    map.insert((StateEventType::from(kind.as_str()), key.clone()), id);
                }
            }
            map
        })
        .collect();
    let chains: Vec<EventIdSet<OwnedEventId>> = maps
        .iter()
        .map(|m| {
            let ids: Vec<OwnedEventId> = m.values().cloned().collect();
            auth_ancestors(&ids, &fetch).into_iter().collect()
        })
        .collect();
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
    let resolved = ruma_state_res::resolve(&rules.authorization, v2, maps.iter(), chains, fetch, subgraph)
        .map_err(|e| failed(&e.to_string()))?;
    Ok(resolved.into_iter().map(|((kind, key), id)| ((kind.to_string(), key), id.to_string())).collect())
}

/// Whether `ev` passes the Matrix authorization rules (room version 12, ruma-state-res)
/// given the state its own `auth_events` name: `get` finds an auth event (or the room's create
/// event) by id. The first of the checks on receipt of a PDU; a create event is checked by
/// the caller (ruma's check reads a v12 create event without a room id).
pub fn check_auth_events<'a>(ev: &Event, get: &dyn Fn(&str) -> Option<&'a Event>) -> Result<()> {
    let pdu = Pdu::of(ev).ok_or_else(|| Error::bad("the event's ids are not Matrix ids"))?;
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    let refused = |e: String| Error::bad(format!("refused by the authorization rules over its auth events: {e}"));
    ruma_state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id: &EventId| {
        get(id.as_str()).and_then(Pdu::of)
    })
    .map_err(refused)?;
    let create_id = ev.room_id.create_event_id();
    let mut slots: HashMap<(&str, &str), &Event> = HashMap::new();
    for a in ev.auth_events.iter().map(String::as_str).chain([create_id.as_str()]).filter_map(get) {
        if let Some(key) = a.state_key.as_deref() {
            slots.insert((a.kind.as_str(), key), a);
        }
    }
    let fetch =
        |kind: &StateEventType, key: &str| slots.get(&(kind.to_string().as_str(), key)).and_then(|e| Pdu::of(e));
    ruma_state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, fetch).map_err(refused)
}

/// Whether `ev` passes the Matrix authorization rules (room version 12, ruma-state-res: the
/// state-dependent rules, power-level changes included) given the state before it: `slot`
/// answers a (type, state key) of that state with the event holding it.
pub fn check_rules(ev: &Event, slot: &dyn Fn(&str, &str) -> Option<Event>) -> Result<()> {
    let pdu = Pdu::of(ev).ok_or_else(|| Error::bad("the event's ids are not Matrix ids"))?;
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    let fetch = |kind: &StateEventType, key: &str| slot(&kind.to_string(), key).and_then(|e| Pdu::of(&e));
    ruma_state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, fetch)
        .map_err(|e| Error::Forbidden(format!("refused by the authorization rules at its place in the room: {e}")))
}
