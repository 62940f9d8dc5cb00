//! Appending events: one place that writes an event, its timeline position, the state it sets
//! and the room summary, inside the caller's batch.

use std::sync::Arc;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rooms::RoomRecord;
use super::tables::*;
use super::{Tx, get_json, put_json};
use crate::error::Result;
use crate::events::*;
use crate::ids::{EventId, RoomId};

/// An event with its position in this server's stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredEvent {
    /// Stream position: total order of everything this server committed.
    pub pos: u64,
    /// The event.
    pub event: Event,
    /// The redaction that stripped the event's content, if one did (`unsigned.redacted_because`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_because: Option<EventId>,
    /// The group of the room's state after the event (see [`super::state`]); none for events
    /// stored before state groups, and for state and history received with a join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_group: Option<u64>,
    /// A message's newest edit (see [`super::edits`]): what it says now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<super::edits::Replacement>,
    /// A reply's quote of the message it answers, as that message is now (see
    /// [`super::relations`]); none when it is not stored here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<super::relations::Quote>,
    /// A message's reactions, by key in the order the keys first came.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<super::relations::Reaction>,
    /// For a member event, the content of the member event it followed here (Matrix's
    /// `unsigned.prev_content`): a change of name shows as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_content: Option<serde_json::Value>,
    /// An event with no row of its own (an edit or a reaction: it changes another's), also
    /// once redaction has stripped what said so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

impl StoredEvent {
    /// What a message says now: its newest edit's content, else its own.
    pub fn content_now(&self) -> &serde_json::Value {
        self.edit.as_ref().map_or(&self.event.content, |e| &e.content)
    }

    /// `event` at `pos` with nothing applied to it yet.
    pub fn new(pos: u64, event: Event, state_group: Option<u64>) -> StoredEvent {
        StoredEvent {
            pos,
            event,
            redacted_because: None,
            state_group,
            edit: None,
            quote: None,
            reactions: Vec::new(),
            prev_content: None,
            hidden: false,
        }
    }
}

impl Tx<'_> {
    /// An event by id.
    pub fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        let event_id = event_id.as_str();
        get_event(&self.txn.open_table(EVENTS)?, event_id)
    }

    /// Whether an event is stored.
    pub fn has_event(&self, event_id: &EventId) -> Result<bool> {
        let event_id = event_id.as_str();
        Ok(self.txn.open_table(EVENTS)?.get(event_id)?.is_some())
    }

    /// The id of the event holding one state slot of a room.
    pub fn state_event_id(&self, room_id: &RoomId, kind: &str, key: &str) -> Result<Option<EventId>> {
        let room_id = room_id.as_str();
        super::rooms::state_event_id_in(&self.txn.open_table(ROOM_STATE)?, room_id, kind, key)
    }

    /// The room's current state: (event type, state key) -> event id.
    pub fn state_ids(&self, room_id: &RoomId) -> Result<std::collections::BTreeMap<(String, String), EventId>> {
        let room_id = room_id.as_str();
        super::rooms::state_ids_in(&self.txn.open_table(ROOM_STATE)?, room_id)
    }

    /// Stores `ev` of `room_id` as an outlier (no timeline position: state or auth chain
    /// received from another server, or a soft-failed event with the group of the state after
    /// it), unless it is stored already.
    pub fn put_outlier(&mut self, room_id: &RoomId, ev: &Event, state_group: Option<u64>) -> Result<()> {
        let room_id = room_id.as_str();
        let mut events = self.txn.open_table(EVENTS)?;
        if events.get(ev.event_id.as_str())?.is_none() {
            put_json(&mut events, ev.event_id.as_str(), &StoredEvent::new(0, ev.clone(), state_group))?;
            self.txn.open_table(ROOM_OUTLIERS)?.insert((room_id, ev.event_id.as_str()), ())?;
        }
        Ok(())
    }
}

/// The state slots a new event's `auth_events` name, as Matrix selects them (room version 12:
/// the create event is implied by the room id): the power levels, the sender's membership,
/// and for a member event the target's membership and, for a join, an invite or a knock only,
/// the join rules (a leave, kick or ban naming them is refused by Matrix servers).
pub fn auth_slots<'a>(sender: &'a str, new: &'a NewEvent) -> Vec<(&'static str, &'a str)> {
    let mut wanted: Vec<(&str, &str)> = vec![(M_ROOM_POWER_LEVELS, ""), (M_ROOM_MEMBER, sender)];
    if new.kind == M_ROOM_MEMBER {
        let membership = Membership::of_content(&new.content);
        if matches!(membership, Some(Membership::Join | Membership::Invite | Membership::Knock)) {
            wanted.push((M_ROOM_JOIN_RULES, ""));
        }
        // A restricted join names the member who let it in.
        if membership == Some(Membership::Join)
            && let Some(via) = new.content.get("join_authorised_via_users_server").and_then(serde_json::Value::as_str)
        {
            wanted.push((M_ROOM_MEMBER, via));
        }
        if let Some(target) = new.state_key.as_deref()
            && target != sender
        {
            wanted.push((M_ROOM_MEMBER, target));
        }
    }
    wanted
}

/// Fills in `prev_events`, `auth_events` and `depth` for a new event in `room` and builds it.
pub fn build_next(tx: &Tx<'_>, room: &RoomRecord, sender: &str, new: NewEvent, ts: u64) -> Result<Event> {
    let state = tx.txn.open_table(ROOM_STATE)?;
    let rid = room.room_id.as_str();
    let mut auth_events = Vec::new();
    for (kind, key) in auth_slots(sender, &new) {
        if let Some(id) = state.get((rid, kind, key))? {
            auth_events.push(id.value().to_string());
        }
    }
    let parents = Parents { prev_events: room.extremities.clone(), auth_events, depth: room.depth + 1 };
    Ok(Event::build(Some(&room.room_id), sender, new, parents, ts))
}

/// Writes `ev` (already authorised) into `room`: event row, timeline, state, membership
/// indexes and the room summary; queues it for live delivery after commit, and for the room's
/// other servers if a local user sent it.
pub fn persist(tx: &mut Tx<'_>, room: &mut RoomRecord, ev: Event) -> Result<Arc<StoredEvent>> {
    let local = !tx.local.is_empty() && server_of(&ev.sender) == tx.local;
    persist_inner(tx, room, ev, local)
}

/// [`persist`] without queueing for other servers: for events that came from them.
pub fn persist_received(tx: &mut Tx<'_>, room: &mut RoomRecord, ev: Event) -> Result<Arc<StoredEvent>> {
    persist_inner(tx, room, ev, false)
}

/// A received event that passed its auth events but fails against the room's current state
/// (soft-failed, as Matrix calls it): stored with the state after it, so that events which
/// follow it can be placed, but not in the timeline, not a forward extremity, and without
/// effect on the room's current state. Never shown.
pub fn persist_soft_failed(tx: &mut Tx<'_>, room: &mut RoomRecord, ev: &Event) -> Result<()> {
    if tx.has_event(&ev.event_id)? {
        return Ok(());
    }
    let mut scratch = room.clone();
    let after = super::state::place(tx, &mut scratch, ev)?;
    if room.state_group.is_none() && scratch.state_group.is_some() {
        // The room's first group was made for it: keep it.
        room.state_group = scratch.state_group;
        super::rooms::put_room(tx.txn, room, false)?;
    }
    tx.put_outlier(&room.room_id, ev, Some(after))
}

fn persist_inner(tx: &mut Tx<'_>, room: &mut RoomRecord, mut ev: Event, send: bool) -> Result<Arc<StoredEvent>> {
    let hidden = super::edits::edited_event_id(&ev).is_some() || super::relations::annotation(&ev).is_some();
    let redacted_because = super::redactions::on_persist(tx, room, &mut ev, !send)?;
    let rid = room.room_id.clone();
    let edit = match redacted_because {
        None => super::edits::on_persist(tx, &rid, &ev, !send)?,
        Some(_) => None,
    };
    let pos = tx.next_pos();
    let shown = match redacted_because {
        None => super::relations::on_persist(tx, &rid, &ev, pos, !send)?,
        Some(_) => Default::default(),
    };
    if redacted_because.is_none() {
        super::media::on_persist(tx, rid.as_str(), &ev)?;
    }
    let eid = ev.event_id.clone();
    let kind = if super::edits::edited_event_id(&ev).is_some() { super::edits::EDIT_KIND } else { ev.kind.as_str() };
    tx.txn.open_table(ROOM_TIMELINE)?.insert((rid.as_str(), pos), (eid.as_str(), ev.sender.as_str(), kind))?;
    tx.txn.open_table(STREAM)?.insert(pos, (rid.as_str(), eid.as_str()))?;
    for u in mentioned(tx, room, &ev)? {
        tx.txn.open_table(MENTIONS)?.insert((u.as_str(), rid.as_str(), pos), ())?;
    }
    let pushable = ev.kind == M_ROOM_MESSAGE || ev.kind == crate::events::call::INVITE;
    if pushable && !hidden && redacted_because.is_none() && super::push::any_push_subs(tx)? {
        super::push::queue_push(tx, pos, eid.as_str())?;
    }
    let prev_content = match (ev.kind == M_ROOM_MEMBER, ev.state_key.as_deref()) {
        (true, Some(key)) => match tx.state_event_id(&rid, M_ROOM_MEMBER, key)? {
            Some(id) => tx.event(&id)?.map(|e| e.event.content),
            None => None,
        },
        _ => None,
    };
    // The state after the event (a message shares its predecessor's group); then the event is
    // stored, as resolution reads it with the others, and the room's current state moves:
    // to the event's own when it follows every tip, else to the resolution of the tips' states
    // (see `state`).
    let after = super::state::place(tx, room, &ev)?;
    let stored = Arc::new(StoredEvent {
        redacted_because,
        edit,
        quote: shown.quote,
        reactions: shown.reactions,
        prev_content,
        hidden,
        ..StoredEvent::new(pos, ev, Some(after))
    });
    put_json(&mut tx.txn.open_table(EVENTS)?, eid.as_str(), stored.as_ref())?;
    let ev = &stored.event;
    let followed_all = room.extremities.iter().all(|e| ev.prev_events.contains(e));
    // The new event follows the tips it names; tips it does not name (events from another
    // server it had not seen yet) stay tips, and the next local event merges them.
    room.extremities.retain(|e| !ev.prev_events.contains(e));
    room.extremities.push(eid.to_string());
    super::state::trim_extremities(tx, room)?;
    let state_changed = super::state::update_current(tx, room, after, followed_all)?;
    room.depth = room.depth.max(ev.depth);
    room.last_pos = pos;
    super::rooms::put_room(tx.txn, room, state_changed)?;
    if send {
        enqueue(tx, room, &stored, &[])?;
    }
    tx.publish(stored.clone());
    Ok(stored)
}

/// The users an event mentions, for their mention counts: those its `m.mentions` names, and
/// with `room: true` from a sender whose level allows it (`notifications.room`), every member
/// of the room but the sender.
pub fn mentioned(tx: &Tx<'_>, room: &RoomRecord, ev: &Event) -> Result<Vec<String>> {
    let (users, everyone) = mentions_of(&ev.content);
    let mut users: Vec<String> = users.into_iter().map(str::to_string).collect();
    let pl = &room.power_levels;
    if everyone && pl.level_of(room.creators(), ev.sender.as_str()) >= pl.room_notification_level() {
        let members = super::rooms::memberships(&tx.txn.open_table(ROOM_MEMBERS)?, room.room_id.as_str())?;
        for (user, m) in members {
            if m == Membership::Join && user != ev.sender.as_str() && !users.contains(&user) {
                users.push(user);
            }
        }
    }
    Ok(users)
}

/// Most forward extremities kept per room (the oldest are forgotten beyond it).
pub const MAX_EXTREMITIES: usize = 20;

pub use crate::ids::server_of;

/// Queues `stored` for every other server with joined members in `room` (and, for a member
/// event that removes a remote user, that user's server), except `except` and the sender's.
pub fn enqueue(tx: &mut Tx<'_>, room: &RoomRecord, stored: &StoredEvent, except: &[&str]) -> Result<()> {
    let ev = &stored.event;
    let sender_server = server_of(&ev.sender);
    let mut dests: Vec<&str> = room.servers.iter().filter(|(_, n)| **n > 0).map(|(s, _)| s.as_str()).collect();
    if ev.kind == M_ROOM_MEMBER
        && let Some(target) = ev.state_key.as_deref()
        && matches!(Membership::of_content(&ev.content), Some(Membership::Leave | Membership::Ban))
        && !dests.contains(&server_of(target))
    {
        dests.push(server_of(target));
    }
    let lane = super::outbox::Lane::of(&ev.kind).index();
    let local = tx.local;
    let woken: Vec<String> = dests
        .into_iter()
        .filter(|d| !d.is_empty() && *d != local && *d != sender_server && !except.contains(d))
        .map(str::to_string)
        .collect();
    if woken.is_empty() {
        return Ok(());
    }
    {
        let mut queue = tx.txn.open_table(FED_QUEUE)?;
        for d in &woken {
            queue.insert((d.as_str(), lane, stored.pos), ev.event_id.as_str())?;
        }
    }
    for d in woken {
        tx.wake_destination(&d);
    }
    Ok(())
}

/// Writes a room joined through another server: its auth chain and state (not in the
/// timeline), recent history, then our join, which is published.
///
/// The state the resident server sent replaces whatever this server held of the room: a
/// partial room from an invitation, or the copy kept after our last member was kicked,
/// banned or left (a rejoin). Memberships, and with them the servers the room's events are
/// sent to, are counted from that state alone, so users who left while we were away are not
/// counted as joined, and every server with a joined member is. History already in our
/// timeline is not added again.
pub fn store_joined_room(
    tx: &mut Tx<'_>,
    room_id: &RoomId,
    chain: Vec<Event>,
    states: Vec<Event>,
    timeline: Vec<Event>,
    join: Event,
) -> Result<()> {
    let create =
        chain.iter().find(|e| e.kind == M_ROOM_CREATE).ok_or_else(|| crate::error::Error::bad("no create event"))?;
    let direct = create.content.get("chat.direct").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let pl = PowerLevels::for_new_room();
    let mut room = RoomRecord::new(room_id, &create.sender, create.origin_server_ts, direct, JoinRule::Invite, pl);
    room.additional_creators = crate::events::additional_creators(&create.content);
    for ev in &chain {
        tx.put_outlier(room_id, ev, None)?;
    }
    forget_state(tx, room_id)?;
    let mut before = crate::events::stateres::StateIds::new();
    for ev in &states {
        let key = ev.state_key.as_deref().unwrap_or_default();
        tx.txn.open_table(ROOM_STATE)?.insert((room_id.as_str(), ev.kind.as_str(), key), ev.event_id.as_str())?;
        apply_state(tx, &mut room, &ev.kind, &ev.content, key)?;
        room.depth = room.depth.max(ev.depth);
        before.insert((ev.kind.clone(), key.to_string()), ev.event_id.to_string());
    }
    // The state the resident server sent is the state after the events our join follows.
    let group = super::state::put_state(tx, &room, &before)?;
    room.state_group = Some(group);
    for ev in timeline {
        if ev.event_id == join.event_id || tx.event(&ev.event_id)?.is_some_and(|s| s.pos > 0) {
            continue;
        }
        let pos = tx.next_pos();
        tx.txn
            .open_table(ROOM_TIMELINE)?
            .insert((room_id.as_str(), pos), (ev.event_id.as_str(), ev.sender.as_str(), ev.kind.as_str()))?;
        tx.txn.open_table(STREAM)?.insert(pos, (room_id.as_str(), ev.event_id.as_str()))?;
        room.depth = room.depth.max(ev.depth);
        room.last_pos = pos;
        let id = ev.event_id.clone();
        // The events our join follows have the state the resident server sent.
        let state_group = join.prev_events.contains(&id.to_string()).then_some(group);
        put_json(&mut tx.txn.open_table(EVENTS)?, id.as_str(), &StoredEvent::new(pos, ev, state_group))?;
    }
    // Our join may be here already: the events that follow it, sent by a server of the room
    // while our handshake was finishing, fetched it. It is stored again on the state sent;
    // its first timeline row goes, so it is in the timeline once.
    if let Some(early) = tx.event(&join.event_id)?
        && early.pos > 0
    {
        tx.txn.open_table(ROOM_TIMELINE)?.remove((room_id.as_str(), early.pos))?;
        tx.txn.open_table(STREAM)?.remove(early.pos)?;
    }
    room.extremities = join.prev_events.clone();
    persist_received(tx, &mut room, join)?;
    Ok(())
}

/// Removes a room's state slots and membership rows (both indexes), before the room's state
/// is written anew from a resident server's answer.
fn forget_state(tx: &mut Tx<'_>, room_id: &RoomId) -> Result<()> {
    let rid = room_id.as_str();
    let slots: Vec<(String, String)> =
        super::rooms::state_ids_in(&tx.txn.open_table(ROOM_STATE)?, rid)?.into_keys().collect();
    let mut state = tx.txn.open_table(ROOM_STATE)?;
    for (kind, key) in &slots {
        state.remove((rid, kind.as_str(), key.as_str()))?;
    }
    let members = super::rooms::memberships(&tx.txn.open_table(ROOM_MEMBERS)?, rid)?;
    let mut by_room = tx.txn.open_table(ROOM_MEMBERS)?;
    let mut by_user = tx.txn.open_table(USER_ROOMS)?;
    for (user, _) in &members {
        by_room.remove((rid, user.as_str()))?;
        by_user.remove((user.as_str(), rid))?;
    }
    Ok(())
}

/// Updates the summary and membership indexes for a state event.
pub fn apply_state(
    tx: &Tx<'_>,
    room: &mut RoomRecord,
    kind: &str,
    content: &serde_json::Value,
    key: &str,
) -> Result<()> {
    let text = |field: &str| content.get(field).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    match kind {
        M_ROOM_NAME => room.name = capped_text(&text("name"), MAX_NAME_CHARS),
        M_ROOM_TOPIC => room.topic = capped_text(&text("topic"), MAX_TOPIC_CHARS),
        M_ROOM_JOIN_RULES => room.join_rule = JoinRule::of_content(content),
        M_ROOM_PINNED_EVENTS => {
            let ids = content.get("pinned").and_then(|p| p.as_array()).into_iter().flatten();
            let ids = ids.filter_map(|v| v.as_str()).filter(|id| crate::ids::EventId::parse(id).is_ok());
            room.pinned = ids.take(MAX_PINNED).map(str::to_string).collect();
        }
        M_ROOM_POWER_LEVELS => {
            if let Ok(pl) = serde_json::from_value(content.clone()) {
                room.power_levels = pl;
            }
        }
        M_ROOM_MEMBER => {
            let after = Membership::of_content(content).unwrap_or(Membership::Leave);
            let mut members = tx.txn.open_table(ROOM_MEMBERS)?;
            let before = members
                .get((room.room_id.as_str(), key))?
                .map(|v| Membership::parse(v.value()))
                .unwrap_or(Membership::Leave);
            members.insert((room.room_id.as_str(), key), after.as_str())?;
            tx.txn.open_table(USER_ROOMS)?.insert((key, room.room_id.as_str()), after.as_str())?;
            let server = server_of(key).to_string();
            match (before == Membership::Join, after == Membership::Join) {
                (false, true) => {
                    room.joined += 1;
                    *room.servers.entry(server).or_default() += 1;
                }
                (true, false) => {
                    room.joined = room.joined.saturating_sub(1);
                    if let Some(n) = room.servers.get_mut(&server) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            room.servers.remove(&server);
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// Loads an event by id.
pub fn get_event(events: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Result<Option<StoredEvent>> {
    get_json(events, id)
}
