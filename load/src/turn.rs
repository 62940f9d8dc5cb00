//! The `turn` scenario: relay throughput, round trip and CPU of our TURN relay and of coturn,
//! side by side under the same load in one run.
//!
//! Each of N clients allocates on the relay (TURN REST credentials), binds a channel to an echo
//! peer on loopback and keeps `window` ChannelData packets in flight for the duration; every
//! packet carries its send time, so the echo that comes back through the relay gives one round
//! trip sample. Figures: packets/s relayed (each echo crosses the relay twice), p50/p99 round
//! trip, server CPU seconds and CPU per packet, server RSS.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use turn::proto::PROTO_UDP;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::{Res, Server, cpu_of, now_micros, rss_kib_of};

const CHANNEL: u16 = 0x4000;

/// What one run against one relay measured.
struct Figures {
    packets: u64,
    lost: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s: f64,
    rss_kib: u64,
}

fn build(method: Method, class: MessageClass, attrs: Vec<Box<dyn Setter>>) -> Res<Message> {
    let mut setters: Vec<Box<dyn Setter>> =
        vec![Box::new(TransactionId::new()), Box::new(MessageType::new(method, class))];
    setters.extend(attrs);
    let mut m = Message::new();
    m.build(&setters)?;
    Ok(m)
}

async fn request(sock: &UdpSocket, m: &Message) -> Res<Message> {
    let mut buf = vec![0u8; 1500];
    for _ in 0..5 {
        sock.send(&m.raw).await?;
        let deadline = Instant::now() + Duration::from_millis(800);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline.into(), sock.recv(&mut buf)).await {
            let mut r = Message { raw: buf[..n].to_vec(), ..Default::default() };
            if r.decode().is_ok() && r.transaction_id == m.transaction_id {
                return Ok(r);
            }
        }
    }
    Err("no answer from the relay".into())
}

fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|()| e.code.0)
}

/// Allocates and binds a channel to `peer`; returns the socket ready for ChannelData.
async fn setup(relay: SocketAddr, user: &str, pass: &str, peer: SocketAddr) -> Res<UdpSocket> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(relay).await?;
    let transport = || -> Box<dyn Setter> { Box::new(RequestedTransport { protocol: PROTO_UDP }) };
    let challenge = request(&sock, &build(METHOD_ALLOCATE, CLASS_REQUEST, vec![transport()])?).await?;
    let realm = String::from_utf8(challenge.get(ATTR_REALM)?)?;
    let nonce = String::from_utf8(challenge.get(ATTR_NONCE)?)?;
    let auth = || -> Vec<Box<dyn Setter>> {
        vec![
            Box::new(TextAttribute::new(ATTR_USERNAME, user.to_string())),
            Box::new(TextAttribute::new(ATTR_REALM, realm.clone())),
            Box::new(TextAttribute::new(ATTR_NONCE, nonce.clone())),
            Box::new(MessageIntegrity::new_long_term_integrity(user.to_string(), realm.clone(), pass.to_string())),
        ]
    };
    let mut attrs = vec![transport()];
    attrs.extend(auth());
    let r = request(&sock, &build(METHOD_ALLOCATE, CLASS_REQUEST, attrs)?).await?;
    if let Some(code) = error_code(&r) {
        return Err(format!("allocate refused: {code}").into());
    }
    let mut attrs: Vec<Box<dyn Setter>> =
        vec![Box::new(ChannelNumber(CHANNEL)), Box::new(PeerAddress { ip: peer.ip(), port: peer.port() })];
    attrs.extend(auth());
    let r = request(&sock, &build(METHOD_CHANNEL_BIND, CLASS_REQUEST, attrs)?).await?;
    if let Some(code) = error_code(&r) {
        return Err(format!("channel bind refused: {code}").into());
    }
    Ok(sock)
}

/// Keeps `window` packets in flight until `stop`; returns round trips (µs) and losses.
async fn pump(sock: UdpSocket, window: usize, payload: usize, stop: Arc<AtomicBool>) -> (Vec<u32>, u64) {
    let mut frame = vec![0u8; 4 + payload.div_ceil(4) * 4];
    frame[..2].copy_from_slice(&CHANNEL.to_be_bytes());
    frame[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
    let mut rtts = Vec::new();
    let mut lost = 0;
    let mut buf = vec![0u8; 1500];
    let send = |frame: &mut Vec<u8>| {
        frame[4..12].copy_from_slice(&now_micros().to_be_bytes());
    };
    for _ in 0..window {
        send(&mut frame);
        let _ = sock.send(&frame).await;
    }
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
            Ok(Ok(n)) if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == CHANNEL => {
                let sent = u64::from_be_bytes(buf[4..12].try_into().unwrap_or_default());
                rtts.push(now_micros().saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
            Ok(_) => continue,
            Err(_) => lost += 1, // nothing for 500 ms: count one lost and refill the window
        }
        send(&mut frame);
        let _ = sock.send(&frame).await;
    }
    (rtts, lost)
}

/// An echo peer: every datagram goes back to where it came from.
async fn echo_peer() -> Res<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok((addr, task))
}

struct Load {
    clients: usize,
    window: usize,
    payload: usize,
    seconds: u64,
}

async fn measure(load: &Load, relay: SocketAddr, user: &str, pass: &str, pid: u32) -> Res<Figures> {
    let (peer, echo) = echo_peer().await?;
    let mut socks = Vec::with_capacity(load.clients);
    for _ in 0..load.clients {
        socks.push(setup(relay, user, pass, peer).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_of(pid).unwrap_or_default();
    let t0 = Instant::now();
    let tasks: Vec<_> =
        socks.into_iter().map(|s| tokio::spawn(pump(s, load.window, load.payload, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut rtts = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (r, l) = t.await?;
        rtts.extend(r);
        lost += l;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_of(pid).unwrap_or_default().saturating_sub(cpu0);
    echo.abort();
    rtts.sort_unstable();
    let pct = |p: f64| rtts.get(((rtts.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0) as f64 / 1000.0;
    Ok(Figures {
        packets: rtts.len() as u64,
        lost,
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_s: cpu.as_secs_f64(),
        rss_kib: rss_kib_of(pid).unwrap_or(0),
    })
}

fn print(name: &str, f: &Figures) {
    // Each echoed packet crosses the relay twice (client -> peer, peer -> client).
    let relayed = f.packets as f64 * 2.0 / f.secs;
    println!(
        "turn: {name:<7} {:>9.0} packets/s relayed, round trip p50 {:.2} ms p99 {:.2} ms, {} timeouts, \
         CPU {:.2} s ({:.1} µs/packet), RSS {:.1} MiB",
        relayed,
        f.p50_ms,
        f.p99_ms,
        f.lost,
        f.cpu_s,
        f.cpu_s * 1e6 / (f.packets as f64 * 2.0).max(1.0),
        f.rss_kib as f64 / 1024.0
    );
}

/// Starts coturn on a free loopback port with a TURN REST secret; returns it and credentials.
fn start_coturn(bin: &str) -> Res<(Child, SocketAddr, String, String)> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let secret = format!("bench-{}", now_micros());
    let child = Command::new(bin)
        .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--allow-loopback-peers", "--no-cli"])
        .args(["--no-tls", "--no-dtls", "--realm=bench", "--use-auth-secret", "--log-file=stdout", "--simple-log"])
        .arg(format!("--listening-port={port}"))
        .arg(format!("--static-auth-secret={secret}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let user = format!("{}:bench", now_micros() / 1_000_000 + 3600);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let pass = base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, user.as_bytes()).as_ref());
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port)), user, pass))
}

/// coturn's own client as the load: `turnutils_uclient -m 300 -n 50 -l 120` (300 clients, 50
/// messages each, through channels to `turnutils_peer`); returns its summary line and the
/// server's CPU seconds over the run.
fn uclient_load(relay: SocketAddr, user: &str, pass: &str, pid: u32) -> Res<String> {
    let peer_port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut peer = Command::new("/usr/bin/turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = cpu_of(pid).unwrap_or_default();
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/turnutils_uclient")
        .args(["-m", "300", "-n", "50", "-l", "120", "-u", user, "-w", pass, "-p", &relay.port().to_string()])
        .args(["-e", "127.0.0.1", "-r", &peer_port.to_string(), "127.0.0.1"])
        .output()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_of(pid).unwrap_or_default().saturating_sub(cpu0).as_secs_f64();
    let _ = peer.kill();
    let _ = peer.wait();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let pick = |key: &str| {
        text.lines().rev().find(|l| l.contains(key)).map(|l| l.split(": : ").last().unwrap_or(l).trim().to_string())
    };
    Ok(format!(
        "{} | {} | {} | wall {wall:.1} s, server CPU {cpu:.2} s",
        pick("tot_recv_msgs").unwrap_or_default(),
        pick("Total lost packets").unwrap_or_default(),
        pick("Average round trip delay").unwrap_or_default(),
    ))
}

/// Runs the same load against our relay and, when installed, coturn.
pub async fn compare(server: &Arc<Server>, clients: usize, window: usize, seconds: u64, coturn: &str) -> Res<()> {
    let load = Load { clients, window, payload: 100, seconds };
    println!("turn: {clients} allocations, {window} packets in flight each, 100-byte payload, {seconds} s per relay");
    let token = server.users("turn", 1).await?.remove(0);
    let v: serde_json::Value =
        server.http.get(format!("{}/api/v1/turn", server.url)).bearer_auth(&token).send().await?.json().await?;
    let url = v["urls"][1].as_str().ok_or("no TURN url")?;
    let relay: SocketAddr = url.trim_start_matches("turn:").split('?').next().ok_or("bad TURN url")?.parse()?;
    let (user, pass) = (v["username"].as_str().unwrap_or_default(), v["credential"].as_str().unwrap_or_default());
    let pid = server.pid.ok_or("server pid unknown")?;
    let ours = measure(&load, relay, user, pass, pid).await?;
    print("chat", &ours);
    let uclient = std::path::Path::new("/usr/bin/turnutils_uclient").exists();
    if uclient {
        let (u, p) = (user.to_string(), pass.to_string());
        let line = tokio::task::spawn_blocking(move || uclient_load(relay, &u, &p, pid)).await??;
        println!("turn: chat    turnutils_uclient -m 300 -n 50: {line}");
    }
    if !std::path::Path::new(coturn).exists() {
        println!("turn: {coturn} not installed (apt-get install coturn): no comparison");
        return Ok(());
    }
    let (mut child, addr, cuser, cpass) = start_coturn(coturn)?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cpid = child.id();
    let theirs = measure(&load, addr, &cuser, &cpass, cpid).await;
    if uclient && theirs.is_ok() {
        let line = tokio::task::spawn_blocking(move || uclient_load(addr, &cuser, &cpass, cpid)).await??;
        println!("turn: coturn  turnutils_uclient -m 300 -n 50: {line}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let theirs = theirs?;
    print("coturn", &theirs);
    let per_packet = |f: &Figures| f.cpu_s / (f.packets as f64).max(1.0);
    println!(
        "turn: chat/coturn: throughput {:.2}, p99 round trip {:.2}, CPU per packet {:.2}",
        (ours.packets as f64 / ours.secs) / (theirs.packets as f64 / theirs.secs),
        ours.p99_ms / theirs.p99_ms,
        per_packet(&ours) / per_packet(&theirs)
    );
    Ok(())
}
