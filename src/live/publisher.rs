//! The publisher: the one thread between the writer and the hub. The writer thread hands each
//! committed batch over and goes on committing; this thread renders the frames (JSON and HTML,
//! outside any lock) and delivers them, batch after batch in commit order. A waiter may
//! therefore get its acknowledgement a moment before its own live frame; clients handle both
//! orders (a pending message is matched by its event id either way).
//!
//! A dedicated thread rather than a task: delivery latency to a thousand connections was
//! 10-40% worse at p99 when the publisher waited for a turn among the connections' tasks on
//! the runtime (`chat-load fanout`, see docs/benchmarks.md).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::Hub;
use super::notify::Notifier;
use crate::store::events::StoredEvent;

/// Committed batches waiting for the publisher. When it falls this far behind, the writer waits
/// (back-pressure) rather than buffering without bound.
pub const PUBLISH_QUEUE: usize = 1024;

/// The writer's end: hands batches to the publisher thread.
pub struct Publisher {
    tx: SyncSender<Vec<Arc<StoredEvent>>>,
}

/// The publisher thread; it ends once the writer (every [`Publisher`]) has let go.
pub struct PublisherThread(Option<JoinHandle<()>>);

impl PublisherThread {
    /// Waits for the thread to deliver what it was handed and end (after the writer stopped).
    pub fn join(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl Publisher {
    /// Starts the publisher thread for `hub`; after delivery, messages go on to `notifier`.
    pub fn start(hub: Arc<Hub>, notifier: Notifier) -> (Publisher, PublisherThread) {
        let (tx, rx) = sync_channel::<Vec<Arc<StoredEvent>>>(PUBLISH_QUEUE);
        let handle =
            std::thread::Builder::new().name("chat-publisher".into()).spawn(move || run(&hub, &rx, &notifier)).ok();
        (Publisher { tx }, PublisherThread(handle))
    }

    /// Called on the writer thread after a commit; waits only while the queue is full. After
    /// the publisher ended it does nothing.
    pub fn committed(&self, batch: Vec<Arc<StoredEvent>>) {
        if !batch.is_empty() {
            let _ = self.tx.send(batch);
        }
    }
}

fn run(hub: &Hub, rx: &Receiver<Vec<Arc<StoredEvent>>>, notifier: &Notifier) {
    while let Ok(batch) = rx.recv() {
        let rendered = Hub::render(&batch);
        hub.deliver(&rendered);
        batch.iter().for_each(|stored| notifier.committed(stored));
    }
}
