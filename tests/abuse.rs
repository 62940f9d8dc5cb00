//! Abuse limits: sign-up, login and send rates (429 with Retry-After), the client IP behind a
//! trusted proxy, slow and idle connections, slow request bodies, the connection cap and the
//! WebSocket cap per user. Every limit here is a setting; these tests turn it down.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::time::{Duration, Instant};

use chat_testkit::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn register_from(s: &TestServer, name: &str, forwarded: Option<&str>) -> reqwest::Response {
    let mut r =
        s.http.post(format!("{}/api/v1/register", s.url)).json(&json!({"username": name, "password": "password123"}));
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn sign_ups_per_ip_and_the_client_ip_behind_a_trusted_proxy() {
    let s = TestServer::start_tuned(|c| c.limits.registrations_per_ip_per_minute = 2).await;
    assert_eq!(register_from(&s, "a1", None).await.status(), StatusCode::OK);
    assert_eq!(register_from(&s, "a2", None).await.status(), StatusCode::OK);
    let r = register_from(&s, "a3", None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    // No account was made: signing in as a3 fails.
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "a3", "password": "password123"})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Without a trusted proxy, X-Forwarded-For is the client's own claim and changes nothing.
    assert_eq!(register_from(&s, "a4", Some("198.51.100.1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // The web form is limited too, with the reason on the page.
    let r = s
        .http
        .post(format!("{}/register", s.url))
        .header("origin", &s.url)
        .form(&[("username", "a5"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("too many requests"));
    s.stop().await;

    // Behind a trusted proxy (127.0.0.1 here), each forwarded client has its own allowance.
    let s = TestServer::start_tuned(|c| {
        c.limits.registrations_per_ip_per_minute = 1;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    assert_eq!(register_from(&s, "b1", Some("198.51.100.1")).await.status(), StatusCode::OK);
    assert_eq!(register_from(&s, "b2", Some("198.51.100.2")).await.status(), StatusCode::OK);
    assert_eq!(register_from(&s, "b3", Some("198.51.100.1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // A client cannot pick a fresh address by prepending one: the proxy appends the real peer.
    let r = register_from(&s, "b4", Some("203.0.113.50, 198.51.100.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // An IPv6 client is counted by its /64: another address of the same network is the same
    // client, another network is not.
    assert_eq!(register_from(&s, "b5", Some("2001:db8:1:2::1")).await.status(), StatusCode::OK);
    let r = register_from(&s, "b6", Some("2001:db8:1:2:ffff:ffff:ffff:fffe")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(register_from(&s, "b7", Some("2001:db8:1:3::1")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logins_per_ip_are_limited() {
    let s = TestServer::start_tuned(|c| c.limits.logins_per_ip_per_minute = 3).await;
    s.register("ana").await;
    for _ in 0..3 {
        let (st, _) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "wrong-password"})).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // Even the right password waits now: guessing stays slow.
    let (st, v) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "password123"})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
}

#[tokio::test]
async fn sends_per_user_are_limited_over_http_and_websocket() {
    let s = TestServer::start_tuned(|c| c.limits.messages_per_user_per_minute = 3).await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    for i in 0..3 {
        assert_eq!(s.send(&ana, &room, &format!("m{i}"), &format!("t{i}")).await.0, StatusCode::OK);
    }
    let r = s
        .http
        .post(format!("{}/api/v1/rooms/{room}/messages", s.url))
        .bearer_auth(&ana.token)
        .json(&json!({"body": "one too many", "txn_id": "t3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // Over the WebSocket: an error for that send, nothing stored.
    let mut ws = s.ws(&ana, None).await;
    ws.send(json!({"t": "send", "room_id": room, "body": "ws too", "txn_id": "t4"})).await;
    let err = ws.next_of("error").await;
    assert_eq!(err["error"], "rate_limited", "{err}");
    assert_eq!(err["txn_id"], "t4", "{err}");
    assert_eq!(s.bodies(&ana, &room).await, ["m0", "m1", "m2"]);
    // Ben has his own allowance.
    assert_eq!(s.send(&ben, &room, "ben's", "b0").await.0, StatusCode::OK);
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn read_until_closed(tcp: &mut TcpStream, max: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(max.saturating_sub(start.elapsed()), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {max:?}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test]
async fn slow_headers_idle_connections_and_slow_bodies_are_cut_off() {
    let s = TestServer::start_tuned(|c| {
        c.limits.header_timeout_secs = 1;
        c.limits.request_timeout_secs = 2;
    })
    .await;
    // Slow-loris: headers trickle in a byte at a time and never finish.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let start = Instant::now();
    let trickle = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if tcp.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(6), trickle).await;
    let (_, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());

    // A connection that never sends anything is closed after the header deadline.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let (_, took) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // Keep-alive: after a complete request, an idle connection goes too.
    let mut ka = TcpStream::connect(s.addr).await.unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (got, took) = read_until_closed(&mut ka, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("ok"), "{got}");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // A body that is promised but not sent: 408 at the request deadline.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    let (got, took) = read_until_closed(&mut slow, Duration::from_secs(6)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");

    // The server is fine afterwards.
    assert_eq!(s.get(None, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait() {
    let s = TestServer::start_tuned(|c| {
        c.limits.max_connections = 2;
        c.limits.header_timeout_secs = 30;
    })
    .await;
    let a = TcpStream::connect(s.addr).await.unwrap();
    let _b = TcpStream::connect(s.addr).await.unwrap();
    // Both are being served (they hold the two places) before a third comes.
    s.until_metric("chat_http_connections", |n| n == 2.0).await;
    let client = reqwest::Client::new();
    let url = format!("{}/healthz", s.url);
    let r = client.get(&url).timeout(Duration::from_millis(700)).send().await;
    assert!(r.is_err(), "a third connection was served: {r:?}");
    // One of the two goes: the waiting connection is served.
    drop(a);
    let r = client.get(&url).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
}

/// A TCP connection to `to` from the loopback address `from` (all of 127.0.0.0/8 is local).
async fn connect_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let s = TestServer::start_tuned(|c| {
        c.limits.max_connections = 12;
        c.limits.max_connections_per_ip = 4;
        c.limits.header_timeout_secs = 60;
    })
    .await;
    // An attacker at 127.0.0.3 opens many silent connections: four are held, the rest are
    // closed at once (before: twelve were held for a minute and everyone else waited).
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.3", s.addr).await);
    }
    // The first four (accepted in the order they came) are served; the rest see the end.
    s.until_metric("chat_http_connections", |n| n == 4.0).await;
    for (i, c) in held.iter_mut().enumerate().skip(4) {
        let mut b = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut b)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "connection {i} was not closed: {read:?}");
    }
    // Someone else is served at once.
    let mut other = connect_from("127.0.0.4", s.addr).await;
    other.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), other.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s.metric("chat_http_connections").await, Some(4.0), "the four held (metrics are served apart)");
}

#[tokio::test]
async fn websockets_per_user_are_capped() {
    let s = TestServer::start_tuned(|c| c.limits.max_sockets_per_user = 2).await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let _w1 = s.ws(&ana, None).await;
    let _w2 = s.ws(&ana, None).await;
    let third = s.ws_with(&ana, None, None).await;
    let refused = match third {
        Err(_) => true,
        Ok(mut ws) => ws.close_code().await.is_some(),
    };
    assert!(refused, "a third socket for ana was kept open");
    // Others are not affected.
    let _b = s.ws(&ben, None).await;
}

/// Wrong passwords from one address, or from many, do not lock the owner out: the limits are
/// per account and IP, and the ceiling on all IPs together spares the IPs the owner signed in
/// from before. Password change is limited per account and IP too.
#[tokio::test]
async fn guessing_cannot_lock_the_owner_out() {
    let s = TestServer::start_tuned(|c| {
        c.limits.logins_per_account_per_minute = 5;
        c.limits.logins_per_account_all_ips_per_minute = 12;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let login = |ip: &'static str, pw: &'static str| {
        let r = s.http.post(format!("{}/api/v1/login", s.url)).header("x-forwarded-for", ip);
        async move { r.json(&json!({"username": "ana", "password": pw})).send().await.unwrap() }
    };
    assert_eq!(register_from(&s, "ana", Some("10.0.0.1")).await.status(), StatusCode::OK);
    assert_eq!(login("10.0.0.1", "password123").await.status(), StatusCode::OK);
    // One guesser: refused after 5.
    for _ in 0..5 {
        assert_eq!(login("10.0.0.66", "wrong-pass").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login("10.0.0.66", "wrong-pass").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // The owner, from her address, is not.
    let r = login("10.0.0.1", "password123").await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    // Guessers on many addresses reach the ceiling for all IPs together...
    let mut refused = 0;
    for i in 0..12 {
        let ip: &'static str = Box::leak(format!("10.0.1.{i}").into_boxed_str());
        refused += usize::from(login(ip, "wrong-pass").await.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused >= 5, "the ceiling on all IPs never applied ({refused} refused)");
    assert_eq!(login("10.0.2.1", "password123").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // ... which spares the owner's own address, and her password change.
    assert_eq!(login("10.0.0.1", "password123").await.status(), StatusCode::OK);
    let r = s
        .http
        .post(format!("{}/api/v1/password", s.url))
        .header("x-forwarded-for", "10.0.0.1")
        .bearer_auth(&token)
        .json(&json!({"old_password": "password123", "new_password": "password456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// DNS rebinding: a page of another site whose name was pointed at this server must not use
/// it. Requests naming a host the server does not answer for get 421; its own names, IP
/// addresses and `extra_hostnames` work; health checks answer any name.
#[tokio::test]
async fn requests_for_other_hosts_are_refused() {
    let s = TestServer::start_tuned(|c| c.extra_hostnames = vec!["chat.lan".into()]).await;
    let port = s.addr.port();
    let register = |host: String| {
        let r =
            s.http.post(format!("{}/register", s.url)).header("host", &host).header("origin", format!("http://{host}"));
        r.form(&[("username", "rebound"), ("password", "password123")]).send()
    };
    let r = register(format!("attacker.example:{port}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "rebound", "password": "password123"})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "no account was made");
    let ana = s.register("ana").await;
    let me =
        |host: String| s.http.get(format!("{}/api/v1/me", s.url)).header("host", host).bearer_auth(&ana.token).send();
    assert_eq!(me(format!("attacker.example:{port}")).await.unwrap().status(), StatusCode::MISDIRECTED_REQUEST);
    let mut ws = format!("ws://{}/ws", s.addr).into_client_request().unwrap();
    ws.headers_mut().insert("host", format!("attacker.example:{port}").parse().unwrap());
    ws.headers_mut().insert("cookie", format!("chat_token={}", ana.token).parse().unwrap());
    assert!(chat_testkit::tokio_tungstenite::connect_async(ws).await.is_err(), "a rebound WebSocket was accepted");
    for host in
        [format!("localhost:{port}"), format!("chat.lan:{port}"), format!("CHAT.LAN.:{port}"), s.addr.to_string()]
    {
        assert_eq!(me(host.clone()).await.unwrap().status(), StatusCode::OK, "{host}");
    }
    let r = s.http.get(format!("{}/healthz", s.url)).header("host", "anything.example").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Room creation is limited per user (429 with Retry-After, nothing created); others are not
/// held back by it.
#[tokio::test]
async fn room_creation_per_user_is_limited() {
    let s = TestServer::start_tuned(|c| c.limits.rooms_per_user_per_hour = 3).await;
    let ana = s.register("ana").await;
    for i in 0..3 {
        s.create_room(&ana, &format!("Room {i}"), "public").await;
    }
    let r = s
        .http
        .post(format!("{}/api/v1/rooms", s.url))
        .bearer_auth(&ana.token)
        .json(&json!({"name": "One too many", "visibility": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1200).contains(&wait), "{wait}");
    let (_, mine) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    let names: Vec<&str> = mine["rooms"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(!names.contains(&"One too many"), "{names:?}");
    let ben = s.register("ben").await;
    s.create_room(&ben, "Ben's", "public").await;
}
