//! The live channel: one WebSocket per tab. After each commit the publisher renders the
//! batch's frames and the hub rings the connections; each connection catches up from the store
//! by stream position whenever it falls behind.

pub mod frames;
pub mod hub;
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
}
