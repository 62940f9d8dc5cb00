//! Checking events that come from other servers: signatures (ruma), and the authorization
//! rules applied to the state named by the event's own `auth_events`.
//!
//! An event from another server is accepted only if
//! 1. it parses as a room version 12 PDU of the room and its content hash matches
//!    ([`Event::from_pdu`]),
//! 2. the sender's server signed it, checked with that server's published key ([`verify`]),
//! 3. it is allowed by the rules given the state its `auth_events` name ([`check_auth_events`]),
//! 4. and (for live events) it is allowed against the room's current state; an event that fails
//!    only this last check is soft-failed: stored apart (so events after it find it), never
//!    shown, without effect on the room's state.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::FedState;
use crate::error::{Error, Result};
use crate::events::rules;
use crate::events::*;
use crate::ids::RoomId;
use crate::store::events::server_of;

/// Most signing keys of one server tried for one event.
const MAX_KEYS: usize = 4;

/// Checks that the sender's server signed `pdu` (the event as received) and that its content
/// hash holds. Keys come from the cache or the server's key document.
pub async fn verify(state: &FedState, pdu: &Value, ev: &Event) -> Result<()> {
    ev.check_user_ids()?;
    let server = server_of(&ev.sender);
    let sigs = ev.signatures.get(server).ok_or_else(|| Error::bad("not signed by the sender's server"))?;
    let mut keys = BTreeMap::new();
    for key_id in sigs.keys().filter(|k| k.starts_with("ed25519:")).take(MAX_KEYS) {
        let public = if server == state.server_name.as_str() {
            if *key_id != state.federation.key.id {
                continue;
            }
            crate::keys::unb64(&state.federation.key.public_b64())?
        } else {
            match crate::federation::remote_key(state, server, key_id, ev.origin_server_ts).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::debug!(server, key_id, error = %e, "no usable key for an event signature");
                    continue;
                }
            }
        };
        keys.insert(key_id.clone(), ruma_common::serde::Base64::new(public));
    }
    if keys.is_empty() {
        return Err(Error::bad("no usable key of the sender's server signed the event"));
    }
    let map = BTreeMap::from([(server.to_string(), keys)]);
    let object = crate::keys::to_canonical(pdu.clone())?;
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    match ruma_signatures::verify_event(&map, &object, &rules) {
        Ok(ruma_signatures::Verified::All) => Ok(()),
        // The content hash failed: [`Event::from_pdu`] has redacted the event, and the
        // signatures hold over the redacted form, so it is accepted redacted (as the spec says).
        Ok(ruma_signatures::Verified::Signatures) if ev.is_redacted_form() => Ok(()),
        Ok(ruma_signatures::Verified::Signatures) => Err(Error::bad("the event's content was changed")),
        Err(e) => Err(Error::bad(format!("bad event signature: {e}"))),
    }
}

/// Parses and verifies one PDU of `room_id`.
pub async fn parse_verified(state: &FedState, pdu: &Value, room_id: &RoomId) -> Result<Event> {
    let ev = Event::from_pdu(pdu, room_id)?;
    verify(state, pdu, &ev).await?;
    Ok(ev)
}

/// A room as an event's `auth_events` describe it.
pub struct AuthRoom {
    /// Who created it.
    pub creator: String,
    /// Its additional creators (room version 12).
    pub additional_creators: Vec<String>,
    /// Its join rule (invite-only unless the auth events say otherwise).
    pub join_rule: JoinRule,
    /// Its power levels (the creator's defaults without a power-levels event).
    pub power_levels: PowerLevels,
    /// A direct-message room.
    pub direct: bool,
    /// The memberships the auth events name.
    pub members: HashMap<String, Membership>,
}

impl AuthRoom {
    /// What the auth rules read of it (the number of members is not known from auth events).
    pub fn state(&self) -> rules::RoomState<'_> {
        rules::RoomState {
            creators: crate::events::Creators { sender: &self.creator, additional: &self.additional_creators },
            join_rule: self.join_rule,
            power_levels: &self.power_levels,
            direct: self.direct,
            joined: 0,
        }
    }
}

/// The room as its `auth_events` describe it: creator, join rule, power levels and the
/// memberships they name. `get` finds an auth event by id.
pub fn auth_room<'a>(ev: &Event, get: impl Fn(&str) -> Option<&'a Event>) -> Result<AuthRoom> {
    // Room version 12: the create event is not listed; the room id is its reference hash.
    let create_id = ev.room_id.create_event_id();
    let create = get(create_id.as_str()).filter(|c| c.kind == M_ROOM_CREATE && c.room_id == ev.room_id);
    let mut pl = None;
    let mut join_rule = JoinRule::Invite;
    let mut members = HashMap::new();
    for id in &ev.auth_events {
        let a = get(id).ok_or_else(|| Error::bad(format!("auth event {id} is unknown")))?;
        if a.room_id != ev.room_id {
            return Err(Error::bad("an auth event belongs to another room"));
        }
        match (a.kind.as_str(), a.state_key.as_deref()) {
            (M_ROOM_POWER_LEVELS, Some("")) => {
                pl = Some(
                    serde_json::from_value::<PowerLevels>(a.content.clone())
                        .map_err(|_| Error::bad("bad power levels"))?,
                )
            }
            (M_ROOM_JOIN_RULES, Some("")) => {
                if a.content.get("join_rule").and_then(Value::as_str) == Some("public") {
                    join_rule = JoinRule::Public;
                }
            }
            (M_ROOM_MEMBER, Some(user)) => {
                members.insert(user.to_string(), Membership::of_content(&a.content).unwrap_or(Membership::Leave));
            }
            _ => return Err(Error::bad("an auth event of a type that authorises nothing")),
        }
    }
    let create = create.ok_or_else(|| Error::bad("the room's create event is unknown"))?;
    let direct = create.content.get("chat.direct").and_then(Value::as_bool).unwrap_or(false);
    let power_levels = pl.unwrap_or_else(PowerLevels::for_new_room);
    let additional_creators = crate::events::additional_creators(&create.content);
    Ok(AuthRoom { creator: create.sender.clone(), additional_creators, join_rule, power_levels, direct, members })
}

/// Whether `ev` is allowed by the rules given the state its own `auth_events` name.
pub fn check_auth_events<'a>(ev: &Event, get: impl Fn(&str) -> Option<&'a Event>) -> Result<()> {
    if ev.kind == M_ROOM_CREATE {
        if ev.state_key.as_deref() != Some("") || !ev.prev_events.is_empty() || !ev.auth_events.is_empty() {
            return Err(Error::bad("a create event stands alone"));
        }
        return Ok(());
    }
    let room = auth_room(ev, &get)?;
    let members = &room.members;
    // The creator's own first join follows the create event directly.
    if ev.kind == M_ROOM_MEMBER
        && ev.sender == room.creator
        && ev.state_key.as_deref() == Some(ev.sender.as_str())
        && members.is_empty()
        && ev.prev_events.len() == 1
        && ev.auth_events.is_empty()
        && Membership::of_content(&ev.content) == Some(Membership::Join)
    {
        return Ok(());
    }
    let new = NewEvent { kind: ev.kind.clone(), state_key: ev.state_key.clone(), content: ev.content.clone() };
    rules::authorize(room.state(), &ev.sender, &new, |u| Ok(members.get(u).copied().unwrap_or(Membership::Leave)))
}
