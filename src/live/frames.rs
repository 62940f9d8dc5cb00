//! The frames of the live protocol (documented in `docs/protocol.md`).

use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::ids::EventId;
use crate::render;
use crate::store::events::StoredEvent;

/// A frame from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Send a text message.
    Send {
        /// Target room.
        room_id: String,
        /// Message text.
        body: String,
        /// Client-chosen id; a repeat returns the first event.
        txn_id: String,
        /// An edit: the id of the sender's message whose text `body` replaces.
        #[serde(default)]
        replaces: Option<String>,
        /// A reply: the id of the room's message it answers.
        #[serde(default)]
        reply_to: Option<String>,
    },
    /// Move the read marker.
    Read {
        /// Room.
        room_id: String,
        /// Stream position read up to.
        pos: u64,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
    /// This tab's activity: `online` (visible and used) or `idle`.
    Presence {
        /// `online` or `idle`.
        state: String,
    },
    /// Start (`true`) or stop (`false`) a typing notice in a room.
    Typing {
        /// Room.
        room_id: String,
        /// Typing or not.
        typing: bool,
    },
    /// A call signal (`m.call.invite`, `answer`, `candidates`, …), stored as a room event.
    Call {
        /// Room.
        room_id: String,
        /// The event type.
        #[serde(rename = "type")]
        kind: String,
        /// The signal's content (checked and rebuilt by the server).
        content: serde_json::Value,
        /// Client-chosen id echoed in the `ack` or `error`.
        txn_id: String,
    },
    /// This tab joins a room's call (`conf_id`); the room sees the new roster.
    CallJoin {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
    },
    /// This tab leaves a room's call.
    CallLeave {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
    },
    /// An offer for this tab's publish connection to the media server (after `call_join`);
    /// answered with `sfu_answer`.
    SfuPublish {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
        /// The offer's SDP.
        sdp: String,
        /// Ids of the offer's tracks that are screens (the others are camera and microphone).
        #[serde(default)]
        screens: Vec<String>,
    },
    /// This tab's answer to the media server's `sfu_offer`.
    SfuAnswer {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
        /// The answer's SDP.
        sdp: String,
    },
    /// This tab's own state in a call it is in: microphone off (`muted`), hand raised
    /// (`hand`); either may be left out.
    CallState {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
        /// Microphone off.
        #[serde(default)]
        muted: Option<bool>,
        /// Hand raised.
        #[serde(default)]
        hand: Option<bool>,
    },
    /// A host's action on a call: `mute` someone (`user_id`), `lower_hand` of someone, or
    /// `end` the call for everyone. Moderators of the room only.
    CallHost {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
        /// `mute`, `lower_hand` or `end`.
        action: String,
        /// Whom it is about (not for `end`).
        #[serde(default)]
        user_id: Option<String>,
    },
    /// How high this tab shows another participant's video (`stream_id` of `sfu_offer`), in
    /// pixels; 0: not shown (nothing is sent).
    SfuShow {
        /// Room.
        room_id: String,
        /// Conference id.
        conf_id: String,
        /// The stream.
        stream_id: String,
        /// Tile height, pixels.
        height: u32,
    },
}

impl ClientFrame {
    /// The room of a frame about a room call (its roster, the media server, a tab's state, a
    /// host's action); none for other frames.
    pub fn call_room(&self) -> Option<&str> {
        match self {
            ClientFrame::CallJoin { room_id, .. }
            | ClientFrame::CallLeave { room_id, .. }
            | ClientFrame::SfuPublish { room_id, .. }
            | ClientFrame::SfuAnswer { room_id, .. }
            | ClientFrame::SfuShow { room_id, .. }
            | ClientFrame::CallState { room_id, .. }
            | ClientFrame::CallHost { room_id, .. } => Some(room_id),
            _ => None,
        }
    }
}

/// `event`: a committed event in client form (without the DAG fields `prev_events`,
/// `auth_events`, `depth`, `hashes` and `signatures`, which clients do not use; the history API
/// has them), with its rendered fragment.
pub fn event_frame(stored: &StoredEvent) -> String {
    frame_of("event", stored)
}

/// `call`: a committed call signal on the priority lane; the same body as `event`. It does not
/// move the client's resume position (messages before it may still be on their way).
pub fn call_frame(stored: &StoredEvent) -> String {
    frame_of("call", stored)
}

/// `call_roster`: who is in each of a room's calls now (conference id, people in joining
/// order; no calls: the last one is over), with the room's call bar rendered.
pub fn call_roster(room_id: &str, calls: &[crate::calls::CallPeople]) -> String {
    let rosters: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| json!({ "conf_id": c.conf_id, "user_ids": c.user_ids, "hands": c.hands, "muted": c.muted }))
        .collect();
    json!({
        "t": "call_roster",
        "room_id": room_id,
        "calls": rosters,
        "html": render::call_bar(calls).into_string(),
    })
    .to_string()
}

/// What a call's host did to this tab: `call_muted` (its microphone was turned off) or
/// `call_ended` (the call was ended for everyone), and who did it.
pub fn host_did(kind: &str, room_id: &str, conf_id: &str, by: &str) -> String {
    json!({ "t": kind, "room_id": room_id, "conf_id": conf_id, "by": by }).to_string()
}

/// `room_deleted`: an administrator deleted the room; nothing of it can be read any more.
pub fn room_deleted_frame(room_id: &str) -> String {
    json!({ "t": "room_deleted", "room_id": room_id }).to_string()
}

fn frame_of(t: &str, stored: &StoredEvent) -> String {
    let ev = &stored.event;
    let mut client = json!({
        "event_id": ev.event_id,
        "room_id": ev.room_id,
        "sender": ev.sender,
        "type": ev.kind,
        "content": ev.content,
        "origin_server_ts": ev.origin_server_ts,
    });
    if let Some(key) = &ev.state_key {
        client["state_key"] = json!(key);
    }
    let mut frame = json!({
        "t": t,
        "pos": stored.pos,
        "room_id": ev.room_id,
        "event": client,
        "html": render::event_item(stored).into_string(),
    });
    // A message's start, for the room list and screen readers (an edit changes an older one).
    if ev.kind == crate::events::M_ROOM_MESSAGE && crate::store::edits::edited_event_id(ev).is_none() {
        frame["preview"] = json!(render::preview_text(&ev.content));
    }
    frame.to_string()
}

/// `ready`: catch-up is complete (up to `pos`); live frames follow. `sfu` says whether room calls can go through the media server.
pub fn ready(pos: u64, sfu: bool) -> String {
    json!({ "t": "ready", "pos": pos, "sfu": sfu }).to_string()
}

/// `resync`: too much was missed to replay; reload from the store (e.g. reload the page).
pub fn resync(pos: u64) -> String {
    json!({ "t": "resync", "pos": pos }).to_string()
}

/// `ack`: a send was committed.
pub fn ack(txn_id: &str, event_id: &EventId, pos: u64) -> String {
    json!({ "t": "ack", "txn_id": txn_id, "event_id": event_id, "pos": pos }).to_string()
}

/// `error`: a client frame was refused.
pub fn error(txn_id: Option<&str>, e: &Error) -> String {
    json!({ "t": "error", "txn_id": txn_id, "error": e.code(), "message": e.public_message() }).to_string()
}

/// `pong`: answer to `ping`.
pub fn pong() -> String {
    json!({ "t": "pong" }).to_string()
}

/// `presence`: one user's presence changed.
pub fn presence(user: &str, state: &str) -> String {
    json!({ "t": "presence", "user_id": user, "presence": state }).to_string()
}

/// `presence` snapshot after `ready`: everyone online or idle who shares a room with the user,
/// in one or more frames; the first has `reset: true` (everyone not listed is offline).
pub fn presence_snapshot(users: serde_json::Map<String, serde_json::Value>, reset: bool) -> String {
    json!({ "t": "presence", "users": users, "reset": reset }).to_string()
}

/// `typing`: who is typing in a room now (an empty list ends all notices).
pub fn typing(room_id: &str, user_ids: &[&str]) -> String {
    json!({ "t": "typing", "room_id": room_id, "user_ids": user_ids }).to_string()
}

/// `receipt`: a member has read up to `pos`; `html` is their avatar for the "seen by" row.
pub fn receipt(room_id: &str, user_id: &str, pos: u64) -> String {
    json!({
        "t": "receipt",
        "room_id": room_id,
        "user_id": user_id,
        "pos": pos,
        "html": render::receipt_avatar(user_id).into_string(),
    })
    .to_string()
}

/// `unread`: the user's unread and mention counts in a room changed (read on another tab).
pub fn unread(room_id: &str, pos: u64, unread: u64, mentions: u64) -> String {
    json!({ "t": "unread", "room_id": room_id, "pos": pos, "unread": unread, "mentions": mentions }).to_string()
}
