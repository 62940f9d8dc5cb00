//! VAPID (RFC 8292): the server's P-256 key that push services know it by. Browsers are given
//! its public half when they subscribe (`applicationServerKey`); each push carries a JWT
//! signed with it (ES256, by `jsonwebtoken`), naming the push service's origin. The key is made
//! once and kept in the store, so subscriptions outlive restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde_json::json;

use crate::error::{Error, Result};

/// A JWT is made for this long (push services accept up to 24 hours).
const JWT_SECS: u64 = 12 * 3600;
/// And used again until this much of its life is left.
const RENEW_SECS: u64 = 3600;

/// The server's VAPID key and the JWTs made with it, one per push service origin.
pub struct Vapid {
    encoding: EncodingKey,
    /// The public key, uncompressed SEC1, base64url without padding.
    public: String,
    /// Who runs this server (`sub`): a `mailto:` or `https:` URL.
    contact: String,
    jwts: Mutex<HashMap<String, (String, u64)>>,
}

impl Vapid {
    /// The key from its 32-byte secret scalar.
    pub fn new(secret: &[u8], contact: String) -> Result<Vapid> {
        let key =
            p256::SecretKey::from_slice(secret).map_err(|_| Error::Internal("the VAPID key is not valid".into()))?;
        let der = key.to_pkcs8_der().map_err(|e| Error::Internal(format!("VAPID key: {e}")))?;
        let public = key.public_key().as_affine().to_encoded_point(false);
        Ok(Vapid {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            public: b64url(public.as_bytes()),
            contact,
            jwts: Mutex::default(),
        })
    }

    /// The public key browsers subscribe with.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a push to `audience` (the endpoint's origin) at `now`
    /// (seconds since epoch).
    pub fn authorization(&self, audience: &str, now: u64) -> Result<String> {
        let mut jwts = self.jwts.lock().map_err(|_| Error::Internal("VAPID cache poisoned".into()))?;
        if let Some((jwt, exp)) = jwts.get(audience)
            && *exp > now + RENEW_SECS
        {
            return Ok(format!("vapid t={jwt}, k={}", self.public));
        }
        let exp = now + JWT_SECS;
        let claims = json!({"aud": audience, "exp": exp, "sub": self.contact});
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("VAPID signature: {e}")))?;
        if jwts.len() >= 1024 {
            jwts.clear();
        }
        jwts.insert(audience.to_string(), (jwt.clone(), exp));
        Ok(format!("vapid t={jwt}, k={}", self.public))
    }
}

/// Base64url without padding, as Web Push writes keys.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, padded or not (browsers give either).
pub fn from_b64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}
