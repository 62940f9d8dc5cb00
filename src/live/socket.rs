//! One live connection: upgrade, catch-up from the store, then live frames, client requests,
//! heartbeats and a clean close.
//!
//! Exactly-once, in order: the connection registers with the hub *before* reading the store, so
//! every event after the store snapshot is also in its queue; it then sends only events whose
//! stream position is above the last one it sent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use super::LiveState;
use super::frames::{self, ClientFrame};
use super::hub::{Conn, Prefs};
use crate::auth::Session;
use crate::error::{Error, Result};
use crate::events::Membership;
use crate::ids::{RoomId, UserId};
use crate::rooms;

/// Sends (and read-marker moves) of one connection being processed at once.
pub(super) const IN_FLIGHT: usize = 32;
/// Heartbeat interval; a client silent for three of them is dropped.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(20);
/// A client that does not take a frame within this time is dropped.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of frames collected before they are written to the socket (a flush writes earlier).
/// The WebSocket keeps the buffer's largest size for the connection's life, so this also bounds
/// what a burst leaves behind per connection.
const WRITE_BUFFER: usize = 8 * 1024;
/// Most queued frames written before one flush.
const WRITE_BATCH: usize = 256;

/// Query of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// Last stream position the client has seen; events after it are replayed.
    pub since: Option<u64>,
}

/// `GET /ws`: upgrades to the live channel.
pub async fn upgrade(
    State(state): State<LiveState>,
    session: Session,
    headers: HeaderMap,
    query: std::result::Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    let Query(q) = query.map_err(|e| Error::bad(format!("invalid query: {e}")))?;
    let origin_ok = if session.via_cookie {
        crate::auth::session::same_origin(&headers)
    } else {
        crate::auth::session::origin_allowed(&headers)
    };
    if !origin_ok {
        return Err(Error::Forbidden("cross-origin WebSocket refused".into()));
    }
    let conn = state.hub.connect(session.user.as_str(), &session.sid, || {
        let snap = state.store.snapshot()?;
        let (rooms, pos) = (snap.joined_rooms(session.user.as_str())?, snap.stream_pos()?);
        let rec = state.store.user(session.user.localpart())?;
        let prefs = rec
            .map(|u| Prefs { appear_offline: u.appear_offline, share_receipts: !u.hide_receipts })
            .unwrap_or_default();
        Ok(super::hub::Loaded { rooms, prefs, pos, guest: false })
    })?;
    Ok(sized(ws, state.limits.max_ws_frame_bytes).on_upgrade(move |socket| {
        // The connection belongs to the server's tasks: shutdown waits for it to close.
        let tasks = state.tasks.clone();
        tasks.track_future(async move {
            let user = session.user.to_string();
            if let Err(e) = run(state, session, conn, q.since, socket).await {
                tracing::debug!(%user, error = %e, "live connection ended with error");
            }
        })
    }))
}

type Sink = SplitSink<WebSocket, Message>;

/// A live channel's socket (a member's or a call socket): a small read buffer,
/// [`WRITE_BUFFER`], frames of at most `limit` bytes.
pub(super) fn sized(ws: WebSocketUpgrade, limit: usize) -> WebSocketUpgrade {
    ws.read_buffer_size(1024).write_buffer_size(WRITE_BUFFER).max_message_size(limit).max_frame_size(limit)
}

/// Closes a socket with `code` and `reason`, waiting at most 2 s for the client to take it.
pub(super) async fn send_close<S: futures_util::Sink<Message> + Unpin>(sink: &mut S, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(frame)))).await;
}

struct Link {
    sink: Sink,
    /// Highest stream position sent on this connection.
    last: u64,
}

impl Link {
    async fn send(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.send_texts(vec![text.into()]).await
    }

    /// Writes the event frames above `last`, in order, with one flush at the end.
    async fn send_frames(&mut self, frames: Vec<super::hub::Frame>) -> Result<()> {
        let mut texts = Vec::with_capacity(frames.len());
        for f in frames {
            if f.pos > self.last {
                self.last = f.pos;
                texts.push(f.text);
            }
        }
        if texts.is_empty() {
            return Ok(());
        }
        // A failed write ends the connection, so `last` running ahead of it does not matter.
        self.send_texts(texts).await
    }

    /// Writes frames with one flush; a client that does not take them in time is dropped.
    async fn send_texts(&mut self, texts: Vec<Utf8Bytes>) -> Result<()> {
        let work = async {
            for t in texts {
                self.sink.feed(Message::Text(t)).await?;
            }
            self.sink.flush().await
        };
        match tokio::time::timeout(SEND_TIMEOUT, work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Unavailable(format!("send failed: {e}"))),
            Err(_) => Err(Error::Unavailable("client too slow".into())),
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        send_close(&mut self.sink, code, reason).await;
    }

    /// Replays from the store everything after `self.last` in the user's rooms.
    async fn catch_up(&mut self, state: &LiveState, user: &str) -> Result<()> {
        let max = state.limits.max_catchup_events;
        let rooms = state.store.joined_rooms(user)?;
        let mut events = state.store.events_since(&rooms, self.last, max)?;
        // Rooms the user was invited to (or removed from) meanwhile: only their own membership
        // event is theirs to see.
        let others = state.store.rooms_with_membership(user, |m| m != Membership::Join)?;
        let own = state.store.events_since(&others, self.last, max)?;
        events.extend(own.into_iter().filter(|e| e.event.state_key.as_deref() == Some(user)));
        events.sort_unstable_by_key(|e| e.pos);
        if events.len() > max {
            let pos = state.store.stream_pos()?;
            self.send(frames::resync(pos)).await?;
            self.last = pos;
            return Ok(());
        }
        // Same batching as live delivery: one flush per chunk, not per event.
        for chunk in events.chunks(WRITE_BATCH) {
            let batch = chunk
                .iter()
                .map(|ev| super::hub::Frame { pos: ev.pos, text: frames::event_frame(ev).into() })
                .collect();
            self.send_frames(batch).await?;
        }
        Ok(())
    }
}

async fn run(state: LiveState, session: Session, mut conn: Conn, since: Option<u64>, socket: WebSocket) -> Result<()> {
    let (sink, mut stream) = socket.split();
    let user = session.user.to_string();
    let mut link = Link { sink, last: 0 };
    match since {
        Some(since) => {
            link.last = since;
            link.catch_up(&state, &user).await?;
        }
        None => link.last = state.store.stream_pos()?,
    }
    link.send(frames::ready(link.last, state.sfu.is_some())).await?;
    for frame in state.hub.presence_snapshot(&user) {
        link.send(frame).await?;
    }
    for frame in state.hub.roster_snapshot(&user) {
        link.send(frame).await?;
    }

    let (reply_tx, mut reply_rx) = mpsc::channel::<String>(IN_FLIGHT * 2);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    // Spread the first heartbeat over the interval: connections opened together (a server
    // restart, a load test) would otherwise all ping in the same instant, every interval.
    let spread = Duration::from_millis(conn.id().wrapping_mul(7919) % HEARTBEAT.as_millis() as u64);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT + spread, HEARTBEAT);
    let mut last_heard = Instant::now();
    let mut limiter = EphemeralLimiter::default();
    let mut call_limiter = EphemeralLimiter::per_second(CALL_FRAMES_PER_SECOND);

    // Both futures live across loop turns: re-creating them each turn would register and
    // unregister a waiter on a shared list for every frame sent.
    let shutdown = state.shutdown.clone();
    let mut cancelled = std::pin::pin!(shutdown.cancelled());
    let signals = conn.signals.clone();
    let mut woken = std::pin::pin!(signals.wake.notified());
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => {
                link.close(1001, "server shutting down").await;
                return Ok(());
            }
            _ = &mut woken => {
                woken.set(signals.wake.notified());
                if conn.signals.closed.load(Ordering::Acquire) {
                    link.close(4001, "session ended").await;
                    return Ok(());
                }
                if conn.signals.lagged.swap(false, Ordering::AcqRel) {
                    // Frames still queued are older than the store snapshot we are about to read.
                    while conn.rx.try_recv().is_ok() {}
                    link.catch_up(&state, &user).await?;
                }
            }
            Some(text) = conn.call.recv() => {
                // Call signals first: ringing and ICE must not wait behind a message backlog.
                let mut batch = vec![text];
                while let Ok(t) = conn.call.try_recv() {
                    batch.push(t);
                }
                link.send_texts(batch).await?;
            }
            Some(reply) = reply_rx.recv() => link.send(reply).await?,
            Some(frame) = conn.rx.recv() => {
                // Write everything already queued, then flush once: one syscall for a burst.
                let mut batch = vec![frame];
                while batch.len() < WRITE_BATCH {
                    match conn.rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                link.send_frames(batch).await?;
            }
            Some(text) = conn.eph.recv() => {
                // Ephemeral frames: after durable ones in priority, batched the same way.
                let mut batch = vec![text];
                while batch.len() < WRITE_BATCH {
                    match conn.eph.try_recv() {
                        Ok(t) => batch.push(t),
                        Err(_) => break,
                    }
                }
                link.send_texts(batch).await?;
            }
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        handle(&state, &session, &conn, [&mut limiter, &mut call_limiter], &text, &reply_tx, &in_flight).await
                    }
                    Some(Ok(Message::Binary(_))) => {
                        link.send(frames::error(None, &Error::bad("binary frames are not supported"))).await?
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        // Oversized or malformed frames end the connection with a reason.
                        link.close(1009, "frame too large or malformed").await;
                        return Err(Error::bad(e.to_string()));
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > HEARTBEAT * 3 {
                    link.close(1001, "no heartbeat").await;
                    return Ok(());
                }
                let _ = link.sink.send(Message::Ping(Default::default())).await;
            }
        }
    }
}

/// Ephemeral frames (presence, typing) one connection may send per second; extras are dropped.
const EPHEMERAL_PER_SECOND: u32 = 5;
/// Call frames (the media server's offers, answers and tile sizes; a tab's call state; a host's
/// actions) one connection may send per second; extras are refused with `rate_limited`. A
/// layout change resizes every tile at once.
pub(super) const CALL_FRAMES_PER_SECOND: u32 = 40;

/// A per-connection budget for ephemeral frames, so a fast typist (or a hostile client) sends a
/// bounded number of frames to the room.
pub(super) struct EphemeralLimiter {
    window: Option<Instant>,
    used: u32,
    per_second: u32,
}

impl Default for EphemeralLimiter {
    fn default() -> Self {
        EphemeralLimiter { window: None, used: 0, per_second: EPHEMERAL_PER_SECOND }
    }
}

impl EphemeralLimiter {
    /// A budget of `per_second` frames a second.
    pub(super) fn per_second(per_second: u32) -> Self {
        EphemeralLimiter { per_second, ..Default::default() }
    }

    pub(super) fn allow(&mut self, now: Instant) -> bool {
        match self.window {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                self.used += 1;
                self.used <= self.per_second
            }
            _ => {
                self.window = Some(now);
                self.used = 1;
                true
            }
        }
    }
}

/// A client frame; or none, and its sender is told why.
pub(super) fn parse_frame(text: &str, reply_tx: &mpsc::Sender<String>) -> Option<ClientFrame> {
    match serde_json::from_str(text) {
        Ok(f) => Some(f),
        Err(e) => {
            let _ = reply_tx.try_send(frames::error(None, &Error::bad(format!("invalid frame: {e}"))));
            None
        }
    }
}

/// The frames the call limiter counts ([`CALL_FRAMES_PER_SECOND`]), by the `txn_id` a refusal
/// of one carries (its type).
pub(super) fn limited_kind(frame: &ClientFrame) -> Option<&'static str> {
    match frame {
        ClientFrame::SfuPublish { .. } => Some("sfu_publish"),
        ClientFrame::SfuAnswer { .. } => Some("sfu_answer"),
        ClientFrame::SfuShow { .. } => Some("sfu_show"),
        ClientFrame::CallState { .. } => Some("call_state"),
        ClientFrame::CallHost { .. } => Some("call_host"),
        _ => None,
    }
}

/// Handles one client frame. Sends and reads run as their own tasks (bounded per connection) so
/// a slow commit never stalls delivery on this connection; presence and typing touch only the
/// hub, never the store.
async fn handle(
    state: &LiveState,
    session: &Session,
    conn: &Conn,
    [limiter, call_limiter]: [&mut EphemeralLimiter; 2],
    text: &str,
    reply_tx: &mpsc::Sender<String>,
    in_flight: &Arc<Semaphore>,
) {
    let Some(frame) = parse_frame(text, reply_tx) else { return };
    if let Some(kind) = limited_kind(&frame)
        && !call_limiter.allow(Instant::now())
    {
        let _ = reply_tx.try_send(frames::error(Some(kind), &Error::TooManyRequests(1)));
        return;
    }
    match frame {
        ClientFrame::Ping => {
            let _ = reply_tx.try_send(frames::pong());
        }
        ClientFrame::Presence { state: activity } => {
            let idle = match activity.as_str() {
                "online" => false,
                "idle" => true,
                _ => {
                    let e = Error::bad("presence state must be \"online\" or \"idle\"");
                    let _ = reply_tx.try_send(frames::error(None, &e));
                    return;
                }
            };
            if limiter.allow(Instant::now()) {
                state.hub.set_idle(session.user.as_str(), conn.id(), idle);
            }
        }
        ClientFrame::Typing { room_id, typing } => {
            if !limiter.allow(Instant::now()) {
                return;
            }
            let out = if typing {
                joined_now(state, &session.user, &room_id)
            } else {
                RoomId::parse(&room_id).map_err(|_| super::hub::not_member())
            };
            let out = out.and_then(|rid| {
                let changed = state.hub.set_typing(session.user.as_str(), &rid, typing, Instant::now())?;
                if changed {
                    crate::federation::ephemeral::typing(&state.fed, &session.user, &rid, typing);
                }
                Ok(())
            });
            if let Err(e) = out {
                let _ = reply_tx.try_send(frames::error(None, &e));
            }
        }
        ClientFrame::Send { room_id, body, txn_id, replaces, reply_to } => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let _ = reply_tx.try_send(frames::error(Some(&txn_id), &Error::TooManyRequests(1)));
                return;
            };
            // Queued for the writer here, in frame order, so one tab's messages commit in the
            // order it sent them; the wait for the commit runs in its own task.
            let (queued, room_id) = match RoomId::parse(&room_id) {
                Ok(rid) => {
                    let parse = |id: Option<String>| id.as_deref().map(crate::ids::EventId::parse).transpose();
                    let queued = match (parse(replaces), parse(reply_to)) {
                        (Ok(Some(original)), _) => {
                            rooms::submit_edit(&state.rooms, &session.user, &rid, &original, &body, &txn_id).await
                        }
                        (Ok(None), Ok(to)) => {
                            rooms::submit_message(&state.rooms, &session.user, &rid, &body, &txn_id, to.as_ref()).await
                        }
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    };
                    (queued, Some(rid))
                }
                Err(e) => (Err(e), None),
            };
            let (state, user, reply_tx) = (state.clone(), session.user.clone(), reply_tx.clone());
            state.tasks.clone().spawn(async move {
                let out = match queued {
                    Ok(committed) => committed.wait().await,
                    Err(e) => Err(e),
                };
                // Sending a message ends the sender's typing notice.
                if out.is_ok()
                    && let Some(rid) = &room_id
                    && let Ok(true) = state.hub.set_typing(user.as_str(), rid, false, Instant::now())
                {
                    crate::federation::ephemeral::typing(&state.fed, &user, rid, false);
                }
                let reply = match out {
                    Ok(sent) => frames::ack(&txn_id, &sent.event_id, sent.pos),
                    Err(e) => frames::error(Some(&txn_id), &e),
                };
                let _ = reply_tx.send(reply).await;
                drop(permit);
            });
        }
        ClientFrame::Call { room_id, kind, content, txn_id } => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let _ = reply_tx.try_send(frames::error(Some(&txn_id), &Error::TooManyRequests(1)));
                return;
            };
            let queued = match RoomId::parse(&room_id) {
                Ok(rid) => crate::calls::submit_signal(&state.calls, &session.user, &rid, &kind, &content).await,
                Err(e) => Err(e),
            };
            let reply_tx = reply_tx.clone();
            state.tasks.clone().spawn(async move {
                let out = match queued {
                    Ok(committed) => committed.wait().await,
                    Err(e) => Err(e),
                };
                let reply = match out {
                    Ok(sent) => frames::ack(&txn_id, &sent.event_id, sent.pos),
                    Err(e) => frames::error(Some(&txn_id), &e),
                };
                let _ = reply_tx.send(reply).await;
                drop(permit);
            });
        }
        ClientFrame::CallJoin { .. }
        | ClientFrame::CallLeave { .. }
        | ClientFrame::SfuPublish { .. }
        | ClientFrame::SfuAnswer { .. }
        | ClientFrame::SfuShow { .. }
        | ClientFrame::CallState { .. }
        | ClientFrame::CallHost { .. } => handle_call(state, &session.user, conn, frame, reply_tx, in_flight),
        ClientFrame::Read { room_id, pos } => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let _ = reply_tx.try_send(frames::error(None, &Error::TooManyRequests(1)));
                return;
            };
            let (state, user, reply_tx) = (state.clone(), session.user.clone(), reply_tx.clone());
            state.tasks.clone().spawn(async move {
                let out = match RoomId::parse(&room_id) {
                    Ok(rid) => rooms::mark_read(&state.rooms, &user, &rid, pos).await.map(|moved| {
                        if let Some(m) = moved {
                            crate::federation::ephemeral::read(&state.fed, &user, &rid, m.pos);
                            state.hub.read_moved(&rid, user.as_str(), m);
                        }
                    }),
                    Err(e) => Err(e),
                };
                if let Err(e) = out {
                    let _ = reply_tx.send(frames::error(None, &e)).await;
                }
                drop(permit);
            });
        }
    }
}

/// Handles a client frame about a room call (its roster, the media server, a tab's state, a
/// host's action), from a member's live socket or another server's user's call socket
/// ([`super::guest`]). Other frames are ignored.
pub(super) fn handle_call(
    state: &LiveState,
    user: &UserId,
    conn: &Conn,
    frame: ClientFrame,
    reply_tx: &mpsc::Sender<String>,
    in_flight: &Arc<Semaphore>,
) {
    match frame {
        ClientFrame::CallJoin { room_id, conf_id } => in_call(state, user, conn, reply_tx, &room_id, &conf_id, true),
        ClientFrame::CallLeave { room_id, conf_id } => in_call(state, user, conn, reply_tx, &room_id, &conf_id, false),
        ClientFrame::SfuPublish { room_id, conf_id, sdp, screens } => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let _ = reply_tx.try_send(frames::error(Some("sfu_publish"), &Error::TooManyRequests(1)));
                return;
            };
            let checked = media_server(state, user, conn, &room_id, &conf_id);
            let (user, reply_tx) = (user.clone(), reply_tx.clone());
            state.tasks.clone().spawn(async move {
                let out = match checked {
                    Ok((sfu, tab, muted)) => sfu.publish(&user, &tab, sdp, screens, &reply_tx).await.map(|sdp| {
                        sfu.hold(&tab, muted);
                        let room = tab.room.as_str();
                        serde_json::json!({ "t": "sfu_answer", "room_id": room, "conf_id": conf_id, "sdp": sdp })
                            .to_string()
                    }),
                    Err(e) => Err(e),
                };
                let _ = reply_tx.send(out.unwrap_or_else(|e| frames::error(Some("sfu_publish"), &e))).await;
                drop(permit);
            });
        }
        ClientFrame::SfuAnswer { room_id, conf_id, sdp } => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let _ = reply_tx.try_send(frames::error(Some("sfu_answer"), &Error::TooManyRequests(1)));
                return;
            };
            let checked = media_server(state, user, conn, &room_id, &conf_id);
            let reply_tx = reply_tx.clone();
            state.tasks.clone().spawn(async move {
                let out = match checked {
                    Ok((sfu, tab, _)) => sfu.answer(&tab, sdp).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = out {
                    let _ = reply_tx.send(frames::error(Some("sfu_answer"), &e)).await;
                }
                drop(permit);
            });
        }
        ClientFrame::SfuShow { room_id, conf_id, stream_id, height } => {
            let out = media_server(state, user, conn, &room_id, &conf_id)
                .and_then(|(sfu, tab, _)| sfu.show(&tab, &stream_id, height));
            if let Err(e) = out {
                let _ = reply_tx.try_send(frames::error(Some("sfu_show"), &e));
            }
        }
        ClientFrame::CallState { room_id, conf_id, muted, hand } => {
            let out = crate::calls::check_conf_id(&conf_id)
                .and_then(|()| RoomId::parse(&room_id).map_err(|_| super::hub::not_member()))
                .and_then(|rid| state.hub.set_call_state(conn.id(), &rid, &conf_id, muted, hand));
            if let Err(e) = out {
                let _ = reply_tx.try_send(frames::error(Some("call_state"), &e));
            }
        }
        ClientFrame::CallHost { room_id, conf_id, action, user_id } => {
            if let Err(e) = host(state, user, &room_id, &conf_id, &action, user_id.as_deref()) {
                let _ = reply_tx.try_send(frames::error(Some("call_host"), &e));
            }
        }
        _ => {}
    }
}

/// The room, if the user is joined to it in the store now. The hub learns membership changes
/// from the publisher a moment after they are committed, so starting something (typing, a
/// call) asks the store too: a user banned a moment ago cannot start either in that moment.
fn joined_now(state: &LiveState, user: &UserId, room_id: &str) -> Result<RoomId> {
    let rid = RoomId::parse(room_id).map_err(|_| super::hub::not_member())?;
    if state.store.membership(&rid, user.as_str())? != crate::events::Membership::Join {
        return Err(super::hub::not_member());
    }
    Ok(rid)
}

/// A host's action on a call (`call_host`), if the user hosts the room's calls.
fn host(
    state: &LiveState,
    user: &UserId,
    room_id: &str,
    conf_id: &str,
    action: &str,
    target: Option<&str>,
) -> Result<()> {
    crate::calls::check_conf_id(conf_id)?;
    let action = crate::calls::HostAction::parse(action)?;
    let rid = RoomId::parse(room_id).map_err(|_| super::hub::not_member())?;
    crate::calls::check_host(&state.store, user, &rid, target)?;
    state.hub.host_action(user.as_str(), &rid, conf_id, action, target)
}

/// The media server and the room, if it runs and this tab is on the call's roster (which it
/// joins with `call_join`, as a member of the room), and whether the tab's microphone is off.
fn media_server(
    state: &LiveState,
    user: &UserId,
    conn: &Conn,
    room_id: &str,
    conf_id: &str,
) -> Result<(crate::calls::sfu::Sfu, crate::calls::sfu::Tab, bool)> {
    let sfu = state.sfu.clone().ok_or_else(|| Error::Unavailable("this server runs no media server".into()))?;
    crate::calls::check_conf_id(conf_id)?;
    let rid = joined_now(state, user, room_id)?;
    let muted = state.hub.in_call(conn.id(), &rid, conf_id).ok_or_else(super::hub::not_in_call)?;
    Ok((sfu, crate::calls::sfu::Tab { conn: conn.id(), room: rid, conf: conf_id.to_string() }, muted))
}

/// Joins or leaves a room's call roster (the hub's; the store is only read).
fn in_call(
    state: &LiveState,
    user: &UserId,
    conn: &Conn,
    reply_tx: &mpsc::Sender<String>,
    room_id: &str,
    conf_id: &str,
    joined: bool,
) {
    let out = crate::calls::check_conf_id(conf_id)
        .and_then(|()| {
            if joined {
                joined_now(state, user, room_id)
            } else {
                RoomId::parse(room_id).map_err(|_| super::hub::not_member())
            }
        })
        .and_then(|rid| state.hub.set_in_call(user.as_str(), conn.id(), &rid, conf_id, joined));
    if let Err(e) = out {
        let _ = reply_tx.try_send(frames::error(None, &e));
    }
}
