//! Call signalling over the live channel against the real server: who may ring, answer and
//! send candidates; the priority lane; missed calls; call rosters.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::time::Duration;

use common::{TestServer, Ws};
use serde_json::{Value, json};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// Sends a call signal and returns the `ack` or `error` frame for it.
async fn signal(ws: &mut Ws, room: &str, kind: &str, content: Value) -> Value {
    let txn = format!("t{}", rand_suffix());
    ws.send(json!({ "t": "call", "room_id": room, "type": kind, "content": content, "txn_id": txn })).await;
    loop {
        let f = ws.next().await;
        if (f["t"] == "ack" || f["t"] == "error") && f["txn_id"] == txn.as_str() {
            return f;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn invite(call_id: &str, invitee: &str, lifetime: u64) -> Value {
    json!({ "call_id": call_id, "party_id": "p1", "lifetime": lifetime, "invitee": invitee,
            "offer": { "type": "offer", "sdp": SDP } })
}

fn answer(call_id: &str) -> Value {
    json!({ "call_id": call_id, "party_id": "p2", "answer": { "type": "answer", "sdp": SDP } })
}

fn candidates(call_id: &str) -> Value {
    json!({ "call_id": call_id, "party_id": "p2",
            "candidates": [{ "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0 }] })
}

/// Next `call` frame of the given event type (within 15 s).
async fn next_call(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let f = ws.try_next(Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no {kind} within 15 s"));
        if f["t"] == "call" && f["event"]["type"] == kind {
            return f;
        }
    }
}

/// The people in a `call_roster` frame's calls.
fn people(roster: &Value) -> Vec<&str> {
    let calls = roster["calls"].as_array().unwrap();
    calls.iter().flat_map(|c| c["user_ids"].as_array().unwrap()).map(|u| u.as_str().unwrap()).collect()
}

/// Waits for a `call_roster` frame listing `n` people and returns it.
async fn roster_of(ws: &mut Ws, n: usize) -> Value {
    loop {
        let f = ws.next_of("call_roster").await;
        if people(&f).len() == n {
            return f;
        }
    }
}

#[tokio::test]
async fn only_members_and_parties_move_a_call_along() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cy = s.register("cy").await; // not a member
    let dee = s.register("dee").await;
    s.join(&dee, &room).await; // a member, but not a party
    let mut a = s.ws(&ana, None).await;
    let mut b = s.ws(&ben, None).await;
    let mut c = s.ws(&cy, None).await;
    let mut d = s.ws(&dee, None).await;

    // A non-member cannot ring anyone in the room.
    let f = signal(&mut c, &room, "m.call.invite", invite("x1", &ben.id, 30000)).await;
    assert_eq!(f["error"], "forbidden", "{f}");
    // Nobody can ring a non-member.
    let f = signal(&mut a, &room, "m.call.invite", invite("x2", &cy.id, 30000)).await;
    assert_eq!(f["error"], "forbidden", "{f}");

    // Ana rings Ben; Ben's tab gets it on the call lane; so does Dee (a room event).
    let f = signal(&mut a, &room, "m.call.invite", invite("c1", &ben.id, 30000)).await;
    assert_eq!(f["t"], "ack", "{f}");
    let rung = next_call(&mut b, "m.call.invite").await;
    assert_eq!(rung["event"]["content"]["invitee"], ben.id.as_str());
    assert_eq!(rung["event"]["content"]["chat.media"], "video");
    next_call(&mut d, "m.call.invite").await;

    // Outsiders and bystanders cannot answer, send candidates or hang up.
    for (ws, who) in [(&mut c, "non-member"), (&mut d, "bystander")] {
        for (kind, content) in [
            ("m.call.answer", answer("c1")),
            ("m.call.candidates", candidates("c1")),
            ("m.call.hangup", json!({ "call_id": "c1", "party_id": "p9" })),
        ] {
            let f = signal(ws, &room, kind, content).await;
            assert_eq!(f["error"], "forbidden", "{who} {kind}: {f}");
        }
    }
    // The caller cannot answer their own call; an unknown call id is refused.
    assert_eq!(signal(&mut a, &room, "m.call.answer", answer("c1")).await["error"], "forbidden");
    assert_eq!(signal(&mut b, &room, "m.call.answer", answer("nope")).await["error"], "not_found");
    // Malformed content is refused with a reason.
    let bad = json!({ "call_id": "c1", "party_id": "p2", "answer": { "type": "answer", "sdp": "<script>" } });
    let f = signal(&mut b, &room, "m.call.answer", bad).await;
    assert_eq!(f["error"], "bad_request", "{f}");

    // Ben answers; candidates flow both ways; a second answer is refused.
    assert_eq!(signal(&mut b, &room, "m.call.answer", answer("c1")).await["t"], "ack");
    let got = next_call(&mut a, "m.call.answer").await;
    assert_eq!(got["event"]["sender"], ben.id.as_str());
    assert_eq!(signal(&mut b, &room, "m.call.candidates", candidates("c1")).await["t"], "ack");
    let got = next_call(&mut a, "m.call.candidates").await;
    assert_eq!(got["event"]["content"]["candidates"][0]["sdpMLineIndex"], 0);
    assert_eq!(signal(&mut b, &room, "m.call.answer", answer("c1")).await["error"], "conflict");

    // Ana hangs up; afterwards nothing moves the call.
    let f = signal(&mut a, &room, "m.call.hangup", json!({ "call_id": "c1", "party_id": "p1" })).await;
    assert_eq!(f["t"], "ack");
    let hung = next_call(&mut b, "m.call.hangup").await;
    assert_eq!(hung["event"]["content"]["chat.call"]["answered"], true);
    assert!(hung["html"].as_str().unwrap().contains("Video call with ana and ben"), "{}", hung["html"]);
    assert_eq!(signal(&mut b, &room, "m.call.candidates", candidates("c1")).await["error"], "conflict");
    // Reusing a call id is refused.
    assert_eq!(signal(&mut a, &room, "m.call.invite", invite("c1", &ben.id, 30000)).await["error"], "conflict");
    // The non-member saw none of it.
    assert!(c.try_next(Duration::from_millis(300)).await.is_none());
    s.stop().await;
}

#[tokio::test]
async fn an_unanswered_invite_becomes_a_missed_call_even_if_the_caller_is_gone() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut b = s.ws(&ben, None).await;
    {
        let mut a = s.ws(&ana, None).await;
        assert_eq!(signal(&mut a, &room, "m.call.invite", invite("m1", &ben.id, 5000)).await["t"], "ack");
        // Ana's tab closes while it rings.
    }
    next_call(&mut b, "m.call.invite").await;
    let started = std::time::Instant::now();
    let f = tokio::time::timeout(Duration::from_secs(10), next_call(&mut b, "m.call.hangup")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3), "hung up before the lifetime ended");
    assert_eq!(f["event"]["sender"], ana.id.as_str());
    assert_eq!(f["event"]["content"]["reason"], "invite_timeout");
    assert_eq!(f["event"]["content"]["chat.call"]["answered"], false);
    assert!(f["html"].as_str().unwrap().contains("Missed video call from ana"));
    // Too late to answer now.
    assert_eq!(signal(&mut b, &room, "m.call.answer", answer("m1")).await["error"], "conflict");
    // The missed call is in the room's history for everyone.
    let (_, v) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages")).await;
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"m.call.hangup"), "{kinds:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_declined_call_is_shown_as_declined() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut a = s.ws(&ana, None).await;
    let mut b = s.ws(&ben, None).await;
    let mut voice = invite("r1", &ben.id, 30000);
    voice["chat.media"] = json!("voice");
    assert_eq!(signal(&mut a, &room, "m.call.invite", voice).await["t"], "ack");
    // Only the callee may decline.
    let reject = json!({ "call_id": "r1", "party_id": "p2" });
    assert_eq!(signal(&mut a, &room, "m.call.reject", reject.clone()).await["error"], "conflict");
    assert_eq!(signal(&mut b, &room, "m.call.reject", reject).await["t"], "ack");
    let f = next_call(&mut a, "m.call.reject").await;
    assert!(f["html"].as_str().unwrap().contains("ben declined the voice call from ana"), "{}", f["html"]);
    s.stop().await;
}

#[tokio::test]
async fn call_signals_overtake_a_backlog_of_messages() {
    // A large queue so that the backlog stays in the live queue (no catch-up from the store).
    let s = TestServer::start_tuned(|c| c.limits.live_queue = 4096).await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut a = s.ws(&ana, None).await;
    let mut b = s.ws(&ben, None).await;
    // Ben's tab is busy (not reading) while Ana posts 1,000 messages of 8 KB: megabytes wait
    // in Ben's queue and socket buffers. Then Ana rings Ben.
    let body = "x".repeat(8 * 1024);
    for window in 0..40 {
        for i in 0..25 {
            a.send(json!({ "t": "send", "room_id": room, "body": body, "txn_id": format!("m{window}-{i}") })).await;
        }
        for _ in 0..25 {
            let f = a.next_of("ack").await;
            assert!(f["event_id"].is_string(), "{f}");
        }
    }
    assert_eq!(signal(&mut a, &room, "m.call.invite", invite("p1", &ben.id, 30000)).await["t"], "ack");
    // Ben reads: the invite arrives before the backlog has drained.
    let mut messages_before = 0;
    loop {
        let f = tokio::time::timeout(Duration::from_secs(20), b.next()).await.unwrap();
        if f["t"] == "call" {
            break;
        }
        if f["t"] == "event" && f["event"]["type"] == "m.room.message" {
            messages_before += 1;
        }
    }
    assert!(messages_before < 900, "the invite waited behind {messages_before} of 1000 messages");
    // The rest of the messages still arrive, all of them, in order; the call frame did not move
    // Ben's resume position.
    let mut rest = 0;
    while messages_before + rest < 1000 {
        let f = b.next().await;
        if f["t"] == "event" && f["event"]["type"] == "m.room.message" {
            rest += 1;
        }
    }
    eprintln!("invite overtook {} of 1000 queued messages", 1000 - messages_before);
    s.stop().await;
}

#[tokio::test]
async fn rosters_show_who_is_in_a_call_and_mesh_calls_are_capped() {
    // Without the media server a room call is a mesh, capped at 6 (with it, tests/sfu.rs).
    let s = TestServer::start_tuned(|c| c.sfu.enabled = false).await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let outsider = s.register("out").await;
    let mut a = s.ws(&ana, None).await;
    let mut b = s.ws(&ben, None).await;
    let mut o = s.ws(&outsider, None).await;
    a.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    let r = b.next_of("call_roster").await;
    assert_eq!(r["calls"], json!([{ "conf_id": "conf1", "user_ids": [ana.id], "hands": [], "muted": [] }]));
    // A non-member cannot join.
    o.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    assert_eq!(o.next_of("error").await["error"], "forbidden");
    // A tab opened later gets the roster after `ready`; the room page shows it too.
    let mut b2 = s.ws(&ben, None).await;
    let r = b2.next_of("call_roster").await;
    assert_eq!(r["calls"][0]["conf_id"], "conf1");
    let page = s.http.get(format!("{}/rooms/{room}", s.url)).bearer_auth(&ben.token).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("In call: ana"), "room page shows the call");
    // Six people fit; the seventh is refused.
    let mut tabs = Vec::new();
    for i in 0..5 {
        let u = s.register(&format!("p{i}")).await;
        s.join(&u, &room).await;
        let mut w = s.ws(&u, None).await;
        w.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
        tabs.push(w);
    }
    roster_of(&mut b, 6).await;
    b.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    let e = b.next_of("error").await;
    assert_eq!(e["error"], "conflict", "{e}");
    // Closing a tab takes its person out of the call.
    drop(tabs);
    drop(a);
    roster_of(&mut b, 0).await;
    s.stop().await;
}

/// The call bar is rendered by the server, once, for the page and for the live channel: the
/// `call_roster` frame carries it, naming who is in the call, and the page holds the same markup.
#[tokio::test]
async fn the_call_bar_arrives_rendered_over_the_live_channel() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut a = s.ws(&ana, None).await;
    let mut b = s.ws(&ben, None).await;
    a.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    let html = roster_of(&mut b, 1).await["html"].as_str().unwrap().to_string();
    assert!(html.contains(r#"id="callbar""#) && html.contains("In call: ana<"), "{html}");
    assert!(html.contains(r#"data-conf-id="conf1""#) && html.contains("Join call"), "{html}");
    assert!(!html.contains("<script"), "{html}");

    b.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    let f = roster_of(&mut a, 2).await;
    let html = f["html"].as_str().unwrap();
    assert!(html.contains("In call: ana, ben<"), "{html}");
    assert_eq!(people(&f), [ana.id.as_str(), ben.id.as_str()]);
    let page = s.http.get(format!("{}/rooms/{room}", s.url)).bearer_auth(&ben.token).send().await.unwrap();
    assert!(page.text().await.unwrap().contains(html), "the page shows the same call bar");

    // When the last person leaves, the bar the frame carries is empty and hidden.
    a.send(json!({ "t": "call_leave", "room_id": room, "conf_id": "conf1" })).await;
    b.send(json!({ "t": "call_leave", "room_id": room, "conf_id": "conf1" })).await;
    let html = roster_of(&mut a, 0).await["html"].as_str().unwrap().to_string();
    assert!(html.contains("hidden") && !html.contains("In call"), "{html}");
    s.stop().await;
}

#[tokio::test]
async fn metrics_report_live_figures_on_their_own_listener() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut a = s.ws(&ana, None).await;
    let _b = s.ws(&ben, None).await;
    for i in 0..3 {
        s.send(&ana, &room, &format!("m{i}"), &format!("t{i}")).await;
    }
    a.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    a.next_of("call_roster").await;
    let at = s.running().metrics_addr.unwrap();
    let read = |text: &str, name: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Messages are counted as the hub publishes them, just after the sends' answers.
    let mut text = String::new();
    for _ in 0..200 {
        text = s.http.get(format!("http://{at}/metrics")).send().await.unwrap().text().await.unwrap();
        if read(&text, "chat_messages_total") >= 3.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let value = |name: &str| read(&text, name);
    assert_eq!(value("chat_messages_total"), 3.0);
    assert_eq!(value("chat_connections"), 2.0);
    assert_eq!(value("chat_users_online"), 2.0);
    assert_eq!(value("chat_calls_active"), 1.0);
    assert_eq!(value("chat_call_participants"), 1.0);
    assert!(value("chat_store_commits_total") >= 1.0);
    assert!(value("chat_store_jobs_total") >= value("chat_store_commits_total"));
    assert_eq!(value("chat_turn_allocations"), 0.0);
    assert!(text.contains("# TYPE chat_messages_total counter"));
    // Not on the public web listener.
    let res = s.http.get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    s.stop().await;
}
