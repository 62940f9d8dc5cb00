//! The state at each event, and the current state as the resolution of the states at the
//! room's forward extremities.
//!
//! A *state group* is one state of a room, stored as the slots it changes from an earlier group
//! (a chain of at most [`MAX_CHAIN`] deltas, then a full copy). Every event stored in a room
//! gets the group of the state after it: the state before it (the state after its one
//! predecessor, or the resolution of the states after its predecessors where those differ)
//! with the event itself in its slot if it is a state event. A message shares its
//! predecessor's group, so the common case costs one lookup and one row.
//!
//! The room's current state (`room_state`, the summary, the membership rows) is the state after
//! its forward extremities: the new event's own state when it follows every extremity, and the
//! resolution of the extremities' states when it does not (it was made on another branch).
//! Every server that holds the same events therefore shows the same state, whatever order they
//! arrived in.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::Tx;
use super::events::apply_state;
use super::rooms::RoomRecord;
use super::tables::*;
use crate::error::{Error, Result};
use crate::events::stateres::{StateIds, resolve};
use crate::events::*;

/// Deltas chained before a group is stored in full.
const MAX_CHAIN: u32 = 32;

/// A stored state group.
#[derive(Debug, Serialize, Deserialize)]
pub struct Group {
    /// The group this one changes (`None`: `delta` is the whole state).
    prev: Option<u64>,
    /// Deltas between this group and the nearest full one.
    chain: u32,
    /// Slots set (`Some(event id)`) or emptied (`None`).
    delta: Vec<(String, String, Option<String>)>,
}

fn group_in(table: &impl ReadableTable<(&'static str, u64), &'static [u8]>, room: &str, id: u64) -> Result<Group> {
    let row = table.get((room, id))?.ok_or_else(|| Error::Internal(format!("state group {id} missing")))?;
    Ok(serde_json::from_slice(row.value())?)
}

fn load_group(tx: &Tx<'_>, room: &str, id: u64) -> Result<Group> {
    group_in(&tx.txn.open_table(STATE_GROUPS)?, room, id)
}

/// The state of group `id` of `room`, read from `table`.
pub(super) fn load_in(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &str,
    id: u64,
) -> Result<StateIds> {
    let mut deltas = Vec::new();
    let mut next = Some(id);
    while let Some(g) = next {
        let group = group_in(table, room, g)?;
        next = group.prev;
        deltas.push(group.delta);
    }
    let mut state = StateIds::new();
    for delta in deltas.into_iter().rev() {
        for (kind, key, id) in delta {
            match id {
                Some(id) => state.insert((kind, key), id),
                None => state.remove(&(kind, key)),
            };
        }
    }
    Ok(state)
}

/// The state of group `id` of `room`.
pub fn load(tx: &Tx<'_>, room: &str, id: u64) -> Result<StateIds> {
    load_in(&tx.txn.open_table(STATE_GROUPS)?, room, id)
}

fn next_group_id(tx: &Tx<'_>) -> Result<u64> {
    let mut meta = tx.txn.open_table(META)?;
    let last =
        meta.get("state_group_seq")?.and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes)).unwrap_or(0);
    meta.insert("state_group_seq", (last + 1).to_le_bytes().as_slice())?;
    Ok(last + 1)
}

fn put_group(tx: &Tx<'_>, room: &str, group: &Group) -> Result<u64> {
    let id = next_group_id(tx)?;
    tx.txn.open_table(STATE_GROUPS)?.insert((room, id), serde_json::to_vec(group)?.as_slice())?;
    Ok(id)
}

/// Stores `state` in full as a new group.
fn put_full(tx: &Tx<'_>, room: &str, state: &StateIds) -> Result<u64> {
    let delta = state.iter().map(|((k, s), id)| (k.clone(), s.clone(), Some(id.clone()))).collect();
    put_group(tx, room, &Group { prev: None, chain: 0, delta })
}

/// A new group: `base` with one slot set.
fn put_slot(tx: &Tx<'_>, room: &str, base: u64, kind: &str, key: &str, id: &str) -> Result<u64> {
    let chain = load_group(tx, room, base)?.chain + 1;
    if chain > MAX_CHAIN {
        let mut state = load(tx, room, base)?;
        state.insert((kind.to_string(), key.to_string()), id.to_string());
        return put_full(tx, room, &state);
    }
    let delta = vec![(kind.to_string(), key.to_string(), Some(id.to_string()))];
    put_group(tx, room, &Group { prev: Some(base), chain, delta })
}

/// A stored event by the id text a DAG list or a state map holds (`None`: not here, or not an
/// event id).
fn stored(tx: &Tx<'_>, event_id: &str) -> Result<Option<super::events::StoredEvent>> {
    match crate::ids::EventId::parse(event_id) {
        Ok(id) => tx.event(&id),
        Err(_) => Ok(None),
    }
}

/// The group of the state after an event, if the event is stored here with one.
pub fn group_of(tx: &Tx<'_>, event_id: &str) -> Result<Option<u64>> {
    Ok(stored(tx, event_id)?.and_then(|s| s.state_group))
}

/// Forgets forward extremities beyond [`super::events::MAX_EXTREMITIES`]: first the oldest
/// whose state another extremity shares (or that has none), so that no branch's state is
/// forgotten while a sender keeps answering old events; else the oldest.
pub fn trim_extremities(tx: &Tx<'_>, room: &mut RoomRecord) -> Result<()> {
    if room.extremities.len() <= super::events::MAX_EXTREMITIES {
        return Ok(());
    }
    let mut tips: Vec<(String, Option<u64>)> = Vec::with_capacity(room.extremities.len());
    for e in room.extremities.drain(..) {
        let g = group_of(tx, &e)?;
        tips.push((e, g));
    }
    while tips.len() > super::events::MAX_EXTREMITIES {
        let shared = |g: Option<u64>| g.is_none_or(|g| tips.iter().filter(|(_, o)| *o == Some(g)).count() > 1);
        let drop = tips.iter().position(|(_, g)| shared(*g)).unwrap_or(0);
        tips.remove(drop);
    }
    room.extremities = tips.into_iter().map(|(e, _)| e).collect();
    Ok(())
}

/// The group of the room's current state; a room stored before state groups existed gets one
/// from its current state.
pub fn current_group(tx: &Tx<'_>, room: &mut RoomRecord) -> Result<u64> {
    if let Some(g) = room.state_group {
        return Ok(g);
    }
    let rid = room.room_id.as_str();
    let state: StateIds = super::rooms::state_ids_in(&tx.txn.open_table(ROOM_STATE)?, rid)?
        .into_iter()
        .map(|(slot, id)| (slot, id.to_string()))
        .collect();
    let g = put_full(tx, rid, &state)?;
    room.state_group = Some(g);
    Ok(g)
}

/// Stores `state` (the room's whole state as a resolved set of event ids) as the room's state
/// at a point named by the caller; returns its group.
pub fn put_state(tx: &Tx<'_>, room: &RoomRecord, state: &StateIds) -> Result<u64> {
    put_full(tx, room.room_id.as_str(), state)
}

/// Resolves the states of `groups` (distinct, at least one): one group is itself; several
/// are resolved (once: the answer is kept in `state_merges`), and the result stored unless it
/// equals one of them.
fn resolve_groups(tx: &Tx<'_>, room: &str, groups: &[u64]) -> Result<u64> {
    if let [one] = groups {
        return Ok(*one);
    }
    let mut sorted = groups.to_vec();
    sorted.sort_unstable();
    let key = sorted.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if let Some(g) = tx.txn.open_table(STATE_MERGES)?.get((room, key.as_str()))? {
        return Ok(g.value());
    }
    let states: Vec<StateIds> = sorted.iter().map(|g| load(tx, room, *g)).collect::<Result<_>>()?;
    let get = |id: &str| stored(tx, id).ok().flatten().map(|s| s.event);
    let g = match resolve(&states, &get) {
        Ok(resolved) => match states.iter().position(|s| *s == resolved) {
            Some(i) => sorted[i],
            None => put_full(tx, room, &resolved)?,
        },
        Err(e) => {
            // Should not happen with events that passed the auth rules; keep the newest branch.
            tracing::warn!(room, error = %e, "state resolution failed; the newest branch's state stays");
            sorted[sorted.len() - 1]
        }
    };
    tx.txn.open_table(STATE_MERGES)?.insert((room, key.as_str()), g)?;
    Ok(g)
}

/// Distinct groups of `events`, in their order (events without one are left out).
pub fn groups_of(tx: &Tx<'_>, events: &[String]) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in events {
        if let Some(g) = group_of(tx, e)?
            && !out.contains(&g)
        {
            out.push(g);
        }
    }
    Ok(out)
}

/// Works out `ev`'s state group (the state after it), for its `StoredEvent`. The
/// state before it is the room's current state when it follows exactly the room's extremities
/// (every local event), else the resolution of its predecessors' states (predecessors this
/// server does not hold, or holds from before state groups, are left out; with none left, the
/// current state).
pub fn place(tx: &Tx<'_>, room: &mut RoomRecord, ev: &Event) -> Result<u64> {
    let rid = room.room_id.as_str().to_string();
    let before = match before_group(tx, room, ev)? {
        Some(g) => g,
        None => current_group(tx, room)?,
    };
    let after = match ev.state_key.as_deref() {
        Some(key) => put_slot(tx, &rid, before, &ev.kind, key, ev.event_id.as_str())?,
        None => before,
    };
    Ok(after)
}

/// The group of the state before `ev` where that is not simply the room's current state:
/// `None` when `ev` follows exactly the room's forward extremities, or when none of its
/// predecessors is held here (a gap).
fn before_group(tx: &Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<Option<u64>> {
    let follows_tips = !room.extremities.is_empty()
        && ev.prev_events.len() == room.extremities.len()
        && room.extremities.iter().all(|e| ev.prev_events.contains(e));
    if follows_tips {
        return Ok(None);
    }
    let prevs = groups_of(tx, &ev.prev_events)?;
    if prevs.is_empty() { Ok(None) } else { resolve_groups(tx, room.room_id.as_str(), &prevs).map(Some) }
}

/// The state before `ev` (not yet stored) where it differs from the room's current state
/// (`None`: it is the current state). Resolving differing predecessors may cache the
/// resolution (`state_merges`), which is valid whatever becomes of `ev`.
pub fn state_before(tx: &Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<Option<StateIds>> {
    before_group(tx, room, ev)?.map(|g| load(tx, room.room_id.as_str(), g)).transpose()
}

/// Moves the room's current state to the state after its forward extremities, once `ev`
/// (placed, with group `after`) was added to them: `after` itself when `ev` followed every
/// other extremity, else the resolution of the extremities' states (the branches meeting).
/// So the current state follows from the events held, not from the order they came in.
/// Changed slots are written to the room's state, summary and membership rows. Returns
/// whether any slot changed.
pub fn update_current(tx: &Tx<'_>, room: &mut RoomRecord, after: u64, followed_all: bool) -> Result<bool> {
    let rid = room.room_id.as_str().to_string();
    let old = current_group(tx, room)?;
    let new = if followed_all {
        after
    } else {
        let mut groups = groups_of(tx, &room.extremities)?;
        if !groups.contains(&after) {
            groups.push(after);
        }
        resolve_groups(tx, &rid, &groups)?
    };
    if new == old {
        return Ok(false);
    }
    // The common case: `ev`'s state is the old current state plus its own slot.
    let group = load_group(tx, &rid, new)?;
    let changes: Vec<((String, String), Option<String>)> = if group.prev == Some(old) {
        group.delta.into_iter().map(|(k, s, id)| ((k, s), id)).collect()
    } else {
        let (was, now) = (load(tx, &rid, old)?, load(tx, &rid, new)?);
        let mut changes: Vec<((String, String), Option<String>)> = now
            .iter()
            .filter(|(slot, id)| was.get(*slot) != Some(*id))
            .map(|(s, i)| (s.clone(), Some(i.clone())))
            .collect();
        changes.extend(was.keys().filter(|slot| !now.contains_key(*slot)).map(|slot| (slot.clone(), None)));
        changes
    };
    room.state_group = Some(new);
    let mut changed = false;
    for ((kind, key), id) in changes {
        let holder = match &id {
            Some(id) => stored(tx, id)?.map(|s| s.event),
            None => None,
        };
        let mut slots = tx.txn.open_table(ROOM_STATE)?;
        match holder {
            Some(holder) => {
                slots.insert((rid.as_str(), kind.as_str(), key.as_str()), holder.event_id.as_str())?;
                drop(slots);
                apply_state(tx, room, &holder.kind, &holder.content, &key)?;
            }
            None => {
                slots.remove((rid.as_str(), kind.as_str(), key.as_str()))?;
                drop(slots);
                clear_slot(tx, room, &kind, &key)?;
            }
        }
        changed = true;
    }
    Ok(changed)
}

/// The summary and membership rows for a slot that resolution emptied.
fn clear_slot(tx: &Tx<'_>, room: &mut RoomRecord, kind: &str, key: &str) -> Result<()> {
    match kind {
        M_ROOM_NAME | M_ROOM_TOPIC => apply_state(tx, room, kind, &serde_json::json!({}), key),
        M_ROOM_MEMBER => apply_state(tx, room, kind, &serde_json::json!({ "membership": "leave" }), key),
        _ => Ok(()),
    }
}

/// Every state group of a room and the resolutions kept, for deleting the room.
pub fn forget(tx: &Tx<'_>, room: &str) -> Result<()> {
    tx.txn.open_table(STATE_GROUPS)?.retain_in((room, 0)..=(room, u64::MAX), |_, _| false)?;
    tx.txn.open_table(STATE_MERGES)?.retain_in((room, "")..=(room, "\u{10ffff}"), |_, _| false)?;
    Ok(())
}
