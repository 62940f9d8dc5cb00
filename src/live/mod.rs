//! The live channel: one WebSocket per tab. After each commit the publisher renders the
//! batch's frames and the hub rings the connections; each connection catches up from the store
//! by stream position whenever it falls behind.

pub mod frames;
pub mod guest;
pub mod hub;
pub mod notify;
pub mod publisher;
pub mod socket;

pub use hub::Hub;
pub use publisher::Publisher;

use crate::calls::Calls;
use crate::config::Limits;
use crate::rooms::Rooms;
use crate::store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

handle!(
    /// What the live channel works with. Cheap to clone.
    LiveState => LiveStateInner
);

/// What [`LiveState`] holds.
pub struct LiveStateInner {
    /// The database (catch-up).
    pub store: Store,
    /// Live delivery to open connections.
    pub hub: std::sync::Arc<Hub>,
    /// Frame, queue and catch-up limits.
    pub limits: Limits,
    /// Cancelled at shutdown; connections close.
    pub shutdown: CancellationToken,
    /// The room services (sends, read markers).
    pub rooms: Rooms,
    /// The call services (signals).
    pub calls: Calls,
    /// The server's background tasks: connections belong to it, so shutdown waits for them.
    pub tasks: TaskTracker,
    /// Federation: typing notices and receipts go to the rooms' other servers.
    pub fed: crate::federation::FedState,
    /// The media server for room calls, if it runs.
    pub sfu: Option<crate::calls::sfu::Sfu>,
}

/// Shows what other servers told us (typing notices, read receipts, presence) to the rooms'
/// online members, until shutdown.
pub async fn show_remote(
    hub: std::sync::Arc<Hub>,
    mut incoming: tokio::sync::mpsc::Receiver<crate::federation::ephemeral::Incoming>,
    shutdown: CancellationToken,
) {
    use crate::federation::ephemeral::Incoming;
    loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => return,
            item = incoming.recv() => item,
        };
        match item {
            None => return,
            Some(Incoming::Typing { room, user, typing }) => {
                hub.set_remote_typing(&user, &room, typing, std::time::Instant::now())
            }
            Some(Incoming::Receipt { room, user, pos }) => hub.remote_receipt(&room, &user, pos),
            Some(Incoming::CallRoster { room, origin, calls }) => {
                hub.set_remote_calls(&room, &origin, calls, std::time::Instant::now())
            }
            Some(Incoming::Presence { user, presence, rooms }) => {
                if let Some(p) = hub::Presence::parse(presence) {
                    hub.set_remote_presence(&user, p, &rooms, std::time::Instant::now());
                }
            }
        }
    }
}

/// Sends local users' presence changes (as the hub announces them) to the servers of their
/// rooms, until shutdown.
pub async fn send_presence(
    fed: crate::federation::FedState,
    mut changes: tokio::sync::mpsc::Receiver<(String, hub::Presence)>,
    shutdown: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.recv() => c,
        };
        let Some((user, presence)) = change else { return };
        let Ok(user) = crate::ids::UserId::parse(&user) else { continue };
        crate::federation::ephemeral::presence(&fed, &user, presence.as_str());
    }
}

/// Stores the record of each call through the media server that ends here (see
/// [`crate::calls::record_call`]), until shutdown.
pub async fn record_calls(
    calls: Calls,
    mut ended: tokio::sync::mpsc::Receiver<hub::EndedCall>,
    shutdown: CancellationToken,
) {
    loop {
        let call = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = ended.recv() => c,
        };
        let Some(call) = call else { return };
        let Ok(room) = crate::ids::RoomId::parse(&call.room) else { continue };
        let out =
            crate::calls::record_call(&calls, &room, &call.conf_id, call.started_ms, call.duration_ms, &call.people)
                .await;
        if let Err(e) = out {
            tracing::warn!(room = %call.room, error = %e, "cannot store a call's record");
        }
    }
}

/// Tells the rooms' other servers who is in the calls held here: each change as the hub
/// announces it, and every [`hub::ROSTER_RENEWAL`] again for the calls still running (their word
/// expires after [`hub::REMOTE_CALLS_TTL`], so a call this server lost in a crash goes), until
/// shutdown.
pub async fn send_rosters(
    fed: crate::federation::FedState,
    mut changes: tokio::sync::mpsc::Receiver<(String, hub::RoomCalls)>,
    shutdown: CancellationToken,
) {
    let mut running: std::collections::HashMap<String, hub::RoomCalls> = std::collections::HashMap::new();
    let mut renew = tokio::time::interval(hub::ROSTER_RENEWAL);
    renew.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.recv() => {
                let Some((room, calls)) = c else { return };
                let Ok(rid) = crate::ids::RoomId::parse(&room) else { continue };
                crate::federation::ephemeral::call_roster(&fed, &rid, &calls);
                if calls.is_empty() {
                    running.remove(&room);
                } else {
                    running.insert(room, calls);
                }
            }
            _ = renew.tick() => {
                for (room, calls) in &running {
                    if let Ok(rid) = crate::ids::RoomId::parse(room) {
                        crate::federation::ephemeral::call_roster(&fed, &rid, calls);
                    }
                }
            }
        }
    }
}
