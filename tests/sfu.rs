//! Room calls through the media server, with Rust test peers made of the same WebRTC stack:
//! forwarding, simulcast layer choice by tile size, keyframe requests, active speakers, leaving
//! and removal, and who may publish at all.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;

use std::time::{Duration, Instant};

use common::media::MediaPeer;
use common::{TestServer, User};
use serde_json::{Value, json};

/// Polls `ok` every 50 ms for up to 20 s.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn peer(s: &TestServer, u: &User, room: &str) -> MediaPeer {
    let ws = s.ws(u, None).await;
    MediaPeer::join(ws, room, "conf1", 3, true).await.unwrap_or_else(|e| panic!("{} could not join: {e}", u.name))
}

/// Ana (the room's creator), Ben and Cy in a room, each in its call with a test peer.
async fn three_in_a_call(s: &TestServer) -> ([User; 3], String, [MediaPeer; 3]) {
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cy = s.register("cy").await;
    s.join(&cy, &room).await;
    let peers = [peer(s, &ana, &room).await, peer(s, &ben, &room).await, peer(s, &cy, &room).await];
    ([ana, ben, cy], room, peers)
}

fn packets(p: &MediaPeer, user: &User, purpose: &str) -> u64 {
    p.from(&user.id, purpose).map_or(0, |r| r.packets)
}

#[tokio::test]
async fn the_media_server_forwards_picks_layers_and_passes_keyframe_requests() {
    let s = TestServer::start().await;
    let ([ana, ben, cy], _, [a, b, c]) = three_in_a_call(&s).await;
    s.until_metric("chat_sfu_participants", |v| v == 3.0).await;

    // Everyone gets the two others' camera and microphone.
    for (p, others) in [(&a, [&ben, &cy]), (&b, [&ana, &cy]), (&c, [&ana, &ben])] {
        for o in others {
            until(&format!("video and audio of {}", o.name), || {
                packets(p, o, "camera") > 30 && packets(p, o, "audio") > 30
            })
            .await;
        }
    }
    // A tile of the default size gets the middle layer.
    until("ana gets ben's middle layer", || a.from(&ben.id, "camera").unwrap().last_layer == Some(1)).await;

    // A big tile: the full layer; a thumbnail: the lowest; hidden: nothing.
    let bens = a.stream_of(&ben.id, "camera").unwrap();
    a.show(&bens, 720).await;
    until("ana gets ben's full layer", || a.from(&ben.id, "camera").unwrap().last_layer == Some(2)).await;
    a.show(&bens, 120).await;
    until("ana gets ben's lowest layer", || a.from(&ben.id, "camera").unwrap().last_layer == Some(0)).await;
    a.show(&bens, 0).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // the next tick, and packets in flight
    let paused = packets(&a, &ben, "camera");
    until("cy's video still flows to ana", || packets(&a, &cy, "camera") > paused + 60).await;
    assert!(packets(&a, &ben, "camera") <= paused + 2, "a hidden tile gets no video");
    a.show(&bens, 360).await;
    until("ben's video comes back", || packets(&a, &ben, "camera") > paused + 30).await;
    let got = a.from(&ben.id, "camera").unwrap();
    assert!(got.keyframes >= 4, "each switch starts on a keyframe: {got:?}");
    // Switches keep the stream continuous: no jumps in sequence numbers.
    assert!(got.seq_gaps <= 2, "sequence numbers continue across switches: {got:?}");
    assert!(s.metric("chat_sfu_layer_switches_total").await.unwrap() >= 4.0);

    // A receiver's keyframe request reaches the publisher.
    let before = b.keyframe_requests();
    assert!(a.request_keyframe(&ben.id).await);
    until("ben is asked for a keyframe", || b.keyframe_requests() > before).await;
    assert!(s.metric("chat_sfu_keyframe_requests_total").await.unwrap() >= 1.0);

    // The loudest is announced as speaking.
    c.set_loudness(110);
    until("cy is the speaker", || a.speakers() == vec![cy.id.clone()] && b.speakers() == vec![cy.id.clone()]).await;
    c.set_loudness(0);
    until("nobody speaks", || a.speakers().is_empty()).await;

    // The administration page lists the call in progress.
    let o = common::cli_async(&s.dir, &["admin", "user", "make-admin", "ana"], None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let admin = s.http.get(format!("{}/admin", s.url)).header("cookie", format!("chat_token={}", ana.token));
    let html = admin.send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Calls in progress (1)") && html.contains("General") && html.contains(&cy.id), "{html}");

    // Latency added by the server on loopback stays small.
    let mut delays = a.from(&cy.id, "camera").unwrap().delays_us;
    delays.sort_unstable();
    let p99 = delays[delays.len() * 99 / 100];
    assert!(p99 < 200_000, "p99 one-way delay {p99} µs");

    // Leaving: the others stop getting cy, and the server forgets the tab.
    let offers = a.offers();
    c.leave().await;
    s.until_metric("chat_sfu_participants", |v| v == 2.0).await;
    until("ana is offered the call without cy", || a.offers() > offers).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gone = packets(&a, &cy, "camera");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(packets(&a, &cy, "camera"), gone, "cy's video stopped");
    assert!(s.metric("chat_sfu_forwarded_packets_total").await.unwrap() > 500.0);
    assert!(a.errors().is_empty() && b.errors().is_empty(), "{:?} {:?}", a.errors(), b.errors());
    a.leave().await;
    b.leave().await;
    s.until_metric("chat_sfu_calls", |v| v == 0.0).await;
}

#[tokio::test]
async fn only_people_on_the_calls_roster_publish_and_removal_ends_their_media() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let outsider = s.register("dee").await;

    // Not a member: the roster and the media server refuse.
    let ws = s.ws(&outsider, None).await;
    let refused = MediaPeer::join(ws, &room, "conf1", 1, false).await.err().expect("an outsider is refused");
    assert_eq!(refused["t"], "error", "{refused}");

    // A member who did not join the roster cannot publish, answer or pick layers.
    let mut ws = s.ws(&ben, None).await;
    for frame in [
        json!({ "t": "sfu_publish", "room_id": room, "conf_id": "conf1", "sdp": "v=0\r\n" }),
        json!({ "t": "sfu_answer", "room_id": room, "conf_id": "conf1", "sdp": "v=0\r\n" }),
        json!({ "t": "sfu_show", "room_id": room, "conf_id": "conf1", "stream_id": "m1", "height": 100 }),
    ] {
        ws.send(frame).await;
        let f = ws.next_of("error").await;
        assert!(f["message"].as_str().unwrap().contains("join the call"), "{f}");
    }
    // On the roster, bad input gets an error and changes nothing.
    ws.send(json!({ "t": "call_join", "room_id": room, "conf_id": "conf1" })).await;
    for frame in [
        json!({ "t": "sfu_publish", "room_id": room, "conf_id": "conf1", "sdp": "not sdp" }),
        json!({ "t": "sfu_publish", "room_id": room, "conf_id": "conf1", "sdp": "v=0\r\n".repeat(5_000) }),
        json!({ "t": "sfu_answer", "room_id": room, "conf_id": "conf1", "sdp": "v=0\r\n" }),
        json!({ "t": "sfu_show", "room_id": room, "conf_id": "conf1", "stream_id": "nope", "height": 100 }),
        json!({ "t": "sfu_publish", "room_id": room, "conf_id": "../x", "sdp": "v=0\r\n" }),
    ] {
        ws.send(frame.clone()).await;
        let f = ws.next_of("error").await;
        assert_eq!(f["t"], "error", "{frame}: {f}");
    }
    // Media server frames have their own rate limit per connection.
    for _ in 0..60 {
        ws.send(json!({ "t": "sfu_show", "room_id": room, "conf_id": "conf1", "stream_id": "m1", "height": 100 }))
            .await;
    }
    let mut limited = 0;
    while let Some(f) = ws.try_next(Duration::from_secs(2)).await {
        if f["t"] == "error" && f["error"] == "rate_limited" {
            assert_eq!(f["txn_id"], "sfu_show", "{f}");
            limited += 1;
        }
    }
    assert!(limited >= 10, "{limited} of 60 frames in a moment were limited");
    drop(ws);

    // Two in a call; ana removes ben from the room and his media ends.
    let a = peer(&s, &ana, &room).await;
    let b = peer(&s, &ben, &room).await;
    until("ana gets ben", || packets(&a, &ben, "camera") > 30).await;
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/kick"), json!({ "user_id": ben.id })).await;
    assert_eq!(st, 200, "{v}");
    s.until_metric("chat_sfu_participants", |v| v == 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = packets(&a, &ben, "camera");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(packets(&a, &ben, "camera"), stopped, "a removed member's media stops");
    // A stale session: ben's tab is no longer on the roster.
    b.send(json!({ "t": "sfu_show", "room_id": room, "conf_id": "conf1", "stream_id": "m1", "height": 100 })).await;
    until("ben's stale frames are refused", || !b.errors().is_empty()).await;
    b.leave().await;
    a.leave().await;
}

#[tokio::test]
async fn a_call_holds_the_configured_number_of_people() {
    let s = TestServer::start_tuned(|c| c.sfu.call_participants = 2).await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cy = s.register("cy").await;
    s.join(&cy, &room).await;
    let a = peer(&s, &ana, &room).await;
    let b = peer(&s, &ben, &room).await;
    let ws = s.ws(&cy, None).await;
    let full = MediaPeer::join(ws, &room, "conf1", 1, false).await.err().expect("the third is refused");
    assert!(full["message"].as_str().unwrap().contains("full"), "{full}");
    // Stopping the server with a call running ends its media and returns.
    tokio::time::timeout(Duration::from_secs(15), s.stop()).await.expect("the server stops with a call running");
    a.leave().await;
    b.leave().await;
}

#[tokio::test]
async fn hosts_mute_lower_hands_and_end_the_call_and_nobody_else_does() {
    let s = TestServer::start().await;
    let ([ana, ben, cy], room, [a, b, c]) = three_in_a_call(&s).await;
    until("ana hears ben", || packets(&a, &ben, "audio") > 30).await;
    let frame = |action: &str, user: Option<&User>| {
        let mut f = json!({ "t": "call_host", "room_id": room, "conf_id": "conf1", "action": action });
        if let Some(u) = user {
            f["user_id"] = json!(u.id);
        }
        f
    };
    let refused = |p: &MediaPeer, n: usize| {
        let e = p.errors();
        e.len() > n && e[n]["txn_id"] == "call_host" && e[n]["error"] == "forbidden"
    };

    // Ben (no moderator) may not mute Cy, lower a hand or end the call.
    b.send(frame("mute", Some(&cy))).await;
    until("ben's mute is refused", || refused(&b, 0)).await;
    b.send(frame("end", None)).await;
    until("ben's end is refused", || refused(&b, 1)).await;
    assert_eq!(s.metric("chat_sfu_participants").await, Some(3.0));

    // Cy raises a hand: everyone sees it; Ana (the room's creator) lowers it.
    c.send(json!({ "t": "call_state", "room_id": room, "conf_id": "conf1", "hand": true })).await;
    until("cy's hand is up for ana", || a.roster().is_some_and(|r| r["hands"] == json!([cy.id]))).await;
    a.send(frame("lower_hand", Some(&cy))).await;
    until("cy's hand is down for cy", || c.roster().is_some_and(|r| r["hands"] == json!([]))).await;

    // Ana mutes Ben: his tab is told who did, the others see him muted, and his microphone is
    // not forwarded even though his client keeps sending; his camera still is.
    a.send(frame("mute", Some(&ben))).await;
    until("ben is told", || b.call_frames().iter().any(|f| f["t"] == "call_muted" && f["by"] == ana.id.as_str())).await;
    until("cy sees ben muted", || c.roster().is_some_and(|r| r["muted"] == json!([ben.id]))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (audio, video) = (packets(&c, &ben, "audio"), packets(&c, &ben, "camera"));
    until("ben's camera still comes", || packets(&c, &ben, "camera") > video + 30).await;
    assert_eq!(packets(&c, &ben, "audio"), audio, "a muted microphone is not forwarded");
    // He turns it on again himself.
    b.send(json!({ "t": "call_state", "room_id": room, "conf_id": "conf1", "muted": false })).await;
    until("cy hears ben again", || packets(&c, &ben, "audio") > audio + 30).await;
    until("ben is not shown muted", || a.roster().is_some_and(|r| r["muted"] == json!([]))).await;

    // Bad input: an unknown action, a person not in the call, a call that does not run.
    a.send(json!({ "t": "call_host", "room_id": room, "conf_id": "conf1", "action": "explode" })).await;
    a.send(frame("mute", Some(&s.register("dee").await))).await;
    a.send(json!({ "t": "call_host", "room_id": room, "conf_id": "nope", "action": "end" })).await;
    until("three errors", || a.errors().len() >= 3).await;
    let kinds: Vec<Value> = a.errors().iter().map(|e| e["error"].clone()).collect();
    assert_eq!(kinds, [json!("bad_request"), json!("not_found"), json!("not_found")], "{:?}", a.errors());

    // Ana ends the call: every tab is told, the media ends and the call is gone from the room.
    a.send(frame("end", None)).await;
    for p in [&a, &b, &c] {
        until("told the call ended", || p.call_frames().iter().any(|f| f["t"] == "call_ended")).await;
    }
    s.until_metric("chat_sfu_participants", |v| v == 0.0).await;
    until("the call is gone", || c.roster().is_none()).await;
    for p in [a, b, c] {
        p.leave().await;
    }
}

/// A room created on A, with Ana (of A) and Ben (of B): A hosts its calls. Ben's server asks A
/// for a call token over federation, Ben's peer presents it at A's call socket, and media flows
/// both ways through A's media server. Forged, misused and stale tokens are refused, a server
/// gets tokens only for its own users, and Ben leaving the room (on B) takes him off A's call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_member_joins_the_call_at_the_rooms_host_with_a_token_over_federation() {
    use axum::http::Method;
    use common::played::PlayedServer;
    use common::tls::{Client, Pki, call_socket};

    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (na, nb) = (p.name_of(&a).await, p.name_of(&b).await);
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &nb, "ben").await;
    let (st, v) = ana.post("/api/v1/rooms", json!({ "name": "Calls", "visibility": "public" })).await;
    assert_eq!(st, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = ben.post(&format!("/api/v1/join/{room}"), json!({ "via": [na] })).await;
    assert_eq!(st, 200, "{v}");

    // Ben's own live socket, on B: it shows the room's calls as A tells B of them.
    let mut ben_ws = ben.ws(None).await;
    let mut roster_on_b = async |want: Value| loop {
        let f = ben_ws.next_of("call_roster").await;
        if f["room_id"] == room.as_str() && f["calls"].as_array().unwrap().iter().any(|c| c["user_ids"] == want) {
            return f;
        }
    };

    // Where each joins the room's calls: its creator's server, A, hosts them.
    let host = format!("/api/v1/rooms/{room}/call/host");
    let (st, here) = ana.post(&host, json!({})).await;
    assert_eq!((st, &here["here"]), (200, &json!(true)), "{here}");
    let (st, at) = ben.post(&host, json!({})).await;
    assert_eq!(st, 200, "{at}");
    assert_eq!((&at["here"], at["server"].as_str()), (&json!(false), Some(na.as_str())), "{at}");
    let url = at["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("wss://{na}/ws/call"));
    let token = at["token"].as_str().unwrap().to_string();
    let outsider = Client::register(&p.ca, &nb, "dee").await;
    assert_eq!(outsider.post(&host, json!({})).await.0, 403, "not a member: no token");

    // Forged and misused tokens open nothing.
    for bad in ["nonsense", ana.token.as_str(), &token[..token.len() - 2]] {
        let refused = call_socket(&p.ca, &url, bad).await.err().expect("refused");
        assert_eq!((&refused["t"], &refused["error"]), (&json!("error"), &json!("unauthorized")), "{refused}");
    }
    // A server gets tokens only for its own users who are in the room.
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let path = format!("/_matrix/federation/unstable/chat.call/token/{}", chat::federation::urlencode(&room));
    let (st, v) = f.signed(Method::POST, &na, &path, Some(json!({ "user_id": ben.id }))).await;
    assert_eq!(st, 403, "another server's user: {v}");
    let (st, v) = f.signed(Method::POST, &na, &path, Some(json!({ "user_id": format!("@eve:{}", f.name) }))).await;
    assert_eq!(st, 403, "not in the room: {v}");

    // Ana calls from A; Ben joins it through A's call socket with his token.
    let ana_peer = MediaPeer::join(ana.ws(None).await, &room, "sfu-x", 3, true).await.unwrap();
    let ws = call_socket(&p.ca, &url, &token).await.unwrap();
    let ben_peer = MediaPeer::join(ws, &room, "sfu-x", 3, true).await.unwrap();
    a.until_metric("chat_sfu_participants", |v| v == 2.0).await;
    let from = |p: &MediaPeer, user: &str| p.from(user, "camera").map_or(0, |r| r.packets);
    until("ana gets ben's camera", || from(&ana_peer, &ben.id) > 30).await;
    until("ben gets ana's camera", || from(&ben_peer, &ana.id) > 30).await;
    until("ana's roster has ben", || {
        ana_peer.roster().is_some_and(|r| r["user_ids"] == json!([ana.id.clone(), ben.id.clone()]))
    })
    .await;
    assert_eq!(b.metric("chat_sfu_participants").await, Some(0.0), "B's media server is not in it");
    // B's members see the call in the room (A told B over federation), with its Join button.
    let f = roster_on_b(json!([ana.id.clone(), ben.id.clone()])).await;
    assert!(f["html"].as_str().unwrap().contains("sfu-x"), "{f}");

    // The call socket carries only its room's call.
    ben_peer.send(json!({ "t": "call_join", "room_id": "!elsewhere:x", "conf_id": "c" })).await;
    until("a frame about another room is refused", || ben_peer.errors().iter().any(|e| e["error"] == "forbidden"))
        .await;

    // Ben leaves the room on B: A hears of it, takes him off the call and his media stops.
    let (st, v) = ben.post(&format!("/api/v1/rooms/{room}/leave"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    a.until_metric("chat_sfu_participants", |v| v == 1.0).await;
    drop(ben_ws);
    until("ana's roster is hers alone", || ana_peer.roster().is_some_and(|r| r["user_ids"] == json!([ana.id.clone()])))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = from(&ana_peer, &ben.id);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(from(&ana_peer, &ben.id), stopped, "a member who left is not forwarded");
    // His token, still within its minute, no longer opens a call socket.
    let refused = call_socket(&p.ca, &url, &token).await.err().expect("refused after leaving");
    assert_eq!(refused["error"], "forbidden", "{refused}");
    ana_peer.leave().await;

    // The call is over: A stores its record in the room, as Ana (who started it), naming
    // everyone who took part; B gets it too.
    let mut record = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(20);
    while record.is_null() {
        assert!(Instant::now() < deadline, "no call record");
        let events = ana.events(&room).await;
        record = events.into_iter().find(|e| e["type"] == "chat.call.ended").unwrap_or(Value::Null);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(record["sender"], ana.id.as_str(), "{record}");
    assert_eq!(record["content"]["conf_id"], "sfu-x", "{record}");
    assert_eq!(record["content"]["user_ids"], json!([ana.id.clone(), ben.id.clone()]), "{record}");
    assert!(record["content"]["duration_ms"].as_u64().unwrap() > 500, "{record}");
    // The room's timeline shows it as a line of its own.
    let page = ana.page(&format!("/rooms/{room}")).await;
    let row = page.split("data-kind=\"chat.call.ended\"").nth(1).expect("a row for the call's record");
    let row = &row[..row.find("</li>").unwrap()];
    assert!(row.contains(">Call with <span") && row.contains(">ana</span> and <span") && row.ends_with(" s"), "{row}");
}
