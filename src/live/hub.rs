//! The hub: who is online and in which rooms, and a bounded queue per connection.
//!
//! The hub is a doorbell, not the truth: a full queue never blocks the writer or other members;
//! the connection is marked lagged and catches up from the store (see [`super::socket`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

use super::frames;
use crate::error::{Error, Result};
use crate::events::{M_ROOM_MEMBER, Membership};
use crate::store::events::StoredEvent;

/// One event frame ready to send, with its stream position for de-duplication.
#[derive(Clone)]
pub struct Frame {
    /// Stream position of the event.
    pub pos: u64,
    /// The serialized frame (shared by all recipients).
    pub text: Utf8Bytes,
}

/// Signals a connection's task watches besides its queue.
#[derive(Default)]
pub struct ConnSignals {
    /// Set when a frame could not be queued; the connection must catch up from the store.
    pub lagged: AtomicBool,
    /// Set when the connection must close (its session ended).
    pub closed: AtomicBool,
    /// Wakes the connection's task after setting a flag.
    pub wake: Notify,
}

struct ConnSender {
    id: u64,
    sid: String,
    tx: mpsc::Sender<Frame>,
    signals: Arc<ConnSignals>,
}

#[derive(Default)]
struct OnlineUser {
    rooms: HashSet<Arc<str>>,
    conns: Vec<ConnSender>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<Arc<str>, OnlineUser>,
    /// Room id -> online users who have joined it.
    rooms: HashMap<Arc<str>, HashSet<Arc<str>>>,
}

/// Live delivery state. The lock guards plain maps, is never held across an await, and is
/// taken by the writer thread for each committed batch.
pub struct Hub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    queue: usize,
    max_per_user: usize,
    lagged: AtomicU64,
}

/// A registered connection; dropping it unregisters.
pub struct Conn {
    /// Queue of live frames.
    pub rx: mpsc::Receiver<Frame>,
    /// Lag and close signals.
    pub signals: Arc<ConnSignals>,
    id: u64,
    user: Arc<str>,
    hub: Arc<Hub>,
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
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters more than losing live delivery, so recover the guard instead of propagating.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `user`. `joined_rooms` is called under the hub lock, so no
    /// membership change can slip between reading the user's rooms and registering.
    pub fn connect(
        self: &Arc<Self>,
        user: &str,
        sid: &str,
        joined_rooms: impl FnOnce() -> Result<Vec<String>>,
    ) -> Result<Conn> {
        let (tx, rx) = mpsc::channel(self.queue);
        let signals = Arc::new(ConnSignals::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        let user_key: Arc<str> = match inner.users.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => Arc::from(user),
        };
        if inner.users.get(user).is_some_and(|u| u.conns.len() >= self.max_per_user) {
            return Err(Error::TooManyRequests(5));
        }
        if !inner.users.contains_key(user) {
            let rooms = joined_rooms()?;
            let mut online = OnlineUser::default();
            for r in rooms {
                let r: Arc<str> = Arc::from(r);
                inner.rooms.entry(r.clone()).or_default().insert(user_key.clone());
                online.rooms.insert(r);
            }
            inner.users.insert(user_key.clone(), online);
        }
        if let Some(u) = inner.users.get_mut(user) {
            u.conns.push(ConnSender { id, sid: sid.to_string(), tx, signals: signals.clone() });
        }
        Ok(Conn { rx, signals, id, user: user_key, hub: self.clone() })
    }

    fn disconnect(&self, user: &str, id: u64) {
        let mut inner = self.lock();
        let Some(u) = inner.users.get_mut(user) else { return };
        u.conns.retain(|c| c.id != id);
        if !u.conns.is_empty() {
            return;
        }
        if let Some(u) = inner.users.remove(user) {
            for r in u.rooms {
                if let Some(set) = inner.rooms.get_mut(&r) {
                    set.remove(user);
                    if set.is_empty() {
                        inner.rooms.remove(&r);
                    }
                }
            }
        }
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

    /// How many times a connection's queue overflowed and it was switched to catch-up.
    pub fn lagged_total(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
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

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.lock().users.values().map(|u| u.conns.len()).sum()
    }

    /// Delivers a committed batch, in order. Called on the writer thread after commit.
    pub fn publish(&self, batch: &[Arc<StoredEvent>]) {
        let mut inner = self.lock();
        for stored in batch {
            let ev = &stored.event;
            let frame = Frame { pos: stored.pos, text: Utf8Bytes::from(frames::event_frame(stored)) };
            let room: Arc<str> = Arc::from(ev.room_id.as_str());
            // A member event changes who receives this room: joins take effect before delivery
            // (the joiner sees their own join), leaves after (the leaver sees their own leave).
            let target = (ev.kind == M_ROOM_MEMBER).then_some(ev.state_key.as_deref()).flatten();
            let after = target.map(|_| Membership::of_content(&ev.content).unwrap_or(Membership::Leave));
            if let (Some(t), Some(Membership::Join)) = (target, after) {
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
                if m != Membership::Join {
                    inner.set_joined(t, &room, false);
                }
            }
        }
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
            if let Some(set) = self.rooms.get_mut(room) {
                set.remove(user);
                if set.is_empty() {
                    self.rooms.remove(room);
                }
            }
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
