//! Applying edits: a message whose `m.relates_to` is `{rel_type: "m.replace", event_id}`
//! replaces the content of the message it names (Matrix's `m.new_content`). The original's
//! row carries its newest valid replacement (`StoredEvent::edit`), so pages, history and the
//! API show the newest text without looking further. Every edit is recorded in `EDITS` by
//! the message it edits, so one stored before its original is applied when the original
//! arrives, and redacting the newest edit falls back to the one before.
//!
//! Valid, as Matrix says: both are `m.room.message` events of one room and one sender, the
//! edit has an `m.new_content` object, the original is not itself an edit, and neither is
//! redacted. Newest means the latest `origin_server_ts` (then the greater event id).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Tx;
use super::events::{StoredEvent, get_event};
use super::tables::*;
use super::{get_json, put_json};
use crate::error::Result;
use crate::events::*;
use crate::ids::{EventId, RoomId};

/// The timeline index's type for an edit (its event type is `m.room.message`): an edit is not
/// a new message for unread counts.
pub const EDIT_KIND: &str = "m.room.message/m.replace";

/// The newest replacement of a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Replacement {
    /// The edit event.
    pub event_id: EventId,
    /// Its `m.new_content`: the message's content now.
    pub content: Value,
    /// When it was sent (the edit's `origin_server_ts`).
    pub ts: u64,
}

/// The message `ev` edits, if it is an edit (`m.replace`).
pub fn edited_event_id(ev: &Event) -> Option<&str> {
    if ev.kind != M_ROOM_MESSAGE || ev.state_key.is_some() {
        return None;
    }
    let rel = ev.content.get("m.relates_to")?;
    (rel.get("rel_type")?.as_str()? == "m.replace").then(|| rel.get("event_id")?.as_str()).flatten()
}

/// Whether `edit` may replace `original`'s content.
pub fn valid_edit(original: &StoredEvent, edit: &Event) -> bool {
    let o = &original.event;
    o.kind == M_ROOM_MESSAGE
        && o.state_key.is_none()
        && o.room_id == edit.room_id
        && o.sender == edit.sender
        && original.redacted_because.is_none()
        && edited_event_id(o).is_none()
        && edit.content.get("m.new_content").is_some_and(Value::is_object)
}

fn replacement(edit: &Event) -> Option<Replacement> {
    Some(Replacement {
        event_id: edit.event_id.clone(),
        content: edit.content.get("m.new_content")?.clone(),
        ts: edit.origin_server_ts,
    })
}

fn newer(a: &Replacement, b: &Replacement) -> bool {
    (a.ts, a.event_id.as_str()) > (b.ts, b.event_id.as_str())
}

/// Runs for every event about to be persisted in a room's timeline. If `ev` edits a stored
/// message, the edit is recorded and the message's replacement moves to it when it is the
/// newest. If `ev` is a message with edits stored before it (another server's, out of
/// order), returns its newest valid replacement, for its row.
pub(super) fn on_persist(tx: &mut Tx<'_>, room_id: &RoomId, ev: &Event, received: bool) -> Result<Option<Replacement>> {
    if let Some(target) = edited_event_id(ev) {
        tx.txn.open_table(EDITS)?.insert((room_id.as_str(), target, ev.event_id.as_str()), ev.origin_server_ts)?;
        let mut events = tx.txn.open_table(EVENTS)?;
        let Some(mut original) = get_json::<StoredEvent>(&events, target)? else { return Ok(None) };
        if !valid_edit(&original, ev) {
            return Ok(None);
        }
        let Some(new) = replacement(ev) else { return Ok(None) };
        if original.edit.as_ref().is_none_or(|cur| newer(&new, cur)) {
            original.edit = Some(new);
            put_json(&mut events, target, &original)?;
            drop(events);
            super::relations::on_changed(tx, room_id, &original)?;
        }
        return Ok(None);
    }
    // Only another server's message can have edits waiting: ours has an id no one has seen.
    if !received || ev.kind != M_ROOM_MESSAGE {
        return Ok(None);
    }
    let as_stored = StoredEvent::new(0, ev.clone(), None);
    newest(tx, room_id, &as_stored, None)
}

/// The newest valid replacement of `original` among its recorded edits, leaving out
/// `except` (an edit being redacted).
pub(super) fn newest(
    tx: &Tx<'_>,
    room_id: &RoomId,
    original: &StoredEvent,
    except: Option<&str>,
) -> Result<Option<Replacement>> {
    let (rid, oid) = (room_id.as_str(), original.event.event_id.as_str());
    let edits = tx.txn.open_table(EDITS)?;
    let events = tx.txn.open_table(EVENTS)?;
    let mut best: Option<Replacement> = None;
    for row in edits.range((rid, oid, "")..=(rid, oid, "\u{10ffff}"))? {
        let (k, _) = row?;
        let edit_id = k.value().2;
        if Some(edit_id) == except {
            continue;
        }
        let Some(edit) = get_event(&events, edit_id)? else { continue };
        if edit.redacted_because.is_some() || !valid_edit(original, &edit.event) {
            continue;
        }
        if let Some(r) = replacement(&edit.event)
            && best.as_ref().is_none_or(|b| newer(&r, b))
        {
            best = Some(r);
        }
    }
    Ok(best)
}

/// The ids of every edit recorded for `original_id`.
pub(super) fn edits_of(tx: &Tx<'_>, room_id: &RoomId, original_id: &str) -> Result<Vec<String>> {
    let rid = room_id.as_str();
    let edits = tx.txn.open_table(EDITS)?;
    let mut out = Vec::new();
    for row in edits.range((rid, original_id, "")..=(rid, original_id, "\u{10ffff}"))? {
        out.push(row?.0.value().2.to_string());
    }
    Ok(out)
}

impl super::Store {
    /// The message that the edit `edit_id` edits, as recorded when the edit was stored (the
    /// edit's own content says so no more once it is redacted). Scans the room's edits.
    pub fn edited_by(&self, room_id: &str, edit_id: &str) -> Result<Option<String>> {
        let r = self.read()?;
        let edits = r.open_table(EDITS)?;
        for row in edits.range((room_id, "", "")..=(room_id, "\u{10ffff}", "\u{10ffff}"))? {
            let (k, _) = row?;
            let (_, original, edit) = k.value();
            if edit == edit_id {
                return Ok(Some(original.to_string()));
            }
        }
        Ok(None)
    }
}
