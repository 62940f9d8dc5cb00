//! Federation figures, two real servers in this process talking HTTPS (a throwaway CA):
//!
//! 1. Propagation A -> B: Ana on A sends at a fixed rate; each send is timed from its
//!    acknowledgement on A to the moment Ben's live WebSocket on B receives it. Prints p50, p99
//!    and max.
//! 2. Joining a big remote room: A has a room with 1,000 messages and 200 members; a user of B
//!    joins it by alias (make_join/send_join, state and auth chain verified, recent history
//!    fetched), then loads the room page from B. Prints both times.
//! 3. With Synapse (when its virtualenv is installed, as `scripts/test` does; `--synapse 0`
//!    skips it): propagation A -> Synapse (its `/sync`) and Synapse -> A (our WebSocket) at 10
//!    and 100 msg/s, and joining a Synapse room with `--messages` events and `--members`
//!    members from A.
//! 4. Fan-out: `--fanout` (20) more servers each have a user in one of A's rooms; Ana sends at
//!    `--fanout-rate` (10) msg/s; each send is timed from its acknowledgement on A to the moment
//!    the last of those servers' WebSockets has it. Prints p50, p99, and the requests and TLS
//!    connections A made (connections are kept and reused).
//!
//! Run: `cargo bench --bench federation` (options: `-- --rate 100 --seconds 10 --members 200
//! --messages 1000 --fanout 20 --synapse 1 --http1 0`; `--http1 1` makes our servers speak
//! HTTP/1.1 to each other, `federation_http2 = false`, for a comparison).

use chat_testkit::tokio_tungstenite;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::ids::UserId;
use chat_testkit::tls::{connect, pki};
use futures_util::StreamExt;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn start(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> Res<chat::Running> {
    let mut c = chat::Config::with_data_dir(dir);
    c.listen = "127.0.0.1:0".parse()?;
    c.turn.enabled = false;
    c.metrics_listen = None;
    c.tls.cert = Some(cert.to_path_buf());
    c.tls.key = Some(key.to_path_buf());
    c.federation_ca = Some(ca.to_path_buf());
    c.federation_private_addresses = true;
    c.federation_http2 = arg("--http1", 0) == 0;
    c.limits.messages_per_user_per_minute = 1_000_000_000;
    c.limits.registrations_per_ip_per_minute = 1_000_000;
    c.limits.federation_requests_per_origin_per_minute = 1_000_000;
    c.limits.federation_events_per_origin_per_minute = 1_000_000_000;
    c.limits.federation_events_per_room_per_hour = 1_000_000_000;
    Ok(chat::start(c, tokio_util::sync::CancellationToken::new()).await?)
}

/// A live WebSocket of `token`'s user on the server at `addr`, over TLS.
async fn live(ca: &Path, addr: &str, token: &str) -> Res<Ws> {
    let mut req = format!("wss://{addr}/ws").into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, connect(ca, addr).await).await?;
    Ok(ws)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Collects the bodies of `m.room.message` events arriving on `ws` (with their arrival time)
/// until `total` have come or none for 30 s.
fn collect(mut ws: Ws, total: usize) -> tokio::task::JoinHandle<std::collections::HashMap<String, Instant>> {
    tokio::spawn(async move {
        let mut got: std::collections::HashMap<String, Instant> = Default::default();
        while got.len() < total {
            let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await else { break };
            let Message::Text(t) = msg else { continue };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["t"] == "event"
                && v["event"]["type"] == "m.room.message"
                && let Some(body) = v["event"]["content"]["body"].as_str()
            {
                got.insert(body.to_string(), Instant::now());
            }
        }
        got
    })
}

/// Latencies (ms, sorted) from `sent` to `got` for the bodies in both.
fn latencies(
    sent: &std::collections::HashMap<String, Instant>,
    got: &std::collections::HashMap<String, Instant>,
) -> Vec<f64> {
    let mut lat: Vec<f64> = got
        .iter()
        .filter_map(|(k, at)| sent.get(k).map(|s| at.saturating_duration_since(*s).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(|x, y| x.total_cmp(y));
    lat
}

/// Sends `total` messages (`{prefix}{i}`) as `user` into `room` at `rate` per second, each in
/// its own task; returns once the last is started, with each body's acknowledgement time
/// (filled in as the acknowledgements come).
async fn send_at_rate(
    st: &chat::state::AppState,
    user: &UserId,
    room: &chat::ids::RoomId,
    rate: u64,
    total: usize,
    prefix: &str,
) -> Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> {
    let acked: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for i in 0..total {
        tick.tick().await;
        let (st, uid, rid, acked) = (st.clone(), user.clone(), room.clone(), acked.clone());
        let body = format!("{prefix}{i}");
        tokio::spawn(async move {
            if chat::rooms::send_message(&st.rooms, &uid, &rid, &body, &body, None).await.is_ok()
                && let Ok(mut a) = acked.lock()
            {
                a.insert(body, Instant::now());
            }
        });
    }
    acked
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Res<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> Res<()> {
    let rate = arg("--rate", 100);
    let seconds = arg("--seconds", 10);
    let members = arg("--members", 200);
    let messages = arg("--messages", 1000);
    let tmp = tempfile::tempdir()?;
    let (ca, cert, key) = pki(tmp.path());
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = start(&da, &ca, &cert, &key).await?;
    let b = start(&db, &ca, &cert, &key).await?;
    let (sa, sb) = (a.state.clone(), b.state.clone());
    let ip: IpAddr = [127, 0, 0, 1].into();
    let ana = chat::auth::account::register(&sa.accounts, "ana", "password123", ip).await?;
    let ben = chat::auth::account::register(&sb.accounts, "ben", "password123", ip).await?;

    // 1. Propagation.
    let create = |name: &str, alias: &str| chat::rooms::CreateRoom {
        name: name.into(),
        topic: String::new(),
        join_rule: chat::events::JoinRule::Public,
        alias: Some(alias.into()),
    };
    let room = chat::rooms::create_room(&sa.rooms, &ana.user_id, create("Propagation", "prop")).await?;
    chat::federation::membership::join_by_name(&sb.fed, &ben.user_id, &format!("#prop:{}", sa.server_name), &[])
        .await?;
    let b_addr = b.addr.to_string();
    let total = rate * seconds;
    let receiver = collect(live(&ca, &b_addr, &ben.token).await?, total as usize);
    let started = Instant::now();
    let acked = send_at_rate(&sa, &ana.user_id, &room, rate, total as usize, "p").await;
    let sending = started.elapsed();
    let got = receiver.await?;
    let received = got.len();
    let lat = latencies(&acked.lock().map(|a| a.clone()).unwrap_or_default(), &got);
    println!(
        "propagation A->B at {rate} msg/s for {:.1} s: {received}/{total} delivered live on B; ack on A -> B's WebSocket: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sending.as_secs_f64(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
    );

    // 2. Joining a big remote room.
    let big = chat::rooms::create_room(&sa.rooms, &ana.user_id, create("Big", "big")).await?;
    for i in 1..members {
        let uid = UserId::new(&format!("m{i}"), &sa.server_name);
        chat::federation::membership::join(&sa.fed, &uid, &big).await?;
    }
    for i in 0..messages {
        chat::rooms::send_message(&sa.rooms, &ana.user_id, &big, &format!("history {i}"), &format!("h{i}"), None)
            .await?;
    }
    let t = Instant::now();
    chat::federation::membership::join_by_name(&sb.fed, &ben.user_id, &format!("#big:{}", sa.server_name), &[]).await?;
    let joined = t.elapsed();
    let mut s = connect(&ca, &b_addr).await;
    let head = format!(
        "GET /rooms/{big} HTTP/1.1\r\nHost: {b_addr}\r\nCookie: chat_token={}\r\nConnection: close\r\n\r\n",
        ben.token
    );
    s.write_all(head.as_bytes()).await?;
    let mut page = Vec::new();
    let _ = s.read_to_end(&mut page).await;
    let shown = t.elapsed();
    let page = String::from_utf8_lossy(&page);
    let last = format!("history {}", messages - 1);
    if !page.starts_with("HTTP/1.1 200") || !page.contains(&last) {
        return Err(format!("the room page on B does not show {last}: {}", &page[..page.len().min(300)]).into());
    }
    let rec = sb.store.room(&big)?.ok_or("room missing on B")?;
    println!(
        "join a remote room with {messages} messages and {members} members: joined in {:.0} ms, latest page shown in {:.0} ms ({} members on B, {} bytes of page)",
        joined.as_secs_f64() * 1000.0,
        shown.as_secs_f64() * 1000.0,
        rec.joined,
        page.len(),
    );

    // 3. With Synapse (before the fan-out, whose servers keep running).
    if arg("--synapse", 1) == 1 && chat_testkit::synapse::python().exists() {
        with_synapse(&sa, &ana, &a.addr.to_string(), &ca, &cert, &key, members, messages).await?;
    } else {
        println!("Synapse: not installed (scripts/test installs it), skipped");
    }
    // 4. Fan-out to many servers.
    let fanout = arg("--fanout", 20) as usize;
    if fanout > 0 {
        let fan = chat::rooms::create_room(&sa.rooms, &ana.user_id, create("Fan", "fan")).await?;
        let mut others = Vec::new();
        let mut collectors = Vec::new();
        let fan_rate = arg("--fanout-rate", 10);
        let fan_total = (fan_rate * seconds) as usize;
        for i in 0..fanout {
            let d = tmp.path().join(format!("f{i}"));
            let s = start(&d, &ca, &cert, &key).await?;
            let st = s.state.clone();
            let u = chat::auth::account::register(&st.accounts, &format!("f{i}"), "password123", ip).await?;
            chat::federation::membership::join_by_name(&st.fed, &u.user_id, &format!("#fan:{}", sa.server_name), &[])
                .await?;
            collectors.push(collect(live(&ca, &s.addr.to_string(), &u.token).await?, fan_total));
            others.push(s);
        }
        let counters = &sa.fed.federation.client.counters;
        let (req0, open0) = (counters.requests.load(Relaxed), counters.opened.load(Relaxed));
        let sent = send_at_rate(&sa, &ana.user_id, &fan, fan_rate, fan_total, "f").await;
        // For each message, the time until the last server had it.
        let mut last: std::collections::HashMap<String, (Instant, usize)> = Default::default();
        let mut per_server = Vec::new();
        for c in collectors {
            let got = c.await?;
            per_server.push(got.len());
            for (k, at) in got {
                let e = last.entry(k).or_insert((at, 0));
                *e = (e.0.max(at), e.1 + 1);
            }
        }
        // Only messages every server got count.
        let everywhere: std::collections::HashMap<String, Instant> =
            last.into_iter().filter(|(_, (_, n))| *n == fanout).map(|(k, (at, _))| (k, at)).collect();
        let sent = sent.lock().map(|a| a.clone()).unwrap_or_default();
        let lat = latencies(&sent, &everywhere);
        let all = per_server.iter().filter(|n| **n == fan_total).count();
        println!(
            "fan-out from A to {fanout} servers at {fan_rate} msg/s: {all}/{fanout} servers got all {fan_total}; ack on A -> the last server's WebSocket: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; A made {} requests on {} new connections",
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            counters.requests.load(Relaxed) - req0,
            counters.opened.load(Relaxed) - open0,
        );
        println!(
            "connections A opened in the whole run: {}, of them HTTP/2: {}",
            counters.opened.load(Relaxed),
            counters.opened_h2.load(Relaxed)
        );
        drop(others);
    }

    Ok(())
}

/// Propagation to and from Synapse at 10 and 100 msg/s, and joining a big Synapse room.
#[allow(clippy::too_many_arguments)]
async fn with_synapse(
    sa: &chat::state::AppState,
    ana: &chat::auth::account::SignedIn,
    a_addr: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    members: u64,
    messages: u64,
) -> Res<()> {
    use chat_testkit::synapse::{Synapse, enc};
    use serde_json::json;
    let syn = Synapse::start(ca, cert, key).await;
    let sam = syn.register("sam").await;
    let create = |name: &str, alias: &str| chat::rooms::CreateRoom {
        name: name.into(),
        topic: String::new(),
        join_rule: chat::events::JoinRule::Public,
        alias: Some(alias.into()),
    };
    let room = chat::rooms::create_room(&sa.rooms, &ana.user_id, create("To Synapse", "tosyn")).await?;
    let alias = enc(&format!("#tosyn:{}", sa.server_name));
    let (st, v) = syn.call(Some(&sam), "POST", &format!("/_matrix/client/v3/join/{alias}"), Some(json!({}))).await;
    if st != 200 {
        return Err(format!("Synapse could not join: {v}").into());
    }
    for rate in [10u64, 100] {
        let total = (rate * 10) as usize;
        // A -> Synapse: Sam's /sync, long-polled.
        let (_, first) = syn.call(Some(&sam), "GET", "/_matrix/client/v3/sync?timeout=0", None).await;
        let mut since = first["next_batch"].as_str().unwrap_or_default().to_string();
        let syncer = {
            let (client_url, token, room) = (syn.client_url.clone(), sam.token.clone(), room.to_string());
            tokio::spawn(async move {
                let http = chat_testkit::reqwest::Client::new();
                let mut got: std::collections::HashMap<String, Instant> = Default::default();
                // Until all came, or none for 15 s (those left out come back only with history).
                let mut progress = Instant::now();
                while got.len() < total && progress.elapsed() < Duration::from_secs(15) {
                    let before = got.len();
                    // Up to 1,000 timeline events per answer (Synapse's default is 10: the rest
                    // would be left out as a gap).
                    let filter = enc(r#"{"room":{"timeline":{"limit":1000}}}"#);
                    let url = format!(
                        "{client_url}/_matrix/client/v3/sync?timeout=10000&filter={filter}&since={}",
                        enc(&since)
                    );
                    let Ok(res) = http.get(&url).bearer_auth(&token).send().await else { continue };
                    let at = Instant::now();
                    let v: serde_json::Value = res.json().await.unwrap_or_default();
                    if let Some(n) = v["next_batch"].as_str() {
                        since = n.to_string();
                    }
                    for e in v["rooms"]["join"][&room]["timeline"]["events"].as_array().into_iter().flatten() {
                        if let Some(b) = e["content"]["body"].as_str() {
                            got.insert(b.to_string(), at);
                        }
                    }
                    if got.len() > before {
                        progress = Instant::now();
                    }
                }
                got
            })
        };
        let sent = send_at_rate(sa, &ana.user_id, &room, rate, total, &format!("s{rate}-")).await;
        let got = syncer.await?;
        let sent_map = sent.lock().map(|a| a.clone()).unwrap_or_default();
        let lat = latencies(&sent_map, &got);
        // What /sync left out (Synapse drops events from its inbound queue when it falls
        // behind, and fetches them back when history is read): Sam's history, read until all
        // are there.
        let t = Instant::now();
        let mut in_history = 0;
        while t.elapsed() < Duration::from_secs(120) {
            let bodies = syn.bodies(&sam, room.as_str()).await;
            in_history = sent_map.keys().filter(|b| bodies.contains(b)).count();
            if in_history == sent_map.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "propagation A->Synapse at {rate} msg/s: {}/{total} live in Sam's /sync, {in_history}/{total} in his history {:.1} s later; ack on A -> Synapse's /sync answer: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            t.elapsed().as_secs_f64(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
        );

        // Synapse -> A: Sam sends; timed from Synapse's answer to Ana's WebSocket on A.
        let receiver = collect(live(ca, a_addr, &ana.token).await?, total);
        let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Default::default();
        let syn = Arc::new((syn.client_url.clone(), sam.token.clone()));
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut sends = Vec::new();
        for i in 0..total {
            tick.tick().await;
            let (syn, rid, sent) = (syn.clone(), room.to_string(), sent.clone());
            sends.push(tokio::spawn(async move {
                let http = chat_testkit::reqwest::Client::new();
                let body = format!("r{rate}-{i}");
                let url = format!("{}/_matrix/client/v3/rooms/{}/send/m.room.message/r{rate}-{i}", syn.0, enc(&rid));
                let res =
                    http.put(&url).bearer_auth(&syn.1).json(&json!({"msgtype": "m.text", "body": body})).send().await;
                if res.is_ok_and(|r| r.status().is_success())
                    && let Ok(mut a) = sent.lock()
                {
                    a.insert(body, Instant::now());
                }
            }));
        }
        let sending_done = Instant::now();
        for s in sends {
            let _ = s.await;
        }
        let sends_took = sending_done.elapsed();
        let got = receiver.await?;
        let sent_map = sent.lock().map(|a| a.clone()).unwrap_or_default();
        let lat = latencies(&sent_map, &got);
        println!(
            "propagation Synapse->A at {rate} msg/s: {}/{total} accepted by Synapse ({:.1} s after the last was sent), {} live on A; Synapse's answer -> Ana's WebSocket: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            sent_map.len(),
            sends_took.as_secs_f64(),
            got.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
        );
    }

    // Joining a big Synapse room from A.
    let body = json!({"preset": "public_chat", "room_alias_name": "bigsyn", "name": "Big on Synapse"});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    if st != 200 {
        return Err(format!("createRoom: {v}").into());
    }
    let big = v["room_id"].as_str().unwrap_or_default().to_string();
    let t = Instant::now();
    for i in 1..members {
        let u = syn.register(&format!("m{i}")).await;
        let (st, v) =
            syn.call(Some(&u), "POST", &format!("/_matrix/client/v3/join/{}", enc(&big)), Some(json!({}))).await;
        if st != 200 {
            return Err(format!("join on Synapse: {v}").into());
        }
    }
    for i in 0..messages {
        syn.send(&sam, &big, &format!("history {i}"), &format!("h{i}")).await;
    }
    let filled = t.elapsed();
    let ben = chat::auth::account::register(&sa.accounts, "benbig", "password123", [127, 0, 0, 1].into()).await?;
    let t = Instant::now();
    chat::federation::membership::join_by_name(&sa.fed, &ben.user_id, &format!("#bigsyn:{}", syn.name), &[]).await?;
    let joined = t.elapsed();
    let rid = chat::ids::RoomId::parse(&big)?;
    let rec = sa.store.room(&rid)?.ok_or("room missing on A")?;
    println!(
        "join a Synapse room with {messages} messages and {members} members from A: joined in {:.0} ms ({} members on A; filling it on Synapse took {:.0} s)",
        joined.as_secs_f64() * 1000.0,
        rec.joined,
        filled.as_secs_f64(),
    );
    Ok(())
}
