//! Notification settings and Web Push: each user's settings, their devices' push
//! subscriptions, and the durable push queue (messages not yet turned into pushes, and pushes
//! to try again).

use std::collections::BTreeMap;

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::Store;
use super::tables::{NOTIFY_PREFS, PUSH_PENDING, PUSH_RETRY, PUSH_SUBS};
use crate::error::{Error, Result};

/// How much of a room notifies a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The default: every message in a direct chat or a room of two; mentions, keywords and
    /// calls elsewhere.
    #[default]
    Default,
    /// Every message.
    All,
    /// Only what mentions the user (or the room), keywords and calls, even in a direct chat.
    Mentions,
    /// Nothing (until `mute_until`, if set).
    Mute,
}

/// A user's setting for one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoomPref {
    /// How much notifies.
    pub level: Level,
    /// With `Mute`: the time (ms since epoch) it ends; none: until changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_until: Option<u64>,
}

/// A user's notification settings, the same on every device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyPrefs {
    /// Do not disturb: nothing notifies or pushes (unread counts still grow).
    #[serde(default)]
    pub dnd: bool,
    /// Words that notify wherever they are said (matched as whole words, any case).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// A sound with each desktop notification.
    #[serde(default = "yes")]
    pub sound: bool,
    /// Pushes carry the start of the message; off, only the room and the sender.
    #[serde(default = "yes")]
    pub preview: bool,
    /// Per room (by room id), where not the default.
    #[serde(default)]
    pub rooms: BTreeMap<String, RoomPref>,
}

fn yes() -> bool {
    true
}

impl Default for NotifyPrefs {
    fn default() -> Self {
        NotifyPrefs { dnd: false, keywords: Vec::new(), sound: true, preview: true, rooms: BTreeMap::new() }
    }
}

/// A Web Push subscription of one device (what its browser's `pushManager.subscribe` gave).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSub {
    /// The push service's URL for this device.
    pub endpoint: String,
    /// The device's P-256 public key, uncompressed, base64url.
    pub p256dh: String,
    /// The device's 16-byte auth secret, base64url.
    pub auth: String,
    /// The session that subscribed: when it ends (sign-out), the subscription goes with it.
    pub sid: String,
    /// What the user sees in the list of devices (the browser and system).
    pub label: String,
    /// When it was added, ms since epoch.
    pub created_ts: u64,
}

/// A push that failed and waits for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRetry {
    /// The event pushed.
    pub event_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt was made, ms since epoch.
    pub first_ms: u64,
}

/// Key of a retry: (due ms, user id, subscription id, stream position of the event).
pub type RetryKey = (u64, String, String, u64);

/// What one round of the push worker changes, written at once.
#[derive(Debug, Default)]
pub struct PushRound {
    /// Pending positions turned into pushes (or found to need none).
    pub expanded: Vec<u64>,
    /// Retries done with (delivered, given up, or no longer wanted).
    pub finished: Vec<RetryKey>,
    /// Pushes to try again.
    pub retries: Vec<(RetryKey, PushRetry)>,
    /// Subscriptions the push service says are gone, or whose session ended: (user, id).
    pub gone: Vec<(String, String)>,
}

impl Store {
    /// A user's notification settings (the defaults if never set).
    pub fn notify_prefs(&self, user: &str) -> Result<NotifyPrefs> {
        let r = self.read()?;
        let t = r.open_table(NOTIFY_PREFS)?;
        Ok(super::get_json(&t, user)?.unwrap_or_default())
    }

    /// Changes a user's notification settings with `change` (which may refuse); returns them.
    pub async fn update_notify_prefs<F>(&self, user: String, change: F) -> Result<NotifyPrefs>
    where
        F: FnOnce(&mut NotifyPrefs) -> Result<()> + Send + 'static,
    {
        self.write(move |tx| {
            let mut t = tx.txn.open_table(NOTIFY_PREFS)?;
            let mut prefs: NotifyPrefs = super::get_json(&t, &user)?.unwrap_or_default();
            change(&mut prefs)?;
            super::put_json(&mut t, &user, &prefs)?;
            Ok(prefs)
        })
        .await
    }

    /// A user's push subscriptions, by id.
    pub fn push_subs(&self, user: &str) -> Result<Vec<(String, PushSub)>> {
        let r = self.read()?;
        let t = r.open_table(PUSH_SUBS)?;
        let mut out = Vec::new();
        for row in t.range((user, "")..=(user, "\u{10ffff}"))? {
            let (k, v) = row?;
            out.push((k.value().1.to_string(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// Every push subscription: (user, id, subscription).
    pub fn all_push_subs(&self) -> Result<Vec<(String, String, PushSub)>> {
        let r = self.read()?;
        let t = r.open_table(PUSH_SUBS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (user, id) = k.value();
            out.push((user.to_string(), id.to_string(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// Adds (or renews, same id) a subscription; refused past `max` per user.
    pub async fn add_push_sub(&self, user: String, id: String, sub: PushSub, max: usize) -> Result<()> {
        self.write(move |tx| {
            let mut t = tx.txn.open_table(PUSH_SUBS)?;
            if t.get((user.as_str(), id.as_str()))?.is_none() {
                let n = t.range((user.as_str(), "")..=(user.as_str(), "\u{10ffff}"))?.count();
                if n >= max {
                    return Err(Error::Conflict(format!(
                        "push is on for {n} devices already, the most allowed; remove one in the settings first"
                    )));
                }
            }
            let bytes = serde_json::to_vec(&sub)?;
            t.insert((user.as_str(), id.as_str()), bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Removes a subscription; whether it existed.
    pub async fn remove_push_sub(&self, user: String, id: String) -> Result<bool> {
        self.write(move |tx| Ok(tx.txn.open_table(PUSH_SUBS)?.remove((user.as_str(), id.as_str()))?.is_some())).await
    }

    /// The oldest pending messages: (stream position, event id).
    pub fn push_pending(&self, max: usize) -> Result<Vec<(u64, String)>> {
        let r = self.read()?;
        let t = r.open_table(PUSH_PENDING)?;
        let mut out = Vec::new();
        for row in t.iter()?.take(max) {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_string()));
        }
        Ok(out)
    }

    /// Retries due at `now` (ms), oldest first.
    pub fn push_due(&self, now: u64, max: usize) -> Result<Vec<(RetryKey, PushRetry)>> {
        let r = self.read()?;
        let t = r.open_table(PUSH_RETRY)?;
        let mut out = Vec::new();
        for row in t.range((0, "", "", 0)..=(now, "\u{10ffff}", "\u{10ffff}", u64::MAX))?.take(max) {
            let (k, v) = row?;
            let (due, user, id, pos) = k.value();
            out.push(((due, user.to_string(), id.to_string(), pos), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// When the next retry is due, if any.
    pub fn push_next_due(&self) -> Result<Option<u64>> {
        let r = self.read()?;
        let t = r.open_table(PUSH_RETRY)?;
        Ok(t.first()?.map(|(k, _)| k.value().0))
    }

    /// Rows waiting: (pending messages, retries).
    pub fn push_depths(&self) -> Result<(u64, u64)> {
        let r = self.read()?;
        Ok((r.open_table(PUSH_PENDING)?.len()?, r.open_table(PUSH_RETRY)?.len()?))
    }

    /// Records one round of the push worker; retries past `max_retries` rows are dropped
    /// (returns how many).
    pub async fn push_round(&self, round: PushRound, max_retries: u64) -> Result<u64> {
        self.write(move |tx| {
            let mut pending = tx.txn.open_table(PUSH_PENDING)?;
            for p in &round.expanded {
                pending.remove(*p)?;
            }
            let mut retry = tx.txn.open_table(PUSH_RETRY)?;
            for (due, user, id, pos) in &round.finished {
                retry.remove((*due, user.as_str(), id.as_str(), *pos))?;
            }
            let mut dropped = 0;
            for ((due, user, id, pos), r) in &round.retries {
                if retry.len()? >= max_retries {
                    dropped += 1;
                    continue;
                }
                let bytes = serde_json::to_vec(r)?;
                retry.insert((*due, user.as_str(), id.as_str(), *pos), bytes.as_slice())?;
            }
            let mut subs = tx.txn.open_table(PUSH_SUBS)?;
            for (user, id) in &round.gone {
                subs.remove((user.as_str(), id.as_str()))?;
            }
            Ok(dropped)
        })
        .await
    }
}

/// Whether any device of any user has push on (read inside a write: the writer queues
/// messages for push only then).
pub fn any_push_subs(tx: &super::Tx<'_>) -> Result<bool> {
    Ok(!tx.txn.open_table(PUSH_SUBS)?.is_empty()?)
}

/// Queues a committed message or call invite for the push worker.
pub fn queue_push(tx: &super::Tx<'_>, pos: u64, event_id: &str) -> Result<()> {
    tx.txn.open_table(PUSH_PENDING)?.insert(pos, event_id)?;
    Ok(())
}
