//! JWT access tokens: HS256 only (pinned on decode), short expiry, naming a session id that
//! the server can revoke.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Session id; the token is valid only while this session exists.
    pub sid: String,
    /// Issued at, seconds since epoch.
    pub iat: u64,
    /// Expiry, seconds since epoch.
    pub exp: u64,
}

/// The server's token keys and lifetime.
#[derive(Clone)]
pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    /// Lifetime of new tokens in seconds.
    pub ttl: u64,
}

impl TokenKeys {
    /// Keys from the server's stored secret.
    pub fn new(secret: &[u8], ttl: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys { enc: EncodingKey::from_secret(secret), dec: DecodingKey::from_secret(secret), validation, ttl }
    }

    /// Issues a token for a session.
    pub fn issue(&self, user_id: &str, sid: &str) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: user_id.into(), sid: sid.into(), iat: now, exp: now + self.ttl };
        encode(&Header::new(Algorithm::HS256), &claims, &self.enc).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Checks signature, algorithm and expiry. Does not check that the session still exists.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        if token.len() > 4096 {
            return Err(Error::Unauthorized("invalid token".into()));
        }
        decode::<Claims>(token, &self.dec, &self.validation).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => Error::Unauthorized("token expired".into()),
                _ => Error::Unauthorized("invalid token".into()),
            }
        })
    }
}
