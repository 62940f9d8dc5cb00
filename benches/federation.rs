//! Federation figures, two real servers in this process talking HTTPS (a throwaway CA):
//!
//! 1. Propagation A -> B: Ana on A sends at a fixed rate; each send is timed from its
//!    acknowledgement on A to the moment Ben's live WebSocket on B receives it. Prints p50, p99
//!    and max.
//! 2. Joining a big remote room: A has a room with 1,000 messages and 200 members; a user of B
//!    joins it by alias (make_join/send_join, state and auth chain verified, recent history
//!    fetched), then loads the room page from B. Prints both times.
//!
//! Run: `cargo bench --bench federation` (options: `-- --rate 100 --seconds 10 --members 200
//! --messages 1000`).

use chat_testkit::tokio_tungstenite;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::ids::UserId;
use chat_testkit::tls::{connect, pki};
use futures_util::StreamExt;
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
    c.limits.messages_per_user_per_minute = 1_000_000_000;
    c.limits.registrations_per_ip_per_minute = 1_000_000;
    c.limits.federation_requests_per_origin_per_minute = 1_000_000;
    c.limits.federation_events_per_origin_per_minute = 1_000_000_000;
    c.limits.federation_events_per_room_per_hour = 1_000_000_000;
    Ok(chat::start(c, tokio_util::sync::CancellationToken::new()).await?)
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
    let mut req = format!("wss://{b_addr}/ws").into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {}", ben.token).parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, connect(&ca, &b_addr).await).await?;
    let total = rate * seconds;
    let acked: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Default::default();
    let receiver = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut got: std::collections::HashMap<String, Instant> = Default::default();
            while got.len() < total as usize {
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
            let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
            let mut lat: Vec<f64> = got
                .iter()
                .filter_map(|(k, at)| {
                    acked.get(k).map(|sent| at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
                })
                .collect();
            lat.sort_by(|x, y| x.total_cmp(y));
            (got.len(), lat)
        })
    };
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let (st, uid, rid, acked) = (sa.clone(), ana.user_id.clone(), room.clone(), acked.clone());
        tokio::spawn(async move {
            let body = format!("p{i}");
            if chat::rooms::send_message(&st.rooms, &uid, &rid, &body, &format!("t{i}")).await.is_ok()
                && let Ok(mut a) = acked.lock()
            {
                a.insert(body, Instant::now());
            }
        });
    }
    let sending = started.elapsed();
    let (received, lat) = receiver.await?;
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
        chat::rooms::send_message(&sa.rooms, &ana.user_id, &big, &format!("history {i}"), &format!("h{i}")).await?;
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
    Ok(())
}
