//! This server's signing key, canonical JSON and the base64 Matrix writes keys and signatures
//! in. Low in the layers so that events can be hashed and signed without federation; the key's
//! bytes are kept by the store (`meta`), other servers' keys by `federation::keys`.

use base64::Engine;
use ruma_common::CanonicalJsonObject;
use ruma_signatures::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use crate::error::{Error, Result};

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

/// Canonical JSON text of `v` as Matrix hashes it: object keys sorted, no insignificant
/// whitespace, UTF-8 unescaped. `serde_json::Value` keeps objects in a `BTreeMap` (the
/// `preserve_order` feature is off), so its compact printer already sorts keys; printing a
/// `Value` cannot fail. Values from other servers are first checked by [`to_canonical`], which
/// also refuses floats and out-of-range integers.
pub fn canonical_string(v: &Value) -> String {
    v.to_string()
}

/// JSON as a canonical-JSON object (integers in range, no floats, an object at the top).
pub fn to_canonical(v: Value) -> Result<CanonicalJsonObject> {
    match ruma_common::CanonicalJsonValue::try_from(v) {
        Ok(ruma_common::CanonicalJsonValue::Object(o)) => Ok(o),
        Ok(_) => Err(Error::bad("expected a JSON object")),
        Err(e) => Err(Error::bad(format!("not canonical JSON: {e}"))),
    }
}

/// This server's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// `ed25519:VERSION`.
    pub id: String,
}

impl SigningKey {
    /// A new key: its PKCS#8 DER bytes and a short random version (a replaced key gets a new
    /// id), to be stored and then opened with [`SigningKey::from_der`].
    pub fn generate() -> Result<(Vec<u8>, String)> {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("random source: {e}")))?;
        let version = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(b)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        Ok((Ed25519KeyPair::generate().to_vec(), version))
    }

    /// Opens a stored key.
    pub fn from_der(der: &[u8], version: String) -> Result<SigningKey> {
        let pair = Ed25519KeyPair::from_der(der, version.clone())
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

    /// Our key document for `GET /_matrix/key/v2/server`, self-signed, valid from `now_ms`.
    pub fn document(&self, server: &str, now_ms: u64) -> Result<Value> {
        let doc = json!({
            "server_name": server,
            "valid_until_ts": now_ms + VALIDITY_MS,
            "verify_keys": { self.id.clone(): { "key": self.public_b64() } },
            "old_verify_keys": {},
        });
        let mut object = to_canonical(doc)?;
        self.sign(server, &mut object)?;
        Ok(Value::from(ruma_common::CanonicalJsonValue::Object(object)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_known_answers_from_the_matrix_appendix() {
        let v = json!({"one": 1, "two": "Two"});
        assert_eq!(canonical_string(&v), r#"{"one":1,"two":"Two"}"#);
        let v = json!({"b": "2", "a": "1"});
        assert_eq!(canonical_string(&v), r#"{"a":"1","b":"2"}"#);
        let v = json!({"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {
            "display_name": "John Doe", "three_pids": [
                {"medium": "email", "address": "john.doe@example.org"},
                {"medium": "msisdn", "address": "123456789"}]}}});
        assert_eq!(
            canonical_string(&v),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        let v = json!({"a": "日本語"});
        assert_eq!(canonical_string(&v), r#"{"a":"日本語"}"#);
    }

    #[test]
    fn a_generated_key_opens_and_signs() {
        let (der, version) = SigningKey::generate().expect("key");
        assert!(!version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric()));
        let key = SigningKey::from_der(&der, version.clone()).expect("opens");
        assert_eq!(key.id, format!("ed25519:{version}"));
        let doc = key.document("a.test", 1).expect("document");
        assert_eq!(doc["verify_keys"][&key.id]["key"], json!(key.public_b64()));
        assert!(doc["signatures"]["a.test"][&key.id].is_string());
    }
}
