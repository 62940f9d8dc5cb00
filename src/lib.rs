//! chat: a self-hosted, federated, real-time chat with browser video calls, in one binary.
//!
//! Map of the crate, bottom layer first (a module uses only its own layer and those below;
//! `docs/architecture.md` has the list that `tests/architecture.rs` checks):
//!
//! - [`error`], [`ids`], [`tls`], [`routes`], [`assets`]: the error enum and its HTTP mapping;
//!   identifiers; HTTPS; a router that lists its routes; the embedded web client's files.
//! - [`config`]: settings (defaults, TOML file, `CHAT_*` environment, flags) and limits.
//! - [`keys`]: our signing key, canonical JSON, base64.
//! - [`events`]: the room event model (Matrix PDU shape), call event types, the auth rules.
//! - [`store`]: the only code that opens redb: tables, the group-commit writer, typed ops.
//! - [`auth`], [`rooms`]: accounts and sessions; room services and aliases.
//! - [`calls`]: call signalling rules and the built-in TURN relay.
//! - [`federation`]: server-to-server traffic and membership that may cross servers.
//! - [`render`]: maud views for the pages and the live frames.
//! - [`live`]: the publisher, the hub and the WebSocket channel.
//! - [`state`]: `AppState`, holding each service's handle for the web layer.
//! - [`admin`], [`metrics`]: the admin socket and operations; `/metrics`.
//! - [`web`]: HTTP routes, extractors, assets, connection serving.
//! - [`server`]: wiring, background tasks, shutdown.

/// Declares `$name`, a cheap-clone handle (an `Arc`) to the struct `$inner`, with `new` and
/// `Deref`: the shape of every service handle ([`auth::Accounts`], [`rooms::Rooms`], ...).
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident => $inner:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(std::sync::Arc<$inner>);

        impl $name {
            /// Wraps the parts.
            pub fn new(inner: $inner) -> Self {
                $name(std::sync::Arc::new(inner))
            }
        }

        impl std::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }
    };
}

pub mod addrs;
pub mod admin;
pub mod assets;
pub mod auth;
pub mod calls;
pub mod config;
pub mod error;
pub mod events;
pub mod federation;
pub mod files;
pub mod format;
pub mod ids;
pub mod keys;
pub mod live;
pub mod media;
pub mod metrics;
pub mod push;
pub mod render;
pub mod rooms;
pub mod routes;
pub mod search;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod web;

pub use config::Config;
pub use server::{Running, start};
