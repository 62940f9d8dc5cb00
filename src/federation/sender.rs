//! The outbound side: a persistent queue per destination, drained by one task per lane.
//!
//! Rows of `fed_queue` are written in the same transaction as the event they name (see
//! `store::events::enqueue`), so an acknowledged event is also an event that will be sent. Each
//! destination has two lanes ([`Lane`]): call signalling, and everything else. A lane has one
//! transaction in flight; on failure it waits (1 s doubling up to
//! `limits.federation_retry_max_secs`, with jitter) unless the destination contacts us, which
//! retries at once. New call events also cut the call lane's wait short, so a call never waits
//! behind a message backlog or a long backoff. Rows are deleted once the destination answered
//! 200, except those of events it refused for a rate (`M_LIMIT_EXCEEDED`): they go again after
//! the wait it asked for. Queues left at shutdown are picked up at the next start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use super::FedState;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::events::now_ms;
use crate::store::outbox::Lane;

/// Most PDUs in one transaction (Matrix's limit).
pub const MAX_PDUS: usize = 50;
/// Most destinations tracked (peers with a sender task).
pub const MAX_PEERS: usize = 10_000;

/// What the admin page shows about one destination.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStatus {
    /// When the current run of failures began (ms), if failing.
    pub failing_since: Option<u64>,
    /// The last error, if failing.
    pub last_error: Option<String>,
    /// When a transaction last succeeded (ms).
    pub last_ok: Option<u64>,
    /// Transactions delivered since start.
    pub delivered: u64,
    /// Failed attempts in the current run.
    pub failures: u32,
}

/// One destination.
pub struct Peer {
    lanes: [Notify; 2],
    contact: Notify,
    status: Mutex<PeerStatus>,
}

impl Peer {
    fn ok(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.failing_since = None;
            s.last_error = None;
            s.failures = 0;
            s.last_ok = Some(now_ms());
            s.delivered += 1;
        }
    }

    fn failed(&self, e: &str) {
        if let Ok(mut s) = self.status.lock() {
            s.failing_since.get_or_insert_with(now_ms);
            s.last_error = Some(e.chars().take(300).collect());
            s.failures = s.failures.saturating_add(1);
        }
    }
}

/// The set of destinations and their sender tasks.
pub struct Outbox {
    pending: Mutex<Vec<String>>,
    wake: Notify,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    max_backoff: Duration,
}

impl Outbox {
    /// An outbox whose retry wait grows to at most `max_backoff`.
    pub fn new(max_backoff: Duration) -> Outbox {
        Outbox { pending: Mutex::new(Vec::new()), wake: Notify::new(), peers: Mutex::new(HashMap::new()), max_backoff }
    }

    /// Called after a commit that queued rows for `destinations` (on the writer thread: it only
    /// records them and rings the manager).
    pub fn wake(&self, destinations: &[String]) {
        if destinations.is_empty() {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            for d in destinations {
                if !p.contains(d) && p.len() < MAX_PEERS {
                    p.push(d.clone());
                }
            }
        }
        self.wake.notify_one();
    }

    /// A verified request from `origin` arrived: if we were backing off from it, retry now.
    pub fn contacted(&self, origin: &str) {
        let peer = self.peers.lock().ok().and_then(|p| p.get(origin).cloned());
        if let Some(peer) = peer {
            peer.contact.notify_waiters();
        }
    }

    /// Every destination's status, sorted by name.
    pub fn statuses(&self) -> Vec<(String, PeerStatus)> {
        let peers: Vec<(String, Arc<Peer>)> =
            self.peers.lock().map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        let mut out: Vec<(String, PeerStatus)> =
            peers.into_iter().map(|(k, v)| (k, v.status.lock().map(|s| s.clone()).unwrap_or_default())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(20));
        let capped = base.min(self.max_backoff);
        // Jitter: between half and all of the wait, so peers that failed together spread out.
        let mut b = [0u8; 2];
        let _ = getrandom::fill(&mut b);
        let frac = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
        capped.mul_f64(frac)
    }
}

/// Runs the outbox: starts lanes for every destination with queued rows, then for each
/// destination a commit names. Returns at shutdown.
pub async fn run(state: FedState) {
    let outbox = state.federation.outbox.clone();
    match state.store.queue_depths() {
        Ok(depths) => {
            for (d, _, _) in depths {
                ensure(&state, &d);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the federation queue"),
    }
    loop {
        tokio::select! {
            _ = outbox.wake.notified() => {}
            _ = state.shutdown.cancelled() => return,
        }
        let pending = outbox.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        for d in pending {
            ensure(&state, &d);
        }
    }
}

/// Rings `dest`'s lanes (starting them if new): something is waiting for it.
pub fn ring(state: &FedState, dest: &str) {
    ensure(state, dest);
}

/// The peer for `dest`, its two lanes started if new, and both lanes rung.
fn ensure(state: &FedState, dest: &str) {
    let outbox = &state.federation.outbox;
    let Ok(mut peers) = outbox.peers.lock() else { return };
    let peer = match peers.get(dest) {
        Some(p) => p.clone(),
        None => {
            if peers.len() >= MAX_PEERS {
                tracing::warn!(dest, "too many federation destinations; not sending");
                return;
            }
            let p = Arc::new(Peer {
                lanes: [Notify::new(), Notify::new()],
                contact: Notify::new(),
                status: Mutex::new(PeerStatus::default()),
            });
            peers.insert(dest.to_string(), p.clone());
            for lane in Lane::ALL {
                state.tasks.spawn(run_lane(state.clone(), dest.to_string(), lane, p.clone()));
            }
            p
        }
    };
    for n in &peer.lanes {
        n.notify_one();
    }
}

async fn run_lane(state: FedState, dest: String, lane: Lane, peer: Arc<Peer>) {
    let mut failures = 0u32;
    loop {
        let rows = match state.store.queued(&dest, lane, MAX_PDUS) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(dest, error = %e, "cannot read the federation queue");
                Vec::new()
            }
        };
        if rows.is_empty() {
            if lane == Lane::Rest && send_edus(&state, &dest).await {
                continue;
            }
            tokio::select! {
                _ = peer.lanes[usize::from(lane.index())].notified() => continue,
                _ = state.shutdown.cancelled() => return,
            }
        }
        match send_transaction(&state, &dest, lane, &rows).await {
            Ok(later) => {
                failures = 0;
                peer.ok();
                // Events the destination refused for a rate stay queued and go again after the
                // wait it asked for; the others are done.
                let delivered = rows
                    .iter()
                    .filter(|(_, ev)| ev.as_ref().is_none_or(|ev| !later.events.contains(ev.event_id.as_str())))
                    .map(|(p, _)| *p)
                    .collect();
                let deleted = state.store.dequeue(dest.clone(), lane, delivered).await;
                if let Err(e) = deleted {
                    tracing::error!(dest, error = %e, "cannot clear sent federation rows");
                    if state.shutdown.is_cancelled() {
                        return;
                    }
                }
                if lane == Lane::Rest {
                    send_edus(&state, &dest).await;
                }
                if !later.events.is_empty() {
                    let wait = later.after.min(state.federation.outbox.max_backoff);
                    tracing::info!(
                        dest,
                        events = later.events.len(),
                        wait_ms = wait.as_millis() as u64,
                        "the destination asked to send events again later"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = state.shutdown.cancelled() => return,
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                peer.failed(&e.to_string());
                let wait = state.federation.outbox.backoff(failures);
                tracing::info!(dest, lane = lane.index(), failures, wait_ms = wait.as_millis() as u64, error = %e, "federation delivery failed; will retry");
                let call_arrived = async {
                    if lane == Lane::Calls { peer.lanes[0].notified().await } else { std::future::pending().await }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = peer.contact.notified() => failures = 0,
                    _ = call_arrived => {}
                    _ = state.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Sends `dest`'s waiting EDUs in a transaction of their own (a new id each time: they are
/// never sent twice); returns whether there were any. EDUs that fail are dropped.
async fn send_edus(state: &FedState, dest: &str) -> bool {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let edus = state.federation.edus.take(dest);
    if edus.is_empty() {
        return false;
    }
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let txn_id = format!("edu.{}.{seq}", now_ms());
    let count = edus.len();
    let body = json!({ "origin": state.server_name.as_str(), "origin_server_ts": now_ms(), "pdus": [], "edus": edus });
    let path = format!("/_matrix/federation/v1/send/{txn_id}");
    let sent = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), dest, Method::PUT, &path, Some(body))
        .await;
    match sent {
        Ok((StatusCode::OK, _)) => {}
        Ok((status, answer)) => tracing::info!(dest, count, %status, %answer, "EDUs refused; dropped"),
        Err(e) => tracing::info!(dest, count, error = %e, "EDUs not delivered; dropped"),
    }
    true
}

/// Events a destination refused for a rate (`M_LIMIT_EXCEEDED` in its answer), to be sent
/// again after `after`.
#[derive(Default)]
struct SendLater {
    events: std::collections::HashSet<String>,
    after: Duration,
}

/// PUTs one transaction. Its id is derived from the rows, so a retry after a crash sends the
/// same id and the receiver can answer it without processing it twice (a receiver of ours does
/// not remember a transaction it refused events of for a rate, so sending it again is heard).
async fn send_transaction(
    state: &FedState,
    dest: &str,
    lane: Lane,
    rows: &[(u64, Option<Event>)],
) -> Result<SendLater> {
    let mut pdus = Vec::with_capacity(rows.len());
    // An event gone (its room deleted here) is simply not sent.
    for ev in rows.iter().filter_map(|(_, ev)| ev.as_ref()) {
        pdus.push(state.federation.wire_pdu(state.server_name.as_str(), ev)?);
    }
    let (first, last) = (rows.first().map(|r| r.0).unwrap_or(0), rows.last().map(|r| r.0).unwrap_or(0));
    let txn_id = format!("{lane}.{first}.{last}");
    let body = json!({ "origin": state.server_name.as_str(), "origin_server_ts": now_ms(), "pdus": pdus });
    let path = format!("/_matrix/federation/v1/send/{txn_id}");
    let (status, answer) = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), dest, Method::PUT, &path, Some(body))
        .await?;
    if status != StatusCode::OK {
        return Err(Error::Unavailable(format!("{dest} answered {status}: {answer}")));
    }
    let mut later = SendLater::default();
    for (id, result) in answer["pdus"].as_object().into_iter().flatten() {
        if result["errcode"] == "M_LIMIT_EXCEEDED" {
            later.events.insert(id.clone());
            let ms = result["retry_after_ms"].as_u64().unwrap_or(1000).max(100);
            later.after = later.after.max(Duration::from_millis(ms));
        }
    }
    Ok(later)
}
