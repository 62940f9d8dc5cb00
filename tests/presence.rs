//! The ephemeral layer: presence, typing, read receipts and unread counts, over real sockets.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::time::{Duration, Instant};

use common::{TestServer, Ws};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The next frame of type `t` (skipping others) that satisfies `pred`, within `within`.
async fn expect(ws: &mut Ws, t: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = ws.try_next(left).await.unwrap_or_else(|| panic!("no {t} frame within {within:?}"));
        if f["t"] == t && pred(&f) {
            return f;
        }
    }
}

/// Asserts that no frame of type `t` satisfying `pred` arrives within `within`.
async fn expect_none(ws: &mut Ws, t: &str, within: Duration, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match ws.try_next(left).await {
            Some(f) if f["t"] == t && pred(&f) => panic!("unexpected frame {f}"),
            Some(_) => continue,
            None => return,
        }
    }
}

fn presence_of<'a>(user: &'a str, state: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |f| f["user_id"] == user && f["presence"] == state
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn presence_and_typing_reach_the_other_member_within_a_second_and_expire() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;

    let mut ben_ws = s.ws(&ben, None).await;
    assert_eq!(ben_ws.presence, json!({}), "nobody else is online yet");
    let mut ana_ws = s.ws(&ana, None).await;
    assert_eq!(ana_ws.presence[&ben.id], "online");
    expect(&mut ben_ws, "presence", SECOND, presence_of(&ana.id, "online")).await;

    // Idle and back.
    ana_ws.send(json!({"t": "presence", "state": "idle"})).await;
    expect(&mut ben_ws, "presence", SECOND, presence_of(&ana.id, "idle")).await;
    ana_ws.send(json!({"t": "presence", "state": "online"})).await;
    expect(&mut ben_ws, "presence", SECOND, presence_of(&ana.id, "online")).await;

    // Typing arrives within a second and, without renewal, expires by itself (6 s).
    let started = Instant::now();
    ana_ws.send(json!({"t": "typing", "room_id": room, "typing": true})).await;
    let f = expect(&mut ben_ws, "typing", SECOND, |f| f["user_ids"] == json!([ana.id])).await;
    assert_eq!(f["room_id"], room.as_str());
    expect(&mut ben_ws, "typing", Duration::from_secs(8), |f| f["user_ids"] == json!([])).await;
    let lasted = started.elapsed();
    assert!(lasted >= Duration::from_secs(5) && lasted < Duration::from_secs(8), "typing lasted {lasted:?}");

    // Stopping explicitly, and sending a message, end it at once.
    ana_ws.send(json!({"t": "typing", "room_id": room, "typing": true})).await;
    expect(&mut ben_ws, "typing", SECOND, |f| f["user_ids"] == json!([ana.id])).await;
    ana_ws.send(json!({"t": "send", "room_id": room, "body": "done typing", "txn_id": "t1"})).await;
    expect(&mut ben_ws, "typing", SECOND, |f| f["user_ids"] == json!([])).await;

    // A reload (close and reconnect within the grace period) does not flicker offline.
    let before = s.metric("chat_connections").await.unwrap();
    drop(ana_ws);
    s.until_metric("chat_connections", |n| n < before).await;
    let ana_ws = s.ws(&ana, None).await;
    expect_none(&mut ben_ws, "presence", Duration::from_secs(2), presence_of(&ana.id, "offline")).await;

    // Closing the last tab turns Ana offline after the grace period (5 s), not before.
    let closed = Instant::now();
    drop(ana_ws);
    expect_none(&mut ben_ws, "presence", Duration::from_secs(3), presence_of(&ana.id, "offline")).await;
    expect(&mut ben_ws, "presence", Duration::from_secs(4), presence_of(&ana.id, "offline")).await;
    assert!(closed.elapsed() >= Duration::from_secs(4));
    s.stop().await;
}

#[tokio::test]
async fn appear_offline_and_typing_rules() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cy = s.register("cy").await;
    let mut ben_ws = s.ws(&ben, None).await;
    let _ana_ws = s.ws(&ana, None).await;
    expect(&mut ben_ws, "presence", SECOND, presence_of(&ana.id, "online")).await;

    let (st, v) =
        s.post(Some(&ana.token), "/api/v1/settings", json!({"appear_offline": true, "hide_receipts": false})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    expect(&mut ben_ws, "presence", SECOND, presence_of(&ana.id, "offline")).await;
    let ben2 = s.ws(&ben, None).await;
    assert!(ben2.presence.get(&ana.id).is_none(), "snapshot shows an invisible user: {}", ben2.presence);
    let (_, v) = s.get(Some(&ana.token), "/api/v1/settings").await;
    assert_eq!(v["appear_offline"], true);

    // Only members may type in a room; bad presence states are refused.
    let mut cy_ws = s.ws(&cy, None).await;
    cy_ws.send(json!({"t": "typing", "room_id": room, "typing": true})).await;
    assert_eq!(cy_ws.next_of("error").await["error"], "forbidden");
    cy_ws.send(json!({"t": "presence", "state": "dancing"})).await;
    assert_eq!(cy_ws.next_of("error").await["error"], "bad_request");
    expect_none(&mut ben_ws, "typing", Duration::from_millis(500), |_| true).await;
    s.stop().await;
}

#[tokio::test]
async fn a_fast_typist_sends_a_bounded_number_of_frames() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut ben_ws = s.ws(&ben, None).await;
    let mut ana_ws = s.ws(&ana, None).await;
    // 200 start/stop toggles as fast as possible: the room sees at most a handful.
    for i in 0..200 {
        ana_ws.send(json!({"t": "typing", "room_id": room, "typing": i % 2 == 0})).await;
    }
    let mut seen = 0;
    while let Some(f) = ben_ws.try_next(Duration::from_millis(1500)).await {
        if f["t"] == "typing" {
            seen += 1;
        }
    }
    assert!(seen <= 10, "{seen} typing frames reached the room");
    s.stop().await;
}

#[tokio::test]
async fn reading_in_one_tab_clears_the_other_tab_and_counts_survive_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path()).await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    for (i, body) in ["one", "hey @ana, look", "three"].iter().enumerate() {
        s.send(&ben, &room, body, &format!("b{i}")).await;
    }
    let counts = |v: &Value| (v["rooms"][0]["unread"].as_u64(), v["rooms"][0]["mentions"].as_u64());
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert_eq!(counts(&v), (Some(3), Some(1)));
    let dir = s.stop().await;
    assert!(dir.is_none());

    // Counts are derived from stored markers: the same after a restart.
    let s = TestServer::start_in(tmp.path()).await;
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert_eq!(counts(&v), (Some(3), Some(1)));

    let mut tab1 = s.ws(&ana, None).await;
    let mut tab2 = s.ws(&ana, None).await;
    let mut ben_ws = s.ws(&ben, None).await;
    let last = s.stream_pos().await;
    tab1.send(json!({"t": "read", "room_id": room, "pos": last})).await;
    let f = expect(&mut tab2, "unread", SECOND, |f| f["room_id"] == room.as_str()).await;
    assert_eq!((f["unread"].as_u64(), f["mentions"].as_u64()), (Some(0), Some(0)));
    let r = expect(&mut ben_ws, "receipt", SECOND, |f| f["user_id"] == ana.id.as_str()).await;
    assert_eq!(r["pos"].as_u64(), Some(last));
    assert!(r["html"].as_str().unwrap().contains("receipt"));
    s.stop().await;

    let s = TestServer::start_in(tmp.path()).await;
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert_eq!(counts(&v), (Some(0), Some(0)));

    // A reader who hides receipts sends none (and the API read still works).
    let (st, _) =
        s.post(Some(&ana.token), "/api/v1/settings", json!({"appear_offline": false, "hide_receipts": true})).await;
    assert_eq!(st, StatusCode::OK);
    let mut ben_ws = s.ws(&ben, None).await;
    let (_, sent) = s.send(&ben, &room, "four", "b4").await;
    let (st, v) =
        s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/read"), json!({"event_id": sent["event_id"]})).await;
    assert_eq!((st, v["unread"].as_u64()), (StatusCode::OK, Some(0)));
    expect_none(&mut ben_ws, "receipt", Duration::from_millis(700), |_| true).await;
    s.stop().await;
}

#[tokio::test]
async fn ephemeral_frames_from_1000_connections_leave_the_store_untouched() {
    let s = TestServer::start().await;
    let owner = s.register("owner").await;
    let room = s.create_room(&owner, "Busy", "public").await;
    let mut users = Vec::new();
    for i in 0..40 {
        let u = s.register(&format!("user{i}")).await;
        s.join(&u, &room).await;
        users.push(u);
    }
    let mut conns = Vec::new();
    for i in 0..1000 {
        conns.push(s.ws(&users[i % users.len()], None).await);
    }
    let before = (s.metric("chat_store_commits_total").await.unwrap(), s.stream_pos().await);
    let db_len = std::fs::metadata(s.dir.join("chat.redb")).unwrap().len();
    for c in conns.iter_mut() {
        c.send(json!({"t": "typing", "room_id": room, "typing": true})).await;
        c.send(json!({"t": "presence", "state": "idle"})).await;
        c.send(json!({"t": "presence", "state": "online"})).await;
        c.send(json!({"t": "typing", "room_id": room, "typing": false})).await;
        c.send(json!({"t": "ping"})).await;
    }
    // Every connection has processed its frames once it answers the ping.
    for c in conns.iter_mut() {
        c.next_of("pong").await;
    }
    let after = (s.metric("chat_store_commits_total").await.unwrap(), s.stream_pos().await);
    assert_eq!(before, after, "ephemeral frames were written to the store");
    assert_eq!(std::fs::metadata(s.dir.join("chat.redb")).unwrap().len(), db_len);
    drop(conns);
    s.stop().await;
}

/// A deleted message that mentioned someone stops counting as a mention.
#[tokio::test]
async fn a_deleted_mention_stops_counting() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, sent) = s.send(&ben, &room, "hey @ana, look", "m1").await;
    let mentions = |v: &Value| v["rooms"][0]["mentions"].as_u64();
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert_eq!(mentions(&v), Some(1), "{v}");
    let redact = format!("/api/v1/rooms/{room}/redact");
    let (st, v) = s.post(Some(&ben.token), &redact, json!({"event_id": sent["event_id"]})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert_eq!(mentions(&v), Some(0), "{v}");
    s.stop().await;
}
