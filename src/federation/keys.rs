//! Other servers' signing keys: fetched from their `/_matrix/key/v2/server` on demand, checked
//! against their own signature, cached by the store (`Store::server_key`, `put_server_keys`)
//! and kept after they expire, for old events. Our own key is [`crate::keys::SigningKey`], its bytes in `meta`.

use std::collections::BTreeMap;

use ruma_common::CanonicalJsonObject;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::keys::{SigningKey, to_canonical, unb64};
use crate::store::Store;
use crate::store::keys::CachedKey;

/// Loads this server's signing key, making and storing one on first start.
pub async fn load_signing_key(store: &Store) -> Result<SigningKey> {
    let (der, version) = store.signing_key(SigningKey::generate).await?;
    SigningKey::from_der(&der, version)
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
