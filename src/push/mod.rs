//! Notifications: who an event notifies (the rules, with each user's settings), and Web Push
//! to devices whose browser is closed (RFC 8030, payloads encrypted per RFC 8291 by
//! `web-push-native`, the server identified per RFC 8292 by [`vapid`]).
//!
//! The queue is durable and never holds up the writer: when any device has push on, the
//! writer adds one row per committed message or call invite (`push_pending`) in the same
//! commit. The worker here turns those rows into pushes for the room's members with push on
//! whom the event notifies and who have not read it yet, sends them, and in one write removes
//! the rows and queues the failed pushes to try again with growing delays (`push_retry`).
//! Before each try it checks again: a push the user has read meanwhile (on any device), or a
//! subscription that ended, is dropped. After a crash, what was being sent is sent again (a
//! push may then arrive twice; none is lost).

pub mod rules;
pub mod send;
pub mod vapid;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::events::{M_ROOM_MESSAGE, call, now_ms};
use crate::ids::EventId;
use crate::store::Store;
use crate::store::events::StoredEvent;
use crate::store::push::{Level, NotifyPrefs, PushRetry, PushRound, PushSub, RoomPref};
use crate::store::rooms::RoomRecord;
use send::{Outcome, PushClient};

/// Pending messages taken per round.
const ROUND: usize = 64;
/// Pushes in flight at once.
const IN_FLIGHT: usize = 64;
/// Messages older than this when their turn comes are not pushed (history from another
/// server, or a server that was down for long).
const MAX_AGE_MS: u64 = 3600 * 1000;
/// Characters of a message a notification shows.
pub const PREVIEW_CHARS: usize = 140;
/// Characters of a room name a push carries.
const NAME_CHARS: usize = 100;
/// Rooms a user may have their own notification setting for.
pub const MAX_ROOM_PREFS: usize = 1000;
/// Settings kept in memory (forgotten all at once past it).
const PREFS_CACHE: usize = 10_000;

/// An event to push and its room, read once per round.
type Loaded = (Arc<StoredEvent>, Arc<RoomRecord>);

/// Each user's devices with push on: (subscription id, subscription).
type SubsByUser = HashMap<String, Vec<(String, PushSub)>>;

/// How pushes are sent and retried.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Endpoints at internal addresses and over plain `http` are allowed (tests, a LAN).
    pub private_endpoints: bool,
    /// Who runs the server, for push services (VAPID `sub`).
    pub contact: String,
    /// First retry delay; doubled each time up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// A push not delivered this long after its first try is given up (also its TTL).
    pub give_up_ms: u64,
    /// Devices with push per user.
    pub per_user: usize,
    /// Most pushes waiting to be tried again.
    pub max_retries: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PushCounters {
    /// Pushes the push service took.
    pub delivered: AtomicU64,
    /// Attempts that failed and will be tried again.
    pub retried: AtomicU64,
    /// Pushes refused by the service, given up, or over the retry limit.
    pub dropped: AtomicU64,
    /// Subscriptions removed because the service said they are gone or their session ended.
    pub gone: AtomicU64,
}

/// Notification settings and Web Push: a cheap-clone handle.
#[derive(Clone)]
pub struct Push(Arc<PushInner>);

/// What [`Push`] holds.
pub struct PushInner {
    store: Store,
    vapid: vapid::Vapid,
    client: PushClient,
    settings: PushSettings,
    prefs: Mutex<HashMap<String, Arc<NotifyPrefs>>>,
    /// Subscriptions by user; `None` after a change, read again when next needed.
    subs: Mutex<Option<Arc<SubsByUser>>>,
    /// See [`Push::broad`]; `None` after a change.
    broad: Mutex<Option<Arc<Vec<String>>>>,
    wake: Arc<tokio::sync::Notify>,
    /// For `/metrics`.
    pub counters: PushCounters,
}

impl std::ops::Deref for Push {
    type Target = PushInner;
    fn deref(&self) -> &PushInner {
        &self.0
    }
}

/// A device with push on, as its owner sees it in the settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    /// Its id (to remove it).
    pub id: String,
    /// The browser and system it said it is.
    pub label: String,
    /// When push was turned on, ms since epoch.
    pub created_ts: u64,
    /// The push service's host.
    pub service: String,
    /// It is the device asking.
    pub this_session: bool,
}

impl Push {
    /// The service, with the VAPID key read from the store (made on first start).
    /// `wake` is notified after commits that may need pushing.
    pub async fn open(
        store: Store,
        settings: PushSettings,
        wake: Arc<tokio::sync::Notify>,
    ) -> std::result::Result<Push, String> {
        let secret =
            crate::store::secret(&store, "vapid_key").await.map_err(|e| format!("cannot create the VAPID key: {e}"))?;
        let vapid = vapid::Vapid::new(&secret, settings.contact.clone()).map_err(|e| e.to_string())?;
        let client = PushClient::new(crate::addrs::PeerPolicy::new(settings.private_endpoints))?;
        Ok(Push(Arc::new(PushInner {
            store,
            vapid,
            client,
            settings,
            prefs: Mutex::default(),
            subs: Mutex::default(),
            broad: Mutex::default(),
            wake,
            counters: PushCounters::default(),
        })))
    }

    /// The public VAPID key browsers subscribe with (base64url).
    pub fn public_key(&self) -> &str {
        self.vapid.public_key()
    }

    /// A user's notification settings (cached).
    pub fn prefs(&self, user: &str) -> Result<Arc<NotifyPrefs>> {
        if let Some(p) = self.prefs.lock().ok().and_then(|c| c.get(user).cloned()) {
            return Ok(p);
        }
        let p = Arc::new(self.store.notify_prefs(user)?);
        if let Ok(mut cache) = self.prefs.lock() {
            if cache.len() >= PREFS_CACHE {
                cache.clear();
            }
            cache.insert(user.to_string(), p.clone());
        }
        Ok(p)
    }

    /// Changes a user's settings with `change` (which may refuse); returns them.
    pub async fn update_prefs<F>(&self, user: &str, change: F) -> Result<NotifyPrefs>
    where
        F: FnOnce(&mut NotifyPrefs) -> Result<()> + Send + 'static,
    {
        let prefs = self.store.update_notify_prefs(user.to_string(), change).await?;
        if let Ok(mut cache) = self.prefs.lock() {
            cache.insert(user.to_string(), Arc::new(prefs.clone()));
        }
        if let Ok(mut b) = self.broad.lock() {
            *b = None;
        }
        Ok(prefs)
    }

    /// Sets how much of a room notifies `user` (a member; the caller checks): `mute_for_ms`
    /// with `Mute` ends the mute after that long. Settings for at most [`MAX_ROOM_PREFS`]
    /// rooms are kept.
    pub async fn set_room_level(
        &self,
        user: &str,
        room_id: &crate::ids::RoomId,
        level: Level,
        mute_for_ms: Option<u64>,
    ) -> Result<NotifyPrefs> {
        let room = room_id.as_str().to_string();
        let mute_until = match (level, mute_for_ms) {
            (Level::Mute, Some(ms)) => Some(now_ms().saturating_add(ms)),
            _ => None,
        };
        self.update_prefs(user, move |p| {
            let now = now_ms();
            // Mutes that ended are forgotten.
            p.rooms.retain(|_, r| !(r.level == Level::Mute && r.mute_until.is_some_and(|t| t <= now)));
            if level == Level::Default {
                p.rooms.remove(&room);
            } else {
                if !p.rooms.contains_key(&room) && p.rooms.len() >= MAX_ROOM_PREFS {
                    return Err(Error::bad(format!("settings are kept for at most {MAX_ROOM_PREFS} rooms")));
                }
                p.rooms.insert(room, RoomPref { level, mute_until });
            }
            Ok(())
        })
        .await
    }

    /// Turns push on for the device of session `sid` (or renews it); returns its id.
    pub async fn subscribe(
        &self,
        user: &str,
        sid: &str,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        label: &str,
    ) -> Result<String> {
        send::check_endpoint(endpoint, self.settings.private_endpoints).map_err(Error::BadRequest)?;
        let key = vapid::from_b64url(p256dh).ok_or_else(|| Error::bad("keys.p256dh is not base64url"))?;
        if key.len() != 65 || p256::PublicKey::from_sec1_bytes(&key).is_err() {
            return Err(Error::bad("keys.p256dh is not an uncompressed P-256 public key"));
        }
        let secret = vapid::from_b64url(auth).ok_or_else(|| Error::bad("keys.auth is not base64url"))?;
        if secret.len() != 16 {
            return Err(Error::bad("keys.auth must be 16 bytes"));
        }
        let label: String = label.chars().filter(|c| !c.is_control()).take(100).collect();
        let id = hex16(endpoint.as_bytes());
        let sub = PushSub {
            endpoint: endpoint.to_string(),
            p256dh: vapid::b64url(&key),
            auth: vapid::b64url(&secret),
            sid: sid.to_string(),
            label: if label.trim().is_empty() { "A browser".into() } else { label },
            created_ts: now_ms(),
        };
        let added = self.store.add_push_sub(user.to_string(), id.clone(), sub, self.settings.per_user).await;
        self.forget_subs();
        added.map(|_| id)
    }

    /// Turns push off for one of the user's devices; whether it was on.
    pub async fn unsubscribe(&self, user: &str, id: &str) -> Result<bool> {
        let removed = self.store.remove_push_sub(user.to_string(), id.to_string()).await;
        self.forget_subs();
        removed
    }

    /// The user's devices with push on.
    pub fn devices(&self, user: &str, sid: &str) -> Result<Vec<Device>> {
        Ok(self
            .store
            .push_subs(user)?
            .into_iter()
            .map(|(id, s)| Device {
                id,
                service: s
                    .endpoint
                    .parse::<axum::http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string))
                    .unwrap_or_default(),
                label: s.label,
                created_ts: s.created_ts,
                this_session: s.sid == sid,
            })
            .collect())
    }

    /// Pushes waiting: (messages not yet expanded, pushes to retry).
    pub fn depths(&self) -> (u64, u64) {
        self.store.push_depths().unwrap_or_default()
    }

    fn forget_subs(&self) {
        if let Ok(mut s) = self.subs.lock() {
            *s = None;
        }
        if let Ok(mut b) = self.broad.lock() {
            *b = None;
        }
    }

    fn subs_by_user(&self) -> Result<Arc<SubsByUser>> {
        if let Some(s) = self.subs.lock().ok().and_then(|s| s.clone()) {
            return Ok(s);
        }
        let mut map = SubsByUser::new();
        for (user, id, sub) in self.store.all_push_subs()? {
            map.entry(user).or_default().push((id, sub));
        }
        let map = Arc::new(map);
        if let Ok(mut s) = self.subs.lock() {
            *s = Some(map.clone());
        }
        Ok(map)
    }

    /// Sends pushes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let worked = match self.round().await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "push round failed");
                    false
                }
            };
            if worked {
                continue;
            }
            let wait = match self.store.push_next_due() {
                Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).clamp(10, 60_000)),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: the oldest pending messages and the retries due; whether there were any.
    async fn round(&self) -> Result<bool> {
        let now = now_ms();
        let pending = self.store.push_pending(ROUND)?;
        let due = self.store.push_due(now, ROUND)?;
        if pending.is_empty() && due.is_empty() {
            return Ok(false);
        }
        let subs = self.subs_by_user()?;
        let snap = self.store.snapshot()?;
        let mut round = PushRound::default();
        let mut jobs = Vec::new();
        // Each event and its room read once per round, and its sender's name once it is pushed,
        // shared by its pushes.
        let mut names: HashMap<u64, Arc<str>> = HashMap::new();
        let mut name_of = |stored: &StoredEvent| -> Arc<str> {
            names.entry(stored.pos).or_insert_with(|| self.sender_name(stored).into()).clone()
        };
        let mut events: HashMap<u64, Option<Loaded>> = HashMap::new();
        let mut load = |pos: u64, event_id: &str| -> Result<Option<Loaded>> {
            if let Some(found) = events.get(&pos) {
                return Ok(found.clone());
            }
            let found = match EventId::parse(event_id) {
                Ok(id) => match snap.event(&id)? {
                    Some(stored) if stored.redacted_because.is_none() => {
                        let room_id = stored.event.room_id.clone();
                        self.store.room(&room_id)?.map(|room| (Arc::new(stored), Arc::new(room)))
                    }
                    _ => None,
                },
                Err(_) => None,
            };
            events.insert(pos, found.clone());
            Ok(found)
        };
        for (pos, event_id) in pending {
            round.expanded.push(pos);
            let Some((stored, room)) = load(pos, &event_id)? else { continue };
            if !fresh(&stored.event, now) {
                continue;
            }
            let sender = stored.event.sender.as_str();
            for user in self.candidates(&stored, &room, &subs)? {
                let Some(devices) = subs.get(&user) else { continue };
                if user == sender || !self.wanted(&snap, &stored, &room, &user, now)? {
                    continue;
                }
                let name = name_of(&stored);
                for (id, sub) in devices {
                    let retry = PushRetry { event_id: event_id.clone(), attempts: 0, first_ms: now };
                    jobs.push((
                        user.clone(),
                        id.clone(),
                        sub.clone(),
                        (stored.clone(), room.clone(), name.clone()),
                        retry,
                    ));
                }
            }
        }
        for (key, retry) in due {
            round.finished.push(key.clone());
            let (_, user, id, pos) = key;
            let Some(sub) = subs.get(&user).and_then(|d| d.iter().find(|(i, _)| *i == id)).map(|(_, s)| s.clone())
            else {
                continue;
            };
            let Some((stored, room)) = load(pos, &retry.event_id)? else { continue };
            if now.saturating_sub(retry.first_ms) > self.settings.give_up_ms {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !self.wanted(&snap, &stored, &room, &user, now)? {
                continue;
            }
            let name = name_of(&stored);
            jobs.push((user, id, sub, (stored, room, name), retry));
        }
        // Subscriptions whose session ended (sign-out, password change, disabled account) go.
        let mut ended = Vec::new();
        jobs.retain(|(user, id, sub, ..)| {
            let alive = snap.has_session(&sub.sid).unwrap_or(true);
            if !alive && !ended.contains(&(user.clone(), id.clone())) {
                ended.push((user.clone(), id.clone()));
            }
            alive
        });
        drop(snap);
        let outcomes: Vec<_> = futures_util::stream::iter(jobs)
            .map(|(user, id, sub, (stored, room, name), retry)| async move {
                let out = self.deliver(&user, &sub, &stored, &room, &name).await;
                (user, id, stored.pos, retry, out)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (user, id, pos, retry, out) in outcomes {
            match out {
                Outcome::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Gone => {
                    if !round.gone.contains(&(user.clone(), id.clone())) {
                        round.gone.push((user, id));
                    }
                }
                Outcome::Refused(why) => {
                    tracing::info!(%user, reason = %why, "a push service refused a push");
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Retry(why) => {
                    tracing::debug!(%user, reason = %why, "push to retry");
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    let delay = self
                        .settings
                        .retry_base_ms
                        .saturating_mul(1u64 << retry.attempts.min(20))
                        .min(self.settings.retry_max_ms);
                    let next =
                        PushRetry { event_id: retry.event_id, attempts: retry.attempts + 1, first_ms: retry.first_ms };
                    round.retries.push(((now_ms() + delay, user, id, pos), next));
                }
            }
        }
        for e in ended {
            if !round.gone.contains(&e) {
                round.gone.push(e);
            }
        }
        let gone = round.gone.len() as u64;
        let dropped = self.store.push_round(round, self.settings.max_retries).await?;
        self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        if gone > 0 {
            self.counters.gone.fetch_add(gone, Ordering::Relaxed);
            self.forget_subs();
        }
        Ok(true)
    }

    /// The users with push on whom `stored` might notify, so that a message in a big room
    /// costs a lookup per mentioned user, not one per member: in a direct chat or a room of
    /// two, for a mention of the room, or a call for no one in particular, every member with
    /// push on; else the users it names (a call: its invitee) and those whose settings ask for
    /// more (keywords, a room set to every message).
    fn candidates(&self, stored: &StoredEvent, room: &RoomRecord, subs: &SubsByUser) -> Result<Vec<String>> {
        let ev = &stored.event;
        let one_to_one = room.direct || room.joined == 2;
        let (named, everyone) = crate::events::mentions_of(&ev.content);
        let invitee = ev.content.get("invitee").and_then(Value::as_str);
        let everyone = everyone && rules::may_mention_room(room, ev.sender.as_str());
        let all = if ev.kind == call::INVITE { invitee.is_none() } else { one_to_one || everyone };
        if all {
            let members = self.store.members(&room.room_id)?;
            return Ok(members
                .into_iter()
                .filter(|(u, m)| *m == crate::events::Membership::Join && subs.contains_key(u))
                .map(|(u, _)| u)
                .collect());
        }
        let mut out: Vec<String> = Vec::new();
        let named = if ev.kind == call::INVITE { invitee.into_iter().collect() } else { named };
        for u in named.into_iter().map(str::to_string).chain(self.broad()?.iter().cloned()) {
            if subs.contains_key(&u) && !out.contains(&u) {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Users with push on whose settings make messages notify them beyond mentions: keywords,
    /// or a room set to every message (recomputed after a settings or subscription change).
    fn broad(&self) -> Result<Arc<Vec<String>>> {
        if let Some(b) = self.broad.lock().ok().and_then(|b| b.clone()) {
            return Ok(b);
        }
        let mut users: Vec<String> = self.subs_by_user()?.keys().cloned().collect();
        users.retain(|u| {
            self.prefs(u).is_ok_and(|p| !p.keywords.is_empty() || p.rooms.values().any(|r| r.level == Level::All))
        });
        let users = Arc::new(users);
        if let Ok(mut b) = self.broad.lock() {
            *b = Some(users.clone());
        }
        Ok(users)
    }

    /// Whether `user` should get a push for `stored` now: joined, notified by it under their
    /// settings, and it is unread.
    fn wanted(
        &self,
        snap: &crate::store::snapshot::Snapshot,
        stored: &StoredEvent,
        room: &RoomRecord,
        user: &str,
        now: u64,
    ) -> Result<bool> {
        let ev = &stored.event;
        if snap.membership(&room.room_id, user)? != crate::events::Membership::Join {
            return Ok(false);
        }
        let facts = rules::Facts {
            kind: &ev.kind,
            content: &ev.content,
            room_id: room.room_id.as_str(),
            one_to_one: room.direct || room.joined == 2,
            may_mention_room: rules::may_mention_room(room, ev.sender.as_str()),
        };
        if !rules::notifies(&facts, user, &*self.prefs(user)?, now) {
            return Ok(false);
        }
        Ok(snap.read_marker(user, &room.room_id)? < stored.pos)
    }

    fn sender_name(&self, stored: &StoredEvent) -> String {
        let sender = stored.event.sender.as_str();
        self.store
            .member_names(&stored.event.room_id, Some(&[sender]))
            .ok()
            .and_then(|mut n| n.remove(sender))
            .unwrap_or_else(|| sender.trim_start_matches('@').split(':').next().unwrap_or(sender).to_string())
    }

    async fn deliver(&self, user: &str, sub: &PushSub, stored: &StoredEvent, room: &RoomRecord, name: &str) -> Outcome {
        let preview = self.prefs(user).map(|p| p.preview).unwrap_or(true);
        let body = payload(stored, room, name, preview).to_string();
        let (Some(key), Some(auth)) = (vapid::from_b64url(&sub.p256dh), vapid::from_b64url(&sub.auth)) else {
            return Outcome::Gone;
        };
        let Ok(key) = p256::PublicKey::from_sec1_bytes(&key) else { return Outcome::Gone };
        if auth.len() != 16 {
            return Outcome::Gone;
        }
        let auth = web_push_native::Auth::clone_from_slice(&auth);
        let encrypted = match web_push_native::encrypt(body.into_bytes(), &key, &auth) {
            Ok(b) => b,
            Err(e) => return Outcome::Refused(format!("encryption: {e}")),
        };
        let Ok(uri) = send::check_endpoint(&sub.endpoint, self.settings.private_endpoints) else {
            return Outcome::Gone;
        };
        let authorization = match self.vapid.authorization(&send::origin(&uri), now_ms() / 1000) {
            Ok(a) => a,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let call = stored.event.kind == call::INVITE;
        let ttl_secs =
            if call { call_lifetime_ms(&stored.event.content) / 1000 } else { self.settings.give_up_ms / 1000 };
        self.client
            .send(send::Push {
                endpoint: sub.endpoint.clone(),
                authorization,
                ttl_secs,
                urgency: "high",
                body: encrypted,
            })
            .await
    }
}

/// How long a call invite rings (its `lifetime`, 60 s if it names none, at most 10 minutes).
fn call_lifetime_ms(content: &Value) -> u64 {
    content.get("lifetime").and_then(Value::as_u64).unwrap_or(60_000).min(600_000)
}

/// Whether an event is still worth pushing at `now`.
fn fresh(ev: &crate::events::Event, now: u64) -> bool {
    let age = now.saturating_sub(ev.origin_server_ts);
    if ev.kind == call::INVITE { age < call_lifetime_ms(&ev.content) } else { age < MAX_AGE_MS }
}

/// What a push carries (JSON, encrypted): where, who, and unless `preview` is off, what.
pub fn payload(stored: &StoredEvent, room: &RoomRecord, sender_name: &str, preview: bool) -> Value {
    let ev = &stored.event;
    let kind = if ev.kind == call::INVITE { "call" } else { "message" };
    let mut p = json!({
        "kind": kind,
        "room_id": ev.room_id,
        "event_id": ev.event_id,
        "room_name": room.name.chars().take(NAME_CHARS).collect::<String>(),
        "direct": room.direct,
        "sender": ev.sender,
        "sender_name": sender_name.chars().take(NAME_CHARS).collect::<String>(),
    });
    if kind == "call" {
        let video = ev
            .content
            .get("offer")
            .and_then(|o| o.get("sdp"))
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("m=video"));
        p["video"] = json!(video);
    } else if preview {
        p["body"] = json!(preview_of(&ev.content));
    }
    p
}

/// The start of a message as a notification shows it (files by what they are).
pub fn preview_of(content: &Value) -> String {
    let body = content.get("body").and_then(Value::as_str).unwrap_or_default();
    // A reply's body starts with Matrix's quote of what it answers: not part of what it says.
    let body = match content.get("m.relates_to").and_then(|r| r.get("m.in_reply_to")) {
        Some(_) => crate::store::relations::strip_reply_fallback(body),
        None => body,
    };
    let text = match content.get("msgtype").and_then(Value::as_str) {
        Some("m.image") => "📷 Photo".to_string(),
        Some("m.video") => "🎬 Video".to_string(),
        Some("m.audio") if content.get("org.matrix.msc3245.voice").is_some() => "🎤 Voice message".to_string(),
        Some("m.audio") => format!("🎵 {body}"),
        Some("m.file") => format!("📎 {body}"),
        _ => body.to_string(),
    };
    let mut out: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Whether an event type is one pushes and desktop notifications are about.
pub fn is_notifying_kind(kind: &str) -> bool {
    kind == M_ROOM_MESSAGE || kind == call::INVITE
}

/// 16 hex digits of the SHA-256 of `bytes`: a subscription's id, from its endpoint.
fn hex16(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_say_what_a_message_says() {
        let reply = json!({ "msgtype": "m.text", "body": "> <@ana:x> see this\n> twice\n\nlooks good",
            "m.relates_to": { "m.in_reply_to": { "event_id": "$e" } } });
        assert_eq!(preview_of(&reply), "looks good");
        // Without the reply relation, the same text is what the message says.
        assert_eq!(preview_of(&json!({ "body": "> <@ana:x> quoted\n\nmine" })), "> <@ana:x> quoted\n\nmine");
        assert_eq!(preview_of(&json!({ "msgtype": "m.image", "body": "cat.png" })), "📷 Photo");
        let long = "é".repeat(PREVIEW_CHARS + 5);
        assert_eq!(preview_of(&json!({ "body": long })).chars().count(), PREVIEW_CHARS + 1);
    }
}
