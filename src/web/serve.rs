//! Serving HTTP connections with the deadlines a public server needs, which `axum::serve` does
//! not set: a client must send a request's headers within `header_timeout` (hyper's timer;
//! this also closes idle keep-alive connections), a request must be answered within
//! `request_timeout` (a slow body upload is cut off with 408; a file upload has an hour, and
//! must not stall for `request_timeout`), and at most `max_connections`
//! HTTP connections are served at once (more wait in the kernel's accept queue), at most
//! `max_connections_per_ip` of them from one client address (more are closed at once, so a few
//! hundred idle connections from one address cannot hold every place; trusted proxies are not
//! limited). Upgraded WebSockets leave this accounting; they have their own heartbeat and
//! per-user cap. Over TLS a client may choose HTTP/2 (ALPN): one connection then carries up
//! to 100 requests at once, and is closed when no request has been in flight for
//! `header_timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// Requests one HTTP/2 connection may carry at once.
const H2_STREAMS: u32 = 100;
/// Largest header list of an HTTP/2 request, in bytes.
const H2_MAX_HEADERS: u32 = 64 * 1024;

/// An HTTP/2 connection's requests: how many are in flight, and when the last one began or
/// ended, so that a connection nobody uses is closed.
struct Activity {
    in_flight: AtomicU64,
    ever: std::sync::atomic::AtomicBool,
    since: std::sync::Mutex<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicU64::new(0),
            ever: std::sync::atomic::AtomicBool::new(false),
            since: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl Activity {
    /// A request begins; it ends when the guard is dropped.
    fn start(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.ever.store(true, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    fn touch(&self) {
        if let Ok(mut t) = self.since.lock() {
            *t = std::time::Instant::now();
        }
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.since.lock().map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// A request in flight on an HTTP/2 connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
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
    L::Io: crate::tls::Negotiated,
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
            let h2 = crate::tls::Negotiated::is_h2(&io);
            let activity = Arc::new(Activity::default());
            let requests = activity.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                // HTTP/2 names the host in the request's authority, not a `Host` header; the
                // pages' checks (same origin, the server's own address) read the header.
                if !req.headers().contains_key(header::HOST)
                    && let Some(host) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                {
                    req.headers_mut().insert(header::HOST, host);
                }
                let app = app.clone();
                let busy = requests.start();
                async move {
                    let _busy = busy;
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
            if h2 {
                // HTTP/2 (TLS chose it): no upgrades (a browser's WebSocket comes over
                // HTTP/1.1, as the server does not offer WebSockets over HTTP/2). A connection
                // with no request in flight and none begun for `header_timeout` is closed, as
                // an idle HTTP/1.1 connection is.
                let conn = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(H2_STREAMS)
                    .max_header_list_size(H2_MAX_HEADERS)
                    .serve_connection(TokioIo::new(io), service);
                tokio::pin!(conn);
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tokio::select! {
                        _ = conn.as_mut() => break,
                        _ = stop.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                            break;
                        }
                        _ = tick.tick() => {
                            if activity.idle_for() >= limits.header_timeout {
                                // One that never sent a request may not have finished the
                                // handshake, which a graceful close would wait for.
                                if activity.ever.load(Ordering::Relaxed) {
                                    conn.as_mut().graceful_shutdown();
                                    let _ = conn.await;
                                }
                                break;
                            }
                        }
                    }
                }
                return;
            }
            // HTTP/1.1: hyper's version sniffing for HTTP/2 (without TLS) would wait for a
            // first byte with no deadline at all, so none is offered there.
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
