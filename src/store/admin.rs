//! What server administration reads and changes: every account, every room, and deleting a
//! room with its history.

use std::collections::HashSet;

use redb::{ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::accounts::UserRecord;
use super::rooms::RoomRecord;
use super::tables::*;
use super::{Store, get_json, put_json};
use crate::error::{Error, Result};
use crate::ids::RoomId;

/// What deleting a room removed.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DeletedRoom {
    /// Events removed.
    pub events: u64,
    /// Users whose membership (joined, invited, left or banned) was removed.
    pub members: u64,
}

impl Store {
    /// Every account, by canonical username.
    pub fn users(&self) -> Result<Vec<(String, UserRecord)>> {
        let r = self.read()?;
        let users = r.open_table(USERS)?;
        let mut out = Vec::new();
        for row in users.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// Number of live sessions of `user_id`.
    pub fn session_count(&self, user_id: &str) -> Result<usize> {
        let r = self.read()?;
        let index = r.open_table(USER_SESSIONS)?;
        let mut n = 0;
        for row in index.range((user_id, "")..)? {
            let (k, _) = row?;
            if k.value().0 != user_id {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Every room, newest activity first.
    pub fn rooms(&self) -> Result<Vec<RoomRecord>> {
        let r = self.read()?;
        let rooms = r.open_table(ROOMS)?;
        let mut out = Vec::new();
        for row in rooms.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice::<RoomRecord>(v.value())?);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.last_pos));
        Ok(out)
    }

    /// Number of events in a room's timeline.
    pub fn room_event_count(&self, room_id: &RoomId) -> Result<u64> {
        let room_id = room_id.as_str();
        let r = self.read()?;
        let timeline = r.open_table(ROOM_TIMELINE)?;
        Ok(timeline.range((room_id, 0)..=(room_id, u64::MAX))?.count() as u64)
    }

    /// Creates an account without a session (an administrator made it). `Conflict` if the
    /// name is taken.
    pub async fn create_account(&self, username: String, user: UserRecord) -> Result<()> {
        self.write(move |tx| {
            let mut users = tx.txn.open_table(USERS)?;
            if users.get(username.as_str())?.is_some() {
                return Err(Error::Conflict("that username is taken".into()));
            }
            put_json(&mut users, &username, &user)
        })
        .await
    }

    /// Changes an account with `change` and, when `revoke` is set, ends all its sessions (so
    /// its tokens stop working). Returns the updated record.
    pub async fn update_user(
        &self,
        username: String,
        revoke: bool,
        change: impl FnOnce(&mut UserRecord) + Send + 'static,
    ) -> Result<UserRecord> {
        self.write(move |tx| {
            let mut users = tx.txn.open_table(USERS)?;
            let mut user: UserRecord =
                get_json(&users, &username)?.ok_or_else(|| Error::NotFound(format!("no user named {username}")))?;
            change(&mut user);
            put_json(&mut users, &username, &user)?;
            if revoke {
                super::accounts::revoke_sessions(tx.txn, &user.user_id, None)?;
            }
            Ok(user)
        })
        .await
    }

    /// Deletes a room for good: its summary, state, timeline and events (outliers included),
    /// memberships, read markers, mentions, calls, direct-message entries, aliases, the retry
    /// records of its sends and its events still queued for other servers.
    /// Members' clients are told by the caller (the hub); nothing of the room stays readable.
    pub async fn delete_room(&self, room_id: RoomId) -> Result<DeletedRoom> {
        self.write(move |tx| {
            let txn = tx.txn;
            let rid = room_id.as_str();
            let mut rooms = txn.open_table(ROOMS)?;
            if rooms.remove(rid)?.is_none() {
                return Err(Error::NotFound(format!("no room {room_id}")));
            }
            super::backup::mark_for_scrub(txn)?;
            super::media::forget_room(txn, rid)?;
            // The timeline lists every event of the room.
            let mut event_ids = HashSet::new();
            {
                let mut timeline = txn.open_table(ROOM_TIMELINE)?;
                let mut events = txn.open_table(EVENTS)?;
                let mut stream = txn.open_table(STREAM)?;
                for row in timeline.extract_from_if((rid, 0)..=(rid, u64::MAX), |_, _| true)? {
                    let (k, v) = row?;
                    let id = v.value().0.to_string();
                    stream.remove(k.value().1)?;
                    events.remove(id.as_str())?;
                    event_ids.insert(id);
                }
                // The stream says the room went, so that the search index drops it.
                let pos = tx.next_pos();
                stream.insert(pos, (rid, ""))?;
            }
            txn.open_table(ROOM_STATE)?.retain_in((rid, "", "")..=(rid, "\u{10ffff}", ""), |_, _| false)?;
            let mut members = Vec::new();
            {
                let mut room_members = txn.open_table(ROOM_MEMBERS)?;
                for row in room_members.extract_from_if((rid, "")..=(rid, "\u{10ffff}"), |_, _| true)? {
                    let (k, _) = row?;
                    members.push(k.value().1.to_string());
                }
            }
            let mut user_rooms = txn.open_table(USER_ROOMS)?;
            let mut markers = txn.open_table(READ_MARKERS)?;
            let mut mentions = txn.open_table(MENTIONS)?;
            let mut direct = txn.open_table(DIRECT_ROOMS)?;
            let mut txn_ids = txn.open_table(TXN_IDS)?;
            for m in &members {
                let m = m.as_str();
                user_rooms.remove((m, rid))?;
                markers.remove((m, rid))?;
                mentions.retain_in((m, rid, 0)..=(m, rid, u64::MAX), |_, _| false)?;
                direct.retain_in((m, "")..=(m, "\u{10ffff}"), |_, v| v != rid)?;
                txn_ids.retain_in((m, "")..=(m, "\u{10ffff}"), |_, v| !event_ids.contains(v))?;
            }
            txn.open_table(CALLS)?.retain_in((rid, "")..=(rid, "\u{10ffff}"), |_, _| false)?;
            txn.open_table(REDACTIONS)?.retain_in((rid, "")..=(rid, "\u{10ffff}"), |_, _| false)?;
            txn.open_table(EDITS)?.retain_in((rid, "", "")..=(rid, "\u{10ffff}", "\u{10ffff}"), |_, _| false)?;
            let all = (rid, "", "", "")..=(rid, "\u{10ffff}", "\u{10ffff}", "\u{10ffff}");
            txn.open_table(RELATIONS)?.retain_in(all, |_, _| false)?;
            // Events without a timeline position (state and auth chain from a join through
            // another server).
            {
                let mut outliers = txn.open_table(ROOM_OUTLIERS)?;
                let mut events = txn.open_table(EVENTS)?;
                for row in outliers.extract_from_if((rid, "")..=(rid, "\u{10ffff}"), |_, _| true)? {
                    let (k, _) = row?;
                    let id = k.value().1.to_string();
                    events.remove(id.as_str())?;
                    event_ids.insert(id);
                }
            }
            super::state::forget(tx, rid)?;
            // Its directory entry, its aliases, and its events still queued for other servers.
            super::directory::remove_room(txn, rid)?;
            {
                let mut aliases = txn.open_table(ALIASES)?;
                for row in
                    txn.open_table(ROOM_ALIASES)?.extract_from_if((rid, "")..=(rid, "\u{10ffff}"), |_, _| true)?
                {
                    let (k, _) = row?;
                    aliases.remove(k.value().1)?;
                }
            }
            txn.open_table(FED_QUEUE)?.retain(|_, v| !event_ids.contains(v))?;
            Ok(DeletedRoom { events: event_ids.len() as u64, members: members.len() as u64 })
        })
        .await
    }

    /// Number of accounts.
    pub fn user_count(&self) -> Result<u64> {
        Ok(self.read()?.open_table(USERS)?.len()?)
    }
}
