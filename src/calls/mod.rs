//! Calls: signalling as room events, and the TURN relay that carries media when peers cannot
//! reach each other directly.
//!
//! Signalling follows Matrix VoIP v1 (`m.call.invite`, `answer`, `candidates`, `select_answer`,
//! `reject`, `negotiate`, `hangup`): each signal is a room event, stored like a message (so it
//! will cross federation the same way) and delivered to the room's online members on a priority
//! lane that no backlog of messages can delay. A call is between two parties; a group call in a
//! room is a full mesh of such calls that share a `chat.conf_id` (see [`MAX_PARTICIPANTS`]).
//!
//! The server keeps one [`CallRecord`] per call (table `calls`) and checks every signal against
//! it inside the write job that stores it: only the callee answers or rejects, only the two
//! parties send candidates or hang up, nothing is accepted after the call ended, an answer after
//! the invite's lifetime is refused. A refused local signal is not stored and not delivered; a
//! signal from another server that passed the room's auth rules is stored even when the call's
//! record ignores it (the room's history has no holes).

pub mod guard;
pub mod host;
pub mod sfu;
pub mod tcp;
pub mod turn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::events::{Membership, NewEvent, now_ms};
use crate::ids::UserId;
use crate::ids::{RoomId, ServerName};
use crate::rooms::{self, Sent};
use crate::store::Store;
use crate::store::writer::Committed;
use tokio_util::sync::CancellationToken;

handle!(
    /// What the call services work with. Cheap to clone.
    Calls => CallsInner
);

/// What [`Calls`] holds.
pub struct CallsInner {
    /// The database.
    pub store: Store,
    /// This server's name.
    pub server_name: ServerName,
    /// Call invites waiting for an answer.
    pub pending: Arc<Pending>,
    /// Cancelled at shutdown (ends the sweeper).
    pub shutdown: CancellationToken,
    /// The keys of call tokens, which admit other servers' users to calls here: only when a
    /// media server runs (see [`host`]).
    pub guest_tokens: Option<crate::auth::TokenKeys>,
}

/// Most people in one mesh call: each sends its media once per other participant, so with 6
/// people every uplink carries 5 video streams (about 5 × 1.5 Mbit/s at 720p), which is what a
/// home connection can bear. Beyond that a call needs a selective forwarding unit.
pub const MAX_PARTICIPANTS: usize = 6;
/// Longest call id, party id or conference id.
pub const MAX_ID: usize = 64;
/// Largest SDP offer or answer, bytes.
pub const MAX_SDP: usize = 24 * 1024;
/// Most candidates in one `m.call.candidates` event.
pub const MAX_CANDIDATES: usize = 64;
/// Longest candidate line.
pub const MAX_CANDIDATE: usize = 1024;
/// Why a call ended (Matrix VoIP v1's reasons).
pub const HANGUP_REASONS: [&str; 7] =
    ["user_hangup", "ice_failed", "ice_timeout", "invite_timeout", "user_media_failed", "user_busy", "unknown_error"];
/// Bounds of an invite's lifetime, milliseconds.
pub const LIFETIME_MS: std::ops::RangeInclusive<u64> = 5_000..=120_000;

pub use crate::events::call::{
    ANSWER, CANDIDATES, HANGUP, INVITE, NEGOTIATE, REJECT, SDP_STREAM_METADATA_CHANGED, SELECT_ANSWER, TYPES,
    is_call_event,
};

pub use crate::store::calls::CallRecord;

fn check_id(label: &str, v: &Value) -> Result<String> {
    let s = v.as_str().ok_or_else(|| Error::bad(format!("{label} must be a string")))?;
    if s.is_empty()
        || s.len() > MAX_ID
        || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::bad(format!("{label} must be 1-{MAX_ID} characters of A-Z a-z 0-9 . _ -")));
    }
    Ok(s.to_string())
}

/// Who is in one of a room's calls now, as the room is told (`call_roster`): the people in
/// joining order, whose hands are raised and whose microphones are off.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallPeople {
    /// Conference id.
    pub conf_id: String,
    /// People, each once, in joining order.
    pub user_ids: Vec<String>,
    /// People with a hand raised, in the order they raised it.
    pub hands: Vec<String>,
    /// People with their microphone off (by themselves or by a host).
    pub muted: Vec<String>,
}

/// What a call's host may do to it (`call_host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// Turn someone's microphone off (they may turn it on again).
    Mute,
    /// Lower someone's raised hand.
    LowerHand,
    /// End the call for everyone in it.
    End,
}

impl HostAction {
    /// From the frame's `action`.
    pub fn parse(action: &str) -> Result<HostAction> {
        match action {
            "mute" => Ok(HostAction::Mute),
            "lower_hand" => Ok(HostAction::LowerHand),
            "end" => Ok(HostAction::End),
            _ => Err(Error::bad("action must be mute, lower_hand or end")),
        }
    }
}

/// Whether `user` hosts the room's calls: joined, with at least the room's level to remove
/// people (moderators and administrators). An action on someone else (`target`) also needs a
/// level above theirs, as removing them would.
pub fn check_host(store: &Store, user: &UserId, room: &RoomId, target: Option<&str>) -> Result<()> {
    let record = store.room(room)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    let pl = &record.power_levels;
    let mine = pl.level_of(record.creators(), user.as_str());
    let above = target.is_none_or(|t| t == user.as_str() || mine > pl.level_of(record.creators(), t));
    if store.membership(room, user.as_str())? != Membership::Join || mine < pl.kick || !above {
        return Err(Error::Forbidden("only the room's moderators may do that to a call".into()));
    }
    Ok(())
}

/// Checks a conference id from a client.
pub fn check_conf_id(conf_id: &str) -> Result<()> {
    check_id("conf_id", &json!(conf_id)).map(|_| ())
}

fn check_sdp(label: &str, v: &Value, want_type: Option<&str>) -> Result<Value> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let sdp = v.get("sdp").and_then(Value::as_str).ok_or_else(|| Error::bad(format!("{label}.sdp is required")))?;
    if !matches!(kind, "offer" | "answer") || want_type.is_some_and(|w| w != kind) {
        return Err(Error::bad(format!("{label}.type must be {}", want_type.unwrap_or("offer or answer"))));
    }
    if sdp.len() > MAX_SDP {
        return Err(Error::TooLarge(format!("{label}.sdp must be at most {MAX_SDP} bytes")));
    }
    if !sdp.starts_with("v=0") {
        return Err(Error::bad(format!("{label}.sdp is not a session description")));
    }
    Ok(json!({ "type": kind, "sdp": sdp }))
}

fn check_candidates(v: &Value) -> Result<Value> {
    let list = v.as_array().ok_or_else(|| Error::bad("candidates must be a list"))?;
    if list.is_empty() || list.len() > MAX_CANDIDATES {
        return Err(Error::bad(format!("candidates must hold 1-{MAX_CANDIDATES} entries")));
    }
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let line = c.get("candidate").and_then(Value::as_str).ok_or_else(|| Error::bad("candidate is required"))?;
        if line.len() > MAX_CANDIDATE || line.chars().any(char::is_control) {
            return Err(Error::bad(format!("a candidate must be at most {MAX_CANDIDATE} printable bytes")));
        }
        let mid = match c.get("sdpMid") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(m)) if m.len() <= MAX_ID => json!(m),
            _ => return Err(Error::bad("sdpMid must be a short string")),
        };
        let index = match c.get("sdpMLineIndex") {
            None | Some(Value::Null) => Value::Null,
            Some(n) => json!(n.as_u64().filter(|n| *n < 64).ok_or_else(|| Error::bad("sdpMLineIndex out of range"))?),
        };
        out.push(json!({ "candidate": line, "sdpMid": mid, "sdpMLineIndex": index }));
    }
    Ok(Value::Array(out))
}

/// Checks a signal's content and rebuilds it from the known fields only (the server never
/// stores fields it does not understand). `chat.call` is reserved for the server.
pub fn clean_content(kind: &str, content: &Value) -> Result<Value> {
    if !content.is_object() {
        return Err(Error::bad("content must be an object"));
    }
    let get = |k: &str| content.get(k).cloned().unwrap_or(Value::Null);
    let mut out = json!({
        "call_id": check_id("call_id", &get("call_id"))?,
        "party_id": check_id("party_id", &get("party_id"))?,
        "version": "1",
    });
    match kind {
        INVITE => {
            let lifetime = get("lifetime").as_u64().filter(|l| LIFETIME_MS.contains(l)).ok_or_else(|| {
                Error::bad(format!("lifetime must be {}-{} ms", LIFETIME_MS.start(), LIFETIME_MS.end()))
            })?;
            // Without an invitee (as Element sends a 1:1 call) the invite is for the room's
            // other member; [`apply`] names them.
            let invitee = match get("invitee") {
                Value::Null => None,
                v => {
                    let v = v.as_str().ok_or_else(|| Error::bad("invitee must be a user id"))?;
                    Some(UserId::parse(v).map_err(|e| Error::bad(format!("invitee: {e}")))?)
                }
            };
            let media = match get("chat.media").as_str() {
                None | Some("video") => "video",
                Some("voice") => "voice",
                Some(_) => return Err(Error::bad("chat.media must be video or voice")),
            };
            out["lifetime"] = json!(lifetime);
            out["offer"] = check_sdp("offer", &get("offer"), Some("offer"))?;
            if let Some(invitee) = invitee {
                out["invitee"] = json!(invitee.to_string());
            }
            out["chat.media"] = json!(media);
            out["chat.ring"] = json!(get("chat.ring").as_bool().unwrap_or(true));
            if !get("chat.conf_id").is_null() {
                out["chat.conf_id"] = json!(check_id("chat.conf_id", &get("chat.conf_id"))?);
            }
        }
        ANSWER => out["answer"] = check_sdp("answer", &get("answer"), Some("answer"))?,
        NEGOTIATE => out["description"] = check_sdp("description", &get("description"), None)?,
        CANDIDATES => out["candidates"] = check_candidates(&get("candidates"))?,
        SELECT_ANSWER => out["selected_party_id"] = json!(check_id("selected_party_id", &get("selected_party_id"))?),
        REJECT => {}
        SDP_STREAM_METADATA_CHANGED => out["sdp_stream_metadata"] = check_stream_metadata(&get("sdp_stream_metadata"))?,
        HANGUP => {
            let reason = get("reason");
            let reason = reason.as_str().unwrap_or("user_hangup");
            if !HANGUP_REASONS.contains(&reason) {
                return Err(Error::bad(format!("reason must be one of {}", HANGUP_REASONS.join(", "))));
            }
            out["reason"] = json!(reason);
            // The call goes on through the media server, in this conference (a third person
            // joined): the other party moves there too rather than ending.
            if !get("chat.moved_to").is_null() {
                let to = check_id("chat.moved_to", &get("chat.moved_to"))?;
                if !to.starts_with("sfu-") {
                    return Err(Error::bad("chat.moved_to must name a media server conference (sfu-…)"));
                }
                out["chat.moved_to"] = json!(to);
            }
        }
        _ => return Err(Error::bad(format!("unknown call signal {kind:?}"))),
    }
    Ok(out)
}

/// Streams a party may describe in one `sdp_stream_metadata`.
const MAX_STREAMS: usize = 8;

/// `sdp_stream_metadata` (Matrix VoIP): stream id -> `{purpose, audio_muted, video_muted}`,
/// copied field by field (other fields are dropped).
fn check_stream_metadata(v: &Value) -> Result<Value> {
    let map = v.as_object().ok_or_else(|| Error::bad("sdp_stream_metadata must be an object"))?;
    if map.len() > MAX_STREAMS {
        return Err(Error::bad(format!("sdp_stream_metadata describes at most {MAX_STREAMS} streams")));
    }
    let mut out = serde_json::Map::new();
    for (id, meta) in map {
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(Error::bad("a stream id must be 1-255 printable characters"));
        }
        let purpose = match meta.get("purpose").and_then(Value::as_str) {
            Some(p @ ("m.usermedia" | "m.screenshare")) => p,
            _ => return Err(Error::bad("a stream's purpose must be m.usermedia or m.screenshare")),
        };
        let flag = |k: &str| -> Result<bool> {
            match meta.get(k) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(Error::bad(format!("{k} must be true or false"))),
            }
        };
        out.insert(
            id.clone(),
            json!({ "purpose": purpose, "audio_muted": flag("audio_muted")?, "video_muted": flag("video_muted")? }),
        );
    }
    Ok(Value::Object(out))
}

/// Checks a signal against the call's record (inside the write job) and returns the record as
/// it is after the signal. `None` before an invite. `is_member` says whether a user is joined
/// to the room, `joined` lists them: an invite without an invitee is for the other member of a
/// two-person room, who is then written into `content`. Public for the `call_content` fuzz
/// target.
pub fn apply(
    kind: &str,
    content: &mut Value,
    sender: &str,
    record: Option<CallRecord>,
    now: u64,
    is_member: impl Fn(&str) -> Result<bool>,
    joined: impl FnOnce() -> Result<Vec<String>>,
) -> Result<CallRecord> {
    if kind == INVITE && content.get("invitee").is_none() {
        let others: Vec<String> = joined()?.into_iter().filter(|u| u != sender).collect();
        match &others[..] {
            [one] => content["invitee"] = json!(one),
            _ => return Err(Error::bad("invitee is required in a room of more than two people")),
        }
    }
    let text = |k: &str| content.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if kind == INVITE {
        if record.is_some() {
            return Err(Error::Conflict("a call with this call_id exists".into()));
        }
        let invitee = text("invitee");
        if invitee == sender {
            return Err(Error::bad("you cannot call yourself"));
        }
        if !is_member(&invitee)? {
            return Err(Error::Forbidden("the invitee is not a member of this room".into()));
        }
        return Ok(CallRecord {
            caller: sender.to_string(),
            caller_party: text("party_id"),
            invitee,
            media: text("chat.media"),
            conf_id: content.get("chat.conf_id").and_then(Value::as_str).map(str::to_string),
            ring: content.get("chat.ring").and_then(Value::as_bool).unwrap_or(true),
            invite_ts: now,
            lifetime: content.get("lifetime").and_then(Value::as_u64).unwrap_or(0),
            answered: None,
            ended: None,
        });
    }
    let mut rec = record.ok_or_else(|| Error::NotFound("no such call in this room".into()))?;
    if !rec.party(sender) {
        return Err(Error::Forbidden("you are not a party to this call".into()));
    }
    if rec.ended.is_some() {
        return Err(Error::Conflict("this call has ended".into()));
    }
    match kind {
        ANSWER => {
            if sender != rec.invitee {
                return Err(Error::Forbidden("only the callee answers".into()));
            }
            if rec.answered.is_some() {
                return Err(Error::Conflict("the call was already answered".into()));
            }
            if now > rec.invite_ts + rec.lifetime {
                return Err(Error::Conflict("the invite has expired".into()));
            }
            rec.answered = Some((now, text("party_id")));
        }
        SELECT_ANSWER if sender != rec.caller || rec.answered.is_none() => {
            return Err(Error::Conflict("only the caller selects an answer, after one".into()));
        }
        NEGOTIATE if rec.answered.is_none() => return Err(Error::Conflict("the call is not connected".into())),
        REJECT => {
            if sender != rec.invitee || rec.answered.is_some() {
                return Err(Error::Conflict("only the callee rejects, before answering".into()));
            }
            rec.ended = Some((now, "rejected".into()));
        }
        HANGUP => rec.ended = Some((now, text("reason"))),
        _ => {}
    }
    if matches!(kind, REJECT | HANGUP) {
        // The timeline's summary ("Ana called Ben · 3 min", "Missed call") is rendered from
        // these server-set fields.
        let duration = rec.answered.as_ref().map(|(t, _)| now.saturating_sub(*t));
        content["chat.call"] = json!({
            "caller": rec.caller,
            "invitee": rec.invitee,
            "media": rec.media,
            "ring": rec.ring,
            "answered": rec.answered.is_some(),
            "duration_ms": duration,
        });
    }
    Ok(rec)
}

/// Invites waiting for an answer: (room id, call id) -> (caller, deadline ms). The sweeper
/// hangs up those past their lifetime, so "missed call" appears even when the caller's tab is gone.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<(RoomId, String), (String, u64)>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RoomId, String), (String, u64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn track(&self, room: &RoomId, call: &str, rec: &CallRecord) {
        let key = (room.clone(), call.to_string());
        if rec.answered.is_none() && rec.ended.is_none() {
            self.lock().insert(key, (rec.caller.clone(), rec.invite_ts + rec.lifetime));
        } else {
            self.lock().remove(&key);
        }
    }

    fn expired(&self, now: u64) -> Vec<(RoomId, String, String)> {
        self.lock()
            .iter()
            .filter(|(_, (_, deadline))| *deadline < now)
            .map(|((r, c), (caller, _))| (r.clone(), c.clone(), caller.clone()))
            .collect()
    }

    /// Invites waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No invite is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks a signal from `sender` and queues it for the writer; the handle yields the stored
/// event's id and position after commit.
pub async fn submit_signal(
    state: &Calls,
    sender: &UserId,
    room_id: &RoomId,
    kind: &str,
    content: &Value,
) -> Result<Committed<Sent>> {
    let mut content = clean_content(kind, content)?;
    let call_id = content["call_id"].as_str().unwrap_or_default().to_string();
    let (s, rid, kind) = (sender.to_string(), room_id.clone(), kind.to_string());
    let pending = state.pending.clone();
    state
        .store
        .submit(move |tx| {
            let record = tx.call(&rid, &call_id)?;
            let is_member = |u: &str| Ok(tx.membership(&rid, u)? == Membership::Join);
            if !is_member(&s)? {
                return Err(Error::Forbidden("you are not a member of this room".into()));
            }
            let joined = || tx.joined_members(&rid);
            let rec = apply(&kind, &mut content, &s, record, now_ms(), is_member, joined)?;
            let stored = rooms::append_event(tx, &rid, &s, NewEvent::message(&kind, content))?;
            tx.put_call(&rid, &call_id, &rec)?;
            tx.after_commit(move || pending.track(&rid, &call_id, &rec));
            Ok(Sent { event_id: stored.event.event_id.clone(), pos: stored.pos })
        })
        .await
}

/// Stores the record of a room call held here that ended (`chat.call.ended`): its conference,
/// when it started, how long it lasted and who took part (at most
/// [`crate::events::call::MAX_RECORDED_PEOPLE`]). It is sent as one of this server's people who
/// took part and are still in the room (whoever started it, if they can), as a call's end is
/// told by one of its parties; with none of them left, no record.
pub async fn record_call(
    state: &Calls,
    room_id: &RoomId,
    conf_id: &str,
    started_ms: u64,
    duration_ms: u64,
    people: &[String],
) -> Result<Option<Sent>> {
    check_conf_id(conf_id)?;
    let people: Vec<String> = people.iter().take(crate::events::call::MAX_RECORDED_PEOPLE).cloned().collect();
    let ours = state.server_name.to_string();
    let content = json!({
        "conf_id": conf_id,
        "started_ts": started_ms,
        "duration_ms": duration_ms,
        "user_ids": people,
    });
    let rid = room_id.clone();
    state
        .store
        .submit(move |tx| {
            let mut sender = None;
            for u in &people {
                if crate::ids::server_of(u) == ours && tx.membership(&rid, u)? == Membership::Join {
                    sender = Some(u.clone());
                    break;
                }
            }
            let Some(sender) = sender else { return Ok(None) };
            let kind = crate::events::call::CALL_ENDED;
            let stored = rooms::append_event(tx, &rid, &sender, NewEvent::message(kind, content))?;
            Ok(Some(Sent { event_id: stored.event.event_id.clone(), pos: stored.pos }))
        })
        .await?
        .wait()
        .await
}

/// A call signal received from another server, inside the write job that stores it: checked
/// against the call's record like a local signal (on a copy of the content, which is signed
/// as received) and the record updated. An error means the call's record ignores the signal;
/// the event is stored all the same (it passed the room's auth rules, and later events name
/// it). Types we do not track (`m.call.sdp_stream_metadata_changed`, `m.call.asserted_identity`)
/// and reasons we do not know are taken as Matrix VoIP defines them.
pub fn apply_received(tx: &mut crate::store::Tx<'_>, ev: &crate::events::Event, pending: &Arc<Pending>) -> Result<()> {
    if !TYPES.contains(&ev.kind.as_str()) {
        return Ok(());
    }
    let mut received = ev.content.clone();
    if ev.kind == HANGUP && received.get("reason").and_then(Value::as_str).is_some_and(|r| !HANGUP_REASONS.contains(&r))
    {
        received["reason"] = json!("unknown_error");
    }
    let mut content = clean_content(&ev.kind, &received)?;
    let call_id = content["call_id"].as_str().unwrap_or_default().to_string();
    let rid = &ev.room_id;
    let record = tx.call(rid, &call_id)?;
    let is_member = |u: &str| Ok(tx.membership(rid, u)? == Membership::Join);
    let joined = || tx.joined_members(rid);
    let rec = apply(&ev.kind, &mut content, &ev.sender, record, now_ms(), is_member, joined)?;
    tx.put_call(rid, &call_id, &rec)?;
    let (pending, rid) = (pending.clone(), rid.clone());
    tx.after_commit(move || pending.track(&rid, &call_id, &rec));
    Ok(())
}

/// Loads unanswered invites after a restart, so the sweeper ends them on time.
pub fn load_pending(state: &Calls) -> Result<()> {
    for (room, call, rec) in state.store.calls()? {
        state.pending.track(&room, &call, &rec);
    }
    Ok(())
}

/// Hangs up invites nobody answered within their lifetime, on behalf of the caller (reason
/// `invite_timeout`): the callee's timeline shows a missed call even if the caller's tab closed.
pub async fn sweep(state: &Calls) {
    for (room, call, caller) in state.pending.expired(now_ms()) {
        let Ok(caller_id) = UserId::parse(&caller) else { continue };
        if caller_id.server() != state.server_name.as_str() {
            // A caller on another server: their server hangs up for them.
            state.pending.lock().remove(&(room, call));
            continue;
        }
        let content = json!({ "call_id": call, "party_id": "server", "reason": "invite_timeout" });
        let out = match submit_signal(state, &caller_id, &room, HANGUP, &content).await {
            Ok(c) => c.wait().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = out {
            // Already answered or ended, or the caller left the room: nothing to end.
            tracing::debug!(%room, %call, error = %e, "expired invite not hung up");
            state.pending.lock().remove(&(room, call));
        }
    }
}

/// Runs [`sweep`] every second until shutdown, as one of `tasks`.
pub fn spawn_sweeper(state: Calls, tasks: &tokio_util::task::TaskTracker) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => sweep(&state).await,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n";

    fn invite() -> Value {
        json!({ "call_id": "c1", "party_id": "p1", "lifetime": 30000, "invitee": "@ben:x",
                "offer": { "type": "offer", "sdp": SDP }, "junk": 1 })
    }

    #[test]
    fn content_is_checked_and_rebuilt() {
        let c = clean_content(INVITE, &invite()).unwrap();
        assert!(c.get("junk").is_none());
        assert_eq!(c["chat.ring"], json!(true));
        let mut bad = invite();
        bad["lifetime"] = json!(10_000_000);
        assert!(clean_content(INVITE, &bad).is_err());
        bad = invite();
        bad["call_id"] = json!("../../etc");
        assert!(clean_content(INVITE, &bad).is_err());
        bad = invite();
        bad["offer"]["type"] = json!("answer");
        assert!(clean_content(INVITE, &bad).is_err());
        assert!(clean_content("m.call.bogus", &invite()).is_err());
        let cands = json!({ "call_id": "c1", "party_id": "p", "candidates": [{ "candidate": "a\u{0}b" }] });
        assert!(clean_content(CANDIDATES, &cands).is_err());
        let forged = json!({ "call_id": "c1", "party_id": "p", "chat.call": { "duration_ms": 1 } });
        assert!(clean_content(HANGUP, &forged).unwrap().get("chat.call").is_none());
        let moved = json!({ "call_id": "c1", "party_id": "p", "chat.moved_to": "sfu-abc" });
        assert_eq!(clean_content(HANGUP, &moved).unwrap()["chat.moved_to"], "sfu-abc");
        for to in [json!("abc"), json!("sfu-../x"), json!(7)] {
            let bad = json!({ "call_id": "c1", "party_id": "p", "chat.moved_to": to });
            assert!(clean_content(HANGUP, &bad).is_err(), "{to}");
        }
    }

    #[test]
    fn stream_metadata_is_checked_and_rebuilt() {
        let meta = |m: Value| json!({ "call_id": "c1", "party_id": "p", "sdp_stream_metadata": m });
        let ok = clean_content(
            SDP_STREAM_METADATA_CHANGED,
            &meta(json!({ "s1": { "purpose": "m.usermedia", "audio_muted": true, "extra": 1 } })),
        )
        .unwrap();
        assert_eq!(
            ok["sdp_stream_metadata"],
            json!({ "s1": { "purpose": "m.usermedia", "audio_muted": true, "video_muted": false } })
        );
        for bad in [
            json!([]),
            json!({ "s1": { "purpose": "m.other" } }),
            json!({ "s1": { "purpose": "m.usermedia", "video_muted": "yes" } }),
            json!({ "": { "purpose": "m.usermedia" } }),
            Value::Object((0..9).map(|i| (format!("s{i}"), json!({ "purpose": "m.usermedia" }))).collect()),
        ] {
            assert!(clean_content(SDP_STREAM_METADATA_CHANGED, &meta(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_parties_move_a_call_along() {
        let member = |_: &str| Ok(true);
        let none = || Ok(Vec::new());
        let mut c = clean_content(INVITE, &invite()).unwrap();
        let rec = apply(INVITE, &mut c, "@ana:x", None, 1000, member, none).unwrap();
        let signal = |kind: &str, extra: Value| {
            let mut v = json!({ "call_id": "c1", "party_id": "q" });
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            clean_content(kind, &v).unwrap()
        };
        let answer = json!({ "answer": { "type": "answer", "sdp": SDP } });
        assert!(
            apply(ANSWER, &mut signal(ANSWER, answer.clone()), "@cy:x", Some(rec.clone()), 1001, member, none).is_err()
        );
        assert!(
            apply(ANSWER, &mut signal(ANSWER, answer.clone()), "@ana:x", Some(rec.clone()), 1001, member, none)
                .is_err()
        );
        assert!(
            apply(ANSWER, &mut signal(ANSWER, answer.clone()), "@ben:x", Some(rec.clone()), 40_000, member, none)
                .is_err()
        );
        let answered =
            apply(ANSWER, &mut signal(ANSWER, answer.clone()), "@ben:x", Some(rec.clone()), 2000, member, none)
                .unwrap();
        assert!(
            apply(ANSWER, &mut signal(ANSWER, answer), "@ben:x", Some(answered.clone()), 2001, member, none).is_err()
        );
        assert!(
            apply(REJECT, &mut signal(REJECT, json!({})), "@ben:x", Some(answered.clone()), 2001, member, none)
                .is_err()
        );
        let mut hang = signal(HANGUP, json!({}));
        let ended = apply(HANGUP, &mut hang, "@ben:x", Some(answered), 182_000, member, none).unwrap();
        assert_eq!(hang["chat.call"]["duration_ms"], json!(180_000));
        assert_eq!(hang["chat.call"]["answered"], json!(true));
        let cands = json!({ "candidates": [{ "candidate": "" }] });
        assert!(
            apply(CANDIDATES, &mut signal(CANDIDATES, cands), "@ana:x", Some(ended), 182_001, member, none).is_err()
        );
        let mut c = clean_content(INVITE, &invite()).unwrap();
        assert!(apply(INVITE, &mut c, "@ana:x", None, 0, |_| Ok(false), none).is_err(), "invitee must be a member");
    }

    #[test]
    fn an_invite_without_invitee_is_for_the_other_of_two() {
        let mut c = invite();
        c.as_object_mut().unwrap().remove("invitee");
        let mut c = clean_content(INVITE, &c).unwrap();
        let two = || Ok(vec!["@ana:x".to_string(), "@ben:x".to_string()]);
        let rec = apply(INVITE, &mut c.clone(), "@ana:x", None, 0, |_| Ok(true), two).unwrap();
        assert_eq!(rec.invitee, "@ben:x");
        let three = || Ok(vec!["@ana:x".to_string(), "@ben:x".to_string(), "@cy:x".to_string()]);
        assert!(apply(INVITE, &mut c, "@ana:x", None, 0, |_| Ok(true), three).is_err());
        let odd = json!({ "call_id": "c1", "party_id": "p", "reason": "user_media_failed" });
        assert!(clean_content(HANGUP, &odd).is_ok());
    }
}
