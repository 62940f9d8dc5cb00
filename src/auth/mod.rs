//! Accounts and sessions: argon2id passwords, JWT access tokens naming a revocable session,
//! the request extractors that check them, and login rate limits.

pub mod account;
pub mod password;
pub mod ratelimit;
pub mod session;
pub mod token;

pub use session::{PageSession, Session};
pub use token::{Claims, TokenKeys};

/// Name of the cookie that carries the browser's token.
pub const COOKIE: &str = "chat_token";

/// A new random id (sessions): 128 bits from the OS, URL-safe base64.
pub fn random_id() -> crate::error::Result<String> {
    use base64::Engine;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| crate::error::Error::Internal(format!("random source: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}
