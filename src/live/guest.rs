//! The call socket: how another server's user takes part in a room's call hosted here
//! (`GET /ws/call`). Their server asked for a call token over federation
//! ([`crate::calls::host`]); their browser opens this socket and presents it as its first
//! frame (`call_auth`), so the token never appears in a URL or a log.
//!
//! The connection is registered with the hub as that user, on the rooms they are joined to
//! here, so the roster, the media server and the host's actions treat them as any member: a
//! leave or a kick that reaches this server takes them off the call and ends their media. It
//! carries only the call frames of the token's room: its roster, the media server's offers,
//! speakers and layers, and the host's actions. Messages, typing and presence reach the user
//! through their own server; those the hub queues here are dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::SinkExt;
use futures_util::stream::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::LiveState;
use super::frames::{self, ClientFrame};
use super::socket::{
    CALL_FRAMES_PER_SECOND, EphemeralLimiter, HEARTBEAT, IN_FLIGHT, SEND_TIMEOUT, handle_call, limited_kind,
    parse_frame, send_close, sized,
};
use crate::error::{Error, Result};
use crate::ids::{RoomId, UserId};

/// How long a new call socket has to present its token.
const AUTH_WITHIN: Duration = Duration::from_secs(10);
/// Largest frame a call socket takes (an SDP offer with room to spare).
const MAX_FRAME: usize = 64 * 1024;

/// `GET /ws/call`: upgrades to a call socket. Any origin may open one (the page is another
/// server's); nothing happens on it until a valid call token arrives.
pub async fn upgrade(State(state): State<LiveState>, ws: WebSocketUpgrade) -> Result<Response> {
    // Tokens are issued only where a media server runs.
    if state.calls.guest_tokens.is_none() {
        return Err(Error::NotFound("this server hosts no calls (it runs no media server)".into()));
    }
    let limit = MAX_FRAME.min(state.limits.max_ws_frame_bytes.max(1024));
    Ok(sized(ws, limit).on_upgrade(move |socket| {
        let tasks = state.tasks.clone();
        tasks.track_future(async move {
            if let Err(e) = run(state, socket).await {
                tracing::debug!(error = %e, "call socket ended with error");
            }
        })
    }))
}

/// The token of the first frame, `{"t":"call_auth","token":"…"}`, checked: who it admits and
/// to which room's calls, if they are joined to it here now.
async fn authenticate(state: &LiveState, socket: &mut WebSocket) -> Result<(UserId, RoomId)> {
    let first = tokio::time::timeout(AUTH_WITHIN, socket.next()).await;
    let Ok(Some(Ok(Message::Text(text)))) = first else {
        return Err(Error::Unauthorized("present a call token first (call_auth)".into()));
    };
    let v: Value = serde_json::from_str(&text).map_err(|_| Error::bad("invalid frame"))?;
    if v.get("t").and_then(Value::as_str) != Some("call_auth") {
        return Err(Error::Unauthorized("present a call token first (call_auth)".into()));
    }
    let token = v.get("token").and_then(Value::as_str).unwrap_or_default();
    let (user, room) = crate::calls::host::guest_of(&state.calls, token)?;
    if state.store.membership(&room, user.as_str())? != crate::events::Membership::Join {
        return Err(Error::Forbidden(format!("{user} is not in this room")));
    }
    Ok((user, room))
}

async fn run(state: LiveState, mut socket: WebSocket) -> Result<()> {
    let (user, room) = match authenticate(&state, &mut socket).await {
        Ok(v) => v,
        Err(e) => {
            let _ = socket.send(Message::Text(frames::error(Some("call_auth"), &e).into())).await;
            send_close(&mut socket, 4001, "call token refused").await;
            return Err(e);
        }
    };
    let connected = state.hub.connect(user.as_str(), "call", || {
        let snap = state.store.snapshot()?;
        let (rooms, pos) = (snap.joined_rooms(user.as_str())?, snap.stream_pos()?);
        let prefs = super::hub::Prefs { appear_offline: true, share_receipts: false };
        Ok(super::hub::Loaded { rooms, prefs, pos, guest: true })
    });
    let mut conn = match connected {
        Ok(c) => c,
        Err(e) => {
            let _ = socket.send(Message::Text(frames::error(Some("call_auth"), &e).into())).await;
            send_close(&mut socket, 4008, "too many connections").await;
            return Err(e);
        }
    };
    let (mut sink, mut stream) = socket.split();
    let send = |text: String| Message::Text(text.into());
    sink.send(send(json!({ "t": "ready", "pos": 0, "sfu": true, "room_id": room.as_str() }).to_string()))
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    sink.send(send(frames::call_roster(room.as_str(), &state.hub.calls_in(&room))))
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;

    let (reply_tx, mut reply_rx) = mpsc::channel::<String>(IN_FLIGHT * 2);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut last_heard = Instant::now();
    let mut limiter = EphemeralLimiter::per_second(CALL_FRAMES_PER_SECOND);
    let shutdown = state.shutdown.clone();
    let mut cancelled = std::pin::pin!(shutdown.cancelled());
    loop {
        let out: Option<String> = tokio::select! {
            biased;
            _ = &mut cancelled => {
                send_close(&mut sink, 1001, "server shutting down").await;
                return Ok(());
            }
            Some(text) = conn.call.recv() => ours(&text, room.as_str()).then(|| text.to_string()),
            Some(reply) = reply_rx.recv() => Some(reply),
            // What the hub queues for the user's other rooms and for chat: their own server
            // delivers it. Lag flags set meanwhile are harmless: nothing catches up here.
            Some(_) = conn.rx.recv() => None,
            Some(_) = conn.eph.recv() => None,
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        take(&state, &user, &room, &conn, &mut limiter, &text, &reply_tx, &in_flight);
                        None
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(Message::Binary(_))) => Some(frames::error(None, &Error::bad("binary frames are not supported"))),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => return Err(Error::bad(e.to_string())),
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > HEARTBEAT * 3 {
                    return Ok(());
                }
                let _ = sink.send(Message::Ping(Default::default())).await;
                None
            }
        };
        if let Some(text) = out {
            match tokio::time::timeout(SEND_TIMEOUT, sink.send(send(text))).await {
                Ok(Ok(())) => {}
                _ => return Err(Error::Unavailable("call socket too slow or gone".into())),
            }
        }
    }
}

/// Whether a call-lane frame is for this socket: about the token's room, and not a stored call
/// signal (`call`, which the user's own server delivers).
fn ours(text: &str, room: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
    v.get("t").and_then(Value::as_str) != Some("call") && v.get("room_id").and_then(Value::as_str) == Some(room)
}

/// One frame from the guest: `ping`, or a call frame about the token's room.
#[allow(clippy::too_many_arguments)]
fn take(
    state: &LiveState,
    user: &UserId,
    room: &RoomId,
    conn: &super::hub::Conn,
    limiter: &mut EphemeralLimiter,
    text: &str,
    reply_tx: &mpsc::Sender<String>,
    in_flight: &Arc<Semaphore>,
) {
    let Some(frame) = parse_frame(text, reply_tx) else { return };
    if matches!(frame, ClientFrame::Ping) {
        let _ = reply_tx.try_send(frames::pong());
        return;
    }
    match frame.call_room() {
        Some(r) if r == room.as_str() => {}
        _ => {
            let e = Error::Forbidden("this connection carries only the call of the room its token names".into());
            let _ = reply_tx.try_send(frames::error(None, &e));
            return;
        }
    }
    // Here every call frame counts (joining and leaving too: nothing else is sent here).
    if !limiter.allow(Instant::now()) {
        let _ = reply_tx.try_send(frames::error(limited_kind(&frame), &Error::TooManyRequests(1)));
        return;
    }
    handle_call(state, user, conn, frame, reply_tx, in_flight);
}
