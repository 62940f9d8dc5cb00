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

/// The audience of a call token: it admits another server's user to one room's calls here (the
/// media server), and nothing else. Session tokens have no audience, so neither kind passes for
/// the other.
pub const CALL_AUDIENCE: &str = "chat.call";

/// What a call token says: `sub` (a user of another server) may join `room`'s calls here until
/// `exp`. Issued to the user's server over federation; the user's browser presents it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallClaims {
    /// The user, of the server that asked for the token.
    pub sub: String,
    /// The room whose calls it admits to.
    pub room: String,
    /// Always [`CALL_AUDIENCE`].
    pub aud: String,
    /// Issued at, seconds since epoch.
    pub iat: u64,
    /// Expiry, seconds since epoch.
    pub exp: u64,
}

impl TokenKeys {
    /// Issues a call token for `user` in `room`, valid `ttl` seconds.
    pub fn issue_call(&self, user: &str, room: &str, ttl: u64) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            CallClaims { sub: user.into(), room: room.into(), aud: CALL_AUDIENCE.into(), iat: now, exp: now + ttl };
        encode(&Header::new(Algorithm::HS256), &claims, &self.enc).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Checks a call token's signature, algorithm, audience and expiry.
    pub fn verify_call(&self, token: &str) -> Result<CallClaims> {
        if token.len() > 4096 {
            return Err(Error::Unauthorized("invalid call token".into()));
        }
        let mut validation = self.validation.clone();
        validation.set_audience(&[CALL_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        decode::<CallClaims>(token, &self.dec, &validation).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => Error::Unauthorized("call token expired".into()),
                _ => Error::Unauthorized("invalid call token".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_tokens_and_session_tokens_do_not_pass_for_each_other() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 600);
        let call = keys.issue_call("@ben:b.test", "!r:a.test", 60).unwrap();
        let claims = keys.verify_call(&call).unwrap();
        assert_eq!((claims.sub.as_str(), claims.room.as_str()), ("@ben:b.test", "!r:a.test"));
        assert!(keys.verify(&call).is_err(), "a call token is not a session token");
        let session = keys.issue("@ana:a.test", "sid").unwrap();
        assert!(keys.verify_call(&session).is_err(), "a session token is not a call token");
        let other = TokenKeys::new(b"another secret, another server..", 600);
        assert!(other.verify_call(&call).is_err(), "another server's key");
        let now = jsonwebtoken::get_current_timestamp();
        let claims = CallClaims {
            sub: "@ben:b.test".into(),
            room: "!r:a.test".into(),
            aud: CALL_AUDIENCE.into(),
            iat: now - 120,
            exp: now - 60,
        };
        let expired = encode(&Header::new(Algorithm::HS256), &claims, &keys.enc).unwrap();
        assert!(keys.verify_call(&expired).is_err(), "expired");
    }
}
