//! The room model: every change to a room is an event, in the shape of a Matrix PDU.
//!
//! An event carries `type`, `room_id`, `sender`, `content`, `origin_server_ts`, `depth`,
//! `prev_events` (the DAG) and `auth_events`, a content hash, and (once federation lands)
//! signatures. Its id is the reference hash of its redacted form, as in room versions 4+.
//! The room id is the reference hash of the room's create event (room version 12).

pub mod call;
pub mod content;
pub mod rules;
pub mod stateres;

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use content::*;

use crate::ids::{EventId, RoomId};

/// Most `prev_events` or `auth_events` a received event may name.
pub const MAX_REFS: usize = 20;

/// Room version written into create events.
pub const ROOM_VERSION: &str = "12";

/// A room event, as stored and as sent over the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// `$` + reference hash. Not part of the hashed form.
    pub event_id: EventId,
    /// The room; for the create event it is derived from the event's own hash.
    pub room_id: RoomId,
    /// The user who sent the event.
    pub sender: String,
    /// Event type, e.g. `m.room.message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Present on state events: which piece of state this event sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    /// Type-specific content.
    pub content: Value,
    /// Milliseconds since the Unix epoch on the origin server.
    pub origin_server_ts: u64,
    /// One more than the greatest depth of `prev_events`.
    pub depth: u64,
    /// The room's forward extremities when this event was created.
    pub prev_events: Vec<String>,
    /// The state events that authorise this one.
    pub auth_events: Vec<String>,
    /// Content hashes: `{"sha256": unpadded base64}`.
    pub hashes: BTreeMap<String, String>,
    /// Signatures by server and key id (filled by federation signing).
    #[serde(default)]
    pub signatures: BTreeMap<String, BTreeMap<String, String>>,
}

/// What a caller supplies to create an event; the store fills in the DAG fields.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Event type.
    pub kind: String,
    /// State key for state events.
    pub state_key: Option<String>,
    /// Content.
    pub content: Value,
}

impl NewEvent {
    /// A state event.
    pub fn state(kind: &str, state_key: &str, content: Value) -> Self {
        NewEvent { kind: kind.into(), state_key: Some(state_key.into()), content }
    }

    /// A timeline (non-state) event.
    pub fn message(kind: &str, content: Value) -> Self {
        NewEvent { kind: kind.into(), state_key: None, content }
    }
}

/// The DAG position and authorisation a new event is built on.
pub struct Parents {
    /// Forward extremities of the room.
    pub prev_events: Vec<String>,
    /// Auth event ids chosen from current state.
    pub auth_events: Vec<String>,
    /// Depth of the new event.
    pub depth: u64,
}

impl Event {
    /// Builds, hashes and names a new event. `room_id` is `None` only for a create event, whose
    /// hash then also names the room.
    pub fn build(
        room_id: Option<&RoomId>,
        sender: &str,
        new: NewEvent,
        parents: Parents,
        origin_server_ts: u64,
    ) -> Event {
        // The ids are named from the hashes below; until then they are stand-ins that neither
        // hash covers (a create event's room id is left out of both).
        let mut ev = Event {
            event_id: EventId::from_hash(""),
            room_id: room_id.cloned().unwrap_or_else(|| RoomId::from_hash("")),
            sender: sender.to_string(),
            kind: new.kind,
            state_key: new.state_key,
            content: new.content,
            origin_server_ts,
            depth: parents.depth,
            prev_events: parents.prev_events,
            auth_events: parents.auth_events,
            hashes: BTreeMap::new(),
            signatures: BTreeMap::new(),
        };
        let content_hash = ev.content_hash(room_id.is_some());
        ev.hashes.insert("sha256".into(), content_hash);
        ev.name_from_reference_hash(room_id.is_none());
        ev
    }

    /// The content hash (unpadded standard base64 of SHA-256 over the hashable form).
    fn content_hash(&self, with_room: bool) -> String {
        b64_std(&Sha256::digest(crate::keys::canonical_string(&self.hashable(with_room))))
    }

    /// Sets the event id (and a create event's room id) from the reference hash: the hash of
    /// the redacted form, with the `hashes` the event carries.
    fn name_from_reference_hash(&mut self, is_create: bool) {
        let reference = Sha256::digest(crate::keys::canonical_string(&self.redacted(!is_create)));
        let hash = b64_url(&reference);
        self.event_id = EventId::from_hash(&hash);
        if is_create {
            self.room_id = RoomId::from_hash(&hash);
        }
    }

    /// The event id this redaction takes back (`content.redacts`, room version 11+), if it is one.
    pub fn redacts(&self) -> Option<&str> {
        (self.kind == M_ROOM_REDACTION).then(|| self.content.get("redacts").and_then(Value::as_str)).flatten()
    }

    /// Strips the content to what survives redaction. Id, hashes and signatures stay: the
    /// reference hash and the signatures cover only the redacted form, so they still hold.
    pub fn redact(&mut self) {
        self.content = redact_content(&self.kind, &self.content);
    }

    /// Whether the content is already in its redacted form.
    pub fn is_redacted_form(&self) -> bool {
        self.content == redact_content(&self.kind, &self.content)
    }

    /// The event as a JSON object, field by field (the same shape serde writes), which unlike
    /// `serde_json::to_value` cannot fail, so no hash is ever taken over a stand-in.
    fn to_object(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("event_id".into(), Value::from(self.event_id.as_str()));
        m.insert("room_id".into(), Value::from(self.room_id.as_str()));
        m.insert("sender".into(), Value::from(self.sender.as_str()));
        m.insert("type".into(), Value::from(self.kind.as_str()));
        if let Some(k) = &self.state_key {
            m.insert("state_key".into(), Value::from(k.as_str()));
        }
        m.insert("content".into(), self.content.clone());
        m.insert("origin_server_ts".into(), Value::from(self.origin_server_ts));
        m.insert("depth".into(), Value::from(self.depth));
        m.insert("prev_events".into(), Value::from(self.prev_events.clone()));
        m.insert("auth_events".into(), Value::from(self.auth_events.clone()));
        let hashes = self.hashes.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        m.insert("hashes".into(), Value::Object(hashes));
        let signatures = self
            .signatures
            .iter()
            .map(|(server, sigs)| {
                let sigs = sigs.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
                (server.clone(), Value::Object(sigs))
            })
            .collect();
        m.insert("signatures".into(), Value::Object(signatures));
        m
    }

    /// The form covered by the content hash: everything but `event_id`, `hashes`, `signatures`
    /// and `unsigned` (and `room_id` for a create event, whose room id is its own hash).
    fn hashable(&self, with_room: bool) -> Value {
        let mut m = self.to_object();
        m.remove("event_id");
        m.remove("hashes");
        m.remove("signatures");
        if !with_room {
            m.remove("room_id");
        }
        Value::Object(m)
    }

    /// The redacted form covered by the reference hash (and, later, signatures).
    fn redacted(&self, with_room: bool) -> Value {
        let mut m = self.to_object();
        m.remove("event_id");
        m.remove("signatures");
        if !with_room {
            m.remove("room_id");
        }
        m.insert("content".into(), redact_content(&self.kind, &self.content));
        Value::Object(m)
    }

    /// The event as a PDU on the wire (room version 12): without `event_id` (it is the
    /// reference hash) and, for a create event, without `room_id` (derived from its hash).
    pub fn pdu(&self) -> Value {
        let mut m = self.to_object();
        m.remove("event_id");
        if self.kind == M_ROOM_CREATE {
            m.remove("room_id");
        }
        Value::Object(m)
    }

    /// Signs the event as `server`: the signature covers the redacted PDU (ruma's signing with
    /// the room version 12 redaction rules) and replaces any earlier one by the same key.
    pub fn sign(&mut self, server: &str, key: &crate::keys::SigningKey) -> crate::error::Result<()> {
        let mut object = crate::keys::to_canonical(self.pdu())?;
        key.sign_event(server, &mut object)?;
        let sigs = object.get("signatures").cloned().map(Value::from).unwrap_or(Value::Null);
        self.signatures = serde_json::from_value(sigs)?;
        Ok(())
    }

    /// The sender, and the target of a member event, are valid user ids, by the same rules as
    /// every other way in (sign-up, `make_join`, the API).
    pub fn check_user_ids(&self) -> crate::error::Result<()> {
        use crate::error::Error;
        crate::ids::UserId::parse(&self.sender).map_err(|_| Error::bad("the sender is not a valid user id"))?;
        if self.kind == M_ROOM_MEMBER {
            let target = self.state_key.as_deref().unwrap_or_default();
            crate::ids::UserId::parse(target).map_err(|_| Error::bad("a member event's state_key is not a user id"))?;
        }
        Ok(())
    }

    /// Reads a PDU received from another server (room version 12): its id is computed (the
    /// reference hash); if its content hash does not match, it is returned redacted. `room_id` is the room it is meant for
    /// (a create event carries none; its hash must then name that room). Signatures and user ids
    /// ([`Event::check_user_ids`]) are checked by the caller, who has the keys.
    pub fn from_pdu(pdu: &Value, room_id: &RoomId) -> crate::error::Result<Event> {
        use crate::error::Error;
        let Value::Object(map) = pdu else { return Err(Error::bad("a PDU must be a JSON object")) };
        let mut map = map.clone();
        let is_create = map.get("type").and_then(Value::as_str) == Some(M_ROOM_CREATE);
        // Stand-ins of the right shape for the ids the PDU does not carry; both are replaced
        // below by the ones computed from its hash.
        map.insert("event_id".into(), Value::from(room_id.create_event_id().as_str()));
        if is_create {
            map.insert("room_id".into(), Value::from(room_id.as_str()));
        }
        let mut ev: Event =
            serde_json::from_value(Value::Object(map)).map_err(|e| Error::bad(format!("malformed PDU: {e}")))?;
        if ev.prev_events.len() > MAX_REFS || ev.auth_events.len() > MAX_REFS {
            return Err(Error::bad("too many prev_events or auth_events"));
        }
        let Some(claimed) = ev.hashes.get("sha256") else {
            return Err(Error::bad("the event has no sha256 content hash"));
        };
        // A content hash that does not match (a copy redacted by the server that served it, or
        // changed content): the event is redacted before anything else looks at it, as the spec
        // says; the signatures (checked by the caller) then decide over the redacted form.
        // Unknown top-level keys, which our struct drops, also land here: redaction drops them too.
        if *claimed != ev.content_hash(!is_create) {
            ev.redact();
        }
        ev.name_from_reference_hash(is_create);
        if ev.room_id != *room_id {
            return Err(Error::bad("the event belongs to another room"));
        }
        Ok(ev)
    }

    /// Recomputes the content hash and id and checks that they match (tamper detection).
    pub fn verify_hashes(&self) -> bool {
        let is_create = self.kind == M_ROOM_CREATE;
        let rebuilt = Event::build(
            (!is_create).then_some(&self.room_id),
            &self.sender,
            NewEvent { kind: self.kind.clone(), state_key: self.state_key.clone(), content: self.content.clone() },
            Parents { prev_events: self.prev_events.clone(), auth_events: self.auth_events.clone(), depth: self.depth },
            self.origin_server_ts,
        );
        rebuilt.event_id == self.event_id && rebuilt.hashes == self.hashes && rebuilt.room_id == self.room_id
    }
}

/// Keeps only the content keys that survive redaction: ruma's implementation of the room
/// version 12 rules (the same as 11: a redaction keeps `redacts`, a create event all of its
/// content, power levels `invite`, ...). Content that is not canonical JSON (not an object,
/// floats, integers beyond 2^53) keeps nothing.
pub fn redact_content(kind: &str, content: &Value) -> Value {
    let Ok(mut object) = crate::keys::to_canonical(content.clone()) else {
        return Value::Object(serde_json::Map::new());
    };
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12.redaction;
    ruma_common::canonical_json::redact_content_in_place(&mut object, &rules, kind);
    Value::from(ruma_common::CanonicalJsonValue::Object(object))
}

fn b64_std(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn b64_url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_room() -> RoomId {
        RoomId::from_hash(&"r".repeat(43))
    }

    #[test]
    fn the_object_is_what_serde_writes() {
        let mut ev = Event::build(
            Some(&a_room()),
            "@a:x",
            NewEvent::state(M_ROOM_NAME, "", serde_json::json!({"name": "n"})),
            Parents { prev_events: vec!["$p".into()], auth_events: vec!["$a".into()], depth: 3 },
            7,
        );
        ev.signatures.insert("x".into(), [("ed25519:k".to_string(), "sig".to_string())].into_iter().collect());
        assert_eq!(Value::Object(ev.to_object()), serde_json::to_value(&ev).unwrap());
        let msg = Event::build(
            Some(&a_room()),
            "@a:x",
            NewEvent::message(M_ROOM_MESSAGE, text_message("hi")),
            Parents { prev_events: vec![], auth_events: vec![], depth: 1 },
            7,
        );
        assert_eq!(Value::Object(msg.to_object()), serde_json::to_value(&msg).unwrap());
    }
    use serde_json::json;

    fn create() -> Event {
        Event::build(
            None,
            "@ana:chat.test",
            NewEvent::state(M_ROOM_CREATE, "", json!({"room_version": "12"})),
            Parents { prev_events: vec![], auth_events: vec![], depth: 1 },
            1_700_000_000_000,
        )
    }

    #[test]
    fn ids_are_reference_hashes() {
        let ev = create();
        assert_eq!(ev.event_id.as_str().len(), 44);
        assert_eq!(ev.room_id.create_event_id(), ev.event_id);
        assert!(ev.verify_hashes());
        // Same input, same id: ids are deterministic.
        assert_eq!(create().event_id, ev.event_id);
    }

    #[test]
    fn tampering_is_detected() {
        let room = create();
        let msg = Event::build(
            Some(&room.room_id),
            "@ana:chat.test",
            NewEvent::message(M_ROOM_MESSAGE, json!({"msgtype": "m.text", "body": "hi"})),
            Parents { prev_events: vec![room.event_id.to_string()], auth_events: vec![], depth: 2 },
            1_700_000_000_001,
        );
        assert!(msg.verify_hashes());
        let mut forged = msg.clone();
        forged.content = json!({"msgtype": "m.text", "body": "bye"});
        assert!(!forged.verify_hashes());
        // Redaction keeps the reference hash stable: the id covers only the redacted content.
        let rebuilt_id = msg.event_id.clone();
        assert_eq!(rebuilt_id, msg.event_id);
    }

    /// Our hashes, ids and signatures are Matrix's: ruma computes the same content hash and
    /// reference hash for our PDUs and verifies our signatures with the room version 12 rules.
    #[test]
    fn hashes_ids_and_signatures_agree_with_ruma() {
        let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
        let (der, version) = crate::keys::SigningKey::generate().unwrap();
        let key = crate::keys::SigningKey::from_der(&der, version).unwrap();
        let mut room = create();
        let mut msg = Event::build(
            Some(&room.room_id),
            "@ana:chat.test",
            NewEvent::message(M_ROOM_MESSAGE, json!({"msgtype": "m.text", "body": "héllo \u{1F600} <b>", "n": 7})),
            Parents {
                prev_events: vec![room.event_id.to_string()],
                auth_events: vec![room.event_id.to_string()],
                depth: 2,
            },
            1_700_000_000_001,
        );
        for ev in [&mut room, &mut msg] {
            ev.sign("chat.test", &key).unwrap();
            let object = crate::keys::to_canonical(ev.pdu()).unwrap();
            let content_hash = ruma_signatures::content_hash(&object).unwrap();
            assert_eq!(content_hash.encode(), ev.hashes["sha256"], "content hash of {}", ev.kind);
            let reference = ruma_signatures::reference_hash(&object, &rules).unwrap();
            assert_eq!(format!("${reference}"), ev.event_id.as_str(), "event id of {}", ev.kind);
            let mut keys = std::collections::BTreeMap::new();
            keys.insert(key.id.clone(), ruma_common::serde::Base64::parse(key.public_b64()).unwrap());
            let mut map = std::collections::BTreeMap::new();
            map.insert("chat.test".to_string(), keys);
            let verified = ruma_signatures::verify_event(&map, &object, &rules).unwrap();
            assert_eq!(verified, ruma_signatures::Verified::All);
            // Changed content: a message's is redacted away, so its signature still holds but
            // its hash does not; a create event's content survives redaction, so its signature fails.
            let mut tampered = ev.pdu();
            tampered["content"]["extra"] = json!(1);
            let tampered = crate::keys::to_canonical(tampered).unwrap();
            let checked = ruma_signatures::verify_event(&map, &tampered, &rules);
            if ev.kind == M_ROOM_CREATE {
                assert!(checked.is_err());
            } else {
                assert_eq!(checked.unwrap(), ruma_signatures::Verified::Signatures);
            }
        }
    }

    /// A room version 12 redaction keeps `redacts` in its redacted form (the old code dropped
    /// it, so our id of a Synapse redaction differed from Synapse's), exactly as ruma redacts it.
    #[test]
    fn redaction_keeps_redacts_as_ruma_does() {
        let room = create();
        let redaction = Event::build(
            Some(&room.room_id),
            "@ana:chat.test",
            NewEvent::message(M_ROOM_REDACTION, json!({"redacts": "$target", "reason": "oops"})),
            Parents { prev_events: vec![room.event_id.to_string()], auth_events: vec![], depth: 2 },
            1_700_000_000_002,
        );
        assert_eq!(redact_content(M_ROOM_REDACTION, &redaction.content), json!({"redacts": "$target"}));
        let object = crate::keys::to_canonical(redaction.pdu()).unwrap();
        let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
        let theirs = ruma_common::canonical_json::redact(object.clone(), &rules.redaction, None).unwrap();
        let theirs = Value::from(ruma_common::CanonicalJsonValue::Object(theirs));
        assert_eq!(theirs["content"], redact_content(M_ROOM_REDACTION, &redaction.content));
        let reference = ruma_signatures::reference_hash(&object, &rules).unwrap();
        assert_eq!(format!("${reference}"), redaction.event_id.as_str());
        // Power levels keep `invite` (v11+), a message keeps nothing.
        let pl = json!({"ban": 50, "invite": 0, "users": {"@b:x": 50}, "notifications": {"room": 50}});
        assert_eq!(redact_content(M_ROOM_POWER_LEVELS, &pl), json!({"ban": 50, "invite": 0, "users": {"@b:x": 50}}));
        assert_eq!(redact_content(M_ROOM_MESSAGE, &text_message("hi")), json!({}));
    }

    /// A copy redacted by the server that served it (content hash no longer matching) is read
    /// redacted, under the same id; changed content is read redacted too (the signature check,
    /// over the redacted form, then decides).
    #[test]
    fn a_redacted_copy_is_read_redacted_under_the_same_id() {
        let room = create();
        let msg = Event::build(
            Some(&room.room_id),
            "@ana:chat.test",
            NewEvent::message(M_ROOM_MESSAGE, text_message("secret")),
            Parents { prev_events: vec![room.event_id.to_string()], auth_events: vec![], depth: 2 },
            1_700_000_000_001,
        );
        let mut copy = msg.pdu();
        copy["content"] = json!({});
        let read = Event::from_pdu(&copy, &room.room_id).unwrap();
        assert_eq!(read.event_id, msg.event_id);
        assert_eq!(read.content, json!({}));
        let mut changed = msg.pdu();
        changed["content"]["body"] = json!("forged");
        let read = Event::from_pdu(&changed, &room.room_id).unwrap();
        assert_eq!((read.event_id, read.content), (msg.event_id.clone(), json!({})));
        let intact = Event::from_pdu(&msg.pdu(), &room.room_id).unwrap();
        assert_eq!(intact.content, msg.content);
    }
}
