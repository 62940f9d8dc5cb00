//! What other servers may make us store and do: the content limits local users have, event
//! rates per origin, per remote sender and per room, the `get_missing_events` budget, and
//! invitation rates. Refusals are counted for `/metrics`.
//!
//! Why each bound (audit 5, 6 and 14):
//! - a remote message is held to the local size limit, a remote user to the local send rate
//!   (the same limiter), their server to `federation_events_per_origin_per_minute` for all its
//!   users, and a room to `federation_events_per_room_per_hour` of remote events, sent or
//!   fetched, so one server cannot fill the disk through one room;
//! - fetching what comes before an event costs us requests and storage chosen by the sender,
//!   so it is bounded per transaction ([`MISSING_FETCHES_PER_TXN`]) and per server per minute;
//! - every invitation makes a stub room in the invitee's list, so they are bounded per server
//!   and per invitee, and may be limited to inviters who share a room with the invitee.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::FedState;
use crate::auth::ratelimit::RateLimiter;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::events::*;
use crate::ids::UserId;

/// Most `get_missing_events` requests one received transaction (or one catch-up) may cause.
pub const MISSING_FETCHES_PER_TXN: u32 = 3;

/// The rate limiters for other servers' traffic, and what they refused.
pub struct Budgets {
    events_per_origin: RateLimiter,
    events_per_room: RateLimiter,
    missing_per_origin: RateLimiter,
    invites_per_origin: RateLimiter,
    invites_per_user: RateLimiter,
    /// What was fetched and refused since start.
    pub counters: Counters,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// `get_missing_events` requests made.
    pub missing_fetches: AtomicU64,
    /// `get_missing_events` requests not made: over the transaction's or the server's budget.
    pub missing_fetches_refused: AtomicU64,
    /// Events received in `get_missing_events` answers.
    pub missing_events: AtomicU64,
    /// Events refused for a rate (origin, sender or room).
    pub events_rate_limited: AtomicU64,
    /// Events refused for their size.
    pub events_too_large: AtomicU64,
    /// Invitations refused (rate, or no shared room).
    pub invites_refused: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Budgets {
    /// The limiters for `limits`.
    pub fn new(limits: &Limits) -> Budgets {
        Budgets {
            events_per_origin: RateLimiter::new(limits.federation_events_per_origin_per_minute),
            events_per_room: RateLimiter::per_hour(limits.federation_events_per_room_per_hour),
            missing_per_origin: RateLimiter::new(limits.federation_missing_fetches_per_origin_per_minute),
            invites_per_origin: RateLimiter::new(limits.federation_invites_per_origin_per_minute),
            invites_per_user: RateLimiter::per_hour(limits.federation_invites_per_user_per_hour),
            counters: Counters::default(),
        }
    }

    /// Takes one event of the room's remote budget, for an event we fetched or backfilled;
    /// false when the room's budget is spent (the event is left out, a gap).
    pub(super) fn room_allows(&self, ev: &Event) -> bool {
        let ok = self.events_per_room.check(ev.room_id.as_str()).is_ok();
        if !ok {
            bump(&self.counters.events_rate_limited);
        }
        ok
    }
}

/// Checks an event from another server against the limits local events have (a PDU over the
/// Matrix limit of 65,535 bytes was refused by the signature check already): a message's `body` and `formatted_body` within `max_message_bytes` (the
/// check local sends pass); any other non-state event's content within twice that plus 1 KiB
/// (call signals have their own checks). State events are kept whatever their text's length,
/// so the room's state is the same on every server; names and topics are cut when kept in the
/// room's summary and shown (see [`capped_text`]).
pub(super) fn check_content(state: &FedState, ev: &Event) -> Result<()> {
    let refuse = |e: Error| {
        bump(&state.federation.budgets.counters.events_too_large);
        e
    };
    if ev.state_key.is_some() || crate::events::call::is_call_event(&ev.kind) {
        return Ok(());
    }
    if ev.kind == M_ROOM_MESSAGE {
        for field in ["body", "formatted_body"] {
            if let Some(text) = ev.content.get(field).and_then(Value::as_str) {
                crate::rooms::check_message_size(&state.limits, text).map_err(refuse)?;
            }
        }
    }
    let most = state.limits.max_message_bytes.saturating_mul(2).saturating_add(1024);
    let content = serde_json::to_vec(&ev.content).map(|v| v.len()).unwrap_or(usize::MAX);
    if content > most {
        return Err(refuse(Error::TooLarge(format!("event content must be at most {most} bytes"))));
    }
    Ok(())
}

/// Takes one event sent by `origin` from the budgets of its sender (the local per-user send
/// rate), of `origin` and of the room; refused with a retry time if any is spent.
pub(super) fn admit_sent(state: &FedState, origin: &str, ev: &Event) -> Result<()> {
    let b = &state.federation.budgets;
    let taken = state
        .rooms
        .messages_per_user
        .check(&ev.sender)
        .and_then(|()| b.events_per_origin.check(origin))
        .and_then(|()| b.events_per_room.check(ev.room_id.as_str()));
    if taken.is_err() {
        bump(&b.counters.events_rate_limited);
    }
    taken
}

/// The `get_missing_events` requests one transaction may still make.
pub struct FetchBudget(u32);

impl FetchBudget {
    /// A fresh budget of [`MISSING_FETCHES_PER_TXN`].
    pub fn per_transaction() -> FetchBudget {
        FetchBudget(MISSING_FETCHES_PER_TXN)
    }

    /// Whether this transaction's requests are all made (its other events take gaps at once).
    pub(super) fn spent(&self) -> bool {
        self.0 == 0
    }

    /// Takes one request to `server` from this budget and from the server's per-minute one;
    /// false if either is spent.
    pub(super) fn take(&mut self, state: &FedState, server: &str) -> bool {
        let b = &state.federation.budgets;
        if self.0 == 0 || b.missing_per_origin.check(server).is_err() {
            bump(&b.counters.missing_fetches_refused);
            return false;
        }
        self.0 -= 1;
        bump(&b.counters.missing_fetches);
        true
    }
}

/// Whether an invitation of `target` by `inviter` (a user of `origin`) may be taken: 403 if
/// only inviters who share a room with the invitee are let in and this one does not; 429 over
/// the origin's or the invitee's rate.
pub(super) fn admit_invite(state: &FedState, origin: &str, inviter: &str, target: &UserId) -> Result<()> {
    let b = &state.federation.budgets;
    let admitted = (|| {
        if state.limits.federation_invites_from_shared_rooms_only && !shares_a_room(state, inviter, target)? {
            return Err(Error::Forbidden("this user takes invitations only from people they share a room with".into()));
        }
        b.invites_per_origin.check(origin)?;
        b.invites_per_user.check(target.as_str())
    })();
    if admitted.is_err() {
        bump(&b.counters.invites_refused);
    }
    admitted
}

/// Whether `other` is joined to a room here that `user` is joined to.
fn shares_a_room(state: &FedState, other: &str, user: &UserId) -> Result<bool> {
    let snapshot = state.store.snapshot()?;
    for room in snapshot.joined_rooms(user.as_str())? {
        let Ok(room) = crate::ids::RoomId::parse(&room) else { continue };
        if snapshot.membership(&room, other)? == Membership::Join {
            return Ok(true);
        }
    }
    Ok(false)
}
