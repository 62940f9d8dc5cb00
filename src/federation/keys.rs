//! Server signing keys: ours (an ed25519 key made on first start and kept in `meta`) and other
//! servers' (fetched from their `/_matrix/key/v2/server` on demand, checked against their own
//! signature, cached in the `server_keys` table and kept after they expire, for old events).

use std::collections::BTreeMap;

use base64::Engine;
use ruma_common::CanonicalJsonObject;
use ruma_signatures::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::events::now_ms;
use crate::store::Store;
use crate::store::tables::{META, SERVER_KEYS};

/// How long others may cache our key document.
pub const VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;

/// Unpadded standard base64, as Matrix writes keys and signatures.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Decodes unpadded (or padded) standard base64.
pub fn unb64(s: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| Error::bad("invalid base64"))
}

/// This server's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// `ed25519:VERSION`.
    pub id: String,
}

impl SigningKey {
    /// Loads the key from `meta`, or makes one and stores it (first start).
    pub async fn load_or_create(store: &Store) -> Result<SigningKey> {
        let existing = {
            let r = store.read()?;
            let meta = r.open_table(META)?;
            let doc = meta.get("signing_key")?.map(|v| v.value().to_vec());
            let version = meta.get("signing_key_version")?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
            doc.zip(version)
        };
        let (doc, version) = match existing {
            Some(found) => found,
            None => {
                let doc = Ed25519KeyPair::generate().to_vec();
                // A short random version: a replaced key gets a new id.
                let version: String =
                    crate::auth::random_id()?.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
                let (d, v) = (doc.clone(), version.clone());
                // Called once at start, before anything else writes: nothing can race this.
                store
                    .write(move |tx| {
                        let mut meta = tx.txn.open_table(META)?;
                        meta.insert("signing_key", d.as_slice())?;
                        meta.insert("signing_key_version", v.as_bytes())?;
                        Ok(())
                    })
                    .await?;
                (doc, version)
            }
        };
        let pair = Ed25519KeyPair::from_der(&doc, version.clone())
            .map_err(|e| Error::Internal(format!("stored signing key: {e}")))?;
        Ok(SigningKey { pair, id: format!("ed25519:{version}") })
    }

    /// The public key, unpadded base64.
    pub fn public_b64(&self) -> String {
        b64(&self.pair.public_key())
    }

    /// Signs `object` as `server` (adds to its `signatures`).
    pub fn sign(&self, server: &str, object: &mut CanonicalJsonObject) -> Result<()> {
        ruma_signatures::sign_json(server, &self.pair, object).map_err(|e| Error::Internal(format!("signing: {e}")))
    }

    /// Signs an event PDU as `server` (room version 12 redaction rules).
    pub fn sign_event(&self, server: &str, object: &mut CanonicalJsonObject) -> Result<()> {
        let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
        ruma_signatures::sign_event(server, &self.pair, object, &rules.redaction)
            .map_err(|e| Error::Internal(format!("signing event: {e}")))
    }

    /// A detached signature of `bytes`, unpadded base64.
    pub fn sign_bytes(&self, bytes: &[u8]) -> String {
        self.pair.sign(bytes).base64()
    }

    /// Our key document for `GET /_matrix/key/v2/server`, self-signed.
    pub fn document(&self, server: &str) -> Result<Value> {
        let doc = json!({
            "server_name": server,
            "valid_until_ts": now_ms() + VALIDITY_MS,
            "verify_keys": { self.id.clone(): { "key": self.public_b64() } },
            "old_verify_keys": {},
        });
        let mut object = to_canonical(doc)?;
        self.sign(server, &mut object)?;
        Ok(Value::from(ruma_common::CanonicalJsonValue::Object(object)))
    }
}

/// JSON as a canonical-JSON object (integers in range, no floats, an object at the top).
pub fn to_canonical(v: Value) -> Result<CanonicalJsonObject> {
    match ruma_common::CanonicalJsonValue::try_from(v) {
        Ok(ruma_common::CanonicalJsonValue::Object(o)) => Ok(o),
        Ok(_) => Err(Error::bad("expected a JSON object")),
        Err(e) => Err(Error::bad(format!("not canonical JSON: {e}"))),
    }
}

/// A key of another server as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedKey {
    /// Unpadded base64 public key.
    pub key: String,
    /// Until when the server vouched for it, ms (for `old_verify_keys`: when it expired).
    pub valid_until_ts: u64,
    /// Listed under `old_verify_keys`: good only for what was signed before it expired.
    pub old: bool,
}

/// Reads a cached key of `server`.
pub fn cached(store: &Store, server: &str, key_id: &str) -> Result<Option<CachedKey>> {
    let r = store.read()?;
    let t = r.open_table(SERVER_KEYS)?;
    match t.get((server, key_id))? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Checks a key document fetched from `server` (its name, its validity, its own signature by
/// every key it lists) and returns its keys by id.
pub fn check_document(server: &str, doc: Value, now: u64) -> Result<BTreeMap<String, CachedKey>> {
    let bad = |m: &str| Error::Unauthorized(format!("key document of {server}: {m}"));
    if doc.get("server_name").and_then(Value::as_str) != Some(server) {
        return Err(bad("names another server"));
    }
    let valid_until = doc.get("valid_until_ts").and_then(Value::as_u64).ok_or_else(|| bad("no valid_until_ts"))?;
    if valid_until <= now {
        return Err(bad("expired"));
    }
    let mut keys = BTreeMap::new();
    let mut set = BTreeMap::new();
    for (id, k) in doc.get("verify_keys").and_then(Value::as_object).ok_or_else(|| bad("no verify_keys"))? {
        let key = k.get("key").and_then(Value::as_str).ok_or_else(|| bad("a key without key"))?;
        if !id.starts_with("ed25519:") || unb64(key).map(|b| b.len()).unwrap_or(0) != 32 {
            continue;
        }
        set.insert(id.clone(), ruma_common::serde::Base64::parse(key).map_err(|_| bad("key is not base64"))?);
        keys.insert(id.clone(), CachedKey { key: key.to_string(), valid_until_ts: valid_until, old: false });
    }
    if keys.is_empty() {
        return Err(bad("no ed25519 key"));
    }
    if let Some(old) = doc.get("old_verify_keys").and_then(Value::as_object) {
        for (id, k) in old {
            if let (Some(key), Some(expired)) =
                (k.get("key").and_then(Value::as_str), k.get("expired_ts").and_then(Value::as_u64))
                && id.starts_with("ed25519:")
            {
                keys.entry(id.clone()).or_insert(CachedKey {
                    key: key.to_string(),
                    valid_until_ts: expired,
                    old: true,
                });
            }
        }
    }
    // Every current key must have signed the document.
    let object = to_canonical(doc)?;
    let sigs =
        object.get("signatures").and_then(|s| s.as_object()).and_then(|s| s.get(server)).and_then(|s| s.as_object());
    for id in set.keys() {
        if !sigs.is_some_and(|s| s.contains_key(id)) {
            return Err(bad("not signed by all of its keys"));
        }
    }
    let mut map = BTreeMap::new();
    map.insert(server.to_string(), set);
    let only_own: CanonicalJsonObject = object
        .into_iter()
        .map(|(k, v)| {
            if k == "signatures" {
                let own = v.as_object().and_then(|s| s.get(server)).cloned();
                let mut m = CanonicalJsonObject::new();
                if let Some(own) = own {
                    m.insert(server.to_string(), own);
                }
                (k, ruma_common::CanonicalJsonValue::Object(m))
            } else {
                (k, v)
            }
        })
        .collect();
    ruma_signatures::verify_json(&map, &only_own).map_err(|e| bad(&format!("bad signature: {e}")))?;
    Ok(keys)
}

/// Stores checked keys of `server` (a newer document replaces what it lists; keys it no longer
/// lists stay, for old events).
pub async fn store_keys(store: &Store, server: String, keys: BTreeMap<String, CachedKey>) -> Result<()> {
    store
        .write(move |tx| {
            let mut t = tx.txn.open_table(SERVER_KEYS)?;
            for (id, k) in &keys {
                let bytes = serde_json::to_vec(k)?;
                t.insert((server.as_str(), id.as_str()), bytes.as_slice())?;
            }
            Ok(())
        })
        .await
}
