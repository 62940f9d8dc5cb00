//! The publisher: the one task between the writer and the hub. The writer thread hands each
//! committed batch over and goes on committing; this task renders the frames (JSON and HTML,
//! outside any lock) and delivers them, batch after batch in commit order. A waiter may
//! therefore get its acknowledgement a moment before its own live frame; clients handle both
//! orders (a pending message is matched by its event id either way).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Hub;
use crate::store::events::StoredEvent;

/// Committed batches waiting for the publisher. When it falls this far behind, the writer waits
/// (back-pressure) rather than buffering without bound.
pub const PUBLISH_QUEUE: usize = 1024;

/// The writer's end: hands batches to the publisher task.
pub struct Publisher {
    tx: mpsc::Sender<Vec<Arc<StoredEvent>>>,
}

impl Publisher {
    /// Starts the publisher task for `hub`; it stops at shutdown or when the writer lets go.
    pub fn start(hub: Arc<Hub>, tasks: &TaskTracker, shutdown: CancellationToken) -> Publisher {
        let (tx, mut rx) = mpsc::channel::<Vec<Arc<StoredEvent>>>(PUBLISH_QUEUE);
        tasks.spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = rx.recv() => match b {
                        Some(b) => b,
                        None => return,
                    },
                    _ = shutdown.cancelled() => return,
                };
                let rendered = Hub::render(&batch);
                hub.deliver(&rendered);
            }
        });
        Publisher { tx }
    }

    /// Called on the writer thread after a commit. Never called from an async task (it may
    /// block while the queue is full); after the publisher stopped it does nothing.
    pub fn committed(&self, batch: &[Arc<StoredEvent>]) {
        if batch.is_empty() {
            return;
        }
        let _ = self.tx.blocking_send(batch.to_vec());
    }
}
