//! Accounts and sessions: argon2id passwords, JWT access tokens naming a revocable session,
//! the request extractors that check them, and login rate limits.

pub mod account;
pub mod password;
pub mod ratelimit;
pub mod session;
pub mod token;

pub use session::Session;
pub use token::{Claims, TokenKeys};

use crate::ids::ServerName;
use crate::store::Store;
use ratelimit::RateLimiter;

handle!(
    /// What the account and session services work with. Cheap to clone.
    Accounts => AccountsInner
);

/// What [`Accounts`] holds.
pub struct AccountsInner {
    /// The database.
    pub store: Store,
    /// Token signing keys.
    pub tokens: TokenKeys,
    /// This server's name (local user ids).
    pub server_name: ServerName,
    /// Login attempts per client IP.
    pub logins_per_ip: RateLimiter,
    /// Login attempts per account.
    pub logins_per_account: RateLimiter,
    /// Sign-ups per client IP.
    pub registrations_per_ip: RateLimiter,
    /// Password checks run for sign-ins (`chat_password_checks_total`), the stand-in check for
    /// unknown names included.
    pub password_checks: std::sync::atomic::AtomicU64,
}

/// Name of the cookie that carries the browser's token.
pub const COOKIE: &str = "chat_token";

/// A new random id (sessions): 128 bits from the OS, URL-safe base64.
pub fn random_id() -> crate::error::Result<String> {
    use base64::Engine;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| crate::error::Error::Internal(format!("random source: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}
