//! `AppState`: the handle the web layer gives its handlers, holding each service's own handle.
//! No globals: tests start several independent servers in one process. Services below this
//! layer never see `AppState`, only their own handle ([`Accounts`], [`Rooms`], [`Calls`],
//! [`FedState`], [`LiveState`]); extractors reach those through `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Accounts;
use crate::calls::Calls;
use crate::config::Limits;
use crate::federation::{FedState, Federation};
use crate::ids::ServerName;
use crate::live::{Hub, LiveState};
use crate::rooms::Rooms;
use crate::store::Store;

handle!(
    /// Shared server state, for the web layer. Cheap to clone.
    AppState => Inner
);

/// What [`AppState`] holds.
pub struct Inner {
    /// The database.
    pub store: Store,
    /// Live delivery to open connections.
    pub hub: Arc<Hub>,
    /// This server's name.
    pub server_name: ServerName,
    /// Size, queue and rate limits.
    pub limits: Limits,
    /// Accounts, sessions and tokens.
    pub accounts: Accounts,
    /// Room services.
    pub rooms: Rooms,
    /// Call services.
    pub calls: Calls,
    /// Files people share.
    pub media: crate::media::Media,
    /// Notification settings and Web Push.
    pub push: crate::push::Push,
    /// Full-text search; none when the setting turns it off.
    pub search: Option<crate::search::Search>,
    /// Federation (its own parts are `fed.federation`).
    pub fed: FedState,
    /// The live channel.
    pub live: LiveState,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Host names requests may name (lower case, no port): the server name's host, `localhost`
    /// and `extra_hostnames`; IP addresses are always accepted.
    pub hostnames: Vec<String>,
    /// Cancelled when the server shuts down; long-lived tasks watch it.
    pub shutdown: CancellationToken,
    /// The web listener speaks HTTPS (cookies get `Secure`).
    pub https: bool,
    /// Send `Strict-Transport-Security` (HTTPS with a certificate from files).
    pub hsts: bool,
    /// The built-in TURN relay, unless turned off.
    pub turn: Option<Arc<crate::calls::turn::Relay>>,
    /// The certificate in use and its reload counters (HTTPS only).
    pub tls: Option<Arc<crate::tls::Certs>>,
    /// HTTP connections being served now (upgraded WebSockets leave this count).
    pub http_connections: Arc<std::sync::atomic::AtomicU64>,
    /// Every background task of the server: shutdown waits for them all.
    pub tasks: TaskTracker,
}

impl AppState {
    /// Federation's own parts: our key, the client, the outbound queues.
    pub fn federation(&self) -> &Arc<Federation> {
        &self.fed.federation
    }
}

impl FromRef<AppState> for Accounts {
    fn from_ref(s: &AppState) -> Accounts {
        s.accounts.clone()
    }
}

impl FromRef<AppState> for FedState {
    fn from_ref(s: &AppState) -> FedState {
        s.fed.clone()
    }
}

impl FromRef<AppState> for LiveState {
    fn from_ref(s: &AppState) -> LiveState {
        s.live.clone()
    }
}
