//! Outbound server-to-server HTTPS: server name resolution as Matrix's server discovery says
//! (IP literal or name with a port; `.well-known` delegation; SRV records `_matrix-fed._tcp`
//! then `_matrix._tcp`; else port 8448; results cached with their lifetimes), TLS trusting
//! the system roots
//! plus the optional `federation_ca` file, connections kept open and reused (HTTP/2 where the
//! peer offers it, one connection carrying concurrent requests; else HTTP/1.1 keep-alive),
//! and `X-Matrix` request signing.
//!
//! A name is resolved once and only addresses [`PeerPolicy`] allows are connected to (internal
//! ones only with `federation_private_addresses`), so the server never connects where a forged
//! origin, an alias or a `.well-known` delegation points into its own network. What went
//! wrong is kept in the error for the log and the admin's delivery status; what callers of
//! federation (another server, a user joining by alias) are told is generic ([`public`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::addrs::PeerPolicy;
use crate::error::{Error, Result};
use crate::keys::{SigningKey, to_canonical};

/// Largest response body read from another server.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Port of a server name without one and without delegation.
const DEFAULT_PORT: u16 = 8448;

/// Idle connections kept per (address, host).
const IDLE_PER_PEER: usize = 4;
/// Most (address, host) pairs with idle connections.
const MAX_POOLED_PEERS: usize = 1_000;
/// An idle connection older than this is closed rather than reused (servers close idle
/// connections after a minute or so).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// How long a `.well-known` answer (or its absence) is trusted.
const WELL_KNOWN_TTL: Duration = Duration::from_secs(3600);
/// How long a failed `.well-known` lookup (port 8448 then) is trusted.
const WELL_KNOWN_MISS_TTL: Duration = Duration::from_secs(600);
/// Most server names whose delegation is cached.
const MAX_WELL_KNOWN: usize = 10_000;
/// Most SRV records tried for one name.
const MAX_SRV: usize = 8;

/// Where to reach another server, as server discovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `host:port` to connect to (a host name is resolved to its addresses).
    pub connect: String,
    /// The `Host` header: the server (or delegated) name, with its port if it had one.
    pub host: String,
    /// The name the certificate must be valid for (the host, without port or brackets).
    pub tls_name: String,
}

impl Route {
    /// To `host` (a name or IP literal) at `port`, or 8448.
    fn direct(host: &str, port: Option<u16>) -> Route {
        Route {
            connect: format!("{host}:{}", port.unwrap_or(DEFAULT_PORT)),
            host: port.map_or_else(|| host.to_string(), |p| format!("{host}:{p}")),
            tls_name: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        }
    }
}

/// An open connection to another server: HTTP/2 (shared by concurrent requests) or HTTP/1.1
/// (one request at a time).
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<axum::body::Body>),
    H2(hyper::client::conn::http2::SendRequest<axum::body::Body>),
}

impl Conn {
    /// Another handle on an HTTP/2 connection, which concurrent requests share; `None` for
    /// HTTP/1.1, which carries one request at a time.
    fn shared(&self) -> Option<Conn> {
        match self {
            Conn::H1(_) => None,
            Conn::H2(s) => Some(Conn::H2(s.clone())),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
        }
    }

    async fn send(
        &mut self,
        req: axum::http::Request<axum::body::Body>,
    ) -> hyper::Result<axum::http::Response<hyper::body::Incoming>> {
        match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

/// An open connection to another server, ready for its next request.
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Counters of the client's connections, for `/metrics`.
#[derive(Default)]
pub struct ConnCounters {
    /// Requests sent to other servers.
    pub requests: AtomicU64,
    /// TLS connections opened to other servers.
    pub opened: AtomicU64,
    /// Of those, the ones speaking HTTP/2.
    pub opened_h2: AtomicU64,
}

/// The HTTPS client for other servers (rustls with the ring provider, HTTP/1.1 through
/// hyper), with connect, handshake and response deadlines. Connections stay open after a
/// request and are reused by the next one to the same address and host name; a request that
/// fails on a reused connection before any answer (the peer closed it meanwhile) is sent once
/// more on a new one (every federation request is idempotent).
pub struct FedClient {
    tls: tokio_rustls::TlsConnector,
    policy: PeerPolicy,
    request_timeout: Duration,
    idle: Mutex<HashMap<(String, String), Vec<Idle>>>,
    routes: Mutex<HashMap<String, (Route, Instant)>>,
    /// DNS for SRV records (and, with `federation_dns`, addresses); none if the system has no
    /// usable resolver configuration.
    dns: Option<hickory_resolver::TokioResolver>,
    /// Addresses through `dns` rather than the system's lookup (`federation_dns` is set).
    dns_for_addresses: bool,
    /// Requests and connections, for `/metrics`.
    pub counters: ConnCounters,
}

/// Time to connect and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the whole exchange once connected, unless set (`with_request_timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl FedClient {
    /// A client trusting the system's roots and, if given, the CA certificates in `ca_file`,
    /// connecting only to addresses `policy` allows, asking `dns` (else the system's
    /// resolvers) for names.
    pub fn new(
        ca_file: Option<&std::path::Path>,
        policy: PeerPolicy,
        dns: Option<std::net::SocketAddr>,
        http2: bool,
    ) -> std::result::Result<FedClient, String> {
        let mut extra = Vec::new();
        if let Some(path) = ca_file {
            use rustls_pki_types::pem::PemObject;
            extra = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("federation_ca {}: {e}", path.display()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| format!("federation_ca {}: {e}", path.display()))?;
            if extra.is_empty() {
                return Err(format!("federation_ca {}: no certificate in it", path.display()));
            }
        }
        let tls = crate::tls::client_connector(extra, http2).map_err(|e| match ca_file {
            Some(path) => format!("federation_ca {}: {e}", path.display()),
            None => e,
        })?;
        Ok(FedClient {
            tls,
            policy,
            request_timeout: REQUEST_TIMEOUT,
            idle: Mutex::default(),
            routes: Mutex::default(),
            dns: resolver(dns),
            dns_for_addresses: dns.is_some(),
            counters: ConnCounters::default(),
        })
    }

    /// The same client with another deadline for an exchange once connected
    /// (`limits.federation_request_timeout_secs`).
    pub fn with_request_timeout(mut self, timeout: Duration) -> FedClient {
        self.request_timeout = timeout;
        self
    }

    /// Where to reach a server name, as Matrix's server discovery says: an IP literal or a
    /// name with a port as it is; else `https://NAME/.well-known/matrix/server` may delegate
    /// (to an IP literal or a name with a port, as it is; to a bare name, whose SRV records
    /// are asked next); else the name's SRV records (`_matrix-fed._tcp`, then the older
    /// `_matrix._tcp`); else port 8448. Cached: an hour with a delegation, ten minutes
    /// without, no longer than the SRV records live.
    pub async fn route(&self, server: &str) -> Result<Route> {
        let name = crate::ids::ServerName::parse(server)?;
        let (host, port) = split_host_port(name.as_str());
        if port.is_some() || is_ip_literal(host) {
            return Ok(Route::direct(host, port));
        }
        let cached =
            self.routes.lock().ok().and_then(|m| m.get(host).filter(|(_, until)| *until > Instant::now()).cloned());
        if let Some((route, _)) = cached {
            return Ok(route);
        }
        let (route, until) = match self.well_known(host).await {
            Some(to) => {
                let (h, p) = split_host_port(&to);
                let found = Instant::now() + WELL_KNOWN_TTL;
                match (p.is_some() || is_ip_literal(h)).then(|| Route::direct(h, p)) {
                    Some(route) => (route, found),
                    None => match self.srv(h).await {
                        Some((route, srv_until)) => (route, srv_until.min(found)),
                        None => (Route::direct(h, None), found),
                    },
                }
            }
            None => match self.srv(host).await {
                Some((route, srv_until)) => (route, srv_until.min(Instant::now() + WELL_KNOWN_TTL)),
                None => (Route::direct(host, None), Instant::now() + WELL_KNOWN_MISS_TTL),
            },
        };
        if let Ok(mut m) = self.routes.lock() {
            if m.len() >= MAX_WELL_KNOWN {
                let now = Instant::now();
                m.retain(|_, (_, until)| *until > now);
                if m.len() >= MAX_WELL_KNOWN {
                    m.clear();
                }
            }
            m.insert(host.to_string(), (route.clone(), until));
        }
        Ok(route)
    }

    /// The server name `host`'s `.well-known/matrix/server` delegates to, if it does.
    async fn well_known(&self, host: &str) -> Option<String> {
        let route = Route { connect: format!("{host}:443"), host: host.to_string(), tls_name: host.to_string() };
        let (status, v) =
            self.exchange(&route, host, Method::GET, "/.well-known/matrix/server", None, None).await.ok()?;
        if !status.is_success() {
            return None;
        }
        let to = crate::ids::ServerName::parse(v.get("m.server")?.as_str()?).ok()?;
        Some(to.as_str().to_string())
    }

    /// The route the SRV records of `host` give, and until when they hold: the record of the
    /// lowest priority (then highest weight) whose target is a name; the certificate and `Host`
    /// stay `host`'s.
    async fn srv(&self, host: &str) -> Option<(Route, Instant)> {
        let dns = self.dns.as_ref()?;
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let Ok(found) = dns.srv_lookup(format!("{service}.{host}.")).await else { continue };
            let mut records: Vec<&hickory_resolver::proto::rr::rdata::SRV> = found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::SRV(srv) => Some(srv),
                    _ => None,
                })
                .take(MAX_SRV)
                .collect();
            records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
            let best = records.into_iter().find(|r| !r.target.is_root() && r.port != 0);
            if let Some(r) = best {
                let target = r.target.to_ascii();
                let route = Route {
                    connect: format!("{}:{}", target.trim_end_matches('.'), r.port),
                    host: host.to_string(),
                    tls_name: host.to_string(),
                };
                return Some((route, found.valid_until()));
            }
        }
        None
    }

    /// An unsigned GET (key documents).
    pub async fn get(&self, server: &str, path: &str) -> Result<(StatusCode, Value)> {
        let route = self.route(server).await?;
        self.exchange(&route, server, Method::GET, path, None, None).await
    }

    /// A request signed as `origin` with `key`, to `destination`.
    pub async fn signed(
        &self,
        key: &SigningKey,
        origin: &str,
        destination: &str,
        method: Method,
        path: &str,
        content: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let sig = SignedRequest { origin, destination, method: method.as_str(), uri: path, content: content.as_ref() }
            .sign(key)?;
        let auth =
            format!("X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{}\",sig=\"{sig}\"", key.id);
        let route = self.route(destination).await?;
        self.exchange(&route, destination, method, path, content, Some(auth)).await
    }

    /// A signed GET whose answer the caller reads as it comes (a file), on a connection of its
    /// own; the answer's head within the request timeout.
    pub async fn signed_stream(
        &self,
        key: &SigningKey,
        origin: &str,
        destination: &str,
        path: &str,
    ) -> Result<axum::http::Response<hyper::body::Incoming>> {
        let sig = SignedRequest { origin, destination, method: "GET", uri: path, content: None }.sign(key)?;
        let auth =
            format!("X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{}\",sig=\"{sig}\"", key.id);
        let route = self.route(destination).await?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.open(&route.connect, destination, &route.tls_name).await?;
        let req = request(&conn, &route, &Method::GET, path, None, Some(&auth))?;
        tokio::time::timeout(self.request_timeout, conn.send(req))
            .await
            .map_err(|_| Error::Unavailable(format!("{destination}: no answer in time")))?
            .map_err(|e| Error::Unavailable(format!("{destination}: {e}")))
    }

    /// One HTTPS request along `route` (an idle connection there if there is one, else a new
    /// one); `server` names the peer in errors.
    async fn exchange(
        &self,
        route: &Route,
        server: &str,
        method: Method,
        path: &str,
        content: Option<Value>,
        auth: Option<String>,
    ) -> Result<(StatusCode, Value)> {
        let key = (route.connect.clone(), route.tls_name.clone());
        let body = content.as_ref().map(serde_json::to_vec).transpose()?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let late = || Error::Unavailable(format!("{server}: no answer in time"));
        // A connection the peer closed while it sat idle fails before any answer: then once
        // more on a new connection. Each attempt has the request timeout.
        while let Some(mut conn) = self.take_idle(&key) {
            let req = request(&conn, route, &method, path, body.clone(), auth.as_deref())?;
            match tokio::time::timeout(self.request_timeout, conn.send(req)).await.map_err(|_| late())? {
                Ok(res) => return self.read(server, key, conn, res).await,
                Err(e) if e.is_canceled() || e.is_closed() || e.is_incomplete_message() => continue,
                Err(e) => return Err(Error::Unavailable(format!("{server}: {e}"))),
            }
        }
        let mut conn = self.open(&route.connect, server, &route.tls_name).await?;
        let req = request(&conn, route, &method, path, body, auth.as_deref())?;
        let sent = tokio::time::timeout(self.request_timeout, conn.send(req)).await.map_err(|_| late())?;
        let res = sent.map_err(|e| Error::Unavailable(format!("{server}: {e}")))?;
        self.read(server, key, conn, res).await
    }

    /// A new TLS connection to `authority` (the certificate checked for `host`), ready for a
    /// request: HTTP/2 if the peer chose it, else HTTP/1.1.
    async fn open(&self, authority: &str, server: &str, host: &str) -> Result<Conn> {
        let sni = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| Error::bad(format!("{server} is not a host name")))?;
        let connect = async {
            let tcp = self.connect(authority).await?;
            let _ = tcp.set_nodelay(true);
            self.tls.connect(sni, tcp).await
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| Error::Unavailable(format!("cannot reach {server}: timed out")))?
            .map_err(|e| Error::Unavailable(format!("cannot reach {server}: {e}")))?;
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        let unreachable = |e: hyper::Error| Error::Unavailable(format!("cannot reach {server}: {e}"));
        // The connection's task ends when either side closes it (or every sender is dropped).
        if crate::tls::is_h2(&stream) {
            self.counters.opened_h2.fetch_add(1, Ordering::Relaxed);
            let (sender, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .max_header_list_size(64 * 1024)
                .handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(unreachable)?;
            tokio::spawn(conn);
            return Ok(Conn::H2(sender));
        }
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(unreachable)?;
        tokio::spawn(conn);
        Ok(Conn::H1(sender))
    }

    /// Reads an answer (at most [`MAX_RESPONSE`] bytes, within the request timeout) and puts
    /// the connection back for the next request.
    async fn read(
        &self,
        server: &str,
        key: (String, String),
        conn: Conn,
        res: axum::http::Response<hyper::body::Incoming>,
    ) -> Result<(StatusCode, Value)> {
        let status = res.status();
        let read = axum::body::to_bytes(axum::body::Body::new(res.into_body()), MAX_RESPONSE);
        let bytes = tokio::time::timeout(self.request_timeout, read)
            .await
            .map_err(|_| Error::Unavailable(format!("{server}: no answer in time")))?
            .map_err(|_| Error::bad(format!("{server}: response too large or cut off")))?;
        self.put_idle(key, conn);
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| Error::bad(format!("{server}: response is not JSON")))?
        };
        Ok((status, value))
    }

    /// An idle connection to `key` that is still open and young enough, if any. An HTTP/2
    /// connection stays in the pool for concurrent requests (the caller gets a handle on it).
    fn take_idle(&self, key: &(String, String)) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        list.retain(|c| !c.conn.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
        let shared = list.iter_mut().find_map(|c| {
            let handle = c.conn.shared()?;
            c.since = Instant::now();
            Some(handle)
        });
        let found = shared.or_else(|| list.pop().map(|c| c.conn));
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keeps a connection whose answer was read whole for the next request to `key` (an
    /// HTTP/2 connection once: it is shared).
    fn put_idle(&self, key: (String, String), conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else { return };
        if !idle.contains_key(&key) && idle.len() >= MAX_POOLED_PEERS {
            idle.retain(|_, l| {
                l.retain(|c| !c.conn.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
                !l.is_empty()
            });
            if idle.len() >= MAX_POOLED_PEERS {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        if conn.shared().is_some() {
            // The pool keeps one handle on it; this one is the same connection.
            match list.iter_mut().find(|c| c.conn.shared().is_some()) {
                Some(kept) => kept.since = Instant::now(),
                None => list.push(Idle { conn, since: Instant::now() }),
            }
            return;
        }
        if list.len() < IDLE_PER_PEER {
            list.push(Idle { conn, since: Instant::now() });
        }
    }
}

/// A request to another server as `conn` speaks it: HTTP/1.1 with the path and a `Host`
/// header, HTTP/2 with the whole URL (its `:authority`).
fn request(
    conn: &Conn,
    route: &Route,
    method: &Method,
    path: &str,
    body: Option<Vec<u8>>,
    auth: Option<&str>,
) -> Result<axum::http::Request<axum::body::Body>> {
    let mut req = axum::http::Request::builder()
        .method(method.clone())
        .header("user-agent", concat!("chat/", env!("CARGO_PKG_VERSION")));
    req = match conn {
        Conn::H1(_) => req.uri(path).header("host", route.host.as_str()),
        Conn::H2(_) => req.uri(format!("https://{}{path}", route.host)),
    };
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let body = body.map(axum::body::Body::from).unwrap_or_else(axum::body::Body::empty);
    req.body(body).map_err(|e| Error::bad(format!("request: {e}")))
}

impl FedClient {
    /// A TCP connection to `authority`, resolved once; each address the policy allows is tried
    /// in turn, and none other is ever connected to (no second lookup to rebind).
    /// The addresses of `authority` (`host:port`): through `federation_dns` when it is set,
    /// else the system's lookup (hosts file included).
    async fn addresses(&self, authority: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        let (host, port) = split_host_port(authority);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let (Some(dns), Some(port), false) =
            (self.dns.as_ref().filter(|_| self.dns_for_addresses), port, is_ip_literal(host))
        {
            let found = dns
                .lookup_ip(format!("{bare}."))
                .await
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{bare}: {e}")))?;
            return Ok(found.iter().map(|ip| std::net::SocketAddr::new(ip, port)).collect());
        }
        Ok(tokio::net::lookup_host(authority).await?.collect())
    }

    async fn connect(&self, authority: &str) -> std::io::Result<tokio::net::TcpStream> {
        use std::io::{Error as IoError, ErrorKind};
        let addrs = self.addresses(authority).await?;
        let allowed: Vec<_> = addrs.iter().filter(|a| self.policy.allows(a.ip())).collect();
        if allowed.is_empty() {
            return Err(IoError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{authority} resolves to {} only, which federation_private_addresses does not allow",
                    addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let mut last = None;
        for addr in allowed {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| IoError::new(ErrorKind::NotFound, "no address")))
    }
}

/// A resolver asking `server`, or the system's resolvers; none if neither is usable.
fn resolver(server: Option<std::net::SocketAddr>) -> Option<hickory_resolver::TokioResolver> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => match hickory_resolver::Resolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::info!(error = %e, "no DNS configuration: other servers' SRV records are not looked up");
                return None;
            }
        },
    };
    builder.build().map_err(|e| tracing::warn!(error = %e, "DNS resolver")).ok()
}

/// An IP address, IPv6 in brackets or not.
fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok()
}

/// What a caller of federation is told when `server` could not be reached or answered nothing
/// usable: the same words whether the port was closed, filtered, spoke no TLS, showed a wrong
/// certificate or the address was refused, so that the answer reveals nothing about the network
/// around this server. The detail goes to the log.
pub fn public(server: &str, e: &Error) -> Error {
    tracing::info!(server, error = %e, "federation request failed");
    Error::Unavailable(format!("cannot reach {server}"))
}

/// `host:port` / `[v6]:port` / `host` -> (host, port).
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (&s[..h.len() + 2], tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().ok()),
        _ => (s, None),
    }
}

/// What an `X-Matrix` signature covers, as the Matrix server-server API's request
/// authentication says: the canonical JSON of `method`, `uri`, `origin`, `destination` and, if
/// the request has a body, `content`. No time is signed, so the same request signs the same
/// way every time: replays are kept out by TLS, and repeating a request changes nothing (a
/// transaction is remembered by its id, a join or invite by its event id).
pub struct SignedRequest<'a> {
    /// Sending server.
    pub origin: &'a str,
    /// Receiving server.
    pub destination: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path and query, as sent.
    pub uri: &'a str,
    /// The JSON body, if any.
    pub content: Option<&'a Value>,
}

impl SignedRequest<'_> {
    /// The canonical JSON text that is signed.
    pub fn canonical(&self) -> Result<String> {
        let mut o = json!({
            "method": self.method, "uri": self.uri, "origin": self.origin, "destination": self.destination,
        });
        if let Some(c) = self.content {
            o["content"] = c.clone();
        }
        ruma_signatures::to_canonical_json_string_for_signing(&to_canonical(o)?)
            .map_err(|e| Error::Internal(format!("canonical JSON: {e}")))
    }

    /// Our signature of it (unpadded base64).
    pub fn sign(&self, key: &SigningKey) -> Result<String> {
        Ok(key.sign_bytes(self.canonical()?.as_bytes()))
    }
}
