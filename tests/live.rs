//! The live channel against the real server: delivery, resume, slow clients, origin, logout.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn members_receive_each_others_messages_live_in_every_tab() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cy = s.register("cy").await;

    let mut ana_ws = s.ws(&ana, None).await;
    let mut ben_tab1 = s.ws(&ben, None).await;
    let mut ben_tab2 = s.ws(&ben, None).await;
    let mut cy_ws = s.ws(&cy, None).await;

    // Ana sends over the WebSocket; the ack comes after commit, and every tab of Ben gets it.
    ana_ws.send(json!({"t": "send", "room_id": room, "body": "hi ben", "txn_id": "a1"})).await;
    let ack = ana_ws.next_of("ack").await;
    assert_eq!(ack["txn_id"], "a1");
    for tab in [&mut ben_tab1, &mut ben_tab2] {
        let f = tab.next_message().await;
        assert_eq!(f["event"]["content"]["body"], "hi ben");
        assert_eq!(f["event"]["event_id"], ack["event_id"]);
        assert!(f["html"].as_str().unwrap().contains("hi ben"));
    }
    // Ben answers over HTTP; Ana sees it live. (Ana's own "hi ben" may still be ahead of it:
    // an `ack` and the event frame it names can arrive in either order.)
    s.send(&ben, &room, "hello <ana>", "b1").await;
    let mut f = ana_ws.next_message().await;
    if f["event"]["content"]["body"] == "hi ben" {
        f = ana_ws.next_message().await;
    }
    assert_eq!(f["event"]["content"]["body"], "hello <ana>");
    // The fragment is escaped HTML.
    assert!(f["html"].as_str().unwrap().contains("hello &lt;ana&gt;"), "{}", f["html"]);

    // Cy is not a member: sees nothing, and a send over the socket is refused.
    assert!(cy_ws.try_next(Duration::from_millis(300)).await.is_none(), "non-member received a frame");
    cy_ws.send(json!({"t": "send", "room_id": room, "body": "let me in", "txn_id": "c1"})).await;
    let err = cy_ws.next_of("error").await;
    assert_eq!((err["error"].as_str(), err["txn_id"].as_str()), (Some("forbidden"), Some("c1")));

    // Cy joins: from now on, live.
    s.join(&cy, &room).await;
    let join = cy_ws.next_of("event").await;
    assert_eq!(join["event"]["type"], "m.room.member");
    s.send(&ana, &room, "welcome cy", "a2").await;
    assert_eq!(cy_ws.next_message().await["event"]["content"]["body"], "welcome cy");

    // Malformed frames get an error frame; the connection stays usable.
    cy_ws.send(json!({"t": "launch_missiles"})).await;
    assert_eq!(cy_ws.next_of("error").await["error"], "bad_request");
    cy_ws.send(json!({"t": "ping"})).await;
    assert_eq!(cy_ws.next_of("pong").await["t"], "pong");
    s.stop().await;
}

#[tokio::test]
async fn reconnect_with_stale_position_gets_missed_events_once_in_order() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;

    let mut ben_ws = s.ws(&ben, None).await;
    s.send(&ana, &room, "seen-1", "s1").await;
    let seen = ben_ws.next_message().await["pos"].as_u64().unwrap();
    drop(ben_ws);

    // While Ben is away: 30 messages.
    for i in 0..30 {
        s.send(&ana, &room, &format!("missed-{i}"), &format!("m{i}")).await;
    }
    // Ben comes back with the last position he saw and gets exactly those 30, in order, before
    // the `ready` frame.
    let (_stream, mut req_frames) = s.raw_until_ready(&ben, seen).await;
    assert_eq!(req_frames.pop().unwrap()["t"], "ready");
    let bodies: Vec<&str> = req_frames.iter().map(|f| f["event"]["content"]["body"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..30).map(|i| format!("missed-{i}")).collect();
    assert_eq!(bodies, expected);
    let positions: Vec<u64> = req_frames.iter().map(|f| f["pos"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "not in order: {positions:?}");

    // Live frames after the replay are not repeats.
    let mut ben_ws = s.ws(&ben, Some(*positions.last().unwrap())).await;
    s.send(&ana, &room, "after", "after").await;
    let f = ben_ws.next_message().await;
    assert_eq!(f["event"]["content"]["body"], "after");
    no_event_frame(&mut ben_ws, "duplicate frame").await;
    s.stop().await;
}

#[tokio::test]
async fn a_stuck_client_never_slows_the_room_and_catches_up_from_the_store() {
    let mut cfg = chat::Config::with_data_dir(tempfile::tempdir().unwrap().keep());
    cfg.limits.live_queue = 8;
    let s = TestServer::start_with(cfg).await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let slow = s.register("slow").await;
    s.join(&slow, &room).await;

    // `slow` connects and then does not read at all.
    let mut slow_ws = s.ws(&slow, None).await;
    let mut ben_ws = s.ws(&ben, None).await;
    let big = "z".repeat(15_000);
    let started = Instant::now();
    for i in 0..600 {
        let (st, _) = s.send(&ana, &room, &format!("{i} {big}"), &format!("t{i}")).await;
        assert_eq!(st, StatusCode::OK);
        let f = ben_ws.next_message().await;
        assert!(f["event"]["content"]["body"].as_str().unwrap().starts_with(&format!("{i} ")));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "room slowed down: {elapsed:?}");
    let lagged = s.metric("chat_live_lagged_total").await.unwrap();
    assert!(lagged > 0.0, "the stuck client never overflowed its queue");

    // Now the slow client reads: it gets every message, in order, exactly once.
    let mut got = Vec::new();
    while got.len() < 600 {
        let f = slow_ws.next().await;
        if f["t"] == "event" && f["event"]["type"] == "m.room.message" {
            let body = f["event"]["content"]["body"].as_str().unwrap();
            got.push(body.split(' ').next().unwrap().parse::<u32>().unwrap());
        }
        assert_ne!(f["t"], "resync", "600 events is under the catch-up limit");
    }
    assert_eq!(got, (0..600).collect::<Vec<_>>());
    no_event_frame(&mut slow_ws, "an event after the 600").await;
    s.stop().await;
}

#[tokio::test]
async fn far_behind_clients_are_told_to_resync() {
    let mut cfg = chat::Config::with_data_dir(tempfile::tempdir().unwrap().keep());
    cfg.limits.max_catchup_events = 20;
    let s = TestServer::start_with(cfg).await;
    let ana = s.register("ana").await;
    let room = s.create_room(&ana, "General", "public").await;
    let pos = s.stream_pos().await;
    for i in 0..25 {
        s.send(&ana, &room, &format!("m{i}"), &format!("t{i}")).await;
    }
    let (_stream, frames) = s.raw_until_ready(&ana, pos).await;
    assert_eq!(frames.len(), 1, "events were replayed before resync: {frames:?}");
    let v = &frames[0];
    assert_eq!(v["t"], "resync");
    assert_eq!(v["pos"].as_u64(), Some(s.stream_pos().await));
    s.stop().await;
}

#[tokio::test]
async fn websocket_refuses_foreign_origins_bad_tokens_and_closes_on_logout() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let err = s.ws_with(&ana, None, Some("http://evil.example")).await.err().expect("foreign origin accepted");
    assert!(err.to_string().contains("403"), "{err}");
    let ok = s.ws_with(&ana, None, Some(&s.url)).await;
    assert!(ok.is_ok());

    let bad = common::User { id: ana.id.clone(), name: "ana".into(), token: "bad".into() };
    let err = s.ws_with(&bad, None, None).await.err().expect("bad token accepted");
    assert!(err.to_string().contains("401"), "{err}");

    // Logout closes the session's live connections with code 4001.
    let mut ws = s.ws(&ana, None).await;
    let (st, _) = s.post(Some(&ana.token), "/api/v1/logout", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let closed = ws.close_code().await;
    assert_eq!(closed, Some(4001));
    s.stop().await;
}

#[tokio::test]
async fn shutdown_sends_a_close_frame() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let mut ws = s.ws(&ana, None).await;
    let stopper = tokio::spawn(s.stop());
    let code = ws.close_code().await;
    assert_eq!(code, Some(1001));
    stopper.await.unwrap();
}

#[tokio::test]
async fn password_change_closes_the_other_sessions_sockets() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let (_, v) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "password123"})).await;
    let phone = common::User { id: ana.id.clone(), name: "ana".into(), token: v["token"].as_str().unwrap().into() };
    let mut phone_ws = s.ws(&phone, None).await;
    let mut laptop_ws = s.ws(&ana, None).await;
    let (st, _) = s
        .post(
            Some(&ana.token),
            "/api/v1/password",
            json!({"old_password": "password123", "new_password": "another-pass-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(phone_ws.close_code().await, Some(4001));
    laptop_ws.send(json!({"t": "ping"})).await;
    assert_eq!(laptop_ws.next_of("pong").await["t"], "pong", "the session that changed the password stays");
    s.stop().await;
}

#[tokio::test]
async fn an_invitation_received_while_offline_is_replayed() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let room = s.create_room(&ana, "Secret", "private").await;
    s.send(&ana, &room, "before ben", "t0").await;
    let since = s.stream_pos().await;
    let (st, _) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/invite"), json!({"user_id": "ben"})).await;
    assert_eq!(st, StatusCode::OK);
    s.send(&ana, &room, "ben cannot read this yet", "t1").await;
    let (stream, mut frames) = s.raw_until_ready(&ben, since).await;
    assert_eq!(frames.pop().unwrap()["t"], "ready");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["event"]["state_key"], ben.id.as_str());
    assert_eq!(frames[0]["event"]["content"]["membership"], "invite");
    drop(stream);
    s.stop().await;
}

#[tokio::test]
async fn pipelined_sends_from_one_socket_commit_in_the_order_sent() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let room = s.create_room(&ana, "General", "public").await;
    let mut ws = s.ws(&ana, None).await;
    for i in 0..30 {
        ws.send(json!({"t": "send", "room_id": room, "body": format!("n{i}"), "txn_id": format!("p{i}")})).await;
    }
    let mut acks = std::collections::HashMap::new();
    while acks.len() < 30 {
        let f = ws.next().await;
        if f["t"] == "ack" {
            acks.insert(f["txn_id"].as_str().unwrap().to_string(), f["pos"].as_u64().unwrap());
        }
    }
    let positions: Vec<u64> = (0..30).map(|i| acks[&format!("p{i}")]).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "commit order differs from send order: {positions:?}");
    s.stop().await;
}

/// Alerts (desktop notifications): the members a message is for get a `notify` frame: everyone
/// in a direct chat, in a room the people it mentions, and all for `@room`; never the sender,
/// never for an edit.
#[tokio::test]
async fn messages_alert_the_people_they_are_for() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cara = s.register("cara").await;
    s.join(&cara, &room).await;
    let (_, v) = s.post(Some(&ana.token), "/api/v1/dm", json!({"user_id": "ben"})).await;
    let dm = v["room_id"].as_str().unwrap().to_string();
    let (_, v) = s.post(Some(&ben.token), "/api/v1/dm", json!({"user_id": "ana"})).await;
    assert_eq!(v["room_id"], dm.as_str());
    let mut ana_ws = s.ws(&ana, None).await;
    let mut ben_ws = s.ws(&ben, None).await;
    let mut cara_ws = s.ws(&cara, None).await;

    // In a room of three a plain message alerts nobody; one that names Ben alerts Ben alone.
    s.send(&ana, &room, "plain words", "n1").await;
    let (_, named) = s.send(&ana, &room, "over to you @ben", "n2").await;
    let f = ben_ws.next_of("notify").await;
    assert_eq!(
        (f["body"].as_str(), f["event_id"].as_str(), f["room_id"].as_str(), f["room_name"].as_str()),
        (Some("over to you @ben"), named["event_id"].as_str(), Some(room.as_str()), Some("General"))
    );
    assert_eq!((f["sender"].as_str(), f["direct"].as_bool()), (Some(ana.id.as_str()), Some(false)));
    // `@room` alerts everyone but its sender (Cara's first alert: the others were not hers).
    s.send(&ana, &room, "@room lunch?", "n3").await;
    assert_eq!(cara_ws.next_of("notify").await["body"], "@room lunch?");
    assert_eq!(ben_ws.next_of("notify").await["body"], "@room lunch?");

    // In the direct chat every message alerts; an edit of one does not.
    let (_, d1) = s.send(&ana, &dm, "just us", "d1").await;
    let f = ben_ws.next_of("notify").await;
    assert_eq!((f["body"].as_str(), f["direct"].as_bool()), (Some("just us"), Some(true)));
    let edit = json!({"body": "just us two", "txn_id": "d2", "replaces": d1["event_id"]});
    assert_eq!(s.post(Some(&ana.token), &format!("/api/v1/rooms/{dm}/messages"), edit).await.0, StatusCode::OK);
    s.send(&ana, &dm, "still there?", "d3").await;
    assert_eq!(ben_ws.next_of("notify").await["body"], "still there?");
    // Ben answers: Ana's first alert is his answer, none of her own messages alerted her.
    s.send(&ben, &dm, "yes", "b1").await;
    let f = ana_ws.next_of("notify").await;
    assert_eq!((f["body"].as_str(), f["sender"].as_str()), (Some("yes"), Some(ben.id.as_str())));

    // Ben's settings decide: the muted direct chat alerts him no more; without sound his
    // alerts say so.
    let (st, _) =
        s.post(Some(&ben.token), &format!("/api/v1/rooms/{dm}/notifications"), json!({"level": "mute"})).await;
    assert_eq!(st, StatusCode::OK);
    s.post(Some(&ben.token), "/api/v1/notifications", json!({"sound": false})).await;
    s.send(&ana, &dm, "shh", "d4").await;
    s.send(&ana, &room, "@ben over here", "n4").await;
    let f = ben_ws.next_of("notify").await;
    assert_eq!(
        (f["body"].as_str(), f["sound"].as_bool(), f["kind"].as_str()),
        (Some("@ben over here"), Some(false), Some("message"))
    );
    // A call rings through the alerts too (for the person it is for), in a room not muted.
    let sdp =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n";
    let invite = json!({"call_id": "c1", "party_id": "p1", "lifetime": 30000, "invitee": ben.id, "version": "1",
                        "offer": {"type": "offer", "sdp": sdp}});
    ana_ws
        .send(json!({"t": "call", "room_id": room, "type": "m.call.invite", "content": invite, "txn_id": "c1"}))
        .await;
    let f = ben_ws.next_of("notify").await;
    assert_eq!((f["kind"].as_str(), f["room_id"].as_str()), (Some("call"), Some(room.as_str())));
    while let Some(f) = cara_ws.try_next(Duration::from_millis(300)).await {
        assert_ne!(f["t"], "notify", "the call is Ben's: {f}");
    }
    s.stop().await;
}

/// Fails if an `event` frame comes within 300 ms; ephemeral frames (alerts in a room of two,
/// receipts) are skipped.
async fn no_event_frame(ws: &mut common::Ws, why: &str) {
    while let Some(f) = ws.try_next(Duration::from_millis(300)).await {
        assert_ne!(f["t"], "event", "{why}: {f}");
    }
}
