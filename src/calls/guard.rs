//! The front door of the TURN relay: every packet a client sends passes through [`Guard`] before
//! the `turn` crate sees it, and every answer passes back through it.
//!
//! The crate relays for anyone with valid credentials to any address. The guard adds what a relay
//! on the public internet needs:
//! - **Credentials** are checked here first (TURN REST form), so a bad or expired one gets
//!   `401 Unauthorized` (the crate answers 400).
//! - **Peer policy**: CreatePermission and ChannelBind naming a loopback, private, link-local,
//!   multicast or unspecified address get `403 Forbidden`, and Send indications to one are
//!   dropped, unless private peers are allowed (TURN as a door into the LAN is the classic SSRF);
//!   on the server's own addresses only the relay's port range is allowed (another allocation,
//!   not a service listening on all addresses).
//! - **Quotas**: allocations per user and in total (`486 Allocation Quota Reached`).
//! - **TCP**: an allocation made over a TCP stream ends when the stream closes (the guard sends
//!   the crate the client's Refresh with lifetime 0), not up to an hour later.
//! - **Robustness**: packets that are neither well-formed STUN nor ChannelData are dropped here;
//!   transient socket errors (an ICMP "port unreachable" surfacing as `ECONNREFUSED`) do not end
//!   the crate's read loop, which stops only on shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stun::attributes::*;
use stun::error_code::*;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio_util::sync::CancellationToken;
use webrtc_util::Conn;

use super::turn::Credentials;

pub use crate::addrs::PeerPolicy;

/// Limits and counters shared by every listener of one relay.
pub struct Quotas {
    /// Most live allocations one user may hold.
    pub per_user: usize,
    /// Most live allocations in total.
    pub total: usize,
    state: Mutex<QuotaState>,
    /// Packets refused by the peer policy.
    pub refused_peers: AtomicU64,
    /// Requests refused for bad or expired credentials.
    pub refused_auth: AtomicU64,
    /// Packets dropped as malformed.
    pub dropped_malformed: AtomicU64,
    /// Media bytes relayed (ChannelData and Send/Data indications, both directions).
    pub relayed_bytes: AtomicU64,
}

#[derive(Default)]
struct QuotaState {
    /// Client transport address -> user, for live allocations.
    by_client: HashMap<SocketAddr, String>,
    per_user: HashMap<String, usize>,
    /// Allocate requests passed on, by transaction id: (client, user). Bounded by `total`.
    pending: HashMap<[u8; 12], (SocketAddr, String)>,
}

impl Quotas {
    /// Quotas with the given limits.
    pub fn new(per_user: usize, total: usize) -> Arc<Self> {
        Arc::new(Quotas {
            per_user,
            total,
            state: Mutex::default(),
            refused_peers: AtomicU64::new(0),
            refused_auth: AtomicU64::new(0),
            dropped_malformed: AtomicU64::new(0),
            relayed_bytes: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live allocations now.
    pub fn allocations(&self) -> usize {
        self.lock().by_client.len()
    }

    /// An allocation ended (expired, refreshed to zero, or the relay closed).
    pub fn released(&self, client: SocketAddr) {
        let mut s = self.lock();
        if let Some(user) = s.by_client.remove(&client)
            && let Some(n) = s.per_user.get_mut(&user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_user.remove(&user);
            }
        }
    }

    /// Whether `user` may start another allocation from `client`; records the request if so.
    fn admit(&self, client: SocketAddr, user: &str, txid: [u8; 12]) -> bool {
        let mut s = self.lock();
        if s.by_client.contains_key(&client) {
            return true; // a retransmission or a mismatch the crate answers itself
        }
        let live = s.per_user.get(user).copied().unwrap_or(0);
        if live >= self.per_user || s.by_client.len() >= self.total {
            return false;
        }
        if s.pending.len() >= self.total.max(64) {
            s.pending.clear(); // answers lost on the way out; forget them rather than grow
        }
        s.pending.insert(txid, (client, user.to_string()));
        true
    }

    /// The crate answered an Allocate with success: the allocation is live.
    fn allocated(&self, txid: [u8; 12]) {
        let mut s = self.lock();
        if let Some((client, user)) = s.pending.remove(&txid)
            && !s.by_client.contains_key(&client)
        {
            *s.per_user.entry(user.clone()).or_default() += 1;
            s.by_client.insert(client, user);
        }
    }

    fn answered_error(&self, txid: [u8; 12]) {
        self.lock().pending.remove(&txid);
    }
}

/// What to do with one packet from a client.
enum Verdict {
    Pass,
    Reply(Vec<u8>),
    Drop,
}

/// A listener socket (UDP, or the TCP multiplexer) wrapped with the checks above.
pub struct Guard {
    inner: Arc<dyn Conn + Send + Sync>,
    creds: Arc<Credentials>,
    policy: PeerPolicy,
    quotas: Arc<Quotas>,
    stop: CancellationToken,
    /// Requests handed to the crate and not answered yet: transaction id -> (client, type,
    /// when). Some of the crate's error paths answer nothing; [`Guard::answer_forgotten`] does.
    unanswered: Mutex<HashMap<[u8; 12], (SocketAddr, MessageType, Instant)>>,
    /// The listener's address, read once: the crate asks for it on every packet, and each ask
    /// would be a `getsockname` system call.
    local: Option<SocketAddr>,
    /// Whether `inner` is the TCP multiplexer, whose clients' allocations end with their stream.
    streams: bool,
    /// TCP clients' last authentication: client -> (username, realm, nonce, key).
    signed_in: Mutex<HashMap<SocketAddr, SignedIn>>,
}

/// What a TCP client last authenticated with: username, realm, nonce, key.
type SignedIn = (String, String, String, Vec<u8>);

/// How long the crate may take to answer a request before the guard answers `400` itself.
const ANSWER_WITHIN: Duration = Duration::from_millis(500);
/// Most unanswered requests tracked (a flood beyond it is simply not tracked).
const MAX_UNANSWERED: usize = 4096;
/// Most TCP clients whose credentials are remembered to end their allocation on close.
const MAX_SIGNED_IN: usize = 16_384;

impl Guard {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn Conn + Send + Sync>,
        creds: Arc<Credentials>,
        policy: PeerPolicy,
        quotas: Arc<Quotas>,
        stop: CancellationToken,
    ) -> Self {
        let local = inner.local_addr().ok();
        let streams = inner.as_any().downcast_ref::<super::tcp::TcpMux>().is_some();
        Guard {
            inner,
            creds,
            policy,
            quotas,
            stop,
            unanswered: Mutex::default(),
            local,
            streams,
            signed_in: Mutex::default(),
        }
    }

    /// Over TCP, remembers what `src` last authenticated with, to end its allocation for it when
    /// its stream closes.
    fn remember(&self, src: SocketAddr, username: &str, realm: &str, nonce: &str, key: &[u8]) {
        if !self.streams {
            return;
        }
        let mut m = self.signed_in.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() < MAX_SIGNED_IN || m.contains_key(&src) {
            m.insert(src, (username.to_string(), realm.to_string(), nonce.to_string(), key.to_vec()));
        }
    }

    /// A stream closed: the Refresh with lifetime 0 its client would have sent on leaving, signed
    /// with what it last authenticated with; `None` if it never did.
    fn farewell(&self, src: SocketAddr) -> Option<Vec<u8>> {
        let (username, realm, nonce, key) = self.signed_in.lock().unwrap_or_else(|p| p.into_inner()).remove(&src)?;
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(stun::agent::TransactionId::new()),
            Box::new(MessageType::new(METHOD_REFRESH, CLASS_REQUEST)),
            Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO)),
            Box::new(TextAttribute::new(ATTR_USERNAME, username)),
            Box::new(TextAttribute::new(ATTR_REALM, realm)),
            Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
            Box::new(MessageIntegrity(key)),
        ];
        let mut m = Message::new();
        m.build(&setters).ok()?;
        Some(m.raw)
    }

    fn unanswered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 12], (SocketAddr, MessageType, Instant)>> {
        self.unanswered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts relayed media: ChannelData, and indications (Send in, Data out).
    fn count_media(&self, buf: &[u8]) {
        let media = match buf.first().map(|b| b >> 6) {
            Some(0b01) => true,
            Some(0b00) => buf.len() >= 2 && (buf[1] & 0x10) != 0 && (buf[0] & 0x01) == 0, // class bits 01: indication
            _ => false,
        };
        if media {
            self.quotas.relayed_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
    }

    /// Notes a request passed to the crate, to be answered by [`Guard::answer_forgotten`] if the
    /// crate does not.
    fn expect_answer(&self, buf: &[u8], src: SocketAddr) {
        if buf.len() < 20 || buf[0] >> 6 != 0 {
            return;
        }
        let mut mt = MessageType::default();
        mt.read_value(u16::from_be_bytes([buf[0], buf[1]]));
        if mt.class != CLASS_REQUEST {
            return;
        }
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&buf[8..20]);
        let mut map = self.unanswered();
        if map.len() < MAX_UNANSWERED {
            map.insert(txid, (src, mt, Instant::now()));
        }
    }

    /// Every request gets an answer: the crate drops some malformed ones with only a log line,
    /// which leaves the client waiting forever. Runs until the relay stops.
    pub async fn answer_forgotten(self: Arc<Self>) {
        let mut tick = tokio::time::interval(ANSWER_WITHIN / 2);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let late: Vec<([u8; 12], SocketAddr, MessageType)> = {
                let mut map = self.unanswered();
                let late = map
                    .iter()
                    .filter(|(_, (_, _, at))| now.duration_since(*at) >= ANSWER_WITHIN)
                    .map(|(id, (src, mt, _))| (*id, *src, *mt))
                    .collect::<Vec<_>>();
                for (id, _, _) in &late {
                    map.remove(id);
                }
                late
            };
            for (txid, src, mt) in late {
                let m = Message { typ: mt, transaction_id: stun::agent::TransactionId(txid), ..Default::default() };
                if let Verdict::Reply(r) = self.error(&m, CODE_BAD_REQUEST, "request could not be processed", None) {
                    self.quotas.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                    let _ = self.inner.send_to(&r, src).await;
                }
            }
        }
    }

    fn check(&self, buf: &[u8], src: SocketAddr) -> Verdict {
        if buf.len() < 4 {
            return self.malformed();
        }
        match buf[0] >> 6 {
            0b01 => return Verdict::Pass, // ChannelData: only bound (already checked) peers
            0b00 => {}
            _ => return self.bad_request(buf), // a damaged header: answer it if it is long enough
        }
        let mut m = Message { raw: buf.to_vec(), ..Default::default() };
        if let Err(e) = m.decode() {
            tracing::debug!(error = %e, len = buf.len(), "TURN: malformed STUN message");
            return self.bad_request(buf);
        }
        if m.typ.class == CLASS_INDICATION {
            if m.typ.method == METHOD_SEND && !self.peers_allowed(&m) {
                self.quotas.refused_peers.fetch_add(1, Ordering::Relaxed);
                return Verdict::Drop;
            }
            return Verdict::Pass;
        }
        if m.typ.class != CLASS_REQUEST {
            // We never ask clients anything: a "response" or unknown indication is a damaged
            // request, most likely, whose sender waits for an answer.
            return self.bad_request(buf);
        }
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Verdict::Pass; // the crate challenges it (401 with a nonce) or answers a Binding
        }
        let text = |t| m.get(t).ok().and_then(|v| String::from_utf8(v).ok());
        let (Some(username), Some(realm), Some(nonce)) = (text(ATTR_USERNAME), text(ATTR_REALM), text(ATTR_NONCE))
        else {
            return Verdict::Pass; // the crate answers 400 for a half-formed request
        };
        let Some(key) = self.creds.key_for(&username, &realm) else {
            return self.unauthorized(&m, realm, nonce);
        };
        if MessageIntegrity(key.clone()).check(&mut m.clone()).is_err() {
            return self.unauthorized(&m, realm, nonce);
        }
        self.remember(src, &username, &realm, &nonce, &key);
        let method = m.typ.method;
        if (method == METHOD_CREATE_PERMISSION || method == METHOD_CHANNEL_BIND) && !self.peers_allowed(&m) {
            self.quotas.refused_peers.fetch_add(1, Ordering::Relaxed);
            return self.error(&m, CODE_FORBIDDEN, "peer address not allowed", Some(key));
        }
        if method == METHOD_ALLOCATE {
            if !self.creds.session_alive(&username) {
                self.quotas.refused_auth.fetch_add(1, Ordering::Relaxed);
                return self.error(&m, CODE_FORBIDDEN, "the session of this credential has ended", Some(key));
            }
            let user = Credentials::user_of(&username).unwrap_or_default();
            if !self.quotas.admit(src, user, m.transaction_id.0) {
                return self.error(&m, CODE_ALLOC_QUOTA_REACHED, "allocation quota reached", Some(key));
            }
        }
        Verdict::Pass
    }

    /// Anything of 20 bytes or more that is neither ChannelData nor a well-formed request or Send
    /// indication is most likely a damaged request: it gets `400 Bad Request` under the
    /// transaction id in bytes 8-20, so a client whose request was damaged on the way stops
    /// waiting. The answer is never larger than what came in (no amplification).
    fn bad_request(&self, buf: &[u8]) -> Verdict {
        self.quotas.dropped_malformed.fetch_add(1, Ordering::Relaxed);
        if buf.len() < 20 {
            return Verdict::Drop;
        }
        let mut mt = MessageType::default();
        mt.read_value(u16::from_be_bytes([buf[0], buf[1]]) & 0x3fff);
        mt.class = CLASS_REQUEST;
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&buf[8..20]);
        let m = Message { typ: mt, transaction_id: stun::agent::TransactionId(txid), ..Default::default() };
        match self.error(&m, CODE_BAD_REQUEST, "", None) {
            // Never answer with more bytes than came in: no amplification for spoofed sources.
            Verdict::Reply(r) if r.len() <= buf.len() => Verdict::Reply(r),
            _ => Verdict::Drop,
        }
    }

    fn malformed(&self) -> Verdict {
        self.quotas.dropped_malformed.fetch_add(1, Ordering::Relaxed);
        Verdict::Drop
    }

    fn unauthorized(&self, m: &Message, realm: String, nonce: String) -> Verdict {
        self.quotas.refused_auth.fetch_add(1, Ordering::Relaxed);
        let extra: Vec<Box<dyn Setter>> =
            vec![Box::new(TextAttribute::new(ATTR_REALM, realm)), Box::new(TextAttribute::new(ATTR_NONCE, nonce))];
        self.error_with(m, CODE_UNAUTHORIZED, "bad or expired credentials", extra, None)
    }

    fn error(&self, m: &Message, code: ErrorCode, reason: &str, key: Option<Vec<u8>>) -> Verdict {
        self.error_with(m, code, reason, Vec::new(), key)
    }

    fn error_with(
        &self,
        m: &Message,
        code: ErrorCode,
        reason: &str,
        mut extra: Vec<Box<dyn Setter>>,
        key: Option<Vec<u8>>,
    ) -> Verdict {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(Message { transaction_id: m.transaction_id, ..Default::default() }),
            Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
            Box::new(ErrorCodeAttribute { code, reason: reason.as_bytes().to_vec() }),
        ];
        setters.append(&mut extra);
        if let Some(key) = key {
            setters.push(Box::new(MessageIntegrity(key)));
        }
        let mut out = Message::new();
        match out.build(&setters) {
            Ok(()) => Verdict::Reply(out.raw),
            Err(_) => Verdict::Drop,
        }
    }

    /// Every XOR-PEER-ADDRESS in the message is one the policy allows (a request may carry several).
    fn peers_allowed(&self, m: &Message) -> bool {
        let mut any = false;
        for a in m.attributes.0.iter().filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS) {
            match xor_address(&a.value, &m.transaction_id.0) {
                Some(addr) if self.policy.allows_peer(addr) => any = true,
                _ => return false,
            }
        }
        any
    }

    /// Watches the crate's answers: the request is answered, and Allocate outcomes count.
    fn observe_answer(&self, buf: &[u8]) {
        if buf.len() < 20 || buf[0] >> 6 != 0 {
            return;
        }
        let t = u16::from_be_bytes([buf[0], buf[1]]);
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&buf[8..20]);
        let mut mt = MessageType::default();
        mt.read_value(t);
        if mt.class == CLASS_SUCCESS_RESPONSE || mt.class == CLASS_ERROR_RESPONSE {
            self.unanswered().remove(&txid);
        }
        if mt.method != METHOD_ALLOCATE {
            return;
        }
        if mt.class == CLASS_SUCCESS_RESPONSE {
            self.quotas.allocated(txid);
        } else if mt.class == CLASS_ERROR_RESPONSE {
            self.quotas.answered_error(txid);
        }
    }
}

/// Decodes an XOR-mapped address attribute value (RFC 8489 §14.2).
pub fn xor_address(v: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 8 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match v[1] {
        0x01 if v.len() == 8 => {
            let ip: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ cookie[i]);
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 if v.len() == 20 => {
            let ip: [u8; 16] = std::array::from_fn(|i| v[4 + i] ^ if i < 4 { cookie[i] } else { txid[i - 4] });
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

fn closed() -> webrtc_util::Error {
    webrtc_util::Error::Other("relay stopped".into())
}

#[async_trait]
impl Conn for Guard {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let got = tokio::select! {
                _ = self.stop.cancelled() => return Err(closed()),
                r = self.inner.recv_from(buf) => r,
            };
            let (n, src) = match got {
                Ok(v) => v,
                // An ICMP error from an earlier send surfaces on the next receive: not fatal.
                Err(webrtc_util::Error::Io(e))
                    if matches!(
                        e.0.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) if self.stop.is_cancelled() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "TURN listener receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.streams && n == 0 {
                // A TCP client left (`tcp::CLOSED`); its allocation, if any, is refreshed to 0.
                if let Some(bye) = self.farewell(src)
                    && bye.len() <= buf.len()
                {
                    buf[..bye.len()].copy_from_slice(&bye);
                    return Ok((bye.len(), src));
                }
                continue;
            }
            match self.check(&buf[..n], src) {
                Verdict::Pass => {
                    self.count_media(&buf[..n]);
                    self.expect_answer(&buf[..n], src);
                    return Ok((n, src));
                }
                Verdict::Reply(r) => {
                    let _ = self.inner.send_to(&r, src).await;
                }
                Verdict::Drop => {}
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        self.count_media(buf);
        self.observe_answer(buf);
        self.inner.send_to(buf, target).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        match self.local {
            Some(a) => Ok(a),
            None => self.inner.local_addr(),
        }
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_round_trip() {
        let txid = [7u8; 12];
        let mut m = Message::new();
        m.transaction_id = stun::agent::TransactionId(txid);
        let a = stun::xoraddr::XorMappedAddress { ip: "10.0.0.1".parse().unwrap(), port: 5000 };
        a.add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS).unwrap();
        let v = m.get(ATTR_XOR_PEER_ADDRESS).unwrap();
        assert_eq!(xor_address(&v, &txid), Some("10.0.0.1:5000".parse().unwrap()));
        let a = stun::xoraddr::XorMappedAddress { ip: "2001:db8::7".parse().unwrap(), port: 1 };
        let mut m = Message::new();
        m.transaction_id = stun::agent::TransactionId(txid);
        a.add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS).unwrap();
        let v = m.get(ATTR_XOR_PEER_ADDRESS).unwrap();
        assert_eq!(xor_address(&v, &txid), Some("[2001:db8::7]:1".parse().unwrap()));
        assert_eq!(xor_address(&[0, 1, 2], &txid), None);
    }
}
