//! Serving HTTP connections with the deadlines a public server needs, which `axum::serve` does
//! not set: a client must send a request's headers within `header_timeout` (hyper's timer;
//! this also closes idle keep-alive connections), a request must be answered within
//! `request_timeout` (a slow body upload is cut off with 408), and at most `max_connections`
//! HTTP connections are served at once (more wait in the kernel's accept queue). Upgraded
//! WebSockets leave this accounting; they have their own heartbeat and per-user cap.

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
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time allowed for a request's headers (and for an idle keep-alive connection).
    pub header_timeout: Duration,
    /// Time allowed for a whole request, body included, until the response starts.
    pub request_timeout: Duration,
    /// HTTP connections served at once.
    pub max_connections: usize,
}

impl ConnLimits {
    /// From the configured limits.
    pub fn from_limits(l: &crate::config::Limits) -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(l.header_timeout_secs),
            request_timeout: Duration::from_secs(l.request_timeout_secs),
            max_connections: l.max_connections,
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
        let app = app.clone();
        let stop = stop.clone();
        let open = OpenConnection::new(&open);
        tracker.spawn(async move {
            let _permit = permit;
            let _open = open;
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let call = app.oneshot(req.map(Body::new));
                    Ok::<Response, Infallible>(match tokio::time::timeout(limits.request_timeout, call).await {
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
