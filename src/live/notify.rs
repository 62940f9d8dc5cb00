//! Alerts: which recipients of a message it should alert (a desktop notification while their
//! tab is hidden), decided here on the server so every device agrees. The rules follow Matrix's
//! default push rules in spirit: a message in a one-to-one room (a direct chat, or a room of
//! two) alerts; in other rooms a message alerts the users it mentions (`m.mentions.user_ids`),
//! and everyone when it mentions the room (`m.mentions.room`). One's own messages, edits and
//! notices (bots) never alert.
//!
//! The publisher hands each committed message over after delivering it; this task reads the
//! room from the store and sends a `notify` frame to each online member it alerts, so delivery
//! never waits for it. Its queue is bounded: on overflow an alert is dropped (counted), never a
//! message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::events::M_ROOM_MESSAGE;
use crate::store::Store;
use crate::store::events::StoredEvent;

/// Messages waiting for their alerts to be decided.
pub const QUEUE: usize = 1024;
/// Characters of a message shown in its alert.
const PREVIEW_CHARS: usize = 140;

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
        if stored.event.kind == M_ROOM_MESSAGE
            && stored.pos > 0
            && let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(stored.clone())
        {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Decides and sends the alerts of the messages handed over, until `shutdown`.
pub async fn run(mut rx: mpsc::Receiver<Arc<StoredEvent>>, hub: Arc<Hub>, store: Store, shutdown: CancellationToken) {
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
        let one_to_one = room.direct || room.joined == 2;
        let mut frame = None;
        for user in hub.online_members(&ev.room_id) {
            if *user == *ev.sender.as_str() || !alerts(&ev.content, &user, one_to_one) {
                continue;
            }
            let text = frame.get_or_insert_with(|| notify_frame(&stored, &room.name, room.direct));
            hub.send_to_user(&user, text);
        }
    }
}

/// Whether a message with `content` alerts `user` (not its sender); `one_to_one`: the room
/// is a direct chat or has two members.
pub fn alerts(content: &Value, user: &str, one_to_one: bool) -> bool {
    let edit = content.get("m.relates_to").and_then(|r| r.get("rel_type")).and_then(Value::as_str) == Some("m.replace");
    let notice = content.get("msgtype").and_then(Value::as_str) == Some("m.notice");
    if edit || notice {
        return false;
    }
    if one_to_one {
        return true;
    }
    let mentions = content.get("m.mentions");
    let named = mentions
        .and_then(|m| m.get("user_ids"))
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(user)));
    let room = mentions.and_then(|m| m.get("room")).and_then(Value::as_bool) == Some(true);
    named || room
}

/// `notify`: a message that alerts the recipient: where, who, and the start of its text;
/// `direct`: the room is a direct chat (shown under the sender's name, not the room's).
fn notify_frame(stored: &StoredEvent, room_name: &str, direct: bool) -> String {
    let ev = &stored.event;
    let body = ev.content.get("body").and_then(Value::as_str).unwrap_or_default();
    let mut preview: String = body.chars().take(PREVIEW_CHARS).collect();
    if body.chars().nth(PREVIEW_CHARS).is_some() {
        preview.push('…');
    }
    json!({
        "t": "notify",
        "room_id": ev.room_id,
        "event_id": ev.event_id,
        "sender": ev.sender,
        "room_name": room_name,
        "direct": direct,
        "body": preview,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_a_message_alerts() {
        let me = "@ben:x";
        let plain = json!({"msgtype": "m.text", "body": "hi"});
        assert!(!alerts(&plain, me, false));
        assert!(alerts(&plain, me, true));
        let named = json!({"msgtype": "m.text", "body": "hi ben", "m.mentions": {"user_ids": [me]}});
        assert!(alerts(&named, me, false));
        assert!(!alerts(&named, "@cara:x", false));
        let room = json!({"msgtype": "m.text", "body": "@room hi", "m.mentions": {"room": true}});
        assert!(alerts(&room, "@cara:x", false));
        let edit = json!({"msgtype": "m.text", "body": "* hi", "m.mentions": {"user_ids": [me]},
                          "m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}});
        assert!(!alerts(&edit, me, true));
        let notice = json!({"msgtype": "m.notice", "body": "build passed"});
        assert!(!alerts(&notice, me, true));
        // Malformed mentions from another server alert nobody and break nothing.
        let odd = json!({"msgtype": "m.text", "body": "x", "m.mentions": {"user_ids": "@ben:x", "room": "yes"}});
        assert!(!alerts(&odd, me, false));
    }
}
