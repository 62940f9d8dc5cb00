//! A read snapshot with typed lookups, for code that reads many rows consistently (walking an
//! auth chain, the current state, missing events).

use redb::{ReadOnlyTable, ReadTransaction};

use super::Store;
use super::events::{StoredEvent, get_event};
use super::rooms::{membership_of, memberships, state_event_id_in, state_ids_in};
use super::tables::{EVENTS, ROOM_MEMBERS, ROOM_STATE, USER_ROOMS};
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

    /// The newest stream position in this snapshot.
    pub fn stream_pos(&self) -> Result<u64> {
        super::stream_pos_in(&self.txn)
    }
}
