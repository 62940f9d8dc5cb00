//! The TURN relay inside `chat serve` (webrtc-rs `turn` crate behind our [`super::guard::Guard`]),
//! and the short-lived credentials the web app hands to browsers.
//!
//! Credentials follow the TURN REST API scheme: `username = "<expiry unix secs>:<session>:<user
//! id>"`, `password = base64(HMAC-SHA1(secret, username))`. The secret is generated once and
//! kept in the store (`meta.turn_secret`), so credentials survive a restart until they expire.
//! A new allocation also needs the session the credential was minted for to be alive: signing
//! out, a password change and a disable end it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use turn::auth::AuthHandler;
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::vnet::net::Net;

use super::guard::{Guard, PeerPolicy, Quotas};
use super::tcp::TcpMux;
use crate::config::TurnConfig;

/// Whether a session (`sid`) of `user` is alive, for new allocations.
pub type SessionCheck = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Mints and checks TURN REST credentials.
pub struct Credentials {
    secret: Vec<u8>,
    realm: String,
    ttl: Duration,
    sessions: Option<SessionCheck>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Credentials {
    /// Credentials signed with `secret`, valid for `ttl` once minted.
    pub fn new(secret: Vec<u8>, realm: String, ttl: Duration) -> Self {
        Credentials { secret, realm, ttl, sessions: None }
    }

    /// Checks sessions with `check` before new allocations (without it, any well-signed,
    /// unexpired credential allocates).
    pub fn with_sessions(mut self, check: SessionCheck) -> Self {
        self.sessions = Some(check);
        self
    }

    /// Whether the session behind `username` (a well-signed one) still allows new allocations.
    pub fn session_alive(&self, username: &str) -> bool {
        let Some(check) = &self.sessions else { return true };
        let mut parts = username.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(sid), Some(user)) => check(sid, user),
            _ => false,
        }
    }

    /// The realm the relay announces.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn password(&self, username: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.secret);
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, username.as_bytes()).as_ref())
    }

    /// A (username, password) pair for `user` in session `sid`, valid for the configured
    /// lifetime from `now`.
    pub fn mint(&self, user: &str, sid: &str, now: u64) -> (String, String) {
        let username = format!("{}:{sid}:{user}", now + self.ttl.as_secs());
        let password = self.password(&username);
        (username, password)
    }

    /// The user id inside a TURN REST username.
    pub fn user_of(username: &str) -> Option<&str> {
        username.splitn(3, ':').nth(2).filter(|u| !u.is_empty())
    }

    /// The long-term key (MD5 of `username:realm:password`) for a username that is ours, well
    /// formed and not expired.
    pub fn key_for(&self, username: &str, realm: &str) -> Option<Vec<u8>> {
        if realm != self.realm || username.len() > 512 {
            return None;
        }
        let (expiry, user) = username.split_once(':')?;
        let expiry: u64 = expiry.parse().ok()?;
        if user.is_empty() || expiry < unix_now() {
            return None;
        }
        Some(turn::auth::generate_auth_key(username, realm, &self.password(username)))
    }
}

struct Auth(Arc<Credentials>);

impl AuthHandler for Auth {
    fn auth_handle(&self, username: &str, realm: &str, _src: SocketAddr) -> Result<Vec<u8>, turn::Error> {
        self.0.key_for(username, realm).ok_or_else(|| turn::Error::Other("bad or expired credentials".into()))
    }
}

/// What `GET /api/v1/turn` returns: an `RTCIceServer` plus the credential's lifetime.
#[derive(Debug, Clone, Serialize)]
pub struct IceServer {
    /// `stun:` and `turn:` URLs (UDP and TCP) of this server's relay.
    pub urls: Vec<String>,
    /// TURN REST username.
    pub username: String,
    /// TURN REST password.
    pub credential: String,
    /// Seconds the credential stays valid.
    pub ttl: u64,
}

/// A running relay.
pub struct Relay {
    /// The bound address (UDP and TCP share the port).
    pub addr: SocketAddr,
    /// The address clients are told to use and relayed addresses are reported on.
    pub public: SocketAddr,
    /// Credential minting and checking.
    pub creds: Arc<Credentials>,
    /// Allocation quotas and refusal counters.
    pub quotas: Arc<Quotas>,
    server: Server,
    stop: CancellationToken,
}

/// The address to advertise when the relay listens on all addresses and none is configured: the
/// first IPv4 address of an interface that is not loopback or link-local (a LAN start).
/// The ports relayed addresses get (the system's ephemeral range, where the relay's sockets
/// bound to port 0 land): on its own addresses the relay reaches only these.
fn relay_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32768, 60999))
}

/// This machine's first non-loopback, non-link-local IPv4 address.
pub fn guess_public_ip() -> Option<IpAddr> {
    let interfaces = webrtc_util::ifaces::ifaces().ok()?;
    interfaces.iter().filter_map(|i| i.addr.map(|a| a.ip())).find(|ip| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(_) => false,
    })
}

/// A UDP socket with `SO_REUSEPORT`, so several can share one port: the kernel keeps each
/// client on one socket (by address hash), and each socket has its own read loop and core.
fn reuseport_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Bursts of media from many clients: a larger receive queue drops less under load.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Binds `count` UDP sockets and one TCP listener on the same port (a free one when the port
/// is 0).
async fn bind_all(addr: SocketAddr, count: usize) -> Result<(Vec<UdpSocket>, TcpListener), String> {
    let mut last = String::new();
    for _ in 0..20 {
        let first = reuseport_udp(addr).map_err(|e| format!("turn.listen: cannot bind UDP {addr}: {e}"))?;
        let bound = first.local_addr().map_err(|e| e.to_string())?;
        let mut udp = vec![first];
        for _ in 1..count {
            udp.push(reuseport_udp(bound).map_err(|e| format!("turn.listen: cannot bind UDP {bound}: {e}"))?);
        }
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = e.to_string(),
            Err(e) => return Err(format!("turn.listen: cannot bind TCP {bound}: {e}")),
        }
    }
    Err(format!("turn.listen: no port free for both UDP and TCP: {last}"))
}

impl Relay {
    /// Starts the relay. `web_ip` is the web listener's address, the default for both the
    /// listen and the public address.
    pub async fn start(
        cfg: &TurnConfig,
        web_ip: IpAddr,
        secret: Vec<u8>,
        realm: String,
        sessions: SessionCheck,
        media: Option<crate::addrs::MediaAddrs>,
    ) -> Result<Relay, String> {
        let listen = cfg.listen.unwrap_or(SocketAddr::new(web_ip, crate::config::DEFAULT_TURN_PORT));
        let public_ip = match cfg.public_ip {
            Some(ip) => ip,
            None if !listen.ip().is_unspecified() => listen.ip(),
            None => match guess_public_ip() {
                Some(ip) => {
                    tracing::warn!(
                        %ip,
                        "TURN relay listens on all addresses: advertising {ip}; set turn.public_ip \
                         (CHAT_TURN_PUBLIC_IP) if browsers reach this server at another address"
                    );
                    ip
                }
                None => {
                    return Err(format!(
                        "turn.public_ip: required when the relay listens on all addresses ({listen}) and \
                         this machine has no non-loopback IPv4 address; set it (CHAT_TURN_PUBLIC_IP) to the \
                         address browsers reach this server at, or turn the relay off (CHAT_TURN_DISABLED=true)"
                    ));
                }
            },
        };
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let (udp, tcp) = bind_all(listen, threads).await?;
        let addr = udp[0].local_addr().map_err(|e| e.to_string())?;
        let stop = CancellationToken::new();
        let creds = Arc::new(
            Credentials::new(secret, realm, Duration::from_secs(cfg.credential_ttl_secs)).with_sessions(sessions),
        );
        let quotas = Quotas::new(cfg.allocations_per_user, cfg.allocations_total);
        let policy = PeerPolicy {
            own: [Some(public_ip), Some(listen.ip()).filter(|ip| !ip.is_unspecified())],
            own_ports: relay_ports(),
            media,
            ..PeerPolicy::new(cfg.allow_private_peers)
        };
        let mux = TcpMux::start(tcp, cfg.allocations_total, stop.clone()).map_err(|e| e.to_string())?;
        let net = Arc::new(Net::new(None));
        let relay_gen = || -> Box<RelayAddressGeneratorStatic> {
            Box::new(RelayAddressGeneratorStatic {
                relay_address: public_ip,
                address: listen.ip().to_string(),
                net: net.clone(),
            })
        };
        let guard = |inner: Arc<dyn webrtc_util::Conn + Send + Sync>| {
            let g = Arc::new(Guard::new(inner, creds.clone(), policy, quotas.clone(), stop.clone()));
            tokio::spawn(g.clone().answer_forgotten());
            g
        };
        let (closed_tx, mut closed_rx) = tokio::sync::mpsc::channel(256);
        let mut conn_configs: Vec<ConnConfig> = udp
            .into_iter()
            .map(|u| ConnConfig { conn: guard(Arc::new(u)), relay_addr_generator: relay_gen() })
            .collect();
        conn_configs.push(ConnConfig { conn: guard(mux), relay_addr_generator: relay_gen() });
        let server = Server::new(ServerConfig {
            conn_configs,
            realm: creds.realm().to_string(),
            auth_handler: Arc::new(Auth(creds.clone())),
            channel_bind_timeout: Duration::from_secs(0),
            alloc_close_notify: Some(closed_tx),
        })
        .await
        .map_err(|e| format!("cannot start the TURN relay: {e}"))?;
        let q = quotas.clone();
        tokio::spawn(async move {
            while let Some(info) = closed_rx.recv().await {
                q.released(info.five_tuple.src_addr);
            }
        });
        let public = SocketAddr::new(public_ip, addr.port());
        tracing::info!(%addr, %public, allow_private_peers = cfg.allow_private_peers, "TURN relay listening (UDP and TCP)");
        Ok(Relay { addr, public, creds, quotas, server, stop })
    }

    /// Fresh credentials for `user` in session `sid`, as the browser's ICE server entry.
    pub fn ice_server(&self, user: &str, sid: &str) -> IceServer {
        let (username, credential) = self.creds.mint(user, sid, unix_now());
        let host = match self.public.ip() {
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.public.port()),
            IpAddr::V4(ip) => format!("{ip}:{}", self.public.port()),
        };
        IceServer {
            urls: vec![
                format!("stun:{host}"),
                format!("turn:{host}?transport=udp"),
                format!("turn:{host}?transport=tcp"),
            ],
            username,
            credential,
            ttl: self.creds.ttl.as_secs(),
        }
    }

    /// Stops every listener and drops every allocation.
    pub async fn close(&self) {
        self.stop.cancel();
        let _ = self.server.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_expire() {
        let c = Credentials::new(b"secret".to_vec(), "chat".into(), Duration::from_secs(600));
        let (user, pass) = c.mint("@ana:example.org", "s1", unix_now());
        assert!(user.ends_with(":s1:@ana:example.org"));
        assert_eq!(Credentials::user_of(&user), Some("@ana:example.org"));
        let key = c.key_for(&user, "chat").unwrap();
        assert_eq!(key, turn::auth::generate_auth_key(&user, "chat", &pass));
        assert!(c.key_for(&user, "other").is_none(), "another realm");
        let (old, _) = c.mint("@ana:example.org", "s1", unix_now() - 601);
        assert!(c.key_for(&old, "chat").is_none(), "expired");
        assert!(c.key_for("nonsense", "chat").is_none());
        assert!(c.key_for("12:", "chat").is_none());
        // The password is the standard TURN REST one: base64(HMAC-SHA1(secret, username)).
        let other = Credentials::new(b"secret".to_vec(), "chat".into(), Duration::from_secs(1));
        assert_eq!(other.password("1700000000:@ana:x"), "lGBG8jhQ09vfBF5+md1rMcTamx0=");
        // With a session check, only a live session's credentials allocate.
        let c = c.with_sessions(Arc::new(|sid: &str, user: &str| sid == "s1" && user == "@ana:example.org"));
        assert!(c.session_alive(&user));
        assert!(!c.session_alive(&c.mint("@ana:example.org", "s2", unix_now()).0));
        assert!(!c.session_alive("12:s1"));
    }
}
