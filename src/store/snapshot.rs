//! A read snapshot with typed lookups, for code that reads many rows consistently (walking an
//! auth chain, the current state, missing events).

use redb::{ReadOnlyTable, ReadTransaction};

use super::Store;
use super::events::{StoredEvent, get_event};
use super::rooms::{membership_of, memberships, state_event_id_in, state_ids_in};
use super::tables::{EVENTS, ROOM_MEMBERS, ROOM_STATE, STATE_GROUPS, USER_ROOMS};
use crate::error::Result;
use crate::events::Membership;
use crate::ids::{EventId, RoomId};

/// Everything committed when it began, read consistently.
pub struct Snapshot {
    txn: ReadTransaction,
    events: ReadOnlyTable<&'static str, &'static [u8]>,
}

impl Store {
    /// A consistent snapshot of everything committed so far.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let txn = self.read()?;
        let events = txn.open_table(EVENTS)?;
        Ok(Snapshot { txn, events })
    }
}

impl Snapshot {
    /// An event by id.
    pub fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        let event_id = event_id.as_str();
        get_event(&self.events, event_id)
    }

    /// The room's current state: (event type, state key) -> event id.
    pub fn state_ids(&self, room_id: &RoomId) -> Result<std::collections::BTreeMap<(String, String), EventId>> {
        let room_id = room_id.as_str();
        state_ids_in(&self.txn.open_table(ROOM_STATE)?, room_id)
    }

    /// The room's state before an event, as this server worked it out (the state after its
    /// predecessors, resolved where they differ); `None` if it holds no state for one of them
    /// (a gap, or events stored before state groups).
    pub fn state_before(&self, ev: &crate::events::Event) -> Result<Option<crate::events::stateres::StateIds>> {
        let groups = self.txn.open_table(STATE_GROUPS)?;
        let mut ids = Vec::new();
        for prev in &ev.prev_events {
            let group = match EventId::parse(prev) {
                Ok(id) => self.event(&id)?.and_then(|s| s.state_group),
                Err(_) => None,
            };
            match group {
                Some(g) if !ids.contains(&g) => ids.push(g),
                Some(_) => {}
                None => return Ok(None),
            }
        }
        let room = ev.room_id.as_str();
        let states: Vec<_> =
            ids.iter().map(|g| super::state::load_in(&groups, room, *g)).collect::<Result<Vec<_>>>()?;
        match states.len() {
            0 => Ok(None),
            1 => Ok(states.into_iter().next()),
            _ => {
                let get =
                    |id: &str| EventId::parse(id).ok().and_then(|id| self.event(&id).ok().flatten()).map(|s| s.event);
                crate::events::stateres::resolve(&states, &get).map(Some)
            }
        }
    }

    /// The id of the event holding one state slot.
    pub fn state_event_id(&self, room_id: &RoomId, kind: &str, key: &str) -> Result<Option<EventId>> {
        let room_id = room_id.as_str();
        state_event_id_in(&self.txn.open_table(ROOM_STATE)?, room_id, kind, key)
    }

    /// A user's membership (`leave` if none).
    pub fn membership(&self, room_id: &RoomId, user: &str) -> Result<Membership> {
        let room_id = room_id.as_str();
        membership_of(&self.txn.open_table(ROOM_MEMBERS)?, room_id, user)
    }

    /// The rooms a user has joined.
    pub fn joined_rooms(&self, user: &str) -> Result<Vec<String>> {
        let rooms = memberships(&self.txn.open_table(USER_ROOMS)?, user)?;
        Ok(rooms.into_iter().filter(|(_, m)| *m == Membership::Join).map(|(rid, _)| rid).collect())
    }

    /// Stream position of a user's read marker in a room (0: none).
    pub fn read_marker(&self, user: &str, room_id: &RoomId) -> Result<u64> {
        let t = self.txn.open_table(super::tables::READ_MARKERS)?;
        Ok(t.get((user, room_id.as_str()))?.map(|v| v.value()).unwrap_or(0))
    }

    /// Whether a session is alive.
    pub fn has_session(&self, sid: &str) -> Result<bool> {
        Ok(self.txn.open_table(super::tables::SESSIONS)?.get(sid)?.is_some())
    }

    /// The newest stream position in this snapshot.
    pub fn stream_pos(&self) -> Result<u64> {
        super::stream_pos_in(&self.txn)
    }
}
