//! chat: a self-hosted, federated, real-time chat with browser video calls, in one binary.
//!
//! Map of the crate (one line per module, what it owns):
//!
//! - [`config`]  settings: defaults, TOML file, `CHAT_*` environment, flags; limits.
//! - [`error`]   the one error enum and its mapping to HTTP status and JSON body.
//! - [`ids`]     identifier newtypes and parsing: user ids, room ids, event ids, server names.
//! - [`state`]   `AppState`, the cheap-clone handle passed to every handler and task.
//! - [`server`]  binds the listener, wires the parts, serves until shutdown, then drains.
//! - [`store`]   everything that touches redb: tables, the group-commit writer, typed queries.
//! - [`events`]  the room event model (Matrix PDU shape): hashing, ids, content types.
//! - [`admin`]   the admin socket in the data directory: backups of a running server.
//! - [`auth`]    passwords (argon2id), tokens (JWT), sessions, extractors, rate limits.
//! - [`rooms`]   room services and the authorization rules for every room event.
//! - [`calls`]   call signalling rules and the built-in TURN relay (guard, TCP, credentials).
//! - [`metrics`] `/metrics` (Prometheus text) on its own loopback listener.
//! - [`live`]    the WebSocket channel: hub, per-connection queues, catch-up, frames.
//! - [`tls`]     HTTPS: certificate loading and reload, self-signed certificates, the TLS listener.
//! - [`web`]     HTTP routes: JSON API, maud pages and fragments, embedded assets.

pub mod admin;
pub mod auth;
pub mod calls;
pub mod config;
pub mod error;
pub mod events;
pub mod federation;
pub mod ids;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod render;
pub mod rooms;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod web;

pub use config::Config;
pub use server::{Running, start};
