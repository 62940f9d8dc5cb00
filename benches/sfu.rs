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
//! Run: `cargo build --release && cargo bench --bench sfu -- --people 8 --seconds 10`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

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

#[tokio::main(flavor = "multi_thread")]
async fn main() {
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
    // Everyone receives everyone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = peers.iter().all(|p| {
            let r = p.received();
            r.values().filter(|x| x.purpose == "camera" && x.packets > 30).count() == people - 1
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "not every peer receives every other within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |peers: &[MediaPeer]| -> (u64, u64) {
        peers.iter().flat_map(|p| p.received().into_values()).fold((0, 0), |(n, g), r| (n + r.packets, g + r.seq_gaps))
    };
    let (before, gaps_before) = count(&peers);
    let cpu0 = cpu(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu(pid);
    let (after, gaps_after) = count(&peers);
    let mut delays: Vec<u64> =
        peers.iter().flat_map(|p| p.received().into_values()).flat_map(|r| r.delays_us).collect();
    delays.sort_unstable();
    let packets = (after - before) as f64;
    let streams = people * (people - 1) * 2;
    let cpu_secs = (cpu1 - cpu0).as_secs_f64();
    println!(
        "media server, {people} people, {streams} streams forwarded (camera at the middle layer and microphone, to each other person), {seconds} s:"
    );
    println!("  packets forwarded: {:.0}/s", packets / elapsed);
    println!(
        "  server CPU: {:.1}% of one core, {:.1} µs per forwarded packet, {:.2}% of a core per stream",
        cpu_secs / elapsed * 100.0,
        cpu_secs * 1e6 / packets.max(1.0),
        cpu_secs / elapsed * 100.0 / streams as f64
    );
    println!(
        "  one-way video delay through the server, whole run: p50 {:.2} ms, p99 {:.2} ms (test peers on the same machine)",
        percentile(&delays, 0.5) as f64 / 1000.0,
        percentile(&delays, 0.99) as f64 / 1000.0
    );
    println!("  missing at receivers: {:.3}%", (gaps_after - gaps_before) as f64 * 100.0 / packets.max(1.0));
    for p in peers {
        p.leave().await;
    }
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();
}
