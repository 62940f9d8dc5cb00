//! The hub: who is online and in which rooms, their presence and typing, and two bounded queues
//! per connection.
//!
//! The hub is a doorbell, not the truth: a full durable queue never blocks the writer or other
//! members; the connection is marked lagged and catches up from the store (see
//! [`super::socket`]). Ephemeral frames (presence, typing, receipts, unread counts) go through a
//! second, small queue and are dropped when it is full: they are never stored and never stand in
//! the way of durable delivery.
//!
//! Everything here costs memory and CPU in proportion to who is online: presence and typing
//! exist only for connected users (and for a short grace period after the last tab closes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use super::frames;
use crate::error::{Error, Result};
use crate::events::{M_ROOM_MEMBER, Membership};
use crate::ids::RoomId;
use crate::store::events::StoredEvent;

/// How long a user stays "online" after their last connection closes (a reload must not flicker).
pub const OFFLINE_GRACE: Duration = Duration::from_secs(5);
/// How long a typing notice lasts unless renewed.
pub const TYPING_TTL: Duration = Duration::from_secs(6);
/// How long a typing notice from another server lasts unless renewed or ended (Matrix servers
/// send one when typing starts and one when it stops).
pub const REMOTE_TYPING_TTL: Duration = Duration::from_secs(30);
/// Most people shown typing in one room.
pub const MAX_TYPISTS: usize = 32;
/// How long another server's word on a user's presence holds unless renewed (Matrix servers
/// repeat it every 25 minutes or so while it holds).
pub const REMOTE_PRESENCE_TTL: Duration = Duration::from_secs(30 * 60);
/// Most other servers' users whose presence is kept.
pub const MAX_REMOTE_PRESENCE: usize = 10_000;
/// Users per presence snapshot frame.
pub const SNAPSHOT_CHUNK: usize = 50;
/// Ephemeral frames queued per connection before new ones are dropped.
pub const EPHEMERAL_QUEUE: usize = 64;
/// Call frames (signals, rosters) queued per connection; overflow switches it to catch-up.
pub const CALL_QUEUE: usize = 64;
/// How long another server's word on who is in its calls in a room holds unless renewed (it
/// repeats it every [`ROSTER_RENEWAL`] while a call runs).
pub const REMOTE_CALLS_TTL: Duration = Duration::from_secs(150);
/// How often the rooms' other servers are told again who is in the calls held here.
pub const ROSTER_RENEWAL: Duration = Duration::from_secs(60);
/// Most rooms whose calls on other servers are kept.
pub const MAX_REMOTE_CALL_ROOMS: usize = 10_000;

/// A committed event with its frame, rendered off the writer thread and outside the lock.
pub struct Rendered {
    stored: Arc<StoredEvent>,
    text: Utf8Bytes,
    call: bool,
}

/// One event frame ready to send, with its stream position for de-duplication.
#[derive(Clone)]
pub struct Frame {
    /// Stream position of the event.
    pub pos: u64,
    /// The serialized frame (shared by all recipients).
    pub text: Utf8Bytes,
}

/// Signals a connection's task watches besides its queues.
#[derive(Default)]
pub struct ConnSignals {
    /// Set when a frame could not be queued; the connection must catch up from the store.
    pub lagged: AtomicBool,
    /// Set when the connection must close (its session ended).
    pub closed: AtomicBool,
    /// Wakes the connection's task after setting a flag.
    pub wake: Notify,
}

/// A user's presence as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// At least one tab is visible and was used in the last few minutes.
    Online,
    /// Connected, but no tab is in use.
    Idle,
    /// Not connected, or appearing offline.
    Offline,
}

impl Presence {
    /// From the protocol string (`online`, `idle`, `offline`).
    pub fn parse(s: &str) -> Option<Presence> {
        match s {
            "online" => Some(Presence::Online),
            "idle" => Some(Presence::Idle),
            "offline" => Some(Presence::Offline),
            _ => None,
        }
    }

    /// The protocol string.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Idle => "idle",
            Presence::Offline => "offline",
        }
    }
}

/// A user's privacy settings, as the hub needs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prefs {
    /// Others see this user as offline.
    pub appear_offline: bool,
    /// This user's read receipts are shown to others, and others' to them.
    pub share_receipts: bool,
}

impl From<crate::auth::account::Privacy> for Prefs {
    fn from(p: crate::auth::account::Privacy) -> Prefs {
        Prefs { appear_offline: p.appear_offline, share_receipts: !p.hide_receipts }
    }
}

struct ConnSender {
    id: u64,
    sid: String,
    tx: mpsc::Sender<Frame>,
    eph: mpsc::Sender<Utf8Bytes>,
    call: mpsc::Sender<Utf8Bytes>,
    signals: Arc<ConnSignals>,
    idle: bool,
}

struct OnlineUser {
    rooms: HashSet<Arc<str>>,
    conns: Vec<ConnSender>,
    prefs: Prefs,
    /// When the last connection closed; the entry goes after [`OFFLINE_GRACE`].
    offline_since: Option<Instant>,
    /// The presence last announced to others.
    shown: Presence,
    /// The stream position its rooms were read at: membership events up to it are already in
    /// `rooms`, and the publisher, which may still be behind, must not apply them again.
    loaded_at: u64,
    /// Another server's user, here only on calls (see [`crate::calls::host`]): their typing
    /// and presence are their server's to tell.
    guest: bool,
}

/// What a user's first connection reads from the store, in one snapshot.
pub struct Loaded {
    /// The rooms the user has joined.
    pub rooms: Vec<String>,
    /// Privacy settings.
    pub prefs: Prefs,
    /// The stream position of the snapshot.
    pub pos: u64,
    /// The user is another server's, connected to a call here.
    pub guest: bool,
}

impl OnlineUser {
    fn presence(&self) -> Presence {
        if self.prefs.appear_offline || self.conns.is_empty() {
            Presence::Offline
        } else if self.conns.iter().any(|c| !c.idle) {
            Presence::Online
        } else {
            Presence::Idle
        }
    }
}

/// The people in one call: (user, connection), in joining order.
type Roster = Vec<Seat>;

/// One tab in a call.
struct Seat {
    user: Arc<str>,
    conn: u64,
    /// When its hand went up (none: down).
    hand: Option<Instant>,
    /// Its microphone is off (by itself or a host).
    muted: bool,
}

/// The calls running in one room, by conference id.
pub type RoomCalls = Vec<crate::calls::CallPeople>;

/// A call through the media server while it runs: what its record will say.
struct CallLog {
    /// When the first person joined, ms since the epoch.
    started_ms: u64,
    started: Instant,
    /// Everyone who took part, in joining order (at most
    /// [`crate::events::call::MAX_RECORDED_PEOPLE`]).
    people: Vec<Arc<str>>,
}

/// A call through the media server that ended (its last person left): for its record in the
/// room.
#[derive(Debug, Clone)]
pub struct EndedCall {
    /// The room.
    pub room: String,
    /// The conference.
    pub conf_id: String,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// How long it lasted.
    pub duration_ms: u64,
    /// Who took part, in joining order.
    pub people: Vec<String>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<Arc<str>, OnlineUser>,
    /// Room id -> online users who have joined it.
    rooms: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// Room id -> typing user -> when the notice expires.
    typing: HashMap<Arc<str>, HashMap<Arc<str>, Instant>>,
    /// Room id -> conference id -> (user, connection) in the call, in joining order.
    calls: HashMap<Arc<str>, HashMap<String, Roster>>,
    /// Rooms whose calls changed and whose members have not been told yet: the method that
    /// holds the lock tells them after releasing it ([`Hub::unlock`]).
    rosters_changed: Vec<Arc<str>>,
    /// Connections taken off a call's roster whose media has not been ended yet (room,
    /// conference, connection): [`Hub::unlock`] hands them to the media server.
    left_calls: Vec<(Arc<str>, String, u64)>,
    /// Microphones turned off or on whose media server has not been told yet (room,
    /// conference, connection, off): [`Hub::unlock`] tells it.
    held_calls: Vec<(Arc<str>, String, u64, bool)>,
    /// Other servers' users: their presence as their server told it.
    remote: HashMap<Arc<str>, RemotePresence>,
    /// Where local users' presence changes go (to other servers), if anywhere.
    presence_out: Option<mpsc::Sender<(String, Presence)>>,
    /// Calls other servers hold in rooms here, as they told: room -> server -> (calls, until).
    remote_calls: HashMap<Arc<str>, HashMap<String, (RoomCalls, Instant)>>,
    /// Where changes of the calls held here go (to the rooms' other servers), if anywhere.
    rosters_out: Option<mpsc::Sender<(String, RoomCalls)>>,
    /// Calls through the media server running here: (room, conference) -> its log.
    call_logs: HashMap<(Arc<str>, String), CallLog>,
    /// Calls that ended under the lock, for [`Hub::unlock`] to hand to `ended_out`.
    ended_calls: Vec<EndedCall>,
    /// Where ended calls go (for their records), if anywhere.
    ended_out: Option<mpsc::Sender<EndedCall>>,
}

/// Another server's user's presence, as their server told it.
struct RemotePresence {
    shown: Presence,
    /// Forgotten (offline) after this.
    until: Instant,
    /// The rooms they share with us (their members here are told of changes).
    rooms: Vec<Arc<str>>,
}

/// Live delivery state. The lock guards plain maps, is never held across an await, and is
/// taken by the publisher thread for each committed batch; nothing is rendered under it.
pub struct Hub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    queue: usize,
    max_per_user: usize,
    lagged: AtomicU64,
    messages: AtomicU64,
    /// Most people in one call: the mesh's limit, or the media server's when it runs.
    call_cap: std::sync::atomic::AtomicUsize,
    /// What the media server is told of the rosters' changes.
    media_server: std::sync::OnceLock<MediaServerHooks>,
}

/// Told of a connection of a call: room, conference id, connection.
pub type OnSeat = Box<dyn Fn(&RoomId, &str, u64) + Send + Sync>;
/// Told of a connection's microphone: room, conference id, connection, off.
pub type OnMicrophone = Box<dyn Fn(&RoomId, &str, u64, bool) + Send + Sync>;

/// What the hub tells the media server (see [`Hub::use_media_server`]), outside its lock.
pub struct MediaServerHooks {
    /// A connection was taken off a call's roster, whatever the reason (it left, its tab
    /// closed, its user left or was removed from the room, the call was ended): its media ends.
    /// Room, conference id, connection.
    pub left: OnSeat,
    /// A connection's microphone was turned off (`true`, by itself or a host) or on: its audio
    /// is held back where it is forwarded, or let through again. Room, conference id,
    /// connection, off.
    pub held: OnMicrophone,
}

/// Live figures of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubGauges {
    /// Users with at least one connection.
    pub users: usize,
    /// Open live connections.
    pub connections: usize,
    /// Calls with at least one person in them.
    pub calls: usize,
    /// People in calls.
    pub in_calls: usize,
    /// Messages published since start.
    pub messages: u64,
}

/// A registered connection; dropping it unregisters.
pub struct Conn {
    /// Queue of live (durable) frames.
    pub rx: mpsc::Receiver<Frame>,
    /// Queue of ephemeral frames.
    pub eph: mpsc::Receiver<Utf8Bytes>,
    /// Priority queue of call frames.
    pub call: mpsc::Receiver<Utf8Bytes>,
    /// Lag and close signals.
    pub signals: Arc<ConnSignals>,
    id: u64,
    user: Arc<str>,
    hub: Arc<Hub>,
}

impl Conn {
    /// This connection's id (unique within the hub).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.hub.disconnect(&self.user, self.id);
    }
}

impl Hub {
    /// A hub with `queue` frames per connection and at most `max_per_user` connections per user.
    pub fn new(queue: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Hub {
            inner: Mutex::default(),
            next_id: AtomicU64::new(1),
            queue,
            max_per_user,
            lagged: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            call_cap: std::sync::atomic::AtomicUsize::new(crate::calls::MAX_PARTICIPANTS),
            media_server: std::sync::OnceLock::new(),
        })
    }

    /// Room calls go through the media server: they hold up to `cap` people, and `hooks` tell
    /// it of every connection that leaves a call's roster and of every microphone turned off or
    /// on, so what it forwards follows the rosters.
    pub fn use_media_server(&self, cap: usize, hooks: MediaServerHooks) {
        self.call_cap.store(cap, Ordering::Relaxed);
        let _ = self.media_server.set(hooks);
    }

    /// Whether a connection is on a room call's roster: if it is, whether its microphone is
    /// off.
    pub fn in_call(&self, conn_id: u64, room: &RoomId, conf_id: &str) -> Option<bool> {
        let inner = self.lock();
        let roster = inner.calls.get(room.as_str()).and_then(|c| c.get(conf_id))?;
        roster.iter().find(|s| s.conn == conn_id).map(|s| s.muted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters more than losing live delivery, so recover the guard instead of propagating.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `user`. `load` (joined rooms and privacy settings, and the
    /// stream position they were read at) is called under the hub lock, so no membership change
    /// can slip between reading the user's rooms and registering; membership events the
    /// publisher delivers later but that the read already saw are not applied again.
    pub fn connect(self: &Arc<Self>, user: &str, sid: &str, load: impl FnOnce() -> Result<Loaded>) -> Result<Conn> {
        let (tx, rx) = mpsc::channel(self.queue);
        let (eph_tx, eph_rx) = mpsc::channel(EPHEMERAL_QUEUE);
        let (call_tx, call_rx) = mpsc::channel(CALL_QUEUE);
        let signals = Arc::new(ConnSignals::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        if inner.users.get(user).is_some_and(|u| u.conns.len() >= self.max_per_user) {
            return Err(Error::TooManyRequests(5));
        }
        let user_key: Arc<str> = match inner.users.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => {
                let Loaded { rooms, prefs, pos, guest } = load()?;
                let key: Arc<str> = Arc::from(user);
                let mut online = OnlineUser {
                    rooms: HashSet::new(),
                    conns: Vec::new(),
                    prefs,
                    offline_since: None,
                    shown: Presence::Offline,
                    loaded_at: pos,
                    guest,
                };
                for r in rooms {
                    let r: Arc<str> = Arc::from(r);
                    inner.rooms.entry(r.clone()).or_default().insert(key.clone());
                    online.rooms.insert(r);
                }
                inner.users.insert(key.clone(), online);
                key
            }
        };
        if let Some(u) = inner.users.get_mut(user) {
            u.offline_since = None;
            u.conns.push(ConnSender {
                id,
                sid: sid.to_string(),
                tx,
                eph: eph_tx,
                call: call_tx,
                signals: signals.clone(),
                idle: false,
            });
        }
        inner.announce_presence(user);
        Ok(Conn { rx, eph: eph_rx, call: call_rx, signals, id, user: user_key, hub: self.clone() })
    }

    fn disconnect(&self, user: &str, id: u64) {
        let mut inner = self.lock();
        let Some(u) = inner.users.get_mut(user) else { return };
        u.conns.retain(|c| c.id != id);
        let empty = u.conns.is_empty();
        inner.leave_calls(|_, _, _, conn| conn == id);
        if !empty {
            inner.announce_presence(user);
        } else if let Some(u) = inner.users.get_mut(user) {
            // Keep the entry for the grace period: a reload reconnects before anyone notices.
            u.offline_since = Some(Instant::now());
        }
        self.unlock(inner);
    }

    /// Expires typing notices and ends the grace period of users whose last tab closed. Called
    /// about once a second by a task the server owns. Returns the local users' typing notices
    /// that ended this way (user, room), which other servers are told of.
    pub fn tick(&self, now: Instant) -> Vec<(String, String)> {
        let mut ended = Vec::new();
        let mut inner = self.lock();
        let gone: Vec<Arc<str>> = inner
            .users
            .iter()
            .filter(|(_, u)| u.offline_since.is_some_and(|t| now.duration_since(t) >= OFFLINE_GRACE))
            .map(|(k, _)| k.clone())
            .collect();
        for user in gone {
            inner.announce_presence(&user);
            let guest = inner.users.get(&user).is_some_and(|u| u.guest);
            for (room, typists) in &inner.typing {
                if typists.contains_key(&user) && !guest {
                    ended.push((user.to_string(), room.to_string()));
                }
            }
            inner.clear_typing_of(&user);
            if let Some(u) = inner.users.remove(&user) {
                for r in u.rooms {
                    inner.leave_room_set(&r, &user);
                }
            }
        }
        let stale: Vec<Arc<str>> =
            inner.remote.iter().filter(|(_, r)| r.until <= now).map(|(k, _)| k.clone()).collect();
        for user in stale {
            if let Some(r) = inner.remote.remove(&user) {
                inner.announce_remote_presence(&user, Presence::Offline, &r.rooms);
            }
        }
        let mut calls_gone = Vec::new();
        for (room, servers) in inner.remote_calls.iter_mut() {
            let before = servers.len();
            servers.retain(|_, (_, until)| *until > now);
            if servers.len() != before {
                calls_gone.push(room.clone());
            }
        }
        inner.remote_calls.retain(|_, s| !s.is_empty());
        let mut changed = Vec::new();
        let Inner { typing, users, .. } = &mut *inner;
        for (room, typists) in typing.iter_mut() {
            let before = typists.len();
            typists.retain(|user, until| {
                let keep = *until > now;
                // Local users are those with connections here; others' notices came from
                // their servers.
                if !keep && users.get(user).is_some_and(|u| !u.guest) {
                    ended.push((user.to_string(), room.to_string()));
                }
                keep
            });
            if typists.len() != before {
                changed.push(room.clone());
            }
        }
        inner.typing.retain(|_, t| !t.is_empty());
        for room in changed {
            inner.announce_typing(&room);
        }
        drop(inner);
        if !calls_gone.is_empty() {
            self.announce_rosters(calls_gone, false);
        }
        ended
    }

    /// Marks one connection idle or active and tells the user's contacts if their presence changed.
    pub fn set_idle(&self, user: &str, conn_id: u64, idle: bool) {
        let mut inner = self.lock();
        if let Some(c) = inner.users.get_mut(user).and_then(|u| u.conns.iter_mut().find(|c| c.id == conn_id)) {
            c.idle = idle;
        }
        inner.announce_presence(user);
    }

    /// Applies changed privacy settings of an online user.
    pub fn set_prefs(&self, user: &str, prefs: Prefs) {
        let mut inner = self.lock();
        if let Some(u) = inner.users.get_mut(user) {
            u.prefs = prefs;
        }
        inner.announce_presence(user);
    }

    /// Starts or stops a typing notice. Only online members of the room may type in it. Returns
    /// whether it changed (a notice renewed is no change).
    pub fn set_typing(&self, user: &str, room: &RoomId, typing: bool, now: Instant) -> Result<bool> {
        let room = room.as_str();
        let mut inner = self.lock();
        let (user_key, room_key) = match (inner.users.get_key_value(user), inner.rooms.get_key_value(room)) {
            (Some((u, online)), Some((r, members))) if online.rooms.contains(room) && members.contains(user) => {
                (u.clone(), r.clone())
            }
            _ => return Err(not_member()),
        };
        let typists = inner.typing.entry(room_key.clone()).or_default();
        let changed =
            if typing { typists.insert(user_key, now + TYPING_TTL).is_none() } else { typists.remove(user).is_some() };
        if typists.is_empty() {
            inner.typing.remove(room);
        }
        if changed {
            inner.announce_typing(&room_key);
        }
        Ok(changed)
    }

    /// A typing notice from another server (its user is a member of the room: the caller
    /// checked). Shown only while someone here has the room open; a room shows at most
    /// [`MAX_TYPISTS`] people typing.
    pub fn set_remote_typing(&self, user: &str, room: &RoomId, typing: bool, now: Instant) {
        let mut inner = self.lock();
        let Some(room_key) = inner.rooms.get_key_value(room.as_str()).map(|(r, _)| r.clone()) else { return };
        let typists = inner.typing.entry(room_key.clone()).or_default();
        let changed = if typing {
            if !typists.contains_key(user) && typists.len() >= MAX_TYPISTS {
                return;
            }
            typists.insert(Arc::from(user), now + REMOTE_TYPING_TTL).is_none()
        } else {
            typists.remove(user).is_some()
        };
        if typists.is_empty() {
            inner.typing.remove(room.as_str());
        }
        if changed {
            inner.announce_typing(&room_key);
        }
    }

    /// Who is typing in a room (for a page render).
    pub fn typing_in(&self, room: &RoomId) -> Vec<String> {
        let room = room.as_str();
        let inner = self.lock();
        let mut v: Vec<String> =
            inner.typing.get(room).map(|t| t.keys().map(|u| u.to_string()).collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// A user's presence as others see it.
    pub fn presence_of(&self, user: &str) -> Presence {
        let inner = self.lock();
        match inner.users.get(user) {
            Some(u) => u.shown,
            None => inner.remote.get(user).map(|r| r.shown).unwrap_or(Presence::Offline),
        }
    }

    /// Local users' presence changes go to `out` from now on (for other servers).
    pub fn send_presence_to(&self, out: mpsc::Sender<(String, Presence)>) {
        self.lock().presence_out = Some(out);
    }

    /// From now on, each call through the media server that ends goes to `out`, for its record
    /// in the room.
    pub fn send_ended_calls_to(&self, out: mpsc::Sender<EndedCall>) {
        self.lock().ended_out = Some(out);
    }

    /// From now on, each change of a room's calls held here goes to `out` (room, its calls
    /// here), for the room's other servers.
    pub fn send_rosters_to(&self, out: mpsc::Sender<(String, RoomCalls)>) {
        self.lock().rosters_out = Some(out);
    }

    /// Another server's word on who is in the calls it holds in a room (already checked); the
    /// room's online members are told. It holds for [`REMOTE_CALLS_TTL`] unless renewed.
    pub fn set_remote_calls(&self, room: &RoomId, origin: &str, calls: RoomCalls, now: Instant) {
        let mut inner = self.lock();
        let key: Arc<str> = match inner.remote_calls.get_key_value(room.as_str()) {
            Some((k, _)) => k.clone(),
            None if calls.is_empty() || inner.remote_calls.len() >= MAX_REMOTE_CALL_ROOMS => return,
            None => Arc::from(room.as_str()),
        };
        let servers = inner.remote_calls.entry(key.clone()).or_default();
        let before = servers.get(origin).map(|(c, _)| c.clone());
        if calls.is_empty() {
            servers.remove(origin);
        } else {
            servers.insert(origin.to_string(), (calls.clone(), now + REMOTE_CALLS_TTL));
        }
        if servers.is_empty() {
            inner.remote_calls.remove(room.as_str());
        }
        drop(inner);
        if before.unwrap_or_default() != calls {
            self.announce_rosters(vec![key], false);
        }
    }

    /// Another server's word on its user's presence; `rooms` are the rooms they share with us,
    /// whose online members are told of a change.
    pub fn set_remote_presence(&self, user: &str, presence: Presence, rooms: &[RoomId], now: Instant) {
        let mut inner = self.lock();
        if !inner.remote.contains_key(user) && inner.remote.len() >= MAX_REMOTE_PRESENCE {
            if presence == Presence::Offline {
                return;
            }
            // Full: the stalest goes.
            let oldest = inner.remote.iter().min_by_key(|(_, r)| r.until).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.remote.remove(&k);
            }
        }
        let rooms: Vec<Arc<str>> = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
        let before = inner.remote.get(user).map(|r| r.shown).unwrap_or(Presence::Offline);
        if presence == Presence::Offline {
            inner.remote.remove(user);
        } else {
            let entry = RemotePresence { shown: presence, until: now + REMOTE_PRESENCE_TTL, rooms: rooms.clone() };
            inner.remote.insert(Arc::from(user), entry);
        }
        if before != presence {
            inner.announce_remote_presence(user, presence, &rooms);
        }
    }

    /// The presence of everyone online who shares a room with `user`, as frames of at most
    /// [`SNAPSHOT_CHUNK`] users (the first says `reset`). Small frames keep each connection's
    /// write buffer small: a WebSocket keeps the capacity its largest frame needed.
    pub fn presence_snapshot(&self, user: &str) -> Vec<String> {
        let inner = self.lock();
        let mut online: Vec<(Arc<str>, Presence)> = inner
            .contacts_of(user)
            .into_iter()
            .filter_map(|c| inner.users.get(&c).map(|u| (c.clone(), u.shown)))
            .filter(|(_, p)| *p != Presence::Offline)
            .collect();
        if let Some(mine) = inner.users.get(user).map(|u| &u.rooms) {
            let shared = inner.remote.iter().filter(|(_, r)| r.rooms.iter().any(|room| mine.contains(room)));
            online.extend(shared.map(|(k, r)| (k.clone(), r.shown)));
        }
        drop(inner);
        online.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut frames_out = Vec::new();
        let mut chunks = online.chunks(SNAPSHOT_CHUNK).peekable();
        if chunks.peek().is_none() {
            frames_out.push(frames::presence_snapshot(serde_json::Map::new(), true));
        }
        for (i, chunk) in chunks.enumerate() {
            let map = chunk.iter().map(|(u, p)| (u.to_string(), json!(p.as_str()))).collect();
            frames_out.push(frames::presence_snapshot(map, i == 0));
        }
        frames_out
    }

    /// The members of `room` with a live connection.
    pub fn online_members(&self, room: &RoomId) -> Vec<Arc<str>> {
        let inner = self.lock();
        let Some(members) = inner.rooms.get(room.as_str()) else { return Vec::new() };
        members.iter().filter(|u| inner.users.contains_key(&***u)).cloned().collect()
    }

    /// Sends an ephemeral frame to every connection of one user (e.g. unread counts after a
    /// read on another tab).
    pub fn send_to_user(&self, user: &str, text: &str) {
        let inner = self.lock();
        if let Some(u) = inner.users.get(user) {
            let text = Utf8Bytes::from(text.to_string());
            for c in &u.conns {
                let _ = c.eph.try_send(text.clone());
            }
        }
    }

    /// A member's read marker moved: their other tabs get the new unread counts, and the room's
    /// members the receipt.
    pub fn read_moved(&self, room: &RoomId, reader: &str, moved: crate::rooms::ReadMoved) {
        let id = room.as_str();
        self.send_to_user(reader, &super::frames::unread(id, moved.pos, moved.unread, moved.mentions));
        self.send_receipt(room, reader, &super::frames::receipt(id, reader, moved.pos));
    }

    /// Shows a read receipt to the room's online members who share receipts. A reader who does
    /// not share receipts sends none.
    pub fn send_receipt(&self, room: &RoomId, reader: &str, text: &str) {
        let room = room.as_str();
        let inner = self.lock();
        if !inner.users.get(reader).is_some_and(|u| u.prefs.share_receipts) {
            return;
        }
        inner.to_receipt_sharers(room, &Utf8Bytes::from(text.to_string()));
    }

    /// Shows a read receipt from another server's user to the room's online members who share
    /// receipts.
    pub fn remote_receipt(&self, room: &RoomId, reader: &str, pos: u64) {
        let text = Utf8Bytes::from(super::frames::receipt(room.as_str(), reader, pos));
        self.lock().to_receipt_sharers(room.as_str(), &text);
    }

    /// Closes every connection opened with session `sid` (after logout).
    pub fn end_session(&self, sid: &str) {
        let inner = self.lock();
        for u in inner.users.values() {
            for c in u.conns.iter().filter(|c| c.sid == sid) {
                c.signals.closed.store(true, Ordering::Release);
                c.signals.wake.notify_one();
            }
        }
    }

    /// Closes every connection of `user` except those of session `keep` (after a password change).
    pub fn end_other_sessions(&self, user: &str, keep: &str) {
        let inner = self.lock();
        if let Some(u) = inner.users.get(user) {
            for c in u.conns.iter().filter(|c| c.sid != keep) {
                c.signals.closed.store(true, Ordering::Release);
                c.signals.wake.notify_one();
            }
        }
    }

    /// A room was deleted by an administrator: its online members stop receiving it and each
    /// of their tabs gets a `room_deleted` frame (the page then leaves the room).
    pub fn forget_room(&self, room: &RoomId) {
        let room = room.as_str();
        let mut inner = self.lock();
        let Some(members) = inner.rooms.remove(room) else {
            return;
        };
        let text = Utf8Bytes::from(frames::room_deleted_frame(room));
        for m in &members {
            if let Some(u) = inner.users.get_mut(&**m) {
                u.rooms.remove(room);
                for c in &u.conns {
                    let _ = c.eph.try_send(text.clone());
                }
            }
        }
        inner.typing.remove(room);
        inner.leave_calls(|r, _, _, _| r == room);
        self.unlock(inner);
    }

    /// Adds this connection to a room's call (`conf_id`), or takes it out. Only online members
    /// of the room may join, and a call holds at most [`crate::calls::MAX_PARTICIPANTS`] people.
    pub fn set_in_call(&self, user: &str, conn_id: u64, room: &RoomId, conf_id: &str, joined: bool) -> Result<()> {
        let room = room.as_str();
        let mut inner = self.lock();
        let (user_key, room_key) = match (inner.users.get_key_value(user), inner.rooms.get_key_value(room)) {
            (Some((u, online)), Some((r, members))) if online.rooms.contains(room) && members.contains(user) => {
                (u.clone(), r.clone())
            }
            _ => return Err(not_member()),
        };
        if joined {
            // One call per connection: joining another leaves the old one.
            inner.leave_calls(|r, c, _, conn| conn == conn_id && !(r == room && c == conf_id));
        } else {
            inner.leave_calls(|r, c, _, conn| conn == conn_id && r == room && c == conf_id);
        }
        let cap = self.call_cap.load(Ordering::Relaxed);
        let out = if joined { inner.add_to_call(user_key, room_key, conf_id, conn_id, cap) } else { Ok(()) };
        self.unlock(inner);
        out
    }

    /// This tab's own state in a call it is in: microphone off or on, hand up or down; the
    /// room is told.
    pub fn set_call_state(
        &self,
        conn_id: u64,
        room: &RoomId,
        conf_id: &str,
        muted: Option<bool>,
        hand: Option<bool>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let Some(key) = inner.calls.get_key_value(room.as_str()).map(|(k, _)| k.clone()) else {
            return Err(not_in_call());
        };
        let seat = inner
            .calls
            .get_mut(room.as_str())
            .and_then(|c| c.get_mut(conf_id))
            .and_then(|r| r.iter_mut().find(|s| s.conn == conn_id));
        let Some(seat) = seat else { return Err(not_in_call()) };
        let before = (seat.muted, seat.hand.is_some());
        if let Some(m) = muted {
            seat.muted = m;
        }
        // The media server follows every report of the microphone, not only changes: a repeat
        // costs nothing and leaves it right whatever it held before.
        let held = muted.map(|m| (key.clone(), conf_id.to_string(), conn_id, m));
        match hand {
            Some(true) if seat.hand.is_none() => seat.hand = Some(Instant::now()),
            Some(false) => seat.hand = None,
            _ => {}
        }
        // The room hears of a change only (a camera toggle repeats the microphone's state).
        if before != (seat.muted, seat.hand.is_some()) {
            inner.rosters_changed.push(key);
        }
        inner.held_calls.extend(held);
        self.unlock(inner);
        Ok(())
    }

    /// A host's action on a call (the caller checked that `by` hosts it): `Mute` turns
    /// `target`'s microphones off and tells their tabs (`call_muted`) and the media server,
    /// `LowerHand` lowers their hand, `End` takes everyone off the call and tells each tab
    /// (`call_ended`).
    pub fn host_action(
        &self,
        by: &str,
        room: &RoomId,
        conf_id: &str,
        action: crate::calls::HostAction,
        target: Option<&str>,
    ) -> Result<()> {
        use crate::calls::HostAction;
        let mut inner = self.lock();
        let Some(key) = inner.calls.get_key_value(room.as_str()).map(|(k, _)| k.clone()) else {
            return Err(Error::NotFound("no such call".into()));
        };
        let Some(roster) = inner.calls.get_mut(room.as_str()).and_then(|c| c.get_mut(conf_id)) else {
            return Err(Error::NotFound("no such call".into()));
        };
        let (kind, told): (&str, Vec<(Arc<str>, u64)>) = match action {
            HostAction::End => ("call_ended", roster.iter().map(|s| (s.user.clone(), s.conn)).collect()),
            HostAction::Mute | HostAction::LowerHand => {
                let target = target.ok_or_else(|| Error::bad("user_id is required"))?;
                let seats: Vec<&mut Seat> = roster.iter_mut().filter(|s| &*s.user == target).collect();
                if seats.is_empty() {
                    return Err(Error::NotFound("that person is not in this call".into()));
                }
                let mut muted = Vec::new();
                for s in seats {
                    if action == HostAction::Mute {
                        s.muted = true;
                        muted.push((s.user.clone(), s.conn));
                    } else {
                        s.hand = None;
                    }
                }
                ("call_muted", muted)
            }
        };
        if action == HostAction::End {
            inner.leave_calls(|r, c, _, _| r == room.as_str() && c == conf_id);
        } else {
            if action == HostAction::Mute {
                let conf = conf_id.to_string();
                inner.held_calls.extend(told.iter().map(|(_, conn)| (key.clone(), conf.clone(), *conn, true)));
            }
            inner.rosters_changed.push(key);
        }
        let text = Utf8Bytes::from(frames::host_did(kind, room.as_str(), conf_id, by));
        for (user, conn) in &told {
            if let Some(c) = inner.users.get(&**user).and_then(|u| u.conns.iter().find(|c| c.id == *conn)) {
                let _ = c.call.try_send(text.clone());
            }
        }
        self.unlock(inner);
        Ok(())
    }

    /// Who is in each call of a room (for a page render).
    pub fn calls_in(&self, room: &RoomId) -> RoomCalls {
        let room = room.as_str();
        self.lock().calls_of(room)
    }

    /// A `call_roster` frame for each of the user's rooms with a call (sent after `ready`).
    pub fn roster_snapshot(&self, user: &str) -> Vec<String> {
        let inner = self.lock();
        let Some(u) = inner.users.get(user) else { return Vec::new() };
        let running: Vec<(Arc<str>, RoomCalls)> = u
            .rooms
            .iter()
            .filter(|r| inner.calls.contains_key(*r) || inner.remote_calls.contains_key(*r))
            .map(|r| (r.clone(), inner.calls_of(r)))
            .collect();
        drop(inner);
        running.iter().map(|(room, calls)| frames::call_roster(room, calls)).collect()
    }

    /// Figures for `/metrics`: (online users, connections, running calls, people in calls,
    /// messages published since start).
    pub fn gauges(&self) -> HubGauges {
        let inner = self.lock();
        let calls = inner.calls.values().map(|c| c.len()).sum();
        let in_calls = inner.calls.values().flat_map(|c| c.values()).map(|r| roster_users(r).len()).sum();
        HubGauges {
            users: inner.users.values().filter(|u| !u.conns.is_empty()).count(),
            connections: inner.users.values().map(|u| u.conns.len()).sum(),
            calls,
            in_calls,
            messages: self.messages.load(Ordering::Relaxed),
        }
    }

    /// How many times a connection's queue overflowed and it was switched to catch-up.
    pub fn lagged_total(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Releases the lock, then tells the rooms whose calls changed under it.
    fn unlock(&self, mut inner: MutexGuard<'_, Inner>) {
        let rooms = std::mem::take(&mut inner.rosters_changed);
        let left = std::mem::take(&mut inner.left_calls);
        let held = std::mem::take(&mut inner.held_calls);
        let ended = std::mem::take(&mut inner.ended_calls);
        if let Some(out) = &inner.ended_out {
            for call in ended {
                if out.try_send(call).is_err() {
                    tracing::warn!("a call's record was dropped (the queue is full)");
                }
            }
        }
        drop(inner);
        if let Some(hooks) = self.media_server.get() {
            for (room, conf, conn) in left {
                if let Ok(room) = RoomId::parse(&room) {
                    (hooks.left)(&room, &conf, conn);
                }
            }
            for (room, conf, conn, off) in held {
                if let Ok(room) = RoomId::parse(&room) {
                    (hooks.held)(&room, &conf, conn, off);
                }
            }
        }
        if !rooms.is_empty() {
            self.announce_rosters(rooms, true);
        }
    }

    /// Sends each room's online members a `call_roster` frame: who is in its calls now, with the
    /// call bar rendered outside the lock. Meanwhile another change may have been made and
    /// announced, so a frame goes out only if the room's calls are still what it shows; the
    /// frame sent last therefore always shows them as they are. With `tell_servers` (the calls
    /// held here changed) the rooms' other servers are told too.
    fn announce_rosters(&self, mut rooms: Vec<Arc<str>>, tell_servers: bool) {
        rooms.sort_unstable();
        rooms.dedup();
        let inner = self.lock();
        if tell_servers && let Some(out) = &inner.rosters_out {
            for r in &rooms {
                let _ = out.try_send((r.to_string(), inner.local_calls_of(r)));
            }
        }
        let snapshots: Vec<(Arc<str>, RoomCalls)> = rooms
            .into_iter()
            .map(|r| {
                let calls = inner.calls_of(&r);
                (r, calls)
            })
            .collect();
        drop(inner);
        let rendered: Vec<(Arc<str>, RoomCalls, Utf8Bytes)> = snapshots
            .into_iter()
            .map(|(room, calls)| {
                let text = Utf8Bytes::from(frames::call_roster(&room, &calls));
                (room, calls, text)
            })
            .collect();
        let inner = self.lock();
        for (room, calls, text) in rendered {
            if inner.calls_of(&room) == calls {
                inner.to_room(&room, &text, |c| &c.call);
            }
        }
    }

    /// Renders a committed batch's frames: the work that needs no lock (serializing each event
    /// once, with its HTML fragment). Runs on the publisher task, never on the writer thread.
    pub fn render(batch: &[Arc<StoredEvent>]) -> Vec<Rendered> {
        batch
            .iter()
            .map(|stored| {
                let call = crate::events::call::is_call_event(&stored.event.kind);
                let text = if call { frames::call_frame(stored) } else { frames::event_frame(stored) };
                Rendered { stored: stored.clone(), text: Utf8Bytes::from(text), call }
            })
            .collect()
    }

    /// Delivers a rendered batch, in order, to the queues of the online members: the only part
    /// that holds the hub's lock, and it only moves shared frames into queues.
    pub fn deliver(&self, batch: &[Rendered]) {
        let mut inner = self.lock();
        for r in batch {
            let (stored, ev) = (&r.stored, &r.stored.event);
            if ev.kind == crate::events::M_ROOM_MESSAGE {
                self.messages.fetch_add(1, Ordering::Relaxed);
            }
            if r.call {
                // Call signals skip the message queue: a backlog of messages never delays them.
                if let Some(members) = inner.rooms.get(ev.room_id.as_str()) {
                    for u in members {
                        if let Some(online) = inner.users.get(u) {
                            deliver_call(online, &r.text, &self.lagged);
                        }
                    }
                }
                continue;
            }
            let frame = Frame { pos: stored.pos, text: r.text.clone() };
            let room: Arc<str> = Arc::from(ev.room_id.as_str());
            // A member event changes who receives this room: joins take effect before delivery
            // (the joiner sees their own join), leaves after (the leaver sees their own leave).
            let target = if ev.kind == M_ROOM_MEMBER { ev.state_key.as_deref() } else { None };
            // Already counted when the target's rooms were read (they came online after it).
            let seen = target.and_then(|t| inner.users.get(t)).is_some_and(|u| stored.pos <= u.loaded_at);
            let after = target.map(|_| Membership::of_content(&ev.content).unwrap_or(Membership::Leave));
            if let (Some(t), Some(Membership::Join), false) = (target, after, seen) {
                inner.set_joined(t, &room, true);
            }
            if let Some(members) = inner.rooms.get(&room) {
                for u in members {
                    if let Some(online) = inner.users.get(u) {
                        deliver(online, &frame, &self.lagged);
                    }
                }
            }
            if let (Some(t), Some(m)) = (target, after) {
                let already = inner.rooms.get(&room).is_some_and(|s| s.contains(t));
                if !already {
                    // Invited (or removed) users are told about their own membership change.
                    if let Some(online) = inner.users.get(t) {
                        deliver(online, &frame, &self.lagged);
                    }
                }
                if m != Membership::Join && !seen {
                    inner.set_joined(t, &room, false);
                    if inner.typing.get_mut(&room).is_some_and(|ty| ty.remove(t).is_some()) {
                        inner.announce_typing(&room);
                    }
                }
            }
        }
        self.unlock(inner);
    }
}

impl Inner {
    fn set_joined(&mut self, user: &str, room: &Arc<str>, joined: bool) {
        let Some((key, online)) = self.users.get_key_value(user).map(|(k, _)| k.clone()).zip(self.users.get_mut(user))
        else {
            return;
        };
        if joined {
            online.rooms.insert(room.clone());
            self.rooms.entry(room.clone()).or_default().insert(key);
        } else {
            online.rooms.remove(room);
            self.leave_room_set(room, user);
            self.leave_calls(|r, _, u, _| r == &**room && u == user);
        }
    }

    /// Removes the call entries that `gone(room, conf, user, conn)` selects; each changed room
    /// is to be told.
    fn leave_calls(&mut self, gone: impl Fn(&str, &str, &str, u64) -> bool) {
        let mut emptied = Vec::new();
        for (room, confs) in self.calls.iter_mut() {
            for (conf, roster) in confs.iter_mut() {
                let before = roster.len();
                roster.retain(|s| {
                    let leaving = gone(room, conf, &s.user, s.conn);
                    if leaving {
                        self.left_calls.push((room.clone(), conf.clone(), s.conn));
                    }
                    !leaving
                });
                if roster.len() != before {
                    self.rosters_changed.push(room.clone());
                    if roster.is_empty() {
                        emptied.push((room.clone(), conf.clone()));
                    }
                }
            }
            confs.retain(|_, r| !r.is_empty());
        }
        self.calls.retain(|_, c| !c.is_empty());
        for key in emptied {
            if let Some(log) = self.call_logs.remove(&key) {
                self.ended_calls.push(EndedCall {
                    room: key.0.to_string(),
                    conf_id: key.1,
                    started_ms: log.started_ms,
                    duration_ms: log.started.elapsed().as_millis() as u64,
                    people: log.people.iter().map(|u| u.to_string()).collect(),
                });
            }
        }
    }

    /// Adds a connection to a room's call, unless it is in it already or the call is full; the
    /// room is to be told.
    fn add_to_call(&mut self, user: Arc<str>, room: Arc<str>, conf_id: &str, conn_id: u64, cap: usize) -> Result<()> {
        let roster = self.calls.entry(room.clone()).or_default().entry(conf_id.to_string()).or_default();
        if roster.iter().any(|s| s.conn == conn_id) {
            return Ok(());
        }
        let people: HashSet<&Arc<str>> = roster.iter().map(|s| &s.user).collect();
        if !people.contains(&user) && people.len() >= cap {
            return Err(Error::Conflict(format!("this call is full ({cap} people)")));
        }
        roster.push(Seat { user: user.clone(), conn: conn_id, hand: None, muted: false });
        if conf_id.starts_with("sfu-") {
            let log = self.call_logs.entry((room.clone(), conf_id.to_string())).or_insert_with(|| CallLog {
                started_ms: crate::events::now_ms(),
                started: Instant::now(),
                people: Vec::new(),
            });
            if !log.people.contains(&user) && log.people.len() < crate::events::call::MAX_RECORDED_PEOPLE {
                log.people.push(user);
            }
        }
        self.rosters_changed.push(room);
        Ok(())
    }

    /// The calls of a room now: those held here and those other servers told of.
    fn calls_of(&self, room: &str) -> RoomCalls {
        let mut out = self.local_calls_of(room);
        // A conference with people on several servers (a call between two people of two
        // servers, each on its own server's roster) is one call with everyone.
        for (calls, _) in self.remote_calls.get(room).into_iter().flat_map(|s| s.values()) {
            for c in calls {
                match out.iter_mut().find(|o| o.conf_id == c.conf_id) {
                    Some(o) => {
                        let add = |to: &mut Vec<String>, from: &[String]| {
                            for u in from {
                                if !to.contains(u) {
                                    to.push(u.clone());
                                }
                            }
                        };
                        add(&mut o.user_ids, &c.user_ids);
                        add(&mut o.hands, &c.hands);
                        add(&mut o.muted, &c.muted);
                    }
                    None => out.push(c.clone()),
                }
            }
        }
        out.sort();
        out
    }

    /// The calls of a room held here.
    fn local_calls_of(&self, room: &str) -> RoomCalls {
        let mut out: RoomCalls =
            self.calls.get(room).map(|confs| confs.iter().map(|(c, r)| people_of(c, r)).collect()).unwrap_or_default();
        out.sort();
        out
    }

    /// Offers `text` to every connection of the room's online members on one lane (`eph` or
    /// `call`); a full queue drops it.
    fn to_room(&self, room: &str, text: &Utf8Bytes, lane: impl Fn(&ConnSender) -> &mpsc::Sender<Utf8Bytes>) {
        if let Some(members) = self.rooms.get(room) {
            for m in members {
                if let Some(u) = self.users.get(m) {
                    for c in &u.conns {
                        let _ = lane(c).try_send(text.clone());
                    }
                }
            }
        }
    }

    fn leave_room_set(&mut self, room: &Arc<str>, user: &str) {
        if let Some(set) = self.rooms.get_mut(room) {
            set.remove(user);
            if set.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Online users who share at least one room with `user` (not `user`).
    fn contacts_of(&self, user: &str) -> HashSet<Arc<str>> {
        let mut out = HashSet::new();
        if let Some(u) = self.users.get(user) {
            for r in &u.rooms {
                if let Some(members) = self.rooms.get(r) {
                    out.extend(members.iter().filter(|m| &***m != user).cloned());
                }
            }
        }
        out
    }

    /// Tells the user's contacts their presence if it changed since last told.
    fn announce_presence(&mut self, user: &str) {
        let Some(u) = self.users.get_mut(user).filter(|u| !u.guest) else { return };
        let now = if u.offline_since.is_some() { Presence::Offline } else { u.presence() };
        if now == u.shown {
            return;
        }
        u.shown = now;
        if let Some(out) = &self.presence_out {
            let _ = out.try_send((user.to_string(), now));
        }
        let text = Utf8Bytes::from(frames::presence(user, now.as_str()));
        for contact in self.contacts_of(user) {
            if let Some(c) = self.users.get(&contact) {
                for conn in &c.conns {
                    let _ = conn.eph.try_send(text.clone());
                }
            }
        }
    }

    /// Sends a receipt frame to the room's online members who share receipts.
    fn to_receipt_sharers(&self, room: &str, text: &Utf8Bytes) {
        for m in self.rooms.get(room).into_iter().flatten() {
            if let Some(u) = self.users.get(m).filter(|u| u.prefs.share_receipts) {
                for c in &u.conns {
                    let _ = c.eph.try_send(text.clone());
                }
            }
        }
    }

    /// Tells the online members of `rooms` another server's user's presence.
    fn announce_remote_presence(&self, user: &str, presence: Presence, rooms: &[Arc<str>]) {
        let text = Utf8Bytes::from(frames::presence(user, presence.as_str()));
        let mut told: HashSet<&Arc<str>> = HashSet::new();
        for room in rooms {
            for m in self.rooms.get(room).into_iter().flatten() {
                if told.insert(m)
                    && let Some(u) = self.users.get(m)
                {
                    for conn in &u.conns {
                        let _ = conn.eph.try_send(text.clone());
                    }
                }
            }
        }
    }

    fn clear_typing_of(&mut self, user: &str) {
        let rooms: Vec<Arc<str>> =
            self.typing.iter().filter(|(_, t)| t.contains_key(user)).map(|(r, _)| r.clone()).collect();
        for r in rooms {
            if let Some(t) = self.typing.get_mut(&r) {
                t.remove(user);
            }
            self.announce_typing(&r);
        }
        self.typing.retain(|_, t| !t.is_empty());
    }

    /// Sends the room's current typists to its online members.
    fn announce_typing(&self, room: &Arc<str>) {
        let mut typists: Vec<&str> =
            self.typing.get(room).map(|t| t.keys().map(|u| &**u).collect()).unwrap_or_default();
        typists.sort_unstable();
        let text = Utf8Bytes::from(frames::typing(room, &typists));
        self.to_room(room, &text, |c| &c.eph);
    }
}

/// Users of a roster, each once, in joining order.
fn roster_users(roster: &[Seat]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in roster {
        if !out.iter().any(|x| **x == *s.user) {
            out.push(s.user.to_string());
        }
    }
    out
}

/// A call as its room is told: its people, raised hands (a person's first tab's, in the order
/// raised) and microphones off (every tab of the person's).
fn people_of(conf: &str, roster: &[Seat]) -> crate::calls::CallPeople {
    let user_ids = roster_users(roster);
    let mut raised: Vec<(Instant, &str)> = Vec::new();
    for s in roster {
        if let Some(at) = s.hand
            && !raised.iter().any(|(_, u)| *u == &*s.user)
        {
            raised.push((at, &s.user));
        }
    }
    raised.sort();
    let muted = user_ids.iter().filter(|u| roster.iter().all(|s| *s.user != ***u || s.muted)).cloned().collect();
    crate::calls::CallPeople {
        conf_id: conf.to_string(),
        user_ids,
        hands: raised.into_iter().map(|(_, u)| u.to_string()).collect(),
        muted,
    }
}

fn deliver_call(online: &OnlineUser, text: &Utf8Bytes, lagged_total: &AtomicU64) {
    for c in &online.conns {
        if c.call.try_send(text.clone()).is_err() && !c.signals.lagged.swap(true, Ordering::AcqRel) {
            lagged_total.fetch_add(1, Ordering::Relaxed);
            c.signals.wake.notify_one();
        }
    }
}

fn deliver(online: &OnlineUser, frame: &Frame, lagged_total: &AtomicU64) {
    for c in &online.conns {
        if c.tx.try_send(frame.clone()).is_err() && !c.signals.lagged.swap(true, Ordering::AcqRel) {
            lagged_total.fetch_add(1, Ordering::Relaxed);
            c.signals.wake.notify_one();
        }
    }
}

/// The answer to typing or joining a call in a room the user does not follow here (a
/// malformed room id included).
pub fn not_member() -> Error {
    Error::Forbidden("you are not a member of this room".into())
}

/// The error for a call frame from a tab that is not in the call.
pub fn not_in_call() -> Error {
    Error::Forbidden("join the call first (call_join)".into())
}
