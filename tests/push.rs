//! Web Push against a push service played by the test (`chat_testkit::push`): it checks each
//! request's VAPID JWT and decrypts its payload with the device's keys, as a browser vendor's
//! service and the browser would, and the test asserts what the user would see.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest::StatusCode;

use common::push::{PushService, Received};
use common::{TestServer, User};
use serde_json::{Value, json};

async fn server() -> TestServer {
    TestServer::start_tuned(|c| {
        c.push_private_endpoints = true;
        c.limits.push_retry_base_ms = 50;
        c.limits.push_retry_max_secs = 1;
    })
    .await
}

fn bodies(got: &[Received]) -> Vec<&str> {
    got.iter().map(|r| r.payload["body"].as_str().unwrap_or("")).collect()
}

async fn subscribe(s: &TestServer, u: &User, device: &common::push::Device) -> String {
    let (st, v) = s.post(Some(&u.token), "/api/v1/push/subscriptions", device.subscription("Test browser")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn dm(s: &TestServer, a: &User, b: &User) -> String {
    let (_, v) = s.post(Some(&a.token), "/api/v1/dm", json!({"user_id": b.name})).await;
    let room = v["room_id"].as_str().unwrap().to_string();
    let (_, v) = s.post(Some(&b.token), "/api/v1/dm", json!({"user_id": a.name})).await;
    assert_eq!(v["room_id"], room.as_str());
    room
}

async fn push_gauges_empty(s: &TestServer) {
    s.until_metric("chat_push_pending", |v| v == 0.0).await;
    s.until_metric("chat_push_retry_queued", |v| v == 0.0).await;
}

#[tokio::test]
async fn direct_messages_mentions_keywords_and_calls_reach_a_closed_browser() {
    let service = PushService::start().await;
    let s = server().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cara = s.register("cara").await;
    s.join(&cara, &room).await;
    let phone = service.device("ben-phone");
    let id = subscribe(&s, &ben, &phone).await;
    let (_, info) = s.get(Some(&ben.token), "/api/v1/push").await;
    assert_eq!(info["devices"][0]["id"], id.as_str());
    assert_eq!(info["devices"][0]["label"], "Test browser");
    assert_eq!(info["devices"][0]["this_session"], true);
    let key = info["public_key"].as_str().unwrap().to_string();
    let dm = dm(&s, &ana, &ben).await;

    // A direct message: pushed with who and what, signed with the key browsers were given.
    let (_, sent) = s.send(&ana, &dm, "are you coming tonight?", "p1").await;
    let got = service.until("the direct message", |g| !g.is_empty()).await;
    let p = &got[0].payload;
    assert_eq!(
        (p["kind"].as_str(), p["room_id"].as_str(), p["event_id"].as_str()),
        (Some("message"), Some(dm.as_str()), sent["event_id"].as_str())
    );
    assert_eq!((p["sender"].as_str(), p["sender_name"].as_str()), (Some(ana.id.as_str()), Some("ana")));
    assert_eq!((p["direct"].as_bool(), p["body"].as_str()), (Some(true), Some("are you coming tonight?")));
    assert_eq!((got[0].vapid_key.as_str(), got[0].urgency.as_str()), (key.as_str(), "high"));
    assert!(got[0].ttl > 0);

    // In a room of three: a plain message pushes nothing, a mention does, and so does a
    // keyword of Ben's; Ben's own messages never push to him.
    s.send(&ana, &room, "plain words", "p2").await;
    s.send(&ben, &room, "my own @ben note", "p3").await;
    s.send(&ana, &room, "over to you @ben", "p4").await;
    let got = service.until("the mention", |g| g.len() >= 2).await;
    assert_eq!(bodies(&got), ["are you coming tonight?", "over to you @ben"]);
    assert_eq!(
        (got[1].payload["room_name"].as_str(), got[1].payload["direct"].as_bool()),
        (Some("General"), Some(false))
    );
    let (st, _) = s.post(Some(&ben.token), "/api/v1/notifications", json!({"keywords": ["deploy"]})).await;
    assert_eq!(st, StatusCode::OK);
    s.send(&ana, &room, "The deploy is done", "p5").await;
    s.send(&ana, &room, "redeployed nothing", "p6").await;
    s.send(&ana, &dm, "marker one", "p7").await;
    let got = service.until("the keyword", |g| g.len() >= 4).await;
    assert_eq!(&bodies(&got)[2..], ["The deploy is done", "marker one"]);

    // A muted room pushes nothing, not even a mention; "all messages" pushes every one.
    let url = format!("/api/v1/rooms/{room}/notifications");
    let (st, v) = s.post(Some(&ben.token), &url, json!({"level": "mute"})).await;
    assert_eq!((st, v["level"].as_str()), (StatusCode::OK, Some("mute")));
    s.send(&ana, &room, "muted @ben", "p8").await;
    s.post(Some(&ben.token), &url, json!({"level": "all"})).await;
    s.send(&ana, &room, "every word now", "p9").await;
    let got = service.until("the room set to all", |g| g.len() >= 5).await;
    assert_eq!(bodies(&got)[4], "every word now");

    // Without previews, a push says who and where, not what.
    s.post(Some(&ben.token), "/api/v1/notifications", json!({"preview": false})).await;
    s.send(&ana, &dm, "the door code is 4711", "p10").await;
    let got = service.until("the push without preview", |g| g.len() >= 6).await;
    assert_eq!(got[5].payload["body"], Value::Null);
    assert_eq!(got[5].payload["sender_name"], "ana");
    assert!(!got.iter().any(|r| r.payload.to_string().contains("4711")));

    // A call rings on the phone: the invite is pushed, for as long as it rings.
    let mut ana_ws = s.ws(&ana, None).await;
    let sdp =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n";
    let invite = json!({"call_id": "c1", "party_id": "p1", "lifetime": 30000, "invitee": ben.id,
                        "version": "1", "offer": {"type": "offer", "sdp": sdp}});
    ana_ws.send(json!({"t": "call", "room_id": dm, "type": "m.call.invite", "content": invite, "txn_id": "c1"})).await;
    let got = service.until("the call", |g| g.len() >= 7).await;
    let p = &got[6].payload;
    assert_eq!(
        (p["kind"].as_str(), p["video"].as_bool(), p["room_id"].as_str()),
        (Some("call"), Some(false), Some(dm.as_str()))
    );
    assert!(got[6].ttl <= 30, "a call is kept only while it rings: {}", got[6].ttl);

    // Do not disturb: nothing at all.
    s.post(Some(&ben.token), "/api/v1/notifications", json!({"dnd": true})).await;
    s.send(&ana, &dm, "during dnd", "p11").await;
    s.post(Some(&ben.token), "/api/v1/notifications", json!({"dnd": false})).await;
    s.send(&ana, &dm, "after dnd", "p12").await;
    service.until("the message after do-not-disturb", |g| g.len() >= 8).await;
    push_gauges_empty(&s).await;
    let got = service.received();
    assert_eq!(got.len(), 8, "{:?}", got.iter().map(|r| &r.payload).collect::<Vec<_>>());
    assert!(!bodies(&got).iter().any(|b| b.contains("muted") || b.contains("plain") || b.contains("during dnd")));
    assert!(service.faults().is_empty(), "{:?}", service.faults());
    s.stop().await;
}

#[tokio::test]
async fn reading_elsewhere_stops_pending_pushes_and_gone_subscriptions_are_removed() {
    let service = PushService::start().await;
    let s = server().await;
    let (ana, ben, _) = s.ana_and_ben_in_general().await;
    let phone = service.device("ben-phone");
    subscribe(&s, &ben, &phone).await;
    let dm = dm(&s, &ana, &ben).await;

    // The service is down; the push waits to be tried again. Ben reads the message on his
    // laptop: when the service is back, the phone is not told about it.
    service.set_status(503);
    let (_, one) = s.send(&ana, &dm, "read on the laptop", "r1").await;
    s.until_metric("chat_push_retried_total", |v| v >= 2.0).await;
    let (st, _) =
        s.post(Some(&ben.token), &format!("/api/v1/rooms/{dm}/read"), json!({"event_id": one["event_id"]})).await;
    assert_eq!(st, StatusCode::OK);
    service.set_status(201);
    s.send(&ana, &dm, "unread", "r2").await;
    let got = service.until("the unread message", |g| !g.is_empty()).await;
    push_gauges_empty(&s).await;
    assert_eq!(bodies(&service.received()), ["unread"], "{got:?}");

    // The service says the subscription is gone: it is removed, and nothing more is sent.
    service.set_status(410);
    s.send(&ana, &dm, "to nowhere", "r3").await;
    s.until_metric("chat_push_gone_total", |v| v >= 1.0).await;
    let (_, info) = s.get(Some(&ben.token), "/api/v1/push").await;
    assert_eq!(info["devices"], json!([]));
    let refused = service.refused();
    service.set_status(201);
    s.send(&ana, &dm, "after gone", "r4").await;
    push_gauges_empty(&s).await;
    assert_eq!((service.refused(), service.received().len()), (refused, 1));

    // A device whose session signs out loses push with it.
    let laptop = service.device("ben-laptop");
    let (_, login) = s.post(None, "/api/v1/login", json!({"username": "ben", "password": "password123"})).await;
    let second = User { id: ben.id.clone(), name: ben.name.clone(), token: login["token"].as_str().unwrap().into() };
    subscribe(&s, &second, &laptop).await;
    let (_, info) = s.get(Some(&ben.token), "/api/v1/push").await;
    assert_eq!(
        (info["devices"].as_array().unwrap().len(), info["devices"][0]["this_session"].as_bool()),
        (1, Some(false))
    );
    s.post(Some(&second.token), "/api/v1/logout", json!({})).await;
    s.send(&ana, &dm, "after sign-out", "r5").await;
    s.until_metric("chat_push_gone_total", |v| v >= 2.0).await;
    push_gauges_empty(&s).await;
    assert_eq!(service.received().len(), 1);
    assert!(service.faults().is_empty(), "{:?}", service.faults());
    s.stop().await;
}

#[tokio::test]
async fn a_push_service_down_for_a_while_gets_each_push_once() {
    let service = PushService::start().await;
    let s = server().await;
    let (ana, ben, _) = s.ana_and_ben_in_general().await;
    let (phone, tablet) = (service.device("phone"), service.device("tablet"));
    subscribe(&s, &ben, &phone).await;
    subscribe(&s, &ben, &tablet).await;
    let dm = dm(&s, &ana, &ben).await;
    service.set_status(503);
    let mut sent = Vec::new();
    for i in 0..6 {
        let (_, v) = s.send(&ana, &dm, &format!("message {i}"), &format!("d{i}")).await;
        sent.push(v["event_id"].as_str().unwrap().to_string());
    }
    // Every push has been refused at least twice before the service comes back.
    s.until_metric("chat_push_retried_total", |v| v >= 24.0).await;
    service.set_status(201);
    service.until("every push", |g| g.len() >= 12).await;
    push_gauges_empty(&s).await;
    let got = service.received();
    for device in ["phone", "tablet"] {
        let mut ids: Vec<&str> =
            got.iter().filter(|r| r.device == device).map(|r| r.payload["event_id"].as_str().unwrap()).collect();
        ids.sort();
        let mut want: Vec<&str> = sent.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(ids, want, "{device}: each message once");
    }
    assert!(service.faults().is_empty(), "{:?}", service.faults());
    s.stop().await;
}

#[tokio::test]
async fn bad_subscriptions_and_settings_are_refused() {
    let service = PushService::start().await;
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let good = service.device("d").subscription("x");
    // Without push_private_endpoints, an endpoint on loopback (or plain http) is refused.
    let (st, v) = s.post(Some(&ana.token), "/api/v1/push/subscriptions", good.clone()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let cases = [
        json!({"endpoint": "https://push.example/x", "keys": {"p256dh": "AAAA", "auth": good["keys"]["auth"]}}),
        json!({"endpoint": "https://push.example/x", "keys": {"p256dh": good["keys"]["p256dh"], "auth": "c2hvcnQ"}}),
        json!({"endpoint": "https://push.example/x", "keys": {"p256dh": "!!", "auth": good["keys"]["auth"]}}),
        json!({"endpoint": "ftp://push.example/x", "keys": good["keys"]}),
        json!({"endpoint": format!("https://push.example/{}", "a".repeat(3000)), "keys": good["keys"]}),
        json!({"endpoint": "https://push.example/x"}),
    ];
    for c in cases {
        let (st, v) = s.post(Some(&ana.token), "/api/v1/push/subscriptions", c.clone()).await;
        assert!(st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY, "{c}: {st} {v}");
    }
    let ok = json!({"endpoint": "https://push.example/x", "keys": good["keys"], "label": "Firefox"});
    assert_eq!(s.post(Some(&ana.token), "/api/v1/push/subscriptions", ok).await.0, StatusCode::OK);
    let (st, _) = s.post(Some(&ana.token), "/api/v1/push/subscriptions/nope/delete", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Ten devices at most.
    for i in 0..9 {
        let c = json!({"endpoint": format!("https://push.example/{i}"), "keys": good["keys"]});
        assert_eq!(s.post(Some(&ana.token), "/api/v1/push/subscriptions", c).await.0, StatusCode::OK);
    }
    let c = json!({"endpoint": "https://push.example/eleventh", "keys": good["keys"]});
    assert_eq!(s.post(Some(&ana.token), "/api/v1/push/subscriptions", c).await.0, StatusCode::CONFLICT);

    for bad in [
        json!({"keywords": ["a,b"]}),
        json!({"keywords": ["x".repeat(65)]}),
        json!({"keywords": (0..51).map(|i| format!("k{i}")).collect::<Vec<_>>()}),
        json!({"dnd": "yes"}),
    ] {
        let (st, v) = s.post(Some(&ana.token), "/api/v1/notifications", bad.clone()).await;
        assert!(st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {st} {v}");
    }
    let (_, prefs) = s.get(Some(&ana.token), "/api/v1/notifications").await;
    assert_eq!((prefs["dnd"].as_bool(), prefs["keywords"].clone()), (Some(false), json!([])));
    let room = s.create_room(&ana, "Quiet", "public").await;
    let url = format!("/api/v1/rooms/{room}/notifications");
    let (st, _) = s.post(Some(&ana.token), &url, json!({"level": "loud"})).await;
    assert!(st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY);
    let ben = s.register("ben").await;
    let (st, _) = s.post(Some(&ben.token), &url, json!({"level": "mute"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "only members set a room's notifications");
    let (st, v) = s.post(Some(&ana.token), &url, json!({"level": "mute", "mute_for_secs": 3600})).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["mute_until"].as_u64().unwrap() > 0);
    s.stop().await;
}
