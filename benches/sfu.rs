//! Media server figures: `--people` (default 6) participants in one room call, each a Rust test
//! peer (`chat_testkit::media`, webrtc-rs) publishing synthetic VP8 in three simulcast layers
//! (30 packets per second each, 150, 450 and 1100 bytes) and Opus (50 packets per second), and
//! subscribing to everyone else; every receiver gets each other camera at the middle layer and
//! every microphone. The server is the release binary in its own process, so its CPU is
//! measured alone (from /proc) over `--seconds` (10) of steady forwarding.
//!
//! Prints: streams forwarded, packets forwarded per second (counted at the receivers), server
//! CPU (percent of one core, and microseconds per forwarded packet and per stream), one-way
//! delay through the server p50/p99 (sender's send to receiver's arrival, same clock), and the
//! share of packets missing at the receivers (sequence gaps).
//!
//! With `--janus 1`, the same people then do the same in a Janus VideoRoom (Debian's `janus`:
//! VideoRoom over its HTTP API, each peer a publisher and one multistream subscriber at the
//! middle simulcast layer), measured the same way, and the two are compared. Janus never
//! gathers ICE candidates on loopback, so then the bench (our server and the peers) runs in a
//! network namespace it creates and Janus in a second one (`ip netns`, root), joined by a veth
//! pair: 10.231.0.2 for the peers, 10.231.0.1 for Janus (API and media); each namespace's
//! default route leads only to that pair, so nothing leaves them.
//!
//! Run: `cargo build --release && cargo bench --bench sfu -- --people 8 --seconds 10 --janus 1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chat_testkit::janus::Janus;
use chat_testkit::media::MediaPeer;
use chat_testkit::{Binary, Ws, live_connect, reqwest};
use serde_json::{Value, json};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User and system CPU time of a process so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> Value {
    let mut r = http.post(url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let res = r.send().await.unwrap();
    assert!(res.status().is_success(), "{url}: {}", res.status());
    res.json().await.unwrap()
}

async fn ws(host: &str, token: &str) -> Ws {
    let stream = live_connect(host, token, "", None).await.unwrap();
    let mut ws = Ws { stream, ready: None, presence: Value::Null };
    ws.next_of("ready").await;
    ws
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// The namespaces of a `--janus` run: the bench (peers and our server), and Janus.
const NETNS: &str = "chat-sfu-bench";
const JANUS_NETNS: &str = "chat-sfu-janus";

/// Runs `ip` with `args`; panics with its message if it fails.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("ip (iproute2) runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `ip` with `args` inside namespace `ns`.
fn ip_in(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all);
}

/// Runs this bench again inside a new network namespace, with Janus's namespace beside it
/// (see the top), then removes both.
fn in_namespace() -> ! {
    for ns in [NETNS, JANUS_NETNS] {
        let _ = std::process::Command::new("ip").args(["netns", "del", ns]).output();
        ip(&["netns", "add", ns]);
        ip_in(ns, &["link", "set", "lo", "up"]);
    }
    ip_in(NETNS, &["link", "add", "jv1", "type", "veth", "peer", "name", "jv0", "netns", JANUS_NETNS]);
    ip_in(NETNS, &["addr", "add", "10.231.0.2/24", "dev", "jv1"]);
    ip_in(NETNS, &["link", "set", "jv1", "up"]);
    ip_in(JANUS_NETNS, &["addr", "add", "10.231.0.1/24", "dev", "jv0"]);
    ip_in(JANUS_NETNS, &["link", "set", "jv0", "up"]);
    // Default routes (multicast DNS sockets want one) that lead only to the pair.
    ip_in(NETNS, &["route", "add", "default", "dev", "jv1"]);
    ip_in(JANUS_NETNS, &["route", "add", "default", "dev", "jv0"]);
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", NETNS])
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env("CHAT_BENCH_IN_NETNS", "1")
        .env("CHAT_MEDIA_PEER_IP", "10.231.0.2")
        .status()
        .unwrap();
    for ns in [NETNS, JANUS_NETNS] {
        ip(&["netns", "del", ns]);
    }
    std::process::exit(status.code().unwrap_or(1));
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if arg("--janus", 0) == 1 && std::env::var_os("CHAT_BENCH_IN_NETNS").is_none() {
        in_namespace();
    }
    let people = arg("--people", 6) as usize;
    let seconds = arg("--seconds", 10);
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(
        dir.path(),
        "127.0.0.1:0",
        &["--turn-disabled", "--sfu-ports", "0", "--sfu-call-participants", "200"],
    );
    let pid = server.child.id();
    let host = server.url.trim_start_matches("http://").to_string();
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..people {
        let v = post(
            &http,
            &format!("{}/api/v1/register", server.url),
            None,
            json!({"username": format!("p{i}"), "password": "password123"}),
        )
        .await;
        tokens.push(v["token"].as_str().unwrap().to_string());
    }
    let room = post(
        &http,
        &format!("{}/api/v1/rooms", server.url),
        Some(&tokens[0]),
        json!({"name": "Bench", "visibility": "public"}),
    )
    .await;
    let room = room["room_id"].as_str().unwrap().to_string();
    for t in &tokens[1..] {
        post(&http, &format!("{}/api/v1/rooms/{room}/join", server.url), Some(t), json!({})).await;
    }
    let mut peers = Vec::new();
    for t in &tokens {
        let w = ws(&host, t).await;
        peers.push(MediaPeer::join(w, &room, "bench", 3, true).await.expect("joined"));
    }
    let ours = measure("media server", &peers, pid, seconds).await;
    for p in peers {
        p.leave().await;
    }
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();
    if arg("--janus", 0) == 0 {
        return;
    }
    // Janus's configuration and log (kept when the run fails: `--keep 1`).
    let jdir = tempfile::tempdir().unwrap();
    let jpath = if arg("--keep", 0) == 1 { jdir.keep() } else { jdir.path().to_path_buf() };
    println!("janus: configuration and log in {}", jpath.display());
    let janus = Janus::start(&jpath, JANUS_NETNS, "10.231.0.1", "jv0", "40000-40999").await;
    janus.create_room(1234, people + 1).await;
    let mut peers = Vec::new();
    for i in 0..people {
        peers.push(MediaPeer::join_janus(&janus, 1234, &format!("p{i}"), 3, 1).await);
    }
    let theirs = measure("janus videoroom", &peers, janus.child.id(), seconds).await;
    for p in peers {
        p.leave().await;
    }
    println!(
        "compared (janus / ours): packets forwarded/s {:.2}, CPU per forwarded packet {:.2}, delay p99 {:.2}",
        theirs.per_second / ours.per_second.max(1.0),
        theirs.us_per_packet / ours.us_per_packet.max(0.001),
        theirs.p99_ms / ours.p99_ms.max(0.001)
    );
    drop(janus);
}

/// What one run measured.
struct Figures {
    per_second: f64,
    us_per_packet: f64,
    p99_ms: f64,
}

/// Waits until every peer receives every other's camera, then measures `seconds` of steady
/// forwarding by the process `pid`, and prints it.
async fn measure(what: &str, peers: &[MediaPeer], pid: u32, seconds: u64) -> Figures {
    let people = peers.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = peers.iter().all(|p| {
            let r = p.received();
            r.values().filter(|x| x.purpose == "camera" && x.packets > 30).count() == people - 1
        });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let got: Vec<usize> = peers
                .iter()
                .map(|p| p.received().values().filter(|x| x.purpose == "camera" && x.packets > 30).count())
                .collect();
            let seen: Vec<Vec<(String, String, u64)>> = peers
                .iter()
                .map(|p| p.received().into_iter().map(|(k, r)| (k, r.purpose, r.packets)).collect())
                .collect();
            panic!(
                "{what}: not every peer receives every other within 60 s (cameras received: {got:?}; streams: {seen:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |peers: &[MediaPeer]| -> (u64, u64) {
        peers.iter().flat_map(|p| p.received().into_values()).fold((0, 0), |(n, g), r| (n + r.packets, g + r.seq_gaps))
    };
    // Delays of the measured window only (each stream's list grows in order).
    let marks: Vec<std::collections::HashMap<String, usize>> =
        peers.iter().map(|p| p.received().into_iter().map(|(k, r)| (k, r.delays_us.len())).collect()).collect();
    let (before, gaps_before) = count(peers);
    let cpu0 = cpu(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu(pid);
    let (after, gaps_after) = count(peers);
    let mut delays: Vec<u64> = peers
        .iter()
        .zip(&marks)
        .flat_map(|(p, m)| {
            p.received().into_iter().flat_map(|(k, r)| r.delays_us.into_iter().skip(m.get(&k).copied().unwrap_or(0)))
        })
        .collect();
    delays.sort_unstable();
    let packets = (after - before) as f64;
    let streams = people * (people - 1) * 2;
    let cpu_secs = (cpu1 - cpu0).as_secs_f64();
    let figures = Figures {
        per_second: packets / elapsed,
        us_per_packet: cpu_secs * 1e6 / packets.max(1.0),
        p99_ms: percentile(&delays, 0.99) as f64 / 1000.0,
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    println!(
        "{what} (process {pid}, {}), {people} people, {streams} streams forwarded (camera at the middle layer and microphone, to each other person), {seconds} s:",
        comm.trim()
    );
    println!("  packets forwarded: {:.0}/s", figures.per_second);
    println!(
        "  server CPU: {:.1}% of one core, {:.1} µs per forwarded packet, {:.2}% of a core per stream",
        cpu_secs / elapsed * 100.0,
        figures.us_per_packet,
        cpu_secs / elapsed * 100.0 / streams as f64
    );
    println!(
        "  one-way video delay through the server, measured window: p50 {:.2} ms, p99 {:.2} ms (test peers on the same machine)",
        percentile(&delays, 0.5) as f64 / 1000.0,
        figures.p99_ms
    );
    println!("  missing at receivers: {:.3}%", (gaps_after - gaps_before) as f64 * 100.0 / packets.max(1.0));
    figures
}
