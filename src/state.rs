//! `AppState`: the cheap-clone handle every handler and task receives. No globals: tests start
//! several independent servers in one process.

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::TokenKeys;
use crate::auth::ratelimit::RateLimiter;
use crate::config::Limits;
use crate::ids::ServerName;
use crate::live::Hub;
use crate::store::Store;

/// Shared server state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The database.
    pub store: Store,
    /// Live delivery to open connections.
    pub hub: Arc<Hub>,
    /// Token signing keys.
    pub tokens: TokenKeys,
    /// This server's name.
    pub server_name: ServerName,
    /// Size, queue and rate limits.
    pub limits: Limits,
    /// Login attempts per client IP.
    pub logins_per_ip: RateLimiter,
    /// Login attempts per account.
    pub logins_per_account: RateLimiter,
    /// Sign-ups per client IP.
    pub registrations_per_ip: RateLimiter,
    /// Messages per sender.
    pub messages_per_user: RateLimiter,
    /// Server identity and the client for other servers.
    pub federation: Arc<crate::federation::Federation>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Cancelled when the server shuts down; long-lived tasks watch it.
    pub shutdown: CancellationToken,
    /// Call invites waiting for an answer.
    pub calls: Arc<crate::calls::Pending>,
    /// The web listener speaks HTTPS (cookies get `Secure`).
    pub https: bool,
    /// Send `Strict-Transport-Security` (HTTPS with a certificate from files).
    pub hsts: bool,
    /// The built-in TURN relay, unless turned off.
    pub turn: Option<Arc<crate::calls::turn::Relay>>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
