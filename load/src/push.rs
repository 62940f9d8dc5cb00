//! `chat-load push`: Web Push figures against a push service played on loopback by
//! `chat_testkit::push` (it checks each VAPID JWT and decrypts each payload, as a vendor's
//! service and the browser would).
//!
//! 1. The writer's message throughput into a room of `members` where every member has push
//!    on, against the same room on a second server where no one has (six rounds, alternating
//!    which server goes first; the median of the rounds' ratios). Group chatter: every 50th message mentions a member, who gets
//!    a push.
//! 2. Push throughput: the members set the room to "every message", then messages go in; the
//!    pushes the service receives per second (encrypted, signed), and the server's CPU per push.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_testkit::push::PushService;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::{BoxError, Cli, Res, Sender, Server};

/// Throughput rounds per server.
const ROUNDS: u64 = 6;

/// Runs the scenario: `members` in the room, `messages` per throughput round, `pushed`
/// messages for the push throughput.
pub async fn run(cli: &Cli, first: Arc<Server>, members: usize, messages: u64, pushed: u64) -> Res<()> {
    println!(
        "== push: {members} members with push on vs none, {messages} messages per round; {pushed} messages to all"
    );
    let service = PushService::start().await;
    let with = first;
    let without = Server::start(cli).await?;
    let mut rooms = Vec::new();
    for (server, push) in [(&with, true), (&without, false)] {
        let tokens = server.users("pu", members).await?;
        let room = server.room(&tokens[0], "pushed").await?;
        server.join_all(&tokens, &room).await?;
        if push {
            subscribe_all(server, &service, &tokens).await?;
        }
        rooms.push((tokens, room));
    }
    // Rounds alternate which server goes first (this VM's disk drifts within a run): each
    // round's ratio is taken, then the median.
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut rates = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let (tokens, room) = &rooms[k];
            let server = if k == 0 { &with } else { &without };
            rates[k] = send_round(server, tokens, room, messages, round, k == 0).await?;
        }
        on.push(rates[0]);
        off.push(rates[1]);
        ratios.push(rates[0] / rates[1]);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let (on, off, ratio) = (median(&mut on), median(&mut off), median(&mut ratios));
    println!(
        "push: writer throughput with {members} members with push on {on:.0} msg/s, with none {off:.0} msg/s (medians of {ROUNDS}); \
         median of the rounds' ratios {ratio:.2} [{:.2}-{:.2}]",
        ratios[0],
        ratios[ratios.len() - 1]
    );
    // Every mentioned member got their push (a sender naming themself gets none).
    let senders = 32.min(members) as u64;
    let mentions = ROUNDS * (messages.div_ceil(senders) * senders).div_ceil(50);
    let got = wait_for(&service, mentions as usize, Duration::from_secs(120)).await;
    println!("push: {got} pushes received for {mentions} messages that mention a member");
    without.stop();

    // Push throughput: everyone takes every message of the room.
    let (tokens, room) = &rooms[0];
    set_all(&with, tokens, room).await?;
    let before = service.received().len();
    let want = before + (pushed as usize) * (members - 1);
    let cpu0 = with.cpu();
    let started = Instant::now();
    let ws = with.ws(&tokens[0]).await?;
    let mut s = Sender::new(ws, Arc::new(AtomicU64::new(0)));
    for i in 0..pushed {
        s.send(room, format!("to everyone {i}"), format!("all-{i}")).await?;
        s.acks.recv().await.ok_or("connection closed")?;
    }
    let got = wait_for(&service, want, Duration::from_secs(600)).await;
    let secs = started.elapsed().as_secs_f64();
    let n = got - before;
    println!("push: {n} pushes (encrypted, VAPID-signed) received in {secs:.2} s = {:.0} pushes/s", n as f64 / secs);
    if let (Some(a), Some(b)) = (cpu0, with.cpu()) {
        println!("push: server CPU {:.3} ms per push", (b - a).as_secs_f64() * 1000.0 / n.max(1) as f64);
    }
    let faults = service.faults();
    if !faults.is_empty() {
        return Err(format!("the push service found {} bad pushes, e.g. {}", faults.len(), faults[0]).into());
    }
    Ok(())
}

/// Polls until the service holds `n` pushes (or `limit` passes); returns how many it holds.
async fn wait_for(service: &PushService, n: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let got = service.received().len();
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every member turns push on for one device at `service`.
async fn subscribe_all(server: &Arc<Server>, service: &PushService, tokens: &[String]) -> Res<()> {
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let body = service.device(&format!("d{i}")).subscription("load");
        let (server, sem, t) = (server.clone(), sem.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await?;
            server.post(Some(&t), "/api/v1/push/subscriptions", body).await?;
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Every member sets the room to "every message".
async fn set_all(server: &Arc<Server>, tokens: &[String], room: &str) -> Res<()> {
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for t in tokens {
        let (server, sem, t, path) =
            (server.clone(), sem.clone(), t.clone(), format!("/api/v1/rooms/{room}/notifications"));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await?;
            server.post(Some(&t), &path, json!({"level": "all"})).await?;
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `messages` messages into `room` from 32 members, 8 in flight each; every 50th mentions a
/// member (`@pu{n}`). Returns messages/s.
async fn send_round(
    server: &Arc<Server>,
    tokens: &[String],
    room: &str,
    messages: u64,
    round: u64,
    push: bool,
) -> Res<f64> {
    let senders = 32.min(tokens.len());
    let per = messages.div_ceil(senders as u64);
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, t) in tokens.iter().take(senders).enumerate() {
        let ws = server.ws(t).await?;
        let (room, acked, members) = (room.to_string(), acked.clone(), tokens.len() as u64);
        tasks.push(tokio::spawn(async move {
            let mut s = Sender::new(ws, acked);
            let (mut sent, mut outstanding) = (0u64, 0usize);
            while sent < per || outstanding > 0 {
                while outstanding < 8 && sent < per {
                    let n = sent * senders as u64 + i as u64;
                    let body = if n.is_multiple_of(50) {
                        format!("over to you @pu{} ({round}/{n})", (n / 50 + 1 + i as u64) % members)
                    } else {
                        format!("group chatter, round {round}, message {n} of the room")
                    };
                    s.send(&room, body, format!("r{round}-{i}-{sent}")).await?;
                    sent += 1;
                    outstanding += 1;
                }
                s.acks.recv().await.ok_or("connection closed")?;
                outstanding -= 1;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = acked.load(Ordering::Relaxed);
    let who = if push { "push on" } else { "no push" };
    println!("push: round {round}, {who}: {n} messages in {secs:.2} s = {:.0} msg/s", n as f64 / secs);
    Ok(n as f64 / secs)
}
