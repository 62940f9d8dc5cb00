//! Alerts: a desktop notification (while the tab is hidden) for each message or call invite
//! that notifies a recipient who is online, by the rules and the user's settings in
//! [`crate::push::rules`], decided here on the server so every device agrees.
//!
//! The publisher hands each committed message and call invite over after delivering it; this
//! task reads the room from the store and sends a `notify` frame to each online member it
//! notifies, so delivery never waits for it. Its queue is bounded: on overflow an alert is
//! dropped (counted), never a message. Devices whose browser is closed get Web Push instead
//! ([`crate::push`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::events::{call, now_ms};
use crate::push::{Push, rules};
use crate::store::Store;
use crate::store::events::StoredEvent;

/// Messages waiting for their alerts to be decided.
pub const QUEUE: usize = 1024;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Alerts dropped because the queue was full (`/metrics`).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The publisher's end: hands over committed messages.
pub struct Notifier {
    tx: mpsc::Sender<Arc<StoredEvent>>,
}

impl Notifier {
    /// A notifier and the receiving end for [`run`].
    pub fn channel() -> (Notifier, mpsc::Receiver<Arc<StoredEvent>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Notifier { tx }, rx)
    }

    /// Called on the publisher thread after delivery; never waits.
    pub fn committed(&self, stored: &Arc<StoredEvent>) {
        if crate::push::is_notifying_kind(&stored.event.kind)
            && stored.pos > 0
            && stored.redacted_because.is_none()
            && let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(stored.clone())
        {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Decides and sends the alerts of the messages handed over, until `shutdown`.
pub async fn run(
    mut rx: mpsc::Receiver<Arc<StoredEvent>>,
    hub: Arc<Hub>,
    push: Push,
    store: Store,
    shutdown: CancellationToken,
) {
    loop {
        let stored = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next { Some(s) => s, None => return },
        };
        let ev = &stored.event;
        let room = match store.room(&ev.room_id) {
            Ok(Some(room)) => room,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: reading the room failed");
                continue;
            }
        };
        let facts = rules::Facts {
            kind: &ev.kind,
            content: &ev.content,
            room_id: room.room_id.as_str(),
            one_to_one: room.direct || room.joined == 2,
            may_mention_room: rules::may_mention_room(&room, ev.sender.as_str()),
        };
        let now = now_ms();
        // The frame is the same for everyone but for the sound: made at most twice.
        let mut frames: [Option<String>; 2] = [None, None];
        for user in hub.online_members(&ev.room_id) {
            if *user == *ev.sender.as_str() {
                continue;
            }
            let Ok(prefs) = push.prefs(&user) else { continue };
            if !rules::notifies(&facts, &user, &prefs, now) {
                continue;
            }
            let frame = frames[usize::from(prefs.sound)]
                .get_or_insert_with(|| notify_frame(&stored, &room.name, room.direct, prefs.sound));
            hub.send_to_user(&user, frame);
        }
    }
}

/// `notify`: an event that notifies the recipient: where, who, and the start of its text (or
/// `call`: a call invite); `direct`: the room is a direct chat (shown under the sender's name,
/// not the room's); `sound`: the user wants one.
fn notify_frame(stored: &StoredEvent, room_name: &str, direct: bool, sound: bool) -> String {
    let ev = &stored.event;
    let kind = if ev.kind == call::INVITE { "call" } else { "message" };
    let body = if kind == "call" { String::new() } else { crate::push::preview_of(&ev.content) };
    json!({
        "t": "notify",
        "kind": kind,
        "room_id": ev.room_id,
        "event_id": ev.event_id,
        "sender": ev.sender,
        "room_name": room_name,
        "direct": direct,
        "sound": sound,
        "body": body,
    })
    .to_string()
}
