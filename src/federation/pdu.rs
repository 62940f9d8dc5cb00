//! Checking events that come from other servers: signatures (ruma), and the authorization
//! rules applied to the state named by the event's own `auth_events`.
//!
//! An event from another server is accepted only if
//! 1. it parses as a room version 12 PDU of the room and its content hash matches
//!    ([`Event::from_pdu`]),
//! 2. the sender's server signed it, checked with that server's published key ([`verify`]),
//! 3. it is allowed by the Matrix authorization rules (ruma-state-res) given the state its
//!    `auth_events` name ([`check_auth_events`]),
//! 4. it is allowed by them given the state before it in the room (failing: rejected),
//! 5. and it is allowed by them against the room's current state; an event that fails only
//!    this last check is soft-failed: stored apart (so events after it find it), never shown,
//!    without effect on the room's state.
//!
//! Our own product rules (two people in a direct room, who may change what) apply to the
//! events local users make, never to received ones, so an event the Matrix rules allow never
//! goes missing from the room's graph here.

use std::collections::BTreeMap;

use serde_json::Value;

use super::FedState;
use crate::error::{Error, Result};
use crate::events::*;
use crate::ids::RoomId;
use crate::store::events::server_of;

/// Most signing keys of one server tried for one event.
const MAX_KEYS: usize = 4;

/// The servers whose signatures an event needs: the sender's, and for a join to a restricted
/// room, the server of the member who let the user in (`join_authorised_via_users_server`).
fn signing_servers(ev: &Event) -> Vec<&str> {
    let mut out = vec![server_of(&ev.sender)];
    let via = ev.content.get("join_authorised_via_users_server").and_then(Value::as_str);
    if ev.kind == M_ROOM_MEMBER
        && Membership::of_content(&ev.content) == Some(Membership::Join)
        && let Some(server) = via.filter(|u| u.starts_with('@') && u.contains(':')).map(server_of)
        && !out.contains(&server)
    {
        out.push(server);
    }
    out
}

/// The keys of `server` that signed `ev`, from the cache or the server's key document.
async fn server_keys(
    state: &FedState,
    ev: &Event,
    server: &str,
) -> Result<BTreeMap<String, ruma_common::serde::Base64>> {
    let sigs = ev.signatures.get(server).ok_or_else(|| Error::bad(format!("not signed by {server}")))?;
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
        return Err(Error::bad(format!("no usable key of {server} signed the event")));
    }
    Ok(keys)
}

/// Checks that the sender's server (and any other server the event needs, see
/// [`signing_servers`]) signed `pdu` (the event as received) and that its content hash holds.
pub async fn verify(state: &FedState, pdu: &Value, ev: &Event) -> Result<()> {
    ev.check_user_ids()?;
    let mut map = BTreeMap::new();
    for server in signing_servers(ev) {
        let keys = server_keys(state, ev, server).await?;
        map.insert(server.to_string(), keys);
    }
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

/// Whether `ev` is allowed by the rules given the state its own `auth_events` name.
pub fn check_auth_events<'a>(ev: &Event, get: impl Fn(&str) -> Option<&'a Event>) -> Result<()> {
    if ev.kind == M_ROOM_CREATE {
        if ev.state_key.as_deref() != Some("") || !ev.prev_events.is_empty() || !ev.auth_events.is_empty() {
            return Err(Error::bad("a create event stands alone"));
        }
        return Ok(());
    }
    crate::events::stateres::check_auth_events(ev, &get)
}
