//! Replies and reactions: the two relations whose effect shows on another event's row.
//!
//! A reply (`m.relates_to.m.in_reply_to`) carries a [`Quote`] of the message it answers: its
//! sender and text now, kept current when that message is edited or deleted (a deleted
//! message's text leaves the quotes too). A reaction (`m.reaction`, `m.annotation`) counts on
//! the message it annotates: the row carries its [`Reaction`]s, one per key, each with who
//! reacted (one per user per key: a second is stored but not counted). Both are recorded in
//! `RELATIONS` by the event they name, so one received before that event takes effect when
//! it arrives, and redacting a reaction takes its count back.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Tx;
use super::events::{StoredEvent, get_event};
use super::tables::*;
use super::{get_json, put_json};
use crate::error::Result;
use crate::events::*;
use crate::ids::RoomId;

/// A reaction to an event (`m.reaction` with `rel_type: m.annotation`).
pub const M_REACTION: &str = "m.reaction";

/// Longest reaction key counted, in bytes (an emoji sequence, or a short word).
pub const MAX_KEY_BYTES: usize = 64;

/// Most different keys counted on one message; reactions with further keys are stored but
/// not counted (a bound on the row's size whatever other servers send).
pub const MAX_KEYS: usize = 50;

/// Longest quoted text kept on a reply, in characters.
pub const QUOTE_CHARS: usize = 240;

const REPLY: &str = "m.in_reply_to";
const ANNOTATION: &str = "m.annotation";

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quote {
    /// The answered message's position here (to load history up to it).
    pub pos: u64,
    /// Its sender.
    pub sender: String,
    /// The start of its text now (plain); empty once it is deleted.
    pub text: String,
    /// Whether it was deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The reactions with one key on a message: who reacted, in order, with the reaction's id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reaction {
    /// The key: an emoji, or a short text.
    pub key: String,
    /// (sender, reaction event id), one per sender.
    pub by: Vec<(String, String)>,
}

/// The message `ev` answers, if it is a reply.
pub fn reply_target(ev: &Event) -> Option<&str> {
    if ev.kind != M_ROOM_MESSAGE || ev.state_key.is_some() {
        return None;
    }
    ev.content.get("m.relates_to")?.get(REPLY)?.get("event_id")?.as_str()
}

/// The event `ev` reacts to and the key, if it is a reaction.
pub fn annotation(ev: &Event) -> Option<(&str, &str)> {
    if ev.kind != M_REACTION || ev.state_key.is_some() {
        return None;
    }
    let rel = ev.content.get("m.relates_to")?;
    if rel.get("rel_type")?.as_str()? != ANNOTATION {
        return None;
    }
    Some((rel.get("event_id")?.as_str()?, rel.get("key")?.as_str()?))
}

/// Whether `key` may be counted: not empty, short, no control characters.
pub fn valid_key(key: &str) -> bool {
    !key.trim().is_empty() && key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control)
}

/// A message's text as a quote shows it: its HTML's text, or its plain body without Matrix's
/// reply fallback (`> <@a:b> …` lines and a blank line, sent by older clients); whitespace
/// folded, at most [`QUOTE_CHARS`] characters.
pub fn quote_text(content: &Value) -> String {
    // The formatted text where there is one (a Markdown body would show its `**`), else the body.
    let html = crate::format::formatted_html(content).map(crate::format::html_text);
    let body = content.get("body").and_then(Value::as_str).unwrap_or_default();
    let text = html.unwrap_or_else(|| strip_reply_fallback(body).to_string());
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match folded.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{}…", &folded[..i]),
        None => folded,
    }
}

/// `body` without a leading reply fallback (lines starting with `> ` up to the first blank
/// line), as Matrix asks clients to strip it.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> <") {
        return body;
    }
    match body.find("\n\n") {
        Some(i) if body[..i].lines().all(|l| l.starts_with('>')) => &body[i + 2..],
        _ => body,
    }
}

fn quote_of(target: &StoredEvent) -> Option<Quote> {
    let o = &target.event;
    if o.kind != M_ROOM_MESSAGE || o.state_key.is_some() || target.pos == 0 {
        return None;
    }
    let deleted = target.redacted_because.is_some();
    Some(Quote {
        pos: target.pos,
        sender: o.sender.to_string(),
        text: if deleted { String::new() } else { quote_text(target.content_now()) },
        deleted,
    })
}

fn record(tx: &mut Tx<'_>, room_id: &RoomId, target: &str, rel: &str, ev: &Event) -> Result<()> {
    tx.txn.open_table(RELATIONS)?.insert((room_id.as_str(), target, rel, ev.event_id.as_str()), ())?;
    Ok(())
}

fn related(tx: &Tx<'_>, room_id: &RoomId, target: &str, rel: &str) -> Result<Vec<String>> {
    let rid = room_id.as_str();
    let table = tx.txn.open_table(RELATIONS)?;
    let mut out = Vec::new();
    for row in table.range((rid, target, rel, "")..=(rid, target, rel, "\u{10ffff}"))? {
        out.push(row?.0.value().3.to_string());
    }
    Ok(out)
}

/// Adds reaction `ev` (of `sender`, with `key`) to `reactions`, unless that sender's reaction
/// with that key is counted already or the row is full. Returns whether it was added.
fn count(reactions: &mut Vec<Reaction>, key: &str, sender: &str, id: &str) -> bool {
    if !valid_key(key) {
        return false;
    }
    if let Some(r) = reactions.iter_mut().find(|r| r.key == key) {
        if r.by.iter().any(|(s, _)| s == sender) {
            return false;
        }
        r.by.push((sender.to_string(), id.to_string()));
        return true;
    }
    if reactions.len() >= MAX_KEYS {
        return false;
    }
    reactions.push(Reaction { key: key.to_string(), by: vec![(sender.to_string(), id.to_string())] });
    true
}

/// What a new row shows because of its relations: a reply's quote, and the reactions that
/// arrived before a (received) message.
#[derive(Default)]
pub(super) struct Shown {
    pub quote: Option<Quote>,
    pub reactions: Vec<Reaction>,
}

/// Runs for every event about to be persisted (not redacted) in a room's timeline, at `pos`.
/// A reply is recorded and gets its quote; a reaction is recorded and counted on its target.
/// A received message picks up the replies and reactions stored before it.
pub(super) fn on_persist(tx: &mut Tx<'_>, room_id: &RoomId, ev: &Event, pos: u64, received: bool) -> Result<Shown> {
    let mut shown = Shown::default();
    if let Some(target) = reply_target(ev) {
        record(tx, room_id, target, REPLY, ev)?;
        let stored = get_event(&tx.txn.open_table(EVENTS)?, target)?;
        shown.quote = stored.filter(|s| s.event.room_id == *room_id).as_ref().and_then(quote_of);
    }
    if let Some((target, key)) = annotation(ev) {
        record(tx, room_id, target, ANNOTATION, ev)?;
        let mut events = tx.txn.open_table(EVENTS)?;
        if let Some(mut t) = get_json::<StoredEvent>(&events, target)?
            && t.event.room_id == *room_id
            && t.pos > 0
            && t.redacted_because.is_none()
            && count(&mut t.reactions, key, ev.sender.as_str(), ev.event_id.as_str())
        {
            put_json(&mut events, target, &t)?;
        }
    }
    // Only another server's message can have relations waiting: ours has an id no one has seen.
    if received && ev.kind == M_ROOM_MESSAGE && ev.state_key.is_none() {
        let id = ev.event_id.as_str();
        let replies = related(tx, room_id, id, REPLY)?;
        let reactions = related(tx, room_id, id, ANNOTATION)?;
        if !replies.is_empty() {
            let as_stored = StoredEvent::new(pos, ev.clone(), None);
            set_quotes(tx, &replies, quote_of(&as_stored))?;
        }
        let events = tx.txn.open_table(EVENTS)?;
        for r in reactions {
            if let Some(r) = get_event(&events, &r)?
                && r.redacted_because.is_none()
                && let Some((_, key)) = annotation(&r.event)
            {
                count(&mut shown.reactions, key, r.event.sender.as_str(), r.event.event_id.as_str());
            }
        }
    }
    Ok(shown)
}

fn set_quotes(tx: &mut Tx<'_>, replies: &[String], quote: Option<Quote>) -> Result<()> {
    let mut events = tx.txn.open_table(EVENTS)?;
    for id in replies {
        if let Some(mut r) = get_json::<StoredEvent>(&events, id)?
            && r.redacted_because.is_none()
            && r.quote != quote
        {
            r.quote = quote.clone();
            put_json(&mut events, id, &r)?;
        }
    }
    Ok(())
}

/// After `message` (as stored now) was edited, or had its newest edit redacted: the replies
/// to it quote its text now.
pub(super) fn on_changed(tx: &mut Tx<'_>, room_id: &RoomId, message: &StoredEvent) -> Result<()> {
    let replies = related(tx, room_id, message.event.event_id.as_str(), REPLY)?;
    if replies.is_empty() {
        return Ok(());
    }
    set_quotes(tx, &replies, quote_of(message))
}

/// After `before` (the event as it was before a redaction) was redacted, `after` as stored
/// now: a deleted message leaves the quotes of its replies (its reactions went with its
/// content); a deleted reaction stops counting on its target.
pub(super) fn on_redacted(tx: &mut Tx<'_>, room_id: &RoomId, before: &Event, after: &StoredEvent) -> Result<()> {
    if before.kind == M_ROOM_MESSAGE {
        return on_changed(tx, room_id, after);
    }
    let Some((target, key)) = annotation(before) else { return Ok(()) };
    let id = before.event_id.as_str();
    let mut events = tx.txn.open_table(EVENTS)?;
    let Some(mut t) = get_json::<StoredEvent>(&events, target)? else { return Ok(()) };
    let Some(i) = t.reactions.iter().position(|r| r.key == key) else { return Ok(()) };
    let count_before = t.reactions[i].by.len();
    t.reactions[i].by.retain(|(_, r)| r != id);
    if t.reactions[i].by.len() == count_before {
        return Ok(());
    }
    if t.reactions[i].by.is_empty() {
        t.reactions.remove(i);
    }
    put_json(&mut events, target, &t)?;
    Ok(())
}
