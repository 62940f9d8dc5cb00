//! What another server sends us: the `X-Matrix` authorization header, key documents and event
//! PDUs as JSON. Input: the header on the first line, then a JSON value.
//!
//! Checks: a parsed header has unique, quote-free parameters; a key document that is accepted
//! names the server, is valid and lists only 32-byte ed25519 keys; a PDU that converts to
//! canonical JSON gets a content hash and a reference hash (ruma, room version 12) without
//! panicking, and our own event hashing agrees with ruma whenever the PDU is one of ours; a
//! received PDU (`Event::from_pdu`) that is accepted has a matching hash and id, and the auth
//! rules over its own auth events (given itself as the only known event) never panic; room
//! aliases parse to a clean name and a server name; a `chat.call.roster` EDU's calls are
//! bounded and name only people in the room, each once.

#![no_main]

use chat::federation::{keys, parse_x_matrix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (header, rest) = s.split_once('\n').unwrap_or((s, ""));

    if let Some(params) = parse_x_matrix(header) {
        for (k, v) in &params {
            assert!(!v.contains('"'), "{k}={v:?}");
            assert_eq!(k, &k.to_ascii_lowercase());
        }
    }

    if let Ok((name, server)) = chat::rooms::aliases::parse_alias(header) {
        assert!(!name.is_empty() && name.len() <= chat::rooms::aliases::MAX_ALIAS);
        assert!(!server.is_empty());
    }

    let Ok(value) = serde_json::from_str::<serde_json::Value>(rest) else { return };
    // A PDU whose room id is malformed belongs to no room it could be accepted for.
    let room = value.get("room_id").and_then(|r| r.as_str()).and_then(|r| chat::ids::RoomId::parse(r).ok());
    if let Some(room) = room
        && let Ok(ev) = chat::events::Event::from_pdu(&value, &room)
    {
        assert!(ev.verify_hashes(), "an accepted PDU rebuilds to the same hash and id");
        assert_eq!(ev.room_id, room);
        let _ = chat::federation::pdu::check_auth_events(&ev, |id| (id == ev.event_id).then_some(&ev));
    }
    // Another server's word on its calls (`chat.call.roster`): bounded, only people in the room,
    // each once, hands and microphones of people in the call.
    if let Some(calls) = chat::calls::host::parse_roster(&value, |u| u.starts_with("@a")) {
        assert!(calls.len() <= chat::calls::host::MAX_REMOTE_CALLS);
        for c in &calls {
            assert!(chat::calls::check_conf_id(&c.conf_id).is_ok());
            assert!(!c.user_ids.is_empty() && c.user_ids.len() <= chat::calls::host::MAX_REMOTE_PEOPLE);
            assert!(c.user_ids.iter().all(|u| u.starts_with("@a")));
            assert!(c.user_ids.iter().enumerate().all(|(i, u)| !c.user_ids[..i].contains(u)));
            assert!(c.hands.iter().chain(&c.muted).all(|u| c.user_ids.contains(u)));
        }
    }
    let now = 1_800_000_000_000;
    if let Ok(found) = keys::check_document("remote.test", value.clone(), now) {
        assert!(!found.is_empty());
        for k in found.values() {
            assert_eq!(chat::keys::unb64(&k.key).map(|b| b.len()).unwrap_or(0), 32);
            assert!(k.old || k.valid_until_ts > now);
        }
    }

    if let Ok(object) = chat::keys::to_canonical(value.clone()) {
        let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
        let _ = ruma_signatures::content_hash(&object);
        let _ = ruma_signatures::reference_hash(&object, &rules);
        // A PDU shaped like ours: rebuilding it with our code gives the hashes ruma computes.
        if let Ok(ev) = serde_json::from_value::<chat::events::Event>(value)
            && ev.verify_hashes()
            && let Ok(pdu) = chat::keys::to_canonical(ev.pdu())
            && let Ok(hash) = ruma_signatures::content_hash(&pdu)
        {
            assert_eq!(hash.encode(), ev.hashes["sha256"]);
        }
    }
});
