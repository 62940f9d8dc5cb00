//! Serving HTTP connections with the deadlines a public server needs, which `axum::serve` does
//! not set: a client must send a request's headers within `header_timeout` (hyper's timer;
//! this also closes idle keep-alive connections), a request must be answered within
//! `request_timeout` (a slow body upload is cut off with 408; a file upload has an hour, and
//! must not stall for `request_timeout`), and at most `max_connections`
//! HTTP connections are served at once (more wait in the kernel's accept queue), at most
//! `max_connections_per_ip` of them from one client address (more are closed at once, so a few
//! hundred idle connections from one address cannot hold every place; trusted proxies are not
//! limited). Upgraded WebSockets leave this accounting; they have their own heartbeat and
//! per-user cap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Connection deadlines and caps; see the module docs.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time allowed for a request's headers (and for an idle keep-alive connection).
    pub header_timeout: Duration,
    /// Time allowed for a whole request, body included, until the response starts.
    pub request_timeout: Duration,
    /// HTTP connections served at once.
    pub max_connections: usize,
    /// HTTP connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Peers not limited per address (reverse proxies).
    pub unlimited: Arc<[ipnet::IpNet]>,
}

impl ConnLimits {
    /// From the configured limits and trusted proxies.
    pub fn from_limits(l: &crate::config::Limits, trusted_proxies: &[ipnet::IpNet]) -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(l.header_timeout_secs),
            request_timeout: Duration::from_secs(l.request_timeout_secs),
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            unlimited: trusted_proxies.into(),
        }
    }
}

/// Counts a connection in the open-connections gauge while it lives.
struct OpenConnection(Arc<AtomicU64>);

impl OpenConnection {
    fn new(open: &Arc<AtomicU64>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish (graceful shutdown
/// of every connection) and returns when all connections have closed.
pub async fn serve<L>(mut listener: L, app: Router, stop: CancellationToken, limits: ConnLimits, open: Arc<AtomicU64>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = crate::addrs::PerClient::new(|| ());
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (io, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            c = listener.accept() => c,
        };
        let address_slot = if limits.unlimited.iter().any(|n| n.contains(&peer.ip())) {
            None
        } else {
            match per_address.claim(peer.ip(), limits.max_connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, "too many connections from this address: closed");
                    drop(io);
                    continue;
                }
            }
        };
        let app = app.clone();
        let limits = limits.clone();
        let stop = stop.clone();
        let open = OpenConnection::new(&open);
        tracker.spawn(async move {
            let _permit = permit;
            let _open = open;
            let _address_slot = address_slot;
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    // A file upload may take long on a slow line; it must keep moving instead
                    // (see `media::Media::upload`).
                    let deadline = if req.uri().path() == crate::media::UPLOAD_PATH {
                        limits.request_timeout.max(crate::media::UPLOAD_TIMEOUT)
                    } else {
                        limits.request_timeout
                    };
                    let call = app.oneshot(req.map(Body::new));
                    Ok::<Response, Infallible>(match tokio::time::timeout(deadline, call).await {
                        Ok(Ok(res)) => res,
                        Ok(Err(never)) => match never {},
                        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
                    })
                }
            });
            // HTTP/1.1 only (TLS offers no other protocol in ALPN): hyper's version sniffing
            // for HTTP/2 would wait for a first byte with no deadline at all.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}
