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
    /// Login attempts per account and client IP (`"name ip"`).
    pub logins_per_account: RateLimiter,
    /// Login attempts per account from IPs it has not signed in from.
    pub logins_per_account_all_ips: RateLimiter,
    /// The IPs each account signed in from lately, exempt from `logins_per_account_all_ips`.
    pub known_ips: KnownIps,
    /// Sign-ups per client IP.
    pub registrations_per_ip: RateLimiter,
    /// Password checks run for sign-ins (`chat_password_checks_total`), the stand-in check for
    /// unknown names included.
    pub password_checks: std::sync::atomic::AtomicU64,
}

/// The last few client IPs each account signed in from, in memory, bounded.
#[derive(Default)]
pub struct KnownIps(std::sync::Mutex<std::collections::HashMap<String, Vec<std::net::IpAddr>>>);

/// IPs remembered per account.
const KNOWN_IPS_PER_ACCOUNT: usize = 8;
/// Accounts with remembered IPs; beyond it the map starts over (the exemption is a courtesy).
const KNOWN_IPS_ACCOUNTS: usize = 100_000;

impl KnownIps {
    /// Whether `name` signed in from `ip` lately.
    pub fn contains(&self, name: &str, ip: std::net::IpAddr) -> bool {
        self.0.lock().map(|m| m.get(name).is_some_and(|ips| ips.contains(&ip))).unwrap_or(false)
    }

    /// Remembers a successful sign-in of `name` from `ip`.
    pub fn remember(&self, name: &str, ip: std::net::IpAddr) {
        let Ok(mut m) = self.0.lock() else { return };
        if m.len() >= KNOWN_IPS_ACCOUNTS && !m.contains_key(name) {
            m.clear();
        }
        let ips = m.entry(name.to_string()).or_default();
        ips.retain(|i| *i != ip);
        ips.push(ip);
        if ips.len() > KNOWN_IPS_PER_ACCOUNT {
            ips.remove(0);
        }
    }
}

/// Name of the cookie that carries the browser's token.
pub const COOKIE: &str = "chat_token";

pub use crate::ids::random_id;
