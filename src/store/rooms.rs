//! Room summaries and the read side of rooms: memberships, timelines, unread counts.

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};

use super::events::{StoredEvent, get_event};
use super::tables::*;
use super::{Store, get_json};
use std::collections::HashMap;

use crate::error::Result;
use crate::events::{JoinRule, M_ROOM_MESSAGE, Membership, PowerLevels};
use crate::ids::{EventId, RoomId};

/// Most unread messages counted per room; the UI shows "99+" beyond.
pub const UNREAD_CAP: u64 = 100;

/// What the server keeps about a room besides its events: a summary of its current state and
/// the DAG tips the next event builds on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomRecord {
    /// Room id.
    pub room_id: RoomId,
    /// From `m.room.name`.
    pub name: String,
    /// From `m.room.topic`.
    pub topic: String,
    /// From `m.room.join_rules`.
    pub join_rule: JoinRule,
    /// Who created the room.
    pub creator: String,
    /// Others the create event names as creators (room version 12: every right, like the
    /// creator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_creators: Vec<String>,
    /// Creation time, ms.
    pub created_ts: u64,
    /// A two-person direct-message room.
    pub direct: bool,
    /// From `m.room.power_levels`.
    pub power_levels: PowerLevels,
    /// Depth of the newest event.
    pub depth: u64,
    /// Forward extremities (events with no successor yet).
    pub extremities: Vec<String>,
    /// Stream position of the newest event.
    pub last_pos: u64,
    /// Number of joined members.
    pub joined: u32,
    /// Joined members per server (ours included): the servers federation sends the room's
    /// events to.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, u32>,
    /// Known only from an invitation from another server: the summary comes from the invite's
    /// stripped state and the room's events are not here until a local user joins.
    #[serde(default)]
    pub partial: bool,
    /// The group of the room's current state (see [`super::state`]); `None` for a room stored
    /// before state groups, until its next event.
    #[serde(default)]
    pub state_group: Option<u64>,
    /// From `m.room.pinned_events`: the messages pinned in the room's header, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
}

impl RoomRecord {
    /// Who has every right in the room: its creator and additional creators.
    pub fn creators(&self) -> crate::events::Creators<'_> {
        crate::events::Creators { sender: &self.creator, additional: &self.additional_creators }
    }

    /// What the auth rules read of the room.
    pub fn auth_state(&self) -> crate::events::rules::RoomState<'_> {
        crate::events::rules::RoomState {
            creators: self.creators(),
            join_rule: self.join_rule,
            power_levels: &self.power_levels,
            direct: self.direct,
            joined: self.joined,
        }
    }

    /// A room's summary before its state is applied: what its create event tells, the join
    /// rule and power levels it starts with, no name, no members, no events.
    pub fn new(
        room_id: &RoomId,
        creator: &str,
        created_ts: u64,
        direct: bool,
        join_rule: JoinRule,
        power_levels: PowerLevels,
    ) -> RoomRecord {
        RoomRecord {
            room_id: room_id.clone(),
            name: String::new(),
            topic: String::new(),
            join_rule,
            creator: creator.to_string(),
            additional_creators: Vec::new(),
            created_ts,
            direct,
            power_levels,
            depth: 0,
            extremities: vec![],
            last_pos: 0,
            joined: 0,
            servers: Default::default(),
            partial: false,
            state_group: None,
            pinned: Vec::new(),
        }
    }
}

/// One entry of a user's room list.
#[derive(Debug, Clone)]
pub struct MyRoom {
    /// The room.
    pub room: RoomRecord,
    /// The user's membership (join or invite).
    pub membership: Membership,
    /// Messages from others after the read marker (capped at [`UNREAD_CAP`]).
    pub unread: u64,
    /// Of those, messages that mention the user (capped at [`UNREAD_CAP`]).
    pub mentions: u64,
    /// For a direct chat (our two-person rooms, and rooms the user was invited to as a direct
    /// chat): the other person.
    pub peer: Option<String>,
    /// The newest message (for the room list's preview); none for invitations and for rooms
    /// whose newest messages are further back than [`LAST_MESSAGE_SCAN`] events.
    pub last: Option<LastMessage>,
}

/// A room's newest message as the room list previews it.
#[derive(Debug, Clone)]
pub struct LastMessage {
    /// Who sent it.
    pub sender: String,
    /// Its content now (an edit's new content; empty when deleted).
    pub content: serde_json::Value,
    /// When it was sent, ms.
    pub ts: u64,
    /// Whether it was deleted.
    pub redacted: bool,
}

/// Events looked back through for a room's newest message (state changes, reactions and
/// edits are passed over).
pub const LAST_MESSAGE_SCAN: usize = 40;

impl Store {
    /// A room's summary.
    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        let room_id = room_id.as_str();
        get_json(&self.read()?.open_table(ROOMS)?, room_id)
    }

    /// A user's membership in a room (`Leave` if none).
    pub fn membership(&self, room_id: &RoomId, user: &str) -> Result<Membership> {
        membership_in(&self.read()?, room_id, user)
    }

    /// The rooms a user has joined or is invited to, newest activity first.
    pub fn my_rooms(&self, user: &str) -> Result<Vec<MyRoom>> {
        let r = self.read()?;
        let user_rooms = r.open_table(USER_ROOMS)?;
        let rooms = r.open_table(ROOMS)?;
        let markers = r.open_table(READ_MARKERS)?;
        let timeline = r.open_table(ROOM_TIMELINE)?;
        let members = r.open_table(ROOM_MEMBERS)?;
        let mention_index = r.open_table(MENTIONS)?;
        let events = r.open_table(EVENTS)?;
        // Direct chats that are ordinary rooms (a Matrix server's, marked `is_direct` when the
        // user was invited): room -> the other person.
        let mut marked: HashMap<String, String> = HashMap::new();
        for row in r.open_table(DIRECT_ROOMS)?.range((user, "")..)? {
            let (k, v) = row?;
            let (u, other) = k.value();
            if u != user {
                break;
            }
            marked.insert(v.value().to_string(), other.to_string());
        }
        let mut out = Vec::new();
        for (rid, membership) in memberships(&user_rooms, user)? {
            let rid = rid.as_str();
            if !matches!(membership, Membership::Join | Membership::Invite | Membership::Knock) {
                continue;
            }
            let Some(room) = get_json::<RoomRecord>(&rooms, rid)? else { continue };
            let (unread, mentions) = if membership == Membership::Join {
                let since = markers.get((user, rid))?.map(|v| v.value()).unwrap_or(0);
                (count_unread(&timeline, rid, since, user)?, count_mentions(&mention_index, user, rid, since)?)
            } else {
                (0, 0)
            };
            let peer = if room.direct { direct_peer(&members, rid, user)? } else { marked.remove(rid) };
            let last = if membership == Membership::Join { last_message(&timeline, &events, rid)? } else { None };
            out.push(MyRoom { room, membership, unread, mentions, peer, last });
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.room.last_pos));
        Ok(out)
    }

    /// Members of a room with their membership (joined, invited, and those asking to join),
    /// sorted by user id.
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(String, Membership)>> {
        let room_id = room_id.as_str();
        let r = self.read()?;
        let members = memberships(&r.open_table(ROOM_MEMBERS)?, room_id)?;
        Ok(members
            .into_iter()
            .filter(|(_, m)| matches!(m, Membership::Join | Membership::Invite | Membership::Knock))
            .collect())
    }

    /// The names members of a room go by in it (the `displayname` of their member event), for
    /// those who set one; `only` narrows it to some users.
    pub fn member_names(
        &self,
        room_id: &RoomId,
        only: Option<&[&str]>,
    ) -> Result<std::collections::HashMap<String, String>> {
        let rid = room_id.as_str();
        let r = self.read()?;
        let state = r.open_table(ROOM_STATE)?;
        let events = r.open_table(EVENTS)?;
        let mut out = std::collections::HashMap::new();
        let mut add = |user: &str, id: &str| -> Result<()> {
            if let Some(ev) = super::events::get_event(&events, id)?
                && let Some(name) = ev.event.content.get("displayname").and_then(|n| n.as_str())
                && let Some(name) = crate::events::clean_display_name(name)
            {
                out.insert(user.to_string(), name);
            }
            Ok(())
        };
        match only {
            Some(users) => {
                for u in users {
                    if let Some(id) = state.get((rid, crate::events::M_ROOM_MEMBER, *u))? {
                        add(u, id.value())?;
                    }
                }
            }
            None => {
                for row in state.range(
                    (rid, crate::events::M_ROOM_MEMBER, "")..=(rid, crate::events::M_ROOM_MEMBER, "\u{10ffff}"),
                )? {
                    let (k, v) = row?;
                    add(k.value().2, v.value())?;
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` events of a room before stream position `before` (exclusive; `None` = from
    /// the newest), newest first, and the cursor for the next page if there are older events.
    pub fn timeline(
        &self,
        room_id: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Option<u64>)> {
        let room_id = room_id.as_str();
        let r = self.read()?;
        let timeline = r.open_table(ROOM_TIMELINE)?;
        let events = r.open_table(EVENTS)?;
        let end = before.unwrap_or(u64::MAX);
        timeline_page(timeline.range((room_id, 0)..(room_id, end))?.rev(), &events, limit)
    }

    /// Up to `limit` events of a room after stream position `after` (exclusive), oldest
    /// first, and the cursor for the next page if there are newer events: paging forward from
    /// a message opened in the middle of history.
    pub fn timeline_after(
        &self,
        room_id: &RoomId,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Option<u64>)> {
        let room_id = room_id.as_str();
        let r = self.read()?;
        let timeline = r.open_table(ROOM_TIMELINE)?;
        let events = r.open_table(EVENTS)?;
        timeline_page(timeline.range((room_id, after.saturating_add(1))..=(room_id, u64::MAX))?, &events, limit)
    }

    /// Events after stream position `since` in the given rooms, oldest first, at most `max` + 1
    /// (one more than asked tells the caller the gap was too large).
    pub fn events_since(&self, rooms: &[String], since: u64, max: usize) -> Result<Vec<StoredEvent>> {
        let r = self.read()?;
        let timeline = r.open_table(ROOM_TIMELINE)?;
        let events = r.open_table(EVENTS)?;
        let mut ids: Vec<(u64, String)> = Vec::new();
        for rid in rooms {
            for row in timeline.range((rid.as_str(), since.saturating_add(1))..=(rid.as_str(), u64::MAX))?.take(max + 1)
            {
                let (k, v) = row?;
                ids.push((k.value().1, v.value().0.to_string()));
            }
        }
        ids.sort_unstable_by_key(|(pos, _)| *pos);
        ids.truncate(max + 1);
        let mut out = Vec::with_capacity(ids.len());
        for (_, eid) in ids {
            if let Some(ev) = get_event(&events, &eid)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Rooms where the user's membership is `join`.
    pub fn joined_rooms(&self, user: &str) -> Result<Vec<String>> {
        self.rooms_with_membership(user, |m| m == Membership::Join)
    }

    /// Rooms where the user's membership passes `keep`.
    pub fn rooms_with_membership(&self, user: &str, keep: impl Fn(Membership) -> bool) -> Result<Vec<String>> {
        let r = self.read()?;
        let rooms = memberships(&r.open_table(USER_ROOMS)?, user)?;
        Ok(rooms.into_iter().filter(|(_, m)| keep(*m)).map(|(rid, _)| rid).collect())
    }

    /// A user's event by id, if it is in a room.
    pub fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        let event_id = event_id.as_str();
        get_event(&self.read()?.open_table(EVENTS)?, event_id)
    }

    /// Stream position of the user's read marker in a room.
    pub fn read_marker(&self, user: &str, room_id: &RoomId) -> Result<u64> {
        let room_id = room_id.as_str();
        Ok(self.read()?.open_table(READ_MARKERS)?.get((user, room_id))?.map(|v| v.value()).unwrap_or(0))
    }

    /// Unread and mention counts of one user in one room.
    pub fn unread_counts(&self, user: &str, room_id: &RoomId) -> Result<(u64, u64)> {
        let room_id = room_id.as_str();
        let r = self.read()?;
        let since = r.open_table(READ_MARKERS)?.get((user, room_id))?.map(|v| v.value()).unwrap_or(0);
        let unread = count_unread(&r.open_table(ROOM_TIMELINE)?, room_id, since, user)?;
        let mentions = count_mentions(&r.open_table(MENTIONS)?, user, room_id, since)?;
        Ok((unread, mentions))
    }

    /// Read markers of the given users in a room (users without one are left out).
    pub fn read_markers(&self, room_id: &RoomId, users: &[String]) -> Result<Vec<(String, u64)>> {
        let room_id = room_id.as_str();
        let r = self.read()?;
        let markers = r.open_table(READ_MARKERS)?;
        let mut out = Vec::new();
        for u in users {
            if let Some(v) = markers.get((u.as_str(), room_id))? {
                out.push((u.clone(), v.value()));
            }
        }
        Ok(out)
    }

    /// Moves the read marker forward (never back). Returns whether it moved.
    pub async fn mark_read(&self, user: String, room_id: RoomId, pos: u64) -> Result<bool> {
        if self.read_marker(&user, &room_id)? >= pos {
            return Ok(false);
        }
        self.write(move |tx| {
            let mut markers = tx.txn.open_table(READ_MARKERS)?;
            let current = markers.get((user.as_str(), room_id.as_str()))?.map(|v| v.value()).unwrap_or(0);
            if current >= pos {
                return Ok(false);
            }
            markers.insert((user.as_str(), room_id.as_str()), pos)?;
            Ok(true)
        })
        .await
    }
}

/// A user's membership, read in any transaction.
pub fn membership_in(r: &ReadTransaction, room_id: &RoomId, user: &str) -> Result<Membership> {
    let room_id = room_id.as_str();
    membership_of(&r.open_table(ROOM_MEMBERS)?, room_id, user)
}

/// A user's membership from an open `room_members` table (read or write).
pub fn membership_of(
    members: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    room_id: &str,
    user: &str,
) -> Result<Membership> {
    Ok(members.get((room_id, user))?.map(|v| Membership::parse(v.value())).unwrap_or(Membership::Leave))
}

/// The id of the event holding one state slot of a room, from `room_state`.
pub(super) fn state_event_id_in(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static str>,
    room_id: &str,
    kind: &str,
    key: &str,
) -> Result<Option<EventId>> {
    Ok(table.get((room_id, kind, key))?.map(|v| EventId::from_stored(v.value())))
}

/// A room's current state from `room_state`: (event type, state key) -> event id.
pub(super) fn state_ids_in(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static str>,
    room_id: &str,
) -> Result<std::collections::BTreeMap<(String, String), EventId>> {
    let mut out = std::collections::BTreeMap::new();
    for row in table.range((room_id, "", "")..=(room_id, "\u{10ffff}", "\u{10ffff}"))? {
        let (k, v) = row?;
        let (_, kind, key) = k.value();
        out.insert((kind.to_string(), key.to_string()), EventId::from_stored(v.value()));
    }
    Ok(out)
}

/// A room timeline's row: (room, position) -> (event id, sender, type).
type TimelineRow<'a> = std::result::Result<
    (redb::AccessGuard<'a, (&'static str, u64)>, redb::AccessGuard<'a, (&'static str, &'static str, &'static str)>),
    redb::StorageError,
>;

/// Up to `limit` events of the timeline rows `rows` (in the order they come), and the cursor
/// to continue from (the last one's position) when rows remain.
fn timeline_page<'a>(
    mut rows: impl Iterator<Item = TimelineRow<'a>>,
    events: &impl ReadableTable<&'static str, &'static [u8]>,
    limit: usize,
) -> Result<(Vec<StoredEvent>, Option<u64>)> {
    let mut out = Vec::new();
    for row in rows.by_ref() {
        let (_, v) = row?;
        let (eid, _, _) = v.value();
        if let Some(ev) = get_event(events, eid)? {
            out.push(ev);
        }
        if out.len() >= limit {
            break;
        }
    }
    let more = rows.next().is_some();
    let next = if more { out.last().map(|e| e.pos) } else { None };
    Ok((out, next))
}

/// The newest message of a room among its last [`LAST_MESSAGE_SCAN`] events (edits pass: the
/// message they edit carries its new text).
fn last_message(
    timeline: &impl ReadableTable<(&'static str, u64), (&'static str, &'static str, &'static str)>,
    events: &impl ReadableTable<&'static str, &'static [u8]>,
    room_id: &str,
) -> Result<Option<LastMessage>> {
    for row in timeline.range((room_id, 0)..=(room_id, u64::MAX))?.rev().take(LAST_MESSAGE_SCAN) {
        let (_, v) = row?;
        let (event_id, _, kind) = v.value();
        if kind != M_ROOM_MESSAGE {
            continue;
        }
        let Some(stored) = get_event(events, event_id)? else { continue };
        if super::edits::edited_event_id(&stored.event).is_some() {
            continue;
        }
        let content = match stored.edit {
            Some(edit) => edit.content,
            None => stored.event.content,
        };
        return Ok(Some(LastMessage {
            sender: stored.event.sender,
            content,
            ts: stored.event.origin_server_ts,
            redacted: stored.redacted_because.is_some(),
        }));
    }
    Ok(None)
}

fn count_unread(
    timeline: &impl ReadableTable<(&'static str, u64), (&'static str, &'static str, &'static str)>,
    room_id: &str,
    since: u64,
    user: &str,
) -> Result<u64> {
    let mut n = 0;
    for row in timeline.range((room_id, since.saturating_add(1))..=(room_id, u64::MAX))? {
        let (_, v) = row?;
        let (_, sender, kind) = v.value();
        if kind == M_ROOM_MESSAGE && sender != user {
            n += 1;
            if n >= UNREAD_CAP {
                break;
            }
        }
    }
    Ok(n)
}

fn count_mentions(
    mentions: &impl ReadableTable<(&'static str, &'static str, u64), ()>,
    user: &str,
    room_id: &str,
    since: u64,
) -> Result<u64> {
    let mut n = 0;
    for row in mentions.range((user, room_id, since.saturating_add(1))..=(user, room_id, u64::MAX))? {
        row?;
        n += 1;
        if n >= UNREAD_CAP {
            break;
        }
    }
    Ok(n)
}

fn direct_peer(
    members: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    room_id: &str,
    user: &str,
) -> Result<Option<String>> {
    Ok(memberships(members, room_id)?.into_iter().map(|(u, _)| u).find(|u| u != user))
}

/// The rows of a membership index (`ROOM_MEMBERS` or `USER_ROOMS`) whose first key is `first`:
/// (second key, membership), in key order.
pub(super) fn memberships(
    index: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    first: &str,
) -> Result<Vec<(String, Membership)>> {
    let mut out = Vec::new();
    for row in index.range((first, "")..)? {
        let (k, v) = row?;
        let (f, second) = k.value();
        if f != first {
            break;
        }
        out.push((second.to_string(), Membership::parse(v.value())));
    }
    Ok(out)
}

/// Writes a room's summary: the one place `rooms` rows are written. With `shown_changed` (a state event: name, topic, join rule,
/// membership) its directory row too. Other events (messages) change nothing the directory
/// shows, and skipping the check keeps it off the writer's path for each message. The
/// directory row is written in the same transaction, so it cannot drift from the summary.
pub(super) fn put_room(txn: &redb::WriteTransaction, room: &RoomRecord, shown_changed: bool) -> Result<()> {
    super::put_json(&mut txn.open_table(ROOMS)?, room.room_id.as_str(), room)?;
    if shown_changed {
        super::directory::sync_room(txn, room)?;
    }
    Ok(())
}

impl Store {
    /// The room an alias of this server (`#name:server`, lower-case) names.
    pub fn alias(&self, alias: &str) -> Result<Option<RoomId>> {
        let r = self.read()?;
        Ok(r.open_table(super::tables::ALIASES)?.get(alias)?.map(|v| RoomId::from_stored(v.value())))
    }
}

impl super::Tx<'_> {
    /// A user's membership of a room in this transaction (`leave` if none).
    pub fn membership(&self, room_id: &RoomId, user: &str) -> Result<Membership> {
        let room_id = room_id.as_str();
        membership_of(&self.txn.open_table(ROOM_MEMBERS)?, room_id, user)
    }

    /// Records a membership without an event (declining an invitation to a room this server is
    /// not in: there is no room state here to add an event to).
    pub fn set_membership_only(&mut self, room_id: &RoomId, user: &str, m: Membership) -> Result<()> {
        let room_id = room_id.as_str();
        self.txn.open_table(ROOM_MEMBERS)?.insert((room_id, user), m.as_str())?;
        self.txn.open_table(USER_ROOMS)?.insert((user, room_id), m.as_str())?;
        Ok(())
    }

    /// A room's summary.
    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        let room_id = room_id.as_str();
        get_json(&self.txn.open_table(ROOMS)?, room_id)
    }

    /// The room's joined members.
    pub fn joined_members(&self, room_id: &RoomId) -> Result<Vec<String>> {
        let members = memberships(&self.txn.open_table(ROOM_MEMBERS)?, room_id.as_str())?;
        Ok(members.into_iter().filter(|(_, m)| *m == Membership::Join).map(|(u, _)| u).collect())
    }

    /// A joined member of the room on `server`, if it has one.
    pub fn local_joined_member(&self, room_id: &RoomId, server: &str) -> Result<Option<String>> {
        let members = memberships(&self.txn.open_table(ROOM_MEMBERS)?, room_id.as_str())?;
        Ok(members
            .into_iter()
            .find(|(u, m)| *m == Membership::Join && crate::ids::server_of(u) == server)
            .map(|(u, _)| u))
    }

    /// Whether the room's forward extremities hold different states: branches that an event
    /// following them all would join.
    pub fn has_branches(&self, room: &RoomRecord) -> Result<bool> {
        Ok(room.extremities.len() > 1 && super::state::groups_of(self, &room.extremities)?.len() > 1)
    }

    /// A room's summary, or "no such room".
    pub fn require_room(&self, room_id: &RoomId) -> Result<RoomRecord> {
        self.room(room_id)?.ok_or_else(|| crate::error::Error::NotFound("no such room".into()))
    }

    /// The room an alias of this server names.
    pub fn alias(&self, alias: &str) -> Result<Option<RoomId>> {
        Ok(self.txn.open_table(ALIASES)?.get(alias)?.map(|v| RoomId::from_stored(v.value())))
    }

    /// Gives a room an alias of this server (and its directory entry, if listed, the alias).
    pub fn put_alias(&mut self, alias: &str, room_id: &RoomId) -> Result<()> {
        let rid = room_id.as_str();
        self.txn.open_table(ALIASES)?.insert(alias, rid)?;
        self.txn.open_table(ROOM_ALIASES)?.insert((rid, alias), ())?;
        if let Some(room) = self.room(room_id)? {
            super::directory::sync_room(self.txn, &room)?;
        }
        Ok(())
    }

    /// The direct-message room of two users, if they have one.
    pub fn direct_room(&self, user: &str, other: &str) -> Result<Option<RoomId>> {
        Ok(self.txn.open_table(DIRECT_ROOMS)?.get((user, other))?.map(|v| RoomId::from_stored(v.value())))
    }

    /// Records the direct-message room of two users (from both sides).
    pub fn put_direct_room(&mut self, user: &str, other: &str, room_id: &RoomId) -> Result<()> {
        let room_id = room_id.as_str();
        let mut direct = self.txn.open_table(DIRECT_ROOMS)?;
        direct.insert((user, other), room_id)?;
        direct.insert((other, user), room_id)?;
        Ok(())
    }

    /// Whether a local account has this (canonical) username.
    pub fn user_exists(&self, username: &str) -> Result<bool> {
        Ok(self.txn.open_table(USERS)?.get(username)?.is_some())
    }

    /// The event a user's client transaction id produced, if any.
    pub fn txn_event(&self, user: &str, txn_id: &str) -> Result<Option<EventId>> {
        Ok(self.txn.open_table(TXN_IDS)?.get((user, txn_id))?.map(|v| EventId::from_stored(v.value())))
    }

    /// Records the event a client transaction id produced.
    pub fn put_txn_event(&mut self, user: &str, txn_id: &str, event_id: &EventId) -> Result<()> {
        let event_id = event_id.as_str();
        self.txn.open_table(TXN_IDS)?.insert((user, txn_id), event_id)?;
        Ok(())
    }
}
