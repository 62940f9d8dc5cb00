//! Which IP addresses the server may reach for others: TURN peers a client names, and the
//! addresses other servers' names resolve to. Internal addresses (loopback, private,
//! link-local) are refused unless a setting allows them, so that neither the relay nor a
//! forged federation request becomes a door into the server's own network (SSRF).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Decides which addresses the server may exchange traffic with on someone else's behalf.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerPolicy {
    /// Loopback, private and link-local addresses too (LANs and tests).
    pub allow_private: bool,
    /// The server's own addresses (the relay's public and listen address): on them only ports
    /// in `own_ports` may be reached, the range the relay's allocations get their ports from,
    /// so that a relayed peer can be another allocation here but not a service that listens on
    /// all addresses (the web app, `/metrics`, SSH, a database).
    pub own: [Option<IpAddr>; 2],
    /// See `own`: the first and last port, inclusive.
    pub own_ports: (u16, u16),
    /// The media server's addresses and ports (first and last, inclusive):
    /// always reachable, even when internal, since it is this server.
    pub media: Option<MediaAddrs>,
}

/// Where the media server receives: its bound and public address, and its first and last UDP
/// port.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaAddrs {
    /// Bound and public address.
    pub ips: [Option<IpAddr>; 2],
    /// First and last port.
    pub ports: (u16, u16),
}

impl PeerPolicy {
    /// A policy refusing internal addresses unless `allow_private`, with no own addresses.
    pub fn new(allow_private: bool) -> Self {
        PeerPolicy { allow_private, ..Default::default() }
    }

    /// Whether `ip` may be reached (an IPv4-mapped IPv6 address is judged as its IPv4 address).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        // Never: addresses that name no single host.
        let never = match ip {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.octets()[0] == 0,
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if never {
            return false;
        }
        self.allow_private || !is_internal(ip)
    }

    /// Whether `peer` may be reached: [`PeerPolicy::allows`] its address and, on one of the
    /// server's own addresses, the port is in `own_ports`.
    pub fn allows_peer(&self, peer: std::net::SocketAddr) -> bool {
        let ip = unmapped(peer.ip());
        if let Some(MediaAddrs { ips, ports: (lo, hi) }) = self.media
            && ips.iter().flatten().any(|m| unmapped(*m) == ip)
            && (lo..=hi).contains(&peer.port())
        {
            return true;
        }
        if self.own.iter().flatten().any(|own| unmapped(*own) == ip)
            && !(self.own_ports.0..=self.own_ports.1).contains(&peer.port())
        {
            return false;
        }
        self.allows(ip)
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others as they are.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Loopback, private (RFC 1918, shared address space, unique local), link-local and other
/// special-purpose ranges that must not be reachable through a public relay or by naming them as
/// a federation peer.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
                || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, site-local (deprecated)
                || a == Ipv6Addr::UNSPECIFIED
        }
    }
}

/// The address that counts for per-client limits: `ip` itself, or for IPv6 its /64 (one
/// subscriber's network, where every address is the same client's to choose).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// Open connections per client ([`client_key`]), each client's entry holding a value its
/// connections share (e.g. its own handshake slots); the entry goes with its last connection.
pub struct PerClient<V> {
    map: Mutex<HashMap<IpAddr, (V, usize)>>,
    make: fn() -> V,
}

/// One connection's place in its client's count, given back on drop.
pub struct ClientClaim<V> {
    owner: Arc<PerClient<V>>,
    key: IpAddr,
    /// The client's shared value.
    pub value: V,
}

impl<V: Clone> PerClient<V> {
    /// An empty count; `make` gives a new client's value.
    pub fn new(make: fn() -> V) -> Arc<Self> {
        Arc::new(PerClient { map: Mutex::new(HashMap::new()), make })
    }

    /// A place for a connection from `ip`, or `None` when that client has `max` already.
    pub fn claim(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientClaim<V>> {
        let key = client_key(ip);
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (value, n) = m.entry(key).or_insert_with(|| ((self.make)(), 0));
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientClaim { owner: self.clone(), key, value: value.clone() })
    }
}

impl<V> Drop for ClientClaim<V> {
    fn drop(&mut self) {
        let mut m = self.owner.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, n)) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_internal_addresses_by_default() {
        let strict = PeerPolicy::new(false);
        let open = PeerPolicy::new(true);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.9",
            "169.254.1.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "100.64.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!strict.allows(ip), "{ip} must be refused by default");
            assert!(open.allows(ip), "{ip} must be allowed when private peers are");
        }
        for ip in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!strict.allows(ip) && !open.allows(ip), "{ip} is never a peer");
        }
        for ip in ["8.8.8.8", "203.0.113.5", "2001:db8::1"] {
            assert!(strict.allows(ip.parse().unwrap()), "{ip} is a public peer");
        }
    }

    #[test]
    fn own_addresses_only_on_relay_ports() {
        let own: IpAddr = "203.0.113.7".parse().unwrap();
        let p = PeerPolicy { own: [Some(own), None], own_ports: (32768, 60999), ..PeerPolicy::new(false) };
        let at = |s: &str| p.allows_peer(s.parse().unwrap());
        assert!(at("203.0.113.7:40000") && at("[::ffff:203.0.113.7]:40000"), "another allocation here");
        assert!(!at("203.0.113.7:8448") && !at("203.0.113.7:9187") && !at("[::ffff:203.0.113.7]:22"));
        assert!(at("203.0.113.8:22"), "another host");
    }
}
