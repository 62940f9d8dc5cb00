//! Applying redactions: an `m.room.redaction` strips the content of the event it names in the
//! store itself, so the page, history, the live channel and federation all show it redacted.
//! A redaction stored before its target (allowed by the spec) waits in `REDACTIONS` and is
//! applied when the target is stored.
//!
//! Who may: the target's sender, or a member with the room's `redact` level (judged on the
//! room's current power levels). A redaction that may not apply stays in the timeline and
//! strips nothing.

use redb::ReadableTable;

use super::Tx;
use super::events::{apply_state, get_event};
use super::rooms::RoomRecord;
use super::tables::*;
use super::{get_json, put_json};
use crate::error::Result;
use crate::events::rules::may_redact;
use crate::events::*;
use crate::ids::EventId;

/// Runs for every event about to be persisted in `room`'s timeline. If a stored redaction
/// names `ev`, `ev` is redacted before it is written (and the redaction's id returned, for
/// `redacted_because`); if `ev` is a redaction, it is recorded and its stored target in the
/// same room is redacted now.
pub(super) fn on_persist(
    tx: &mut Tx<'_>,
    room: &mut RoomRecord,
    ev: &mut Event,
    received: bool,
) -> Result<Option<EventId>> {
    let rid = room.room_id.clone();
    let mut because = None;
    // Only another server's event can have a redaction waiting for it: a new event of ours
    // has an id no one has seen, so its lookup is skipped (it is on the writer's path).
    let earlier = if received {
        tx.txn.open_table(REDACTIONS)?.get((rid.as_str(), ev.event_id.as_str()))?.map(|v| v.value().to_string())
    } else {
        None
    };
    if let Some(redaction_id) = earlier {
        let redaction = get_event(&tx.txn.open_table(EVENTS)?, &redaction_id)?;
        if let Some(redaction) = redaction
            && may_redact(room.auth_state(), &redaction.event.sender, &ev.sender)
        {
            ev.redact();
            because = Some(redaction.event.event_id);
        }
    }
    let Some(target) = ev.redacts().map(str::to_string) else { return Ok(because) };
    {
        let mut table = tx.txn.open_table(REDACTIONS)?;
        if table.get((rid.as_str(), target.as_str()))?.is_some() {
            // Already redacted (or waiting) by an earlier redaction: the first one stands.
            return Ok(because);
        }
        table.insert((rid.as_str(), target.as_str()), ev.event_id.as_str())?;
    }
    let mut events = tx.txn.open_table(EVENTS)?;
    let Some(mut stored) = get_json::<super::events::StoredEvent>(&events, &target)? else { return Ok(because) };
    if stored.event.room_id != rid
        || stored.redacted_because.is_some()
        || !may_redact(room.auth_state(), &ev.sender, &stored.event.sender)
    {
        return Ok(because);
    }
    // The mentions it made stop counting (a redaction before its target keeps them from being
    // indexed at all: the target is redacted before `persist` reads them).
    let mentioned: Vec<String> = super::events::mentioned(tx, room, &stored.event)?;
    let edited = super::edits::edited_event_id(&stored.event).map(str::to_string);
    let before = stored.event.clone();
    stored.event.redact();
    stored.redacted_because = Some(ev.event_id.clone());
    stored.edit = None;
    stored.quote = None;
    stored.reactions.clear();
    put_json(&mut events, &target, &stored)?;
    super::backup::mark_for_scrub(tx.txn)?;
    drop(events);
    super::relations::on_redacted(tx, &rid, &before, &stored)?;
    super::media::on_redacted(tx, rid.as_str(), &before)?;
    // Its edits say what it said: they go with it. A redacted edit: the message shows the
    // edit before it (or its own text).
    for edit_id in super::edits::edits_of(tx, &rid, &target)? {
        let mut events = tx.txn.open_table(EVENTS)?;
        if let Some(mut e) = get_json::<super::events::StoredEvent>(&events, &edit_id)?
            && e.redacted_because.is_none()
            && e.event.sender == stored.event.sender
        {
            e.event.redact();
            e.redacted_because = Some(ev.event_id.clone());
            put_json(&mut events, &edit_id, &e)?;
        }
    }
    if let Some(original_id) = edited {
        let mut events = tx.txn.open_table(EVENTS)?;
        if let Some(mut original) = get_json::<super::events::StoredEvent>(&events, &original_id)?
            && original.edit.as_ref().is_some_and(|r| r.event_id.as_str() == target)
        {
            drop(events);
            original.edit = super::edits::newest(tx, &rid, &original, Some(&target))?;
            events = tx.txn.open_table(EVENTS)?;
            put_json(&mut events, &original_id, &original)?;
            drop(events);
            super::relations::on_changed(tx, &rid, &original)?;
        }
    }
    let mut mentions = tx.txn.open_table(MENTIONS)?;
    for user in &mentioned {
        mentions.remove((user.as_str(), rid.as_str(), stored.pos))?;
    }
    drop(mentions);
    // A redacted state event that holds its slot: the room's summary follows its new content.
    if let Some(key) = stored.event.state_key.as_deref()
        && tx.state_event_id(&rid, &stored.event.kind, key)?.as_ref() == Some(&stored.event.event_id)
    {
        apply_state(tx, room, &stored.event.kind, &stored.event.content, key)?;
    }
    Ok(because)
}
