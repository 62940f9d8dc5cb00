//! The built-in TURN relay against real clients: a small STUN/TURN client written here with the
//! `stun` crate (exact error codes, peer policy, quotas, TCP), and coturn's `turnutils_uclient`
//! (Debian package `coturn`; scripts/test installs it) for the data and malformed-protocol tests.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::TestServer;
use reqwest::StatusCode;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::{PROTO_UDP, chandata::ChannelData};

/// One TURN client over UDP or TCP.
enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

struct Client {
    link: Link,
    username: String,
    password: String,
    realm: String,
    nonce: String,
}

fn build(method: Method, class: MessageClass, attrs: Vec<Box<dyn Setter>>) -> Message {
    let mut setters: Vec<Box<dyn Setter>> =
        vec![Box::new(TransactionId::new()), Box::new(MessageType::new(method, class))];
    setters.extend(attrs);
    let mut m = Message::new();
    m.build(&setters).unwrap();
    m
}

fn code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    Some(e.code.0)
}

impl Client {
    async fn udp(server: SocketAddr, username: &str, password: &str) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Client::new(Link::Udp(sock, server), username, password)
    }

    async fn tcp(server: SocketAddr, username: &str, password: &str) -> Client {
        Client::new(Link::Tcp(TcpStream::connect(server).await.unwrap()), username, password)
    }

    fn new(link: Link, username: &str, password: &str) -> Client {
        Client {
            link,
            username: username.into(),
            password: password.into(),
            realm: String::new(),
            nonce: String::new(),
        }
    }

    async fn send_raw(&mut self, raw: &[u8]) {
        match &mut self.link {
            Link::Udp(s, server) => {
                s.send_to(raw, *server).await.unwrap();
            }
            Link::Tcp(t) => t.write_all(raw).await.unwrap(),
        }
    }

    async fn recv(&mut self) -> Option<Vec<u8>> {
        let read = async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; 2048];
                    let (n, _) = s.recv_from(&mut buf).await.unwrap();
                    buf.truncate(n);
                    buf
                }
                Link::Tcp(t) => {
                    let mut head = [0u8; 4];
                    t.read_exact(&mut head).await.unwrap();
                    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
                    let total = if head[0] >> 6 == 0 { 20 + len } else { 4 + len.div_ceil(4) * 4 };
                    let mut buf = vec![0u8; total];
                    buf[..4].copy_from_slice(&head);
                    t.read_exact(&mut buf[4..]).await.unwrap();
                    buf
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(3), read).await.ok()
    }

    /// Sends `m` and returns the response with the same transaction id.
    async fn request(&mut self, m: Message) -> Message {
        self.send_raw(&m.raw).await;
        loop {
            let raw = self.recv().await.expect("no answer from the relay");
            let mut r = Message { raw, ..Default::default() };
            if r.decode().is_ok() && r.transaction_id == m.transaction_id {
                return r;
            }
        }
    }

    fn auth(&self) -> Vec<Box<dyn Setter>> {
        vec![
            Box::new(TextAttribute::new(ATTR_USERNAME, self.username.clone())),
            Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())),
            Box::new(TextAttribute::new(ATTR_NONCE, self.nonce.clone())),
            Box::new(MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                self.realm.clone(),
                self.password.clone(),
            )),
        ]
    }

    /// Allocate: the unauthenticated challenge first, then with credentials. Returns the error
    /// code (None on success) and the relayed address.
    async fn allocate(&mut self) -> (Option<u16>, Option<SocketAddr>) {
        let transport = || -> Box<dyn Setter> { Box::new(RequestedTransport { protocol: PROTO_UDP }) };
        let challenge = self.request(build(METHOD_ALLOCATE, CLASS_REQUEST, vec![transport()])).await;
        assert_eq!(code(&challenge), Some(401), "an unauthenticated Allocate is challenged");
        self.realm = String::from_utf8(challenge.get(ATTR_REALM).unwrap()).unwrap();
        self.nonce = String::from_utf8(challenge.get(ATTR_NONCE).unwrap()).unwrap();
        let mut attrs = vec![transport()];
        attrs.extend(self.auth());
        let r = self.request(build(METHOD_ALLOCATE, CLASS_REQUEST, attrs)).await;
        let mut relayed = RelayedAddress::default();
        let addr = relayed.get_from(&r).ok().map(|()| SocketAddr::new(relayed.ip, relayed.port));
        (code(&r), addr)
    }

    async fn create_permission(&mut self, peer: SocketAddr) -> Option<u16> {
        let mut attrs: Vec<Box<dyn Setter>> = vec![Box::new(PeerAddress { ip: peer.ip(), port: peer.port() })];
        attrs.extend(self.auth());
        code(&self.request(build(METHOD_CREATE_PERMISSION, CLASS_REQUEST, attrs)).await)
    }

    async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let m = build(
            METHOD_SEND,
            CLASS_INDICATION,
            vec![Box::new(PeerAddress { ip: peer.ip(), port: peer.port() }), Box::new(Data(data.to_vec()))],
        );
        self.send_raw(&m.raw).await;
    }
}

fn relay_addr(s: &TestServer) -> SocketAddr {
    s.running().turn_addr.expect("relay running")
}

async fn credentials(s: &TestServer, name: &str) -> (String, String) {
    let u = s.register(name).await;
    let (status, v) = s.get(Some(&u.token), "/api/v1/turn").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    (v["username"].as_str().unwrap().to_string(), v["credential"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn browsers_get_short_lived_ice_server_credentials() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let (status, v) = s.get(Some(&ana.token), "/api/v1/turn").await;
    assert_eq!(status, StatusCode::OK);
    let port = relay_addr(&s).port();
    let urls: Vec<&str> = v["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            format!("stun:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp")
        ]
    );
    // TURN REST form: "<expiry>:<session>:<user id>", expiring after the configured lifetime
    // (12 h).
    let username = v["username"].as_str().unwrap();
    let [expiry, session, user]: [&str; 3] = username.splitn(3, ':').collect::<Vec<_>>().try_into().unwrap();
    assert_eq!(user, ana.id);
    assert!(!session.is_empty());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > now + 12 * 3600 - 60 && expiry <= now + 12 * 3600 + 1, "{expiry} vs {now}");
    assert_eq!(v["ttl"], 12 * 3600);
    assert!(!v["credential"].as_str().unwrap().is_empty());
    // Only for signed-in users; and a server without the relay says so.
    assert_eq!(s.get(None, "/api/v1/turn").await.0, StatusCode::UNAUTHORIZED);
    s.stop().await;
    let off = TestServer::start_tuned(|c| c.turn.enabled = false).await;
    let cy = off.register("cy").await;
    let (status, v) = off.get(Some(&cy.token), "/api/v1/turn").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    off.stop().await;
}

#[tokio::test]
async fn bad_or_expired_credentials_get_401() {
    let s = TestServer::start().await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;

    let mut good = Client::udp(relay, &user, &pass).await;
    let (code, addr) = good.allocate().await;
    assert_eq!(code, None, "valid credentials allocate");
    assert_eq!(addr.unwrap().ip().to_string(), "127.0.0.1");

    let mut wrong = Client::udp(relay, &user, "not-the-password").await;
    assert_eq!(wrong.allocate().await.0, Some(401));
    // A username for another user with this user's password.
    let other = user.replace("@ana:", "@ben:");
    assert_eq!(Client::udp(relay, &other, &pass).await.allocate().await.0, Some(401));
    s.stop().await;

    // An expired credential, minted by the server itself: one with a lifetime of 1 s (a
    // configuration file may not go under 60 s; the in-process config is not checked) works
    // at first and is refused once its expiry has passed.
    let s = TestServer::start_tuned(|c| c.turn.credential_ttl_secs = 1).await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    assert_eq!(Client::udp(relay, &user, &pass).await.allocate().await.0, None, "control: fresh, valid");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::udp(relay, &user, &pass).await.allocate().await.0 {
            Some(401) => break,
            None => assert!(std::time::Instant::now() < until, "the credential never expired"),
            other => panic!("expected 401 once expired, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.stop().await;
}

/// A UDP socket standing in for a peer on the internal network.
async fn peer_socket() -> (UdpSocket, SocketAddr) {
    let p = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = p.local_addr().unwrap();
    (p, a)
}

#[tokio::test]
async fn the_relay_never_reaches_internal_addresses_by_default() {
    let s = TestServer::start_tuned(|c| c.turn.allow_private_peers = false).await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    let mut c = Client::udp(relay, &user, &pass).await;
    assert_eq!(c.allocate().await.0, None);
    for peer in ["127.0.0.1:9", "10.1.2.3:9", "192.168.1.10:9", "172.16.5.5:9", "169.254.1.1:9", "[::1]:9", "0.0.0.0:9"]
    {
        assert_eq!(c.create_permission(peer.parse().unwrap()).await, Some(403), "permission for {peer}");
    }
    // A Send indication to a loopback peer is dropped: nothing arrives.
    let (p, paddr) = peer_socket().await;
    c.send_indication(paddr, b"ssrf?").await;
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), p.recv_from(&mut buf)).await.is_err(),
        "relayed to loopback"
    );
    // A public address is fine (the permission only; nothing is sent anywhere).
    assert_eq!(c.create_permission("203.0.113.7:9".parse().unwrap()).await, None);
    assert_eq!(s.metric("chat_turn_refused_peers_total").await, Some(8.0));
    s.stop().await;
}

#[tokio::test]
async fn the_relay_reaches_its_own_address_only_on_relay_ports() {
    // Advertised at a public address (the permission only: nothing is sent anywhere).
    let s = TestServer::start_tuned(|c| {
        c.turn.allow_private_peers = false;
        c.turn.public_ip = Some("203.0.113.7".parse().unwrap());
    })
    .await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    let mut c = Client::udp(relay, &user, &pass).await;
    let (code, relayed) = c.allocate().await;
    assert_eq!(code, None);
    let relayed = relayed.unwrap();
    assert_eq!(relayed.ip().to_string(), "203.0.113.7");
    // Services that listen on all addresses (web, metrics, SSH) are not peers; another
    // allocation here is, and so is another host.
    for port in [22, 443, 8448, 9187, 3478] {
        let peer = SocketAddr::new(relayed.ip(), port);
        assert_eq!(c.create_permission(peer).await, Some(403), "permission for {peer}");
    }
    assert_eq!(c.create_permission(relayed).await, None, "another allocation on this relay");
    assert_eq!(c.create_permission("203.0.113.8:22".parse().unwrap()).await, None);
    assert_eq!(s.metric("chat_turn_refused_peers_total").await, Some(5.0));
    s.stop().await;
}

#[tokio::test]
async fn with_private_peers_allowed_data_flows_both_ways_over_udp_and_tcp() {
    let s = TestServer::start().await; // tests allow private peers
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    for tcp in [false, true] {
        let mut c = if tcp { Client::tcp(relay, &user, &pass).await } else { Client::udp(relay, &user, &pass).await };
        let (code, relayed) = c.allocate().await;
        assert_eq!(code, None, "tcp={tcp}");
        let relayed = relayed.unwrap();
        let (p, paddr) = peer_socket().await;
        assert_eq!(c.create_permission(paddr).await, None);
        c.send_indication(paddr, b"hello peer").await;
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), p.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"hello peer");
        assert_eq!(from.port(), relayed.port(), "sent from the relayed address");
        // The peer answers to the relayed address; the client gets a Data indication.
        p.send_to(b"hello client", relayed).await.unwrap();
        let raw = c.recv().await.expect("data indication");
        let mut m = Message { raw, ..Default::default() };
        m.decode().unwrap();
        let mut d = Data::default();
        d.get_from(&m).unwrap();
        assert_eq!(d.0, b"hello client");
        assert!(!ChannelData::is_channel_data(&m.raw));
    }
    s.stop().await;
}

#[tokio::test]
async fn allocations_per_user_are_capped() {
    let s = TestServer::start_tuned(|c| c.turn.allocations_per_user = 2).await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut c = Client::udp(relay, &user, &pass).await;
        assert_eq!(c.allocate().await.0, None);
        clients.push(c);
    }
    assert_eq!(Client::udp(relay, &user, &pass).await.allocate().await.0, Some(486));
    // Another user is not affected.
    let (u2, p2) = credentials(&s, "ben").await;
    assert_eq!(Client::udp(relay, &u2, &p2).await.allocate().await.0, None);
    assert_eq!(s.metric("chat_turn_allocations").await, Some(3.0));
    s.stop().await;
}

/// The allocations metric, polled until it reads `want` (or the deadline passes).
async fn allocations_become(s: &TestServer, want: f64) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = s.metric("chat_turn_allocations").await;
        if now == Some(want) || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tcp_allocation_ends_with_its_connection() {
    let s = TestServer::start_tuned(|c| c.turn.allocations_per_user = 2).await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    for round in 0..3 {
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut c = Client::tcp(relay, &user, &pass).await;
            assert_eq!(c.allocate().await.0, None, "round {round}");
            clients.push(c);
        }
        assert_eq!(Client::tcp(relay, &user, &pass).await.allocate().await.0, Some(486));
        assert_eq!(allocations_become(&s, 2.0).await, Some(2.0));
        // Closing the streams frees the allocations and the user's quota at once (before: they
        // stayed until their lifetime ran out, 10 minutes by default, up to an hour).
        drop(clients);
        assert_eq!(allocations_become(&s, 0.0).await, Some(0.0), "round {round}");
    }
    // A UDP client's empty datagram ends nothing.
    let mut c = Client::udp(relay, &user, &pass).await;
    assert_eq!(c.allocate().await.0, None);
    c.send_raw(&[]).await;
    let (_peer, peer_addr) = peer_socket().await;
    assert_eq!(c.create_permission(peer_addr).await, None, "the allocation is alive");
    assert_eq!(s.metric("chat_turn_allocations").await, Some(1.0));
    s.stop().await;
}

#[tokio::test]
async fn garbage_gets_an_answer_or_is_dropped_and_the_relay_keeps_working() {
    let s = TestServer::start().await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    let mut c = Client::udp(relay, &user, &pass).await;
    // Too short to carry a transaction id: dropped, no answer.
    c.send_raw(b"xx").await;
    c.send_raw(&[0u8; 19]).await;
    // 40 bytes with a damaged header: 400 under the transaction id it carries, and the answer is
    // no longer than the request (no amplification).
    c.send_raw(&[0xff; 40]).await;
    let raw = c.recv().await.expect("an answer to a damaged header");
    assert!(raw.len() <= 40);
    assert_eq!(&raw[8..20], &[0xff; 12]);
    let mut r = Message { raw, ..Default::default() };
    r.decode().unwrap();
    assert_eq!(code(&r), Some(400));
    // A STUN request with a broken body: 400 under the same transaction id.
    let mut m = build(METHOD_ALLOCATE, CLASS_REQUEST, vec![Box::new(RequestedTransport { protocol: PROTO_UDP })]);
    let len = m.raw.len();
    m.raw[len - 3] = 0xee;
    m.raw[3] = m.raw[3].wrapping_add(8); // length no longer matches
    c.send_raw(&m.raw).await;
    let raw = c.recv().await.expect("an answer to a damaged request");
    assert_eq!(&raw[8..20], &m.raw[8..20]);
    let mut r = Message { raw, ..Default::default() };
    r.decode().unwrap();
    assert_eq!(code(&r), Some(400));
    assert_eq!(c.allocate().await.0, None, "still serving");
    s.stop().await;
}

// ---- coturn's client ---------------------------------------------------------------------

fn uclient() -> Command {
    let path = "/usr/bin/turnutils_uclient";
    assert!(std::path::Path::new(path).exists(), "{path} missing: apt-get install coturn (scripts/test does)");
    Command::new(path)
}

/// Starts `turnutils_peer` (the echo peer) on a free loopback port.
fn echo_peer() -> (std::process::Child, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("/usr/bin/turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Up once it holds the port.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(std::time::Instant::now() < deadline, "turnutils_peer did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, port)
}

/// Runs a uclient data test and returns (sent, received, lost) from its summary.
fn data_test(extra: &[&str], relay: SocketAddr, user: &str, pass: &str, peer: u16) -> (u64, u64, u64) {
    let out = uclient()
        .args(extra)
        .args(["-u", user, "-w", pass, "-p", &relay.port().to_string(), "-e", "127.0.0.1", "-r", &peer.to_string()])
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let find = |key: &str| -> u64 {
        let line = text.lines().rev().find(|l| l.contains(key)).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
        let at = line.find(key).unwrap() + key.len();
        line[at..].trim_start_matches(['=', ' ']).split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (find("tot_send_msgs"), find("tot_recv_msgs"), find("Total lost packets"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_client_data_tests_pass_without_loss() {
    let s = TestServer::start_tuned(|c| c.turn.allocations_per_user = 1000).await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "load").await;
    let (mut peer, port) = echo_peer();
    let cases: [(&str, &[&str], u64); 3] = [
        ("300 clients, ChannelData", &["-m", "300", "-n", "20", "-l", "120"], 6000),
        ("50 clients, Send indications", &["-c", "-m", "50", "-n", "50", "-l", "120"], 2500),
        ("50 clients over TCP", &["-t", "-m", "50", "-n", "50", "-l", "120"], 2500),
    ];
    for (name, args, want) in cases {
        let (u, p) = (user.clone(), pass.clone());
        let (sent, recv, lost) =
            tokio::task::spawn_blocking(move || data_test(args, relay, &u, &p, port)).await.unwrap();
        assert_eq!((sent, recv, lost), (want, want, 0), "{name}");
    }
    peer.kill().unwrap();
    peer.wait().unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_client_bad_credentials_and_malformed_protocol_test() {
    let s = TestServer::start().await;
    let relay = relay_addr(&s);
    let (user, pass) = credentials(&s, "ana").await;
    let (mut peer, port) = echo_peer();
    // Wrong password: the client cannot allocate and says so.
    let out = uclient()
        .args(["-u", &user, "-w", "wrong", "-p", &relay.port().to_string(), "-e", "127.0.0.1", "-r", &port.to_string()])
        .args(["-m", "1", "-n", "5", "127.0.0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Cannot complete Allocation"), "{text}");
    // `-R` corrupts about one message in ten at random. The relay must answer what it can
    // parse, drop the rest, and keep working. A run of the client ends by itself unless a
    // data packet or its echo is lost: the client then waits for it for ever. That happens on
    // a loaded machine (UDP on loopback drops when the receiver is starved), not because of
    // the relay, so hung runs are killed after 45 s and counted; at least half must end by
    // themselves, and a clean run afterwards must pass.
    let mut runs = Vec::new();
    for _ in 0..8 {
        let (u, p) = (user.clone(), pass.clone());
        runs.push(tokio::task::spawn_blocking(move || {
            let mut child = uclient()
                .args(["-R", "-u", &u, "-w", &p, "-p", &relay.port().to_string(), "-e", "127.0.0.1"])
                .args(["-r", &port.to_string(), "-m", "1", "-n", "5", "127.0.0.1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(45) {
                if child.try_wait().unwrap().is_some() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            false
        }));
    }
    let mut ended = 0;
    for r in runs {
        ended += usize::from(r.await.unwrap());
    }
    println!("turnutils_uclient -R: {ended} of 8 runs ended by themselves");
    assert!(ended >= 4, "only {ended} of 8 corrupted runs ended within 45 s");
    let (u, p) = (user.clone(), pass.clone());
    let (sent, recv, lost) =
        tokio::task::spawn_blocking(move || data_test(&["-m", "5", "-n", "10", "-l", "120"], relay, &u, &p, port))
            .await
            .unwrap();
    assert!(sent >= 50 && recv == sent && lost == 0, "a clean run after the corrupted ones: {sent} {recv} {lost}");
    peer.kill().unwrap();
    peer.wait().unwrap();
    s.stop().await;
}

/// A credential allocates only while the session it was minted for lives and its account is
/// enabled: signing out or a disable stops new allocations at once, not at its expiry.
#[tokio::test]
async fn credentials_stop_allocating_when_the_session_ends() {
    let s = TestServer::start().await;
    let relay = relay_addr(&s);
    let ana = s.register("ana").await;
    let (_, v) = s.get(Some(&ana.token), "/api/v1/turn").await;
    let (user, pass) = (v["username"].as_str().unwrap().to_string(), v["credential"].as_str().unwrap().to_string());
    assert_eq!(Client::udp(relay, &user, &pass).await.allocate().await.0, None, "control: the session lives");
    assert_eq!(s.post(Some(&ana.token), "/api/v1/logout", serde_json::json!({})).await.0, StatusCode::OK);
    assert_eq!(Client::udp(relay, &user, &pass).await.allocate().await.0, Some(403), "after sign-out");

    let (user, pass) = credentials(&s, "ben").await;
    assert_eq!(Client::udp(relay, &user, &pass).await.allocate().await.0, None, "control: ben is enabled");
    let out = common::cli_async(&s.dir, &["admin", "user", "disable", "ben"], None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Client::udp(relay, &user, &pass).await.allocate().await.0, Some(403), "after the disable");
}
