//! Rooms across servers: real servers over real HTTPS with a throwaway CA. A user on one server
//! joins a room on another by alias, is invited across servers, catches up after a restart;
//! forged and tampered events are refused and never shown.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::path::Path;

use axum::http::Method;
use chat::events::{Event, M_ROOM_MESSAGE, NewEvent, Parents, text_message};
use chat::federation::urlencode;
use common::TestServer;
use common::eventually;
use common::played::{InRoom, PlayedServer};
use common::tls::{Client, Pki};
use serde_json::{Value, json};

fn tls_config(p: &Pki, data_dir: &Path, listen: &str) -> chat::Config {
    let mut c = chat::Config::with_data_dir(data_dir);
    c.listen = listen.parse().unwrap();
    c.turn.listen = Some("127.0.0.1:0".parse().unwrap());
    c.turn.allow_private_peers = true;
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    common::relax_rates(&mut c);
    c.tls.cert = Some(p.cert.clone());
    c.tls.key = Some(p.key.clone());
    c.federation_ca = Some(p.ca.clone());
    c.federation_private_addresses = true;
    c
}

/// `owner` creates a public room with an alias on their server; returns its id.
async fn public_room(owner: &Client, name: &str, alias: &str) -> String {
    let (s, v) = owner.post("/api/v1/rooms", json!({"name": name, "visibility": "public", "alias": alias})).await;
    assert_eq!(s, 200, "{v}");
    v["room_id"].as_str().unwrap().to_string()
}

/// `user` joins `#alias:server` from their own server.
async fn join_alias(user: &Client, alias: &str, server: &str) {
    let (s, v) = user.post(&format!("/api/v1/join/{}", urlencode(&format!("#{alias}:{server}"))), json!({})).await;
    assert_eq!(s, 200, "{v}");
}

/// Ana on A and Ben on B, in Ana's public room `#alias` on A (Ben joined through B).
async fn ana_and_ben_share(
    p: &Pki,
    a: &TestServer,
    b: &TestServer,
    name: &str,
    alias: &str,
) -> (Client, Client, String) {
    let na = p.name_of(a).await;
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &p.name_of(b).await, "ben").await;
    let room = public_room(&ana, name, alias).await;
    join_alias(&ben, alias, &na).await;
    (ana, ben, room)
}

/// The text of a server's `/metrics`.
async fn metrics(s: &TestServer) -> String {
    let url = format!("http://{}/metrics", s.running().metrics_addr.unwrap());
    reqwest::get(&url).await.unwrap().text().await.unwrap()
}

/// The members of `room` as `user` sees them on their server: (user id, membership).
async fn members(user: &Client, room: &str) -> Vec<(String, String)> {
    let (s, v) = user.get(&format!("/api/v1/rooms/{room}/members")).await;
    assert_eq!(s, 200, "{v}");
    let list = v["members"].as_array().unwrap().iter();
    list.map(|m| (m["user_id"].as_str().unwrap().to_string(), m["membership"].as_str().unwrap().to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_by_alias_and_talk_both_ways_live() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (na, nb) = (p.name_of(&a).await, p.name_of(&b).await);
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &nb, "ben").await;

    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "Lobby", "visibility": "public", "alias": "lobby"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    // The alias is taken now, on this server.
    let (s, _) = ana.post("/api/v1/rooms", json!({"name": "Other", "visibility": "public", "alias": "Lobby"})).await;
    assert_eq!(s, 409);
    ana.send(&room, "before ben came", "t0").await;

    // Ben, on B, joins by alias: B asks A for the room, then make_join/send_join.
    let alias = urlencode(&format!("#lobby:{na}"));
    let (s, v) = ben.post(&format!("/api/v1/join/{alias}"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["room_id"], room.as_str());
    let (s, v) = ben.post(&format!("/api/v1/join/{}", urlencode(&format!("#nothing:{na}"))), json!({})).await;
    assert_eq!(s, 404, "{v}");

    // Both sides see Ben as a member; B has the room's name and the history before the join.
    let (_, members) = ana.get(&format!("/api/v1/rooms/{room}/members")).await;
    assert!(
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == ben.id.as_str() && m["membership"] == "join"),
        "{members}"
    );
    let (s, r) = ben.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["name"], "Lobby");
    assert_eq!(r["members"], 2);
    assert_eq!(ben.bodies(&room).await, vec!["before ben came"]);

    // Live, both ways.
    let mut ana_ws = ana.ws(None).await;
    let mut ben_ws = ben.ws(None).await;
    ana.send(&room, "hello from A", "t1").await;
    assert_eq!(ben_ws.next_body().await, "hello from A");
    assert_eq!(ana_ws.next_body().await, "hello from A");
    ben.send(&room, "hi from B", "t2").await;
    assert_eq!(ana_ws.next_body().await, "hi from B");
    assert_eq!(ben_ws.next_body().await, "hi from B");
    let want = vec!["before ben came", "hello from A", "hi from B"];
    assert_eq!(ana.bodies(&room).await, want);
    assert_eq!(ben.bodies(&room).await, want);

    // Typing, read receipts and presence cross too (EDUs): Ben sees Ana type and stop, Ana
    // sees Ben's receipt, and Ana's tab closing turns her offline on B.
    async fn next_where(ws: &mut common::tls::TlsWs, t: &str, ok: impl Fn(&Value) -> bool) -> Value {
        loop {
            let f = ws.next_of(t).await;
            if ok(&f) {
                return f;
            }
        }
    }
    for typing in [true, false] {
        ana_ws.send(json!({"t": "typing", "room_id": room, "typing": typing})).await;
        next_where(&mut ben_ws, "typing", |f| {
            f["user_ids"].as_array().unwrap().iter().any(|u| u == ana.id.as_str()) == typing
        })
        .await;
    }
    let hi = ben.events(&room).await.into_iter().find(|e| e["content"]["body"] == "hi from B").unwrap();
    let (s, v) = ben.post(&format!("/api/v1/rooms/{room}/read"), json!({"event_id": hi["event_id"]})).await;
    assert_eq!(s, 200, "{v}");
    let pos_on_a = ana.event(&room, hi["event_id"].as_str().unwrap()).await.unwrap()["pos"].clone();
    next_where(&mut ana_ws, "receipt", |f| f["user_id"] == ben.id.as_str() && f["pos"] == pos_on_a).await;
    drop(ana_ws);
    next_where(&mut ben_ws, "presence", |f| f["user_id"] == ana.id.as_str() && f["presence"] == "offline").await;

    // A keeps its connection to B open: 20 more transactions, one at a time, open at most one.
    let count = async |name: &str| metric_value(&metrics(&a).await, name);
    let (requests, opened) =
        (count("chat_federation_requests_total").await, count("chat_federation_connections_opened_total").await);
    for i in 0..20 {
        ana.send(&room, &format!("reused {i}"), &format!("k{i}")).await;
        assert_eq!(ben_ws.next_body().await, format!("reused {i}"));
    }
    let more_requests = count("chat_federation_requests_total").await - requests;
    let more_opened = count("chat_federation_connections_opened_total").await - opened;
    assert!(more_requests >= 20.0 && more_opened <= 1.0, "{more_requests} requests, {more_opened} connections");
    // Both servers offer HTTP/2: every connection A opened to B speaks it.
    let (opened, opened_h2) = (
        count("chat_federation_connections_opened_total").await,
        count("chat_federation_http2_connections_opened_total").await,
    );
    assert!(opened >= 1.0 && opened_h2 == opened, "{opened_h2} of {opened} connections over HTTP/2");

    // Ben leaves: A stops sending to B, and A's member list says so.
    let (s, _) = ben.post(&format!("/api/v1/rooms/{room}/leave"), json!({})).await;
    assert_eq!(s, 200);
    eventually!(10, "A sees Ben leave", {
        let (_, m) = ana.get(&format!("/api/v1/rooms/{room}/members")).await;
        !m["members"].as_array().unwrap().iter().any(|m| m["user_id"] == ben.id.as_str())
    });
    // With B down, a new message is not queued for B: A no longer counts B in the room.
    b.stop().await;
    ana.send(&room, "after ben left", "t3").await;
    let queued = format!("chat_federation_queued_events{{destination=\"{nb}\"");
    let m = metrics(&a).await;
    assert!(!m.lines().any(|l| l.starts_with(&queued)), "{m}");
}

/// Knocking between two of our servers: Ben (on B) asks to join Ana's room on A by its alias;
/// Ana turns him down, which reaches B though B is not in the room; he asks again, is let in,
/// joins, and talks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_join_another_servers_room_is_answered_both_ways() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (na, nb) = (p.name_of(&a).await, p.name_of(&b).await);
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &nb, "ben").await;
    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "Porch", "visibility": "private", "alias": "porch"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/settings"), json!({"visibility": "knock"})).await;
    assert_eq!(s, 200, "{v}");
    let knock = format!("/api/v1/knock/{}", urlencode(&format!("#porch:{na}")));
    let bens = async || {
        let (_, v) = ben.get("/api/v1/rooms").await;
        let found = v["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == room.as_str()).cloned();
        found.map(|r| r["membership"].as_str().unwrap().to_string()).unwrap_or_else(|| "none".into())
    };
    let (s, v) = ben.post(&knock, json!({"reason": "from B"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(bens().await, "knock");
    assert!(members(&ana, &room).await.contains(&(ben.id.clone(), "knock".into())));
    let answer = format!("/api/v1/rooms/{room}/requests");
    let (s, v) = ana.post(&answer, json!({"user_id": ben.id, "accept": false})).await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "B learns Ben was turned down", bens().await == "none");
    let (s, v) = ben.post(&knock, json!({})).await;
    assert_eq!(s, 200, "asking again: {v}");
    eventually!(10, "A sees the new request", members(&ana, &room).await.contains(&(ben.id.clone(), "knock".into())));
    let (s, v) = ana.post(&answer, json!({"user_id": ben.id, "accept": true})).await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "Ben is invited on B", bens().await == "invite");
    let (s, v) = ben.post(&format!("/api/v1/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    ben.send(&room, "in from B", "k1").await;
    eventually!(10, "A has Ben's message", ana.bodies(&room).await == vec!["in from B"]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_across_servers_and_a_third_server_is_not_let_in() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let c = TestServer::federating(&p, |_| {}).await;
    let (na, nb, nc) = (p.name_of(&a).await, p.name_of(&b).await, p.name_of(&c).await);
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &nb, "ben").await;
    let carl = Client::register(&p.ca, &nc, "carl").await;
    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "Secret", "visibility": "private"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();

    // Inviting someone who does not exist on B fails at B; the room is unchanged.
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/invite"), json!({"user_id": format!("@nobody:{nb}")})).await;
    assert_eq!(s, 404, "{v}");
    let mut ben_ws = ben.ws(None).await;
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/invite"), json!({"user_id": ben.id})).await;
    assert_eq!(s, 200, "{v}");
    // The invite on A carries B's co-signature.
    assert!(members(&ana, &room).await.contains(&(ben.id.clone(), "invite".into())));
    let events = ana.events(&room).await;
    let invite = events.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == ben.id.as_str()).unwrap();
    assert!(invite["signatures"][&nb].is_object(), "B co-signed: {invite}");

    // Ben sees the invitation live and in his room list, with the room's name.
    let f = ben_ws.next_of("event").await;
    assert_eq!(f["event"]["content"]["membership"], "invite", "{f}");
    let (_, mine) = ben.get("/api/v1/rooms").await;
    let entry = mine["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == room.as_str()).cloned().unwrap();
    assert_eq!(entry["membership"], "invite");
    assert_eq!(entry["name"], "Secret");

    // Dan on B declines his invitation: A hears of it (make_leave/send_leave).
    let dan = Client::register(&p.ca, &nb, "dan").await;
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/invite"), json!({"user_id": dan.id})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = dan.post(&format!("/api/v1/rooms/{room}/leave"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(!members(&ana, &room).await.iter().any(|(u, _)| *u == dan.id), "A has Dan's leave");
    let (_, mine) = dan.get("/api/v1/rooms").await;
    assert!(mine["rooms"].as_array().unwrap().is_empty(), "{mine}");

    // Carl on C is not invited: A refuses to make him a join, by id and through A.
    let (s, v) = carl.post(&format!("/api/v1/join/{room}"), json!({"via": [na]})).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(carl.get(&format!("/api/v1/rooms/{room}")).await.0, 404, "C has no copy of the room");

    // Ben accepts; then messages go both ways.
    let (s, v) = ben.post(&format!("/api/v1/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    ana.send(&room, "welcome", "w1").await;
    eventually!(10, "B has A's message", ben.bodies(&room).await == vec!["welcome"]);
    ben.send(&room, "thanks", "w2").await;
    eventually!(10, "A has B's message", ana.bodies(&room).await == vec!["welcome", "thanks"]);

    // A server with no one in the room (one the test plays) may read nothing of it: a signed
    // request for the room's events is refused.
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let path = format!("/_matrix/federation/v1/backfill/{}?limit=10", urlencode(&room));
    assert_eq!(f.signed(Method::GET, &na, &path, None).await.0, 403);
    let (s, _) = carl.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_was_down_gets_everything_once_in_order() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b_dir = tempfile::tempdir().unwrap();
    // B listens on a fixed port, so that it keeps its name across the restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b_listen = format!("127.0.0.1:{port}");
    let b = TestServer::start_at(tls_config(&p, b_dir.path(), &b_listen)).await;
    let (na, nb) = (p.name_of(&a).await, p.name_of(&b).await);
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Feed", "feed").await;
    let before = {
        let ws = ben.ws(None).await;
        ws.ready.unwrap()
    };

    b.stop().await;
    for i in 0..100 {
        ana.send(&room, &format!("m{i:03}"), &format!("t{i}")).await;
    }
    // A keeps them queued for B, in its store; its metrics and status say so.
    let queued = format!("chat_federation_queued_events{{destination=\"{nb}\",lane=\"1\"}}");
    assert!(a.metric(&queued).await.unwrap_or(0.0) > 0.0, "A queued the messages for B");
    let failing = format!("chat_federation_destination_failing{{destination=\"{nb}\"}}");
    a.until_metric(&failing, |v| v == 1.0).await;
    // The admin page lists B as retrying, with its queue.
    let o = common::cli_async(&a.dir, &["admin", "user", "make-admin", "ana"], None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cookie = [("cookie", format!("chat_token={}", ana.token))];
    let page = common::tls::raw(&p.ca, &na, "GET", "/admin", &cookie, None).await;
    let row = page.split(&format!("data-server=\"{nb}\"")).nth(1).expect("B in the federation table");
    assert!(row.split("</tr>").next().unwrap().contains("retrying since"), "{page}");

    let b = TestServer::start_at(tls_config(&p, b_dir.path(), &b_listen)).await;
    assert_eq!(p.name_of(&b).await, nb);
    let want: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
    eventually!(30, "B has all 100", ben.bodies(&room).await.len() >= want.len());
    assert_eq!(ben.bodies(&room).await, want, "exactly once, in order");
    // Ben reconnecting from where he was gets them as catch-up, in order.
    let ws = ben.ws(Some(before)).await;
    let replayed: Vec<String> = ws
        .before_ready
        .iter()
        .filter(|f| f["t"] == "event" && f["event"]["type"] == "m.room.message")
        .map(|f| f["event"]["content"]["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replayed, want);
    // What B received is searchable there, as B's own messages are.
    b.until_metric("chat_search_behind", |v| v == 0.0).await;
    let (st, found) = ben.get("/api/v1/search?q=m042").await;
    assert_eq!(st, 200, "{found}");
    assert_eq!(found["results"][0]["event"]["content"]["body"], "m042", "{found}");
    // A's queue for B drains.
    eventually!(10, "A's queue empties", !metrics(&a).await.contains("chat_federation_queued_events{"));
    a.until_metric(&failing, |v| v == 0.0).await;
    drop(b);
}

/// F, a server the test plays, joins the room through B and then sends B events, most of them
/// forged or broken: B refuses those (they are neither shown nor served) and takes the good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_tampered_events_are_refused_and_never_shown() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let nb = p.name_of(&b).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Town", "town").await;
    ana.send(&room, "real", "r1").await;
    eventually!(10, "B has the real message", ben.bodies(&room).await == vec!["real"]);

    // Fred of F joins through B; B answers with the room's state.
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let nf = f.name.clone();
    let fred = format!("@fred:{nf}");
    let (join, answer) = f.join(&nb, &room, &fred).await;
    let room_id = chat::ids::RoomId::parse(&room).unwrap();
    let state: Vec<Event> =
        answer["state"].as_array().unwrap().iter().map(|pdu| Event::from_pdu(pdu, &room_id).unwrap()).collect();
    let levels = state.iter().find(|e| e.kind == "m.room.power_levels").unwrap().event_id.to_string();
    // Events F could send next, after Fred's join. Room version 12: the create event is
    // implied by the room id, not listed.
    let auth = vec![levels.clone(), join.event_id.to_string()];
    let build = |sender: &str, body: &str, n: u64| {
        Event::build(
            Some(&room_id),
            sender,
            NewEvent::message(M_ROOM_MESSAGE, text_message(body)),
            Parents { prev_events: vec![join.event_id.to_string()], auth_events: auth.clone(), depth: join.depth + 1 },
            chat::events::now_ms() + n,
        )
    };
    let signed = |mut ev: Event| {
        ev.sign(&nf, &f.key).unwrap();
        ev
    };
    // 1. Signed by a key that is not F's.
    let (der, version) = chat::keys::SigningKey::generate().unwrap();
    let forger = chat::keys::SigningKey::from_der(&der, version).unwrap();
    let mut bad_sig = build(&fred, "forged signature", 1);
    bad_sig.sign(&nf, &forger).unwrap();
    // 1b. F's key id, but the signature bytes are not F's.
    // (F's real signature of another event.)
    let mut bad_bytes = signed(build(&fred, "bad signature bytes", 6));
    bad_bytes.signatures = signed(build(&fred, "something else", 7)).signatures;
    // 2. Content changed after signing: its content hash fails, so it is taken as a copy
    // redacted on the way (as the spec says), stored redacted, never with the changed text.
    let mut tampered = signed(build(&fred, "original", 2)).pdu();
    tampered["content"]["body"] = json!("tampered");
    // 3. F speaking for a user of another server: a relayed event counts only when the
    //    sender's server (B) signed it, and this one is signed by F alone.
    let other_server = signed(build(&format!("@zed:{nb}"), "not yours", 3));
    // 4. A user of F who is not in the room (properly signed by F).
    let outsider = signed(build(&format!("@outsider:{nf}"), "not a member", 4));
    // 5. Not JSON of an event at all.
    let junk = json!({"type": "m.room.message", "room_id": room, "content": "nope"});
    // 6. A join, in order and signed by F, of a "user" whose id is markup, not a user id.
    let rules = state.iter().find(|e| e.kind == "m.room.join_rules").unwrap().event_id.to_string();
    let bad_user = format!("@\"><script>:{nf}");
    let bad_id = signed(Event::build(
        Some(&room_id),
        &bad_user,
        NewEvent::state(
            chat::events::M_ROOM_MEMBER,
            &bad_user,
            chat::events::member_content(chat::events::Membership::Join),
        ),
        Parents {
            prev_events: vec![join.event_id.to_string()],
            auth_events: vec![levels, rules],
            depth: join.depth + 1,
        },
        chat::events::now_ms() + 8,
    ));
    let good = signed(build(&fred, "good one", 5));
    let tampered_id = Event::from_pdu(&tampered, &room_id).unwrap().event_id;
    let pdus = vec![
        bad_sig.pdu(),
        bad_bytes.pdu(),
        tampered,
        other_server.pdu(),
        outsider.pdu(),
        junk,
        bad_id.pdu(),
        good.pdu(),
    ];
    let send = "/_matrix/federation/v1/send/forged-1";
    let (status, answer) = f.signed(Method::PUT, &nb, send, Some(json!({ "origin": nf, "pdus": pdus }))).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["pdus"].as_object().unwrap();
    for refused in [&bad_sig, &bad_bytes, &other_server, &outsider, &bad_id] {
        assert!(
            results[refused.event_id.as_str()]["error"].is_string(),
            "{} refused: {answer}",
            refused.content["body"]
        );
    }
    assert_eq!(results[good.event_id.as_str()], json!({}), "{answer}");
    assert_eq!(results[tampered_id.as_str()], json!({}), "{answer}");
    let errors = results.values().filter(|v| v["error"].is_string()).count();
    assert_eq!(errors, 6, "{answer}");
    let shown = ben.bodies(&room).await;
    assert_eq!(shown, vec!["real", "good one"]);
    // B serves the good event to a server in the room, and has none of the refused ones.
    let event = |id: &str| format!("/_matrix/federation/v1/event/{}", urlencode(id));
    assert_eq!(f.signed(Method::GET, &nb, &event(good.event_id.as_str()), None).await.0, 200);
    let (s, v) = f.signed(Method::GET, &nb, &event(tampered_id.as_str()), None).await;
    assert_eq!((s, &v["pdus"][0]["content"]), (200, &json!({})), "{v}");
    for e in [&bad_sig, &bad_bytes, &other_server, &outsider, &bad_id] {
        assert_eq!(f.signed(Method::GET, &nb, &event(e.event_id.as_str()), None).await.0, 404, "{}", e.content["body"]);
    }

    // The same transaction id again is answered without processing.
    let again = f.signed(Method::PUT, &nb, send, Some(json!({ "pdus": [] }))).await;
    assert_eq!(again, (200, json!({"pdus": {}})));

    // Malformed requests get 4xx and change nothing; the server stays up.
    for body in [json!({"pdus": "x"}), json!([1, 2]), json!({"pdus": vec![json!({}); 51]})] {
        let (status, v): (u16, Value) = f.signed(Method::PUT, &nb, "/_matrix/federation/v1/send/bad", Some(body)).await;
        assert!((400..500).contains(&status), "{status} {v}");
    }
    let path = format!("/_matrix/federation/v1/make_join/!nope/{}", urlencode(&fred));
    let (status, _) = f.signed(Method::GET, &nb, &path, None).await;
    assert!((400..500).contains(&status));
    let (s, _) = common::tls::request(&p.ca, &nb, "GET", "/healthz", &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(ben.bodies(&room).await, vec!["real", "good one"]);
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_signalling_crosses_servers() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (na, nb) = (p.name_of(&a).await, p.name_of(&b).await);
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &nb, "ben").await;
    let cy = Client::register(&p.ca, &nb, "cy").await;
    let room = public_room(&ana, "Calls", "calls").await;
    for u in [&ben, &cy] {
        join_alias(u, "calls", &na).await;
    }
    let mut aw = ana.ws(None).await;
    let mut bw = ben.ws(None).await;
    let mut cw = cy.ws(None).await;

    let invite = json!({ "call_id": "fc1", "party_id": "pa", "lifetime": 30000, "invitee": ben.id,
                         "offer": { "type": "offer", "sdp": SDP }, "chat.media": "video" });
    let ack = aw.signal(&room, "m.call.invite", invite, "s1").await;
    assert_eq!(ack["t"], "ack", "{ack}");
    // Ben's tab on B rings.
    let rung = bw.next_call("m.call.invite").await;
    assert_eq!(rung["event"]["sender"], ana.id.as_str());
    // Cy, also on B, is no party: B refuses his answer from its own copy of the call.
    let answer =
        |party: &str| json!({ "call_id": "fc1", "party_id": party, "answer": { "type": "answer", "sdp": SDP } });
    let _ = cw.next_call("m.call.invite").await;
    let refused = cw.signal(&room, "m.call.answer", answer("pc"), "c1").await;
    assert_eq!(refused["t"], "error", "{refused}");
    // Ben answers on B; A checks the answer against its record and Ana gets it.
    let ack = bw.signal(&room, "m.call.answer", answer("pb"), "b1").await;
    assert_eq!(ack["t"], "ack", "{ack}");
    let answered = aw.next_call("m.call.answer").await;
    assert_eq!(answered["event"]["sender"], ben.id.as_str());
    let cands = json!({ "call_id": "fc1", "party_id": "pb",
        "candidates": [{ "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0 }] });
    assert_eq!(bw.signal(&room, "m.call.candidates", cands, "b2").await["t"], "ack");
    aw.next_call("m.call.candidates").await;
    let hangup = json!({ "call_id": "fc1", "party_id": "pa", "reason": "user_hangup" });
    assert_eq!(aw.signal(&room, "m.call.hangup", hangup, "s2").await["t"], "ack");
    let ended = bw.next_call("m.call.hangup").await;
    assert_eq!(ended["event"]["content"]["chat.call"]["answered"], true, "{ended}");
    // Both servers recorded the call as ended: neither takes another signal for it.
    let late = json!({ "call_id": "fc1", "party_id": "p",
        "candidates": [{ "candidate": "candidate:1 1 udp 1 127.0.0.1 5001 typ host", "sdpMid": "0", "sdpMLineIndex": 0 }] });
    for (ws, txn) in [(&mut aw, "s3"), (&mut bw, "b3")] {
        let f = ws.signal(&room, "m.call.candidates", late.clone(), txn).await;
        assert!(f["t"] == "error" && f["message"].as_str().unwrap().contains("ended"), "{f}");
    }
}

/// Event ids of a room's history as a member sees it on their server.
async fn timeline_ids(member: &Client, room: &str) -> std::collections::BTreeSet<String> {
    member.events(room).await.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect()
}

fn free_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renames_converge_by_state_resolution() {
    let p = Pki::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a_at, b_at) = (free_port(), free_port());
    let a = TestServer::start_at(tls_config(&p, a_dir.path(), &a_at)).await;
    let b = TestServer::start_at(tls_config(&p, b_dir.path(), &b_at)).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Start", "split").await;
    // Ben may rename the room too (moderator), and a plain member may not.
    let (s, v) = ben.post(&format!("/api/v1/rooms/{room}/settings"), json!({"name": "too early"})).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/power"), json!({"user_id": ben.id, "level": 50})).await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "B has Ben's new level", {
        let events = ben.events(&room).await;
        // Newest first: the first power levels event is the room's current one.
        let levels = events.iter().find(|e| e["type"] == "m.room.power_levels").unwrap();
        levels["content"]["users"][&ben.id] == 50
    });

    // Cut off: each renames while the other is down.
    b.stop().await;
    let (s, _) = ana.post(&format!("/api/v1/rooms/{room}/settings"), json!({"name": "Name from A"})).await;
    assert_eq!(s, 200);
    a.stop().await;
    // Running until the end of the test (held, not read).
    let _b = TestServer::start_at(tls_config(&p, b_dir.path(), &b_at)).await;
    let (s, v) = ben.post(&format!("/api/v1/rooms/{room}/settings"), json!({"name": "Name from B"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ben.get(&format!("/api/v1/rooms/{room}")).await.1["name"], "Name from B");
    let _a = TestServer::start_at(tls_config(&p, a_dir.path(), &a_at)).await;

    // Reconnected: both hold the same events, and the same name.
    eventually!(30, "both have both renames", {
        let (ta, tb) = (timeline_ids(&ana, &room).await, timeline_ids(&ben, &room).await);
        ta == tb && ta.len() >= 8
    });
    let (_, ra) = ana.get(&format!("/api/v1/rooms/{room}")).await;
    let (_, rb) = ben.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(ra["name"], rb["name"]);
    let name_a = ra["name"].as_str().unwrap();
    assert!(["Name from A", "Name from B"].contains(&name_a), "{name_a}");
    // One event joins the branches (the empty event a server sends when it holds branches
    // with different states, or the next message): both tips are its parents.
    ana.send(&room, "after the merge", "m1").await;
    eventually!(10, "B has the message", ben.bodies(&room).await == vec!["after the merge"]);
    let events = ana.events(&room).await;
    assert_eq!(events[0]["content"]["body"], "after the merge", "the newest event on A");
    let renames: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "m.room.name" && e["content"]["name"].as_str().unwrap().starts_with("Name from"))
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let joins_both = |e: &&Value| {
        let parents: std::collections::BTreeSet<&str> =
            e["prev_events"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        parents == renames
    };
    assert!(events.iter().any(|e| joins_both(&e)), "no event follows both renames: {events:?}");
}

/// `chat admin room delete` takes everything of the room: its alias (free again, unknown to
/// other servers) and its events still queued for a server that is down (the queue metric
/// drops to nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_room_takes_its_aliases_and_queued_sends() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (na, nb) = (p.name_of(&a).await, p.name_of(&b).await);
    let (ana, _ben, room) = ana_and_ben_share(&p, &a, &b, "Gone soon", "gone").await;
    let _b_data = b.stop().await;
    for i in 0..3 {
        ana.send(&room, &format!("m{i}"), &format!("t{i}")).await;
    }
    let queued_line = format!("chat_federation_queued_events{{destination=\"{nb}\",lane=\"1\"}} 3");
    let m = metrics(&a).await;
    assert!(m.lines().any(|l| l == queued_line), "{m}");

    let out = common::cli_async(&a.dir, &["admin", "room", "delete", &room, "--yes"], None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = metrics(&a).await;
    assert!(!m.contains(&format!("destination=\"{nb}\",lane=\"1\"")), "{m}");
    // The alias names nothing any more, for other servers, and can be taken again.
    let c = TestServer::federating(&p, |_| {}).await;
    let cara = Client::register(&p.ca, &p.name_of(&c).await, "cara").await;
    let (s, v) = cara.post(&format!("/api/v1/join/{}", urlencode(&format!("#gone:{na}"))), json!({})).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "New", "visibility": "public", "alias": "gone"})).await;
    assert_eq!(s, 200, "{v}");
}

/// An invitation from another server makes a stub only the invitee sees: never listed in the
/// public directory, whatever join rule its stripped state claims, and its creator is the
/// inviter, not the local user the stripped state names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_stubs_stay_with_the_invitee() {
    use chat::events::{M_ROOM_CREATE, M_ROOM_MEMBER, Membership, member_content};
    let p = Pki::new();
    let b = TestServer::federating(&p, |_| {}).await;
    let nb = p.name_of(&b).await;
    let ben = Client::register(&p.ca, &nb, "ben").await;
    let carl = Client::register(&p.ca, &nb, "carl").await;
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let nf = f.name.clone();
    let fred = format!("@fred:{nf}");
    let now = chat::events::now_ms();
    let create = Event::build(
        None,
        &fred,
        NewEvent::state(M_ROOM_CREATE, "", json!({"room_version": "12"})),
        Parents { prev_events: vec![], auth_events: vec![], depth: 1 },
        now,
    );
    let room_id = create.room_id.clone();
    let mut invite = Event::build(
        Some(&room_id),
        &fred,
        NewEvent::state(M_ROOM_MEMBER, &ben.id, member_content(Membership::Invite)),
        Parents { prev_events: vec![create.event_id.to_string()], auth_events: vec![], depth: 2 },
        now + 1,
    );
    invite.sign(&nf, &f.key).unwrap();
    // The stripped state claims a public room created by Ben, a local user.
    let stripped = vec![
        json!({"type": "m.room.create", "state_key": "", "sender": ben.id, "content": {"room_version": "12"}}),
        json!({"type": "m.room.join_rules", "state_key": "", "sender": fred, "content": {"join_rule": "public"}}),
        json!({"type": "m.room.name", "state_key": "", "sender": fred, "content": {"name": "Free stuff"}}),
    ];
    let path = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        urlencode(room_id.as_str()),
        urlencode(invite.event_id.as_str())
    );
    let body = json!({"event": invite.pdu(), "invite_room_state": stripped, "room_version": "12"});
    let (st, v) = f.signed(Method::PUT, &nb, &path, Some(body)).await;
    assert_eq!(st, 200, "{v}");
    // Ben sees the invitation, from Fred.
    let (_, mine) = ben.get("/api/v1/rooms").await;
    let stub = mine["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == room_id.as_str()).cloned();
    let stub = stub.expect("Ben does not see his invitation");
    assert_eq!(stub["membership"], "invite");
    assert_eq!(stub["creator"], fred.as_str());
    // Nobody finds it in the directory, in the API or on the rooms page.
    for user in [&ben, &carl] {
        let (_, public) = user.get("/api/v1/rooms/public").await;
        assert!(
            !public["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == room_id.as_str()),
            "{} sees the stub in the directory: {public}",
            user.id
        );
    }
    let cookie = [("cookie", format!("chat_token={}", carl.token))];
    let page = common::tls::raw(&p.ca, &nb, "GET", "/rooms", &cookie, None).await;
    assert!(page.contains("200 OK") && !page.contains("Free stuff"), "the stub is on Carl's rooms page");

    // Withdrawing the invitation is taken only from the server it came from: G, which had no
    // part in it, cannot; F can, and Ben's invitation is gone.
    let withdraw = |server: &PlayedServer, sender: &str, ts: u64| {
        let mut leave = Event::build(
            Some(&room_id),
            sender,
            NewEvent::state(M_ROOM_MEMBER, &ben.id, member_content(Membership::Leave)),
            Parents { prev_events: vec![invite.event_id.to_string()], auth_events: vec![], depth: 3 },
            ts,
        );
        leave.sign(&server.name, &server.key).unwrap();
        json!({"origin": server.name, "origin_server_ts": ts, "pdus": [leave.pdu()]})
    };
    let bens = async || {
        let (_, mine) = ben.get("/api/v1/rooms").await;
        mine["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == room_id.as_str())
    };
    let g = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let body = withdraw(&g, &format!("@gus:{}", g.name), now + 2);
    let (st, v) = g.signed(Method::PUT, &nb, "/_matrix/federation/v1/send/g1", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["pdus"].as_object().unwrap().values().all(|r| r.get("error").is_some()), "G's withdrawal refused: {v}");
    assert!(bens().await, "G withdrew Ben's invitation");
    let (st, v) =
        f.signed(Method::PUT, &nb, "/_matrix/federation/v1/send/f1", Some(withdraw(&f, &fred, now + 3))).await;
    assert_eq!(st, 200, "{v}");
    eventually!(10, "F's withdrawal reaches Ben", !bens().await);
}

/// A metric's value in `/metrics` text (0 if absent).
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// Audit 5: events from another server are held to the limits local users have. Oversized
/// messages are refused and never shown; a long name is kept as state but shown cut to the
/// local limit; a remote user gets the local send rate and a server its own rate, each refusal
/// saying when to send again; and a real server of ours that is refused sends again, so
/// nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_are_held_to_local_limits() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |c| {
        c.limits.messages_per_user_per_minute = 300;
        c.limits.federation_events_per_origin_per_minute = 400;
    })
    .await;
    let nb = p.name_of(&b).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Limits", "limits").await;
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let (fred, fiona) = (format!("@fred:{}", f.name), format!("@fiona:{}", f.name));
    let mut r = InRoom::join(&f, &nb, &room, &[&fred, &fiona]).await;
    // Fred may rename the room (moderator); B has the new power levels.
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/power"), json!({"user_id": fred, "level": 50})).await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "B has Fred's level", {
        let events = ben.events(&room).await;
        let levels = events.iter().find(|e| e["type"] == "m.room.power_levels").unwrap();
        r.levels = levels["event_id"].as_str().unwrap().to_string();
        levels["content"]["users"][&fred] == 50
    });

    // Sizes: a 40 KB body, a 20 KB formatted body, one at the limit, a 5,000-character name
    // (state: kept, shown cut) and another kind of event carrying 40 KB.
    let big = "x".repeat(40 * 1024);
    let at_limit = "y".repeat(16 * 1024);
    let too_big = r.message(&f, &fred, text_message(&big), 1);
    let html = json!({"msgtype": "m.text", "body": "short", "format": "org.matrix.custom.html",
                      "formatted_body": "z".repeat(20 * 1024)});
    let formatted = r.message(&f, &fred, html, 2);
    let fits = r.message(&f, &fred, text_message(&at_limit), 3);
    let join = &r.joins[&fred];
    let name = NewEvent::state("m.room.name", "", json!({ "name": "N".repeat(5000) }));
    // It follows Fred's promotion too: at a place where he had no power it would be rejected.
    let named = r.event(&f, &fred, name, &[fits.event_id.to_string(), r.levels.clone()], join.depth + 2, 4);
    let blob = NewEvent::message("com.example.blob", json!({ "data": "d".repeat(40 * 1024) }));
    let huge = r.event(&f, &fred, blob, &[join.event_id.to_string()], join.depth + 1, 5);
    let pdus = vec![too_big.pdu(), formatted.pdu(), fits.pdu(), named.pdu(), huge.pdu()];
    let results = f.send_txn(&nb, "sizes", pdus).await;
    for refused in [&too_big, &formatted, &huge] {
        assert!(results[refused.event_id.as_str()]["error"].is_string(), "{results:?}");
    }
    assert_eq!(results[fits.event_id.as_str()], json!({}));
    assert_eq!(results[named.event_id.as_str()], json!({}));
    let bodies = ben.bodies(&room).await;
    assert!(bodies.contains(&at_limit) && !bodies.iter().any(|b| b.len() > 16 * 1024 || b == "short"));
    let (_, shown) = ben.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(shown["name"], "N".repeat(100), "the name is shown cut to the local limit");
    assert_eq!(metric_value(&metrics(&b).await, "chat_federation_events_too_large_total"), 3.0);

    // Rates: Fred sends 1,000 messages in 20 transactions at once; Fiona 200 more.
    let t0 = std::time::Instant::now();
    let (mut fred_ok, mut fred_limited, mut fiona_ok, mut fiona_limited) = (0u32, 0u32, 0u32, 0u32);
    for (who, count, ok, limited) in
        [(&fred, 1000u64, &mut fred_ok, &mut fred_limited), (&fiona, 200, &mut fiona_ok, &mut fiona_limited)]
    {
        let events: Vec<Event> =
            (0..count).map(|i| r.message(&f, who, text_message(&format!("{who} {i}")), 10 + i)).collect();
        for (n, chunk) in events.chunks(50).enumerate() {
            let results = f.send_txn(&nb, &format!("rate-{who}-{n}"), chunk.iter().map(Event::pdu).collect()).await;
            for e in chunk {
                let res = &results[e.event_id.as_str()];
                if *res == json!({}) {
                    *ok += 1;
                } else {
                    assert_eq!(res["errcode"], "M_LIMIT_EXCEEDED", "{res}");
                    assert!(res["retry_after_ms"].as_u64().unwrap() >= 1000, "{res}");
                    *limited += 1;
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "F sent 1000 messages of Fred and 200 of Fiona in {secs:.1} s: Fred {fred_ok} taken, {fred_limited} refused; \
         Fiona {fiona_ok} taken, {fiona_limited} refused"
    );
    // Fred: the local rate (300 a minute, in bursts of as many; 2 taken above, 5 a second
    // back); F: 400 a minute in all (6.7 a second back).
    let (fred_most, all_most) = (298.0 + 5.0 * secs + 5.0, 398.0 + 6.7 * secs + 10.0);
    assert!(fred_ok >= 298 && f64::from(fred_ok) <= fred_most, "{fred_ok}");
    assert!(fiona_ok > 0 && fiona_limited > 0 && f64::from(fred_ok + fiona_ok) <= all_most, "{fiona_ok}");
    let shown = ben.bodies(&room).await.iter().filter(|b| b.starts_with(&fred) || b.starts_with(&fiona)).count();
    assert_eq!(shown, (fred_ok + fiona_ok) as usize);

    // A real server refused for a rate sends again: Ana's 400 messages on A (sent 40 at a time,
    // so they reach B faster than B's 300 a minute for her) all reach Ben, once each and in
    // A's order.
    let t2 = std::time::Instant::now();
    for batch in 0..10 {
        let sends = (0..40).map(|i| {
            let n = batch * 40 + i;
            let ana = &ana;
            let room = &room;
            async move { ana.send(room, &format!("ana {n:03}"), &format!("a{n}")).await }
        });
        futures_util::future::join_all(sends).await;
    }
    let on_a: Vec<String> = ana.bodies(&room).await.into_iter().filter(|b| b.starts_with("ana ")).collect();
    assert_eq!(on_a.len(), 400);
    eventually!(
        90,
        "Ben has all of Ana's",
        ben.bodies(&room).await.iter().filter(|b| b.starts_with("ana ")).count() >= 400
    );
    let got: Vec<String> = ben.bodies(&room).await.into_iter().filter(|b| b.starts_with("ana ")).collect();
    assert_eq!(got, on_a);
    let limited = metric_value(&metrics(&b).await, "chat_federation_events_rate_limited_total");
    let ana_limited = limited - f64::from(fred_limited + fiona_limited);
    println!(
        "Ana's 400 messages all reached Ben, in order, {:?} after the first was sent; B refused {ana_limited} sends of them for the rate on the way",
        t2.elapsed()
    );
    assert!(ana_limited > 0.0, "Ana's were refused at least once: {limited}");
}

/// Audit 6: an event whose predecessors are unknown costs a bounded number of
/// `get_missing_events` requests (3 per transaction, a setting per server per minute), made with
/// no room lock held; beyond the budget the event is taken with a gap. F serves six chains of
/// 1,000 events and sends the top of each in its own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_events_are_fetched_within_a_budget() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |c| c.limits.federation_missing_fetches_per_origin_per_minute = 8).await;
    let nb = p.name_of(&b).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Deep", "deep").await;
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let fred = format!("@fred:{}", f.name);
    let r = InRoom::join(&f, &nb, &room, &[&fred]).await;
    let join = r.joins[&fred].clone();
    let (chains, length) = (6u64, 1000u64);
    let mut tops = Vec::new();
    for c in 0..chains {
        let mut prev = join.event_id.to_string();
        let mut chain = Vec::new();
        for i in 0..length {
            let body = text_message(&format!("chain {c} event {i}"));
            let ev = r.event(
                &f,
                &fred,
                NewEvent::message(M_ROOM_MESSAGE, body),
                &[prev],
                join.depth + 1 + i,
                c * length + i,
            );
            prev = ev.event_id.to_string();
            chain.push(ev);
        }
        tops.push(chain.last().unwrap().clone());
        f.has_events(chain);
    }
    let before = metric_value(&metrics(&b).await, "chat_stream_position");
    let t0 = std::time::Instant::now();
    for (i, top) in tops.iter().enumerate() {
        let results = f.send_txn(&nb, &format!("deep-{i}"), vec![top.pdu()]).await;
        // Taken, with a gap before it when the budget ran out.
        assert_eq!(results[top.event_id.as_str()], json!({}), "{results:?}");
    }
    let took = t0.elapsed();
    // A message from A during all this reaches Ben at once.
    let t1 = std::time::Instant::now();
    ana.send(&room, "meanwhile", "m1").await;
    eventually!(10, "Ben has Ana's message", ben.bodies(&room).await.contains(&"meanwhile".to_string()));
    let latency = t1.elapsed();
    let m = metrics(&b).await;
    let stored = metric_value(&m, "chat_stream_position") - before;
    let (done, refused) = (
        metric_value(&m, "chat_federation_missing_fetches_total"),
        metric_value(&m, "chat_federation_missing_fetches_refused_total"),
    );
    println!(
        "6 transactions, each the top of a 1000-event chain, in {took:?}: F got {} get_missing_events requests \
         (metrics: {done} made, {refused} refused), B stored {stored} events; Ana's message reached Ben in {latency:?}",
        f.missing_requests()
    );
    // 3 for each of the first two transactions, 2 more until the server's 8 a minute are spent
    // (and one more for every 7.5 s the test took).
    let most = 8 + (took.as_secs_f64() * 8.0 / 60.0).ceil() as usize;
    let made = f.missing_requests();
    assert!((8..=most).contains(&made), "{made} requests, at most {most}");
    assert_eq!(done, made as f64);
    assert!(refused >= 3.0, "at least the last three transactions found the budget spent: {refused}");
    assert!(stored <= made as f64 * 100.0 + 6.0 + 1.0, "{stored}");
    // Every top is shown, each chain only as far as it was fetched.
    let bodies = ben.bodies(&room).await;
    for c in 0..chains {
        assert!(bodies.contains(&format!("chain {c} event {}", length - 1)), "chain {c}'s top");
    }
}

/// An invitation of `whom` by `inviter` (a user of `f`) to a new room of F's; the status B
/// answers.
async fn invite_from(f: &PlayedServer, to: &str, inviter: &str, whom: &str, n: u64) -> u16 {
    use chat::events::{M_ROOM_CREATE, M_ROOM_MEMBER, Membership, member_content};
    let now = chat::events::now_ms() + n;
    let create = Event::build(
        None,
        inviter,
        NewEvent::state(M_ROOM_CREATE, "", json!({"room_version": "12"})),
        Parents { prev_events: vec![], auth_events: vec![], depth: 1 },
        now,
    );
    let mut invite = Event::build(
        Some(&create.room_id),
        inviter,
        NewEvent::state(M_ROOM_MEMBER, whom, member_content(Membership::Invite)),
        Parents { prev_events: vec![create.event_id.to_string()], auth_events: vec![], depth: 2 },
        now + 1,
    );
    invite.sign(&f.name, &f.key).unwrap();
    let path = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        urlencode(create.room_id.as_str()),
        urlencode(invite.event_id.as_str())
    );
    let stripped =
        vec![json!({"type": "m.room.name", "state_key": "", "sender": inviter, "content": {"name": "Spam"}})];
    let body = json!({"event": invite.pdu(), "invite_room_state": stripped, "room_version": "12"});
    f.signed(Method::PUT, to, &path, Some(body)).await.0
}

/// Ben's invitations, as his room list shows them.
async fn invitations(user: &Client) -> usize {
    let (_, mine) = user.get("/api/v1/rooms").await;
    mine["rooms"].as_array().unwrap().iter().filter(|r| r["membership"] == "invite").count()
}

/// Audit 14: invitations from other servers are limited per server and per invitee (429, no
/// stub), and a server may take them only from users who share a room with the invitee (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_spam_is_limited() {
    let p = Pki::new();
    let b = TestServer::federating(&p, |_| {}).await;
    let nb = p.name_of(&b).await;
    let ben = Client::register(&p.ca, &nb, "ben").await;
    let carl = Client::register(&p.ca, &nb, "carl").await;
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let fred = format!("@fred:{}", f.name);
    let t0 = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..200 {
        *statuses.entry(invite_from(&f, &nb, &fred, &ben.id, i).await).or_default() += 1;
    }
    let took = t0.elapsed();
    let shown = invitations(&ben).await;
    println!("200 invitations from F in {took:?}: {statuses:?}; Ben's list shows {shown}");
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&180), "{statuses:?}");
    assert_eq!(shown, 20);
    // Another server may still invite Carl, not Ben: his 20 an hour are spent.
    let g = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let gus = format!("@gus:{}", g.name);
    assert_eq!(invite_from(&g, &nb, &gus, &ben.id, 1000).await, 429);
    assert_eq!(invite_from(&g, &nb, &gus, &carl.id, 1001).await, 200);
    assert_eq!(invitations(&ben).await, 20);
    assert_eq!(metric_value(&metrics(&b).await, "chat_federation_invites_refused_total"), 181.0);

    // A server that takes invitations only from people its users share a room with.
    let c = TestServer::federating(&p, |c| c.limits.federation_invites_from_shared_rooms_only = true).await;
    let nc = p.name_of(&c).await;
    let cleo = Client::register(&p.ca, &nc, "cleo").await;
    assert_eq!(invite_from(&f, &nc, &fred, &cleo.id, 2000).await, 403);
    assert_eq!(invitations(&cleo).await, 0);
    // Once Fred is in one of Cleo's rooms, his invitation is taken.
    let room = public_room(&cleo, "Cleo's", "cleos").await;
    f.join(&nc, &room, &fred).await;
    assert_eq!(invite_from(&f, &nc, &fred, &cleo.id, 2001).await, 200);
    assert_eq!(invitations(&cleo).await, 1);
}

/// Redactions cross between our servers and are applied on both: one's own message, and (with
/// the `redact` level) another's; a member without it gets 403 for another's message. A server
/// that joins later takes the redacted copies (their content hash no longer matches) redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redactions_cross_servers_and_others_messages_need_the_power() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Slips", "slips").await;
    let ana_slip = ana.send(&room, "ana's slip", "s1").await;
    let ben_slip = ben.send(&room, "ben's slip", "s2").await;
    let ben_keep = ben.send(&room, "ben's keeper", "s3").await;
    // Sorted: the two servers may order Ana's and Ben's concurrent messages differently.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = sorted(["ana's slip", "ben's slip", "ben's keeper"].map(String::from).to_vec());
    eventually!(20, "every message on both servers", {
        sorted(ana.bodies(&room).await) == all && sorted(ben.bodies(&room).await) == all
    });

    // Ben has no power: Ana's message is not his to delete, and nothing changes.
    let redact = format!("/api/v1/rooms/{room}/redact");
    let (s, v) = ben.post(&redact, json!({"event_id": ana_slip})).await;
    assert_eq!(s, 403, "{v}");
    // Ben deletes his own message on B; Ana's tab on A drops it live, and both histories show
    // it redacted, naming the redaction.
    let mut ana_ws = ana.ws(None).await;
    let (s, v) = ben.post(&redact, json!({"event_id": ben_slip, "reason": "typo"})).await;
    assert_eq!(s, 200, "{v}");
    let by_ben = v["event_id"].as_str().unwrap().to_string();
    let f = ana_ws.next_redaction().await;
    assert_eq!(f["event"]["content"]["redacts"], ben_slip.as_str(), "{f}");
    // Ana, the room's creator, deletes Ben's other message on A (the creator has every level).
    let (s, v) = ana.post(&redact, json!({"event_id": ben_keep})).await;
    assert_eq!(s, 200, "{v}");
    let by_ana = v["event_id"].as_str().unwrap().to_string();
    let left = vec!["ana's slip".to_string()];
    eventually!(20, "the redactions applied on both servers", {
        ana.bodies(&room).await == left && ben.bodies(&room).await == left
    });
    for user in [&ana, &ben] {
        for (target, because) in [(&ben_slip, &by_ben), (&ben_keep, &by_ana)] {
            let e = user.event(&room, target).await.unwrap();
            assert_eq!(e["content"], json!({}), "{e}");
            assert_eq!(e["unsigned"]["redacted_because"], because.as_str(), "{e}");
        }
    }
    // Deleting again answers the first redaction and sends nothing new.
    let (s, v) = ana.post(&redact, json!({"event_id": ben_slip})).await;
    assert_eq!((s, v["event_id"].as_str()), (200, Some(by_ben.as_str())), "{v}");
    // A reload shows the placeholder, not the text.
    let page = ana.page(&format!("/rooms/{}", urlencode(&room))).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Message deleted") && !page.contains("ben&#39;s slip") && !page.contains("ben's slip"));

    // Cy on a third server joins later: the history A serves holds the redacted copies, which
    // fail their content hash and are taken redacted; the room goes on for everyone.
    let c = TestServer::federating(&p, |_| {}).await;
    let cy = Client::register(&p.ca, &p.name_of(&c).await, "cy").await;
    join_alias(&cy, "slips", &p.name_of(&a).await).await;
    assert_eq!(cy.bodies(&room).await, left);
    let e = cy.event(&room, &ben_slip).await.unwrap();
    assert_eq!(e["content"], json!({}), "{e}");
    cy.send(&room, "hi all", "c1").await;
    let after = vec!["ana's slip".to_string(), "hi all".to_string()];
    eventually!(20, format!("the room goes on: {:?} {:?}", ana.bodies(&room).await, ben.bodies(&room).await), {
        ana.bodies(&room).await == after && ben.bodies(&room).await == after
    });
}

/// The state at any event is served (`state_ids`, `state`) as it was before that event, and an
/// event's auth chain (`event_auth`), to servers in the room; an event whose state is not held
/// is `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_at_any_event_is_served() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let na = p.name_of(&a).await;
    let ana = Client::register(&p.ca, &na, "ana").await;
    let room = public_room(&ana, "First", "states").await;
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    InRoom::join(&f, &na, &room, &[&format!("@fred:{}", f.name)]).await;
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/settings"), json!({"name": "Second"})).await;
    assert_eq!(s, 200, "{v}");
    let after = ana.send(&room, "after the rename", "t1").await;
    let events = ana.events(&room).await;
    let names: Vec<&Value> = events.iter().filter(|e| e["type"] == "m.room.name").collect();
    let (rename, first) = (names[0]["event_id"].as_str().unwrap(), names[1]["event_id"].as_str().unwrap());
    let rid = urlencode(&room);
    let ids_at = |event: &str| {
        let path = format!("/_matrix/federation/v1/state_ids/{rid}?event_id={}", urlencode(event));
        let f = &f;
        let na = na.clone();
        async move { f.signed(Method::GET, &na, &path, None).await }
    };
    // Before the rename, the first name holds its slot; after it, the rename does.
    let (st, at_rename) = ids_at(rename).await;
    assert_eq!(st, 200, "{at_rename}");
    let ids: Vec<&str> = at_rename["pdu_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(ids.contains(&first) && !ids.contains(&rename), "{at_rename}");
    let (st, at_after) = ids_at(&after).await;
    assert_eq!(st, 200, "{at_after}");
    let ids: Vec<&str> = at_after["pdu_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(ids.contains(&rename) && !ids.contains(&first), "{at_after}");
    // History from several events at once, as Synapse asks to fill its gaps (`v` repeated):
    // it ends with the newest of them; one unknown `v` changes nothing.
    let path = format!(
        "/_matrix/federation/v1/backfill/{rid}?v={}&v={}&v=%24unknown&limit=3",
        urlencode(rename),
        urlencode(&after)
    );
    let (st, page) = f.signed(Method::GET, &na, &path, None).await;
    assert_eq!(st, 200, "{page}");
    let pdus = page["pdus"].as_array().unwrap();
    assert_eq!(pdus.len(), 3, "{page}");
    assert_eq!(pdus[2]["content"]["body"], "after the rename", "{page}");
    assert_eq!(pdus[1]["type"], "m.room.name", "{page}");
    // The same with the events themselves.
    let path = format!("/_matrix/federation/v1/state/{rid}?event_id={}", urlencode(rename));
    let (st, state) = f.signed(Method::GET, &na, &path, None).await;
    assert_eq!(st, 200, "{state}");
    let name = state["pdus"].as_array().unwrap().iter().find(|e| e["type"] == "m.room.name").unwrap();
    assert_eq!(name["content"]["name"], "First");
    // Every auth event of that state is in it or in its auth chain.
    let held: std::collections::BTreeSet<String> = ["pdus", "auth_chain"]
        .iter()
        .flat_map(|k| state[*k].as_array().unwrap().iter())
        .map(|e| Event::from_pdu(e, &chat::ids::RoomId::parse(&room).unwrap()).unwrap().event_id.to_string())
        .collect();
    for e in state["pdus"].as_array().unwrap() {
        for a in e["auth_events"].as_array().unwrap() {
            assert!(held.contains(a.as_str().unwrap()), "{a} missing from {state}");
        }
    }
    // The rename's auth chain holds the room's creation.
    let path = format!("/_matrix/federation/v1/event_auth/{rid}/{}", urlencode(rename));
    let (st, auth) = f.signed(Method::GET, &na, &path, None).await;
    assert_eq!(st, 200, "{auth}");
    assert!(auth["auth_chain"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"), "{auth}");
    // An event not held here.
    let (st, _) = ids_at("$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(st, 404);
}

/// An event is checked against the state at its place in the room (the state after its
/// predecessors), not only against its own auth events and the current state, as Matrix
/// servers do. Fred, made a moderator, demoted and promoted again, renames the room at a
/// point after his demotion, naming the power levels from before it: rejected, though he has
/// the power now. The same rename after his promotion is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_checked_against_the_state_at_its_place() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let na = p.name_of(&a).await;
    let ana = Client::register(&p.ca, &na, "ana").await;
    let room = public_room(&ana, "Places", "places").await;
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let fred = format!("@fred:{}", f.name);
    let mut r = InRoom::join(&f, &na, &room, &[&fred]).await;
    // Sets Fred's level; returns the power levels event (id, depth).
    let level = async |n: i64| -> (String, u64) {
        let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/power"), json!({"user_id": fred, "level": n})).await;
        assert_eq!(s, 200, "{v}");
        let events = ana.events(&room).await;
        let pl = events.iter().find(|e| e["type"] == "m.room.power_levels").unwrap();
        assert_eq!(pl["content"]["users"][&fred].as_i64().unwrap_or(0), n, "{pl}");
        (pl["event_id"].as_str().unwrap().to_string(), pl["depth"].as_u64().unwrap())
    };
    let (up, _) = level(50).await;
    let (down, down_depth) = level(0).await;
    let (again, again_depth) = level(50).await;

    r.levels = up;
    let rename = |name: &str| NewEvent::state("m.room.name", "", json!({ "name": name }));
    let early = r.event(&f, &fred, rename("Fred's early name"), &[down], down_depth + 1, 1);
    let results = f.send_txn(&na, "early", vec![early.pdu()]).await;
    let refused = results[early.event_id.as_str()]["error"].as_str().unwrap_or_default().to_string();
    assert!(refused.contains("authorization rules"), "{results:?}");
    let (_, shown) = ana.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(shown["name"], "Places", "{shown}");

    r.levels = again.clone();
    let late = r.event(&f, &fred, rename("Fred's name"), &[again], again_depth + 1, 2);
    let results = f.send_txn(&na, "late", vec![late.pdu()]).await;
    assert_eq!(results[late.event_id.as_str()], json!({}), "{results:?}");
    let (_, shown) = ana.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(shown["name"], "Fred's name", "{shown}");
}

/// A server named without a port (`b.chat.test`) is found by its SRV record, as Matrix's
/// server discovery says: A asks the DNS the test runs (no `.well-known` there: the name has
/// no address), connects to the record's target and port, and checks the certificate for the
/// server name. The answer is cached: one SRV question for a join and messages both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_found_by_its_srv_record() {
    use common::dns::{Dns, Record};
    let p = Pki::new();
    let dns = Dns::start().await;
    let dns_addr = dns.addr;
    let a = TestServer::federating(&p, |c| c.federation_dns = Some(dns_addr)).await;
    let b = TestServer::federating(&p, |c| {
        c.server_name = Some(chat::ids::ServerName::parse("b.chat.test").unwrap());
    })
    .await;
    dns.add(Record::Srv {
        name: "_matrix-fed._tcp.b.chat.test".into(),
        priority: 10,
        weight: 5,
        port: b.addr.port(),
        target: "host.chat.test".into(),
    });
    // A lower-priority record first in the answer, pointing nowhere useful, is not the one taken.
    dns.add(Record::Srv {
        name: "_matrix-fed._tcp.b.chat.test".into(),
        priority: 20,
        weight: 5,
        port: 1,
        target: "host.chat.test".into(),
    });
    dns.add(Record::A { name: "host.chat.test".into(), ip: "127.0.0.1".parse().unwrap() });
    let na = p.name_of(&a).await;
    assert_eq!(p.name_of(&b).await, "b.chat.test");
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &b.addr.to_string(), "ben").await;
    assert_eq!(ben.id, "@ben:b.chat.test");

    // Ana joins Ben's room by its alias on b.chat.test: the alias lookup and the join reach B.
    let room = public_room(&ben, "Found by SRV", "srv").await;
    join_alias(&ana, "srv", "b.chat.test").await;
    ana.send(&room, "hello b", "s1").await;
    eventually!(10, "B has A's message", ben.bodies(&room).await == vec!["hello b"]);
    ben.send(&room, "hello a", "s2").await;
    eventually!(10, "A has B's message", ana.bodies(&room).await == vec!["hello b", "hello a"]);
    assert_eq!(dns.asked("_matrix-fed._tcp.b.chat.test", 33), 1, "the SRV answer is cached");
    assert!(dns.asked("b.chat.test", 1) >= 1, "the .well-known host was looked up first");

    // C is `w.chat.test`, whose `https://w.chat.test/.well-known/matrix/server` (port 443 at
    // 127.0.0.2) delegates to the bare name `d.chat.test`, found by its older `_matrix._tcp`
    // record; requests name `d.chat.test` as their host and its certificate is checked.
    let c = TestServer::federating(&p, |c| {
        c.server_name = Some(chat::ids::ServerName::parse("w.chat.test").unwrap());
        c.extra_hostnames = vec!["d.chat.test".into()];
    })
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let tcp = tokio::net::TcpListener::bind("127.0.0.2:443").await.unwrap();
    let acceptor = chat::tls::acceptor(chat::tls::Certs::load(p.cert.clone(), p.key.clone()).unwrap()).unwrap();
    let listener = chat::tls::TlsListener::start(tcp, acceptor, stop.clone()).unwrap();
    let app = axum::Router::new().route(
        "/.well-known/matrix/server",
        axum::routing::get(|| async { axum::Json(json!({"m.server": "d.chat.test"})) }),
    );
    common::serve_tls(listener, app, stop.clone());
    dns.add(Record::A { name: "w.chat.test".into(), ip: "127.0.0.2".parse().unwrap() });
    dns.add(Record::Srv {
        name: "_matrix._tcp.d.chat.test".into(),
        priority: 0,
        weight: 0,
        port: c.addr.port(),
        target: "host.chat.test".into(),
    });
    let cleo = Client::register(&p.ca, &c.addr.to_string(), "cleo").await;
    let room = public_room(&cleo, "Delegated", "w").await;
    join_alias(&ana, "w", "w.chat.test").await;
    ana.send(&room, "hello w", "s3").await;
    eventually!(10, "C has A's message", cleo.bodies(&room).await == vec!["hello w"]);
    assert_eq!(dns.asked("_matrix-fed._tcp.d.chat.test", 33), 1, "the newer SRV name is asked first");
    assert_eq!(dns.asked("_matrix._tcp.d.chat.test", 33), 1, "then the older, once");
    stop.cancel();
}

/// A formatted message and its edit cross to another of our servers: the HTML as sent, and the
/// newest text once the edit arrives; an edit by someone else than the sender changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formatting_and_edits_cross_servers() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Edits", "edits").await;
    let original = ana.send(&room, "the _plan_", "m1").await;
    eventually!(10, "B has the message", ben.event(&room, &original).await.is_some());
    let got = ben.event(&room, &original).await.unwrap();
    assert_eq!(got["content"]["formatted_body"], "the <em>plan</em>", "{got}");
    let (s, v) = ana
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({"body": "the _new_ plan", "txn_id": "m2", "replaces": original}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "B shows the edit", {
        let (_, v) = ben.get(&format!("/api/v1/rooms/{room}/events/{original}")).await;
        v["content_now"]["body"] == "the _new_ plan"
    });
    let page = ben.page(&format!("/rooms/{room}")).await;
    assert!(page.contains("the <em>new</em> plan") && page.contains("(edited)"), "edited on B's page");
    // Ben cannot edit Ana's message from B.
    let (s, _) = ben
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({"body": "mine now", "txn_id": "m3", "replaces": original}),
        )
        .await;
    assert_eq!(s, 403);

    // Ben answers from B and reacts; A shows the quote and counts the reaction.
    let (s, v) = ben
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({"body": "agreed", "txn_id": "m4", "reply_to": original}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let answer = v["event_id"].as_str().unwrap().to_string();
    let (s, v) = ben
        .post(&format!("/api/v1/rooms/{room}/reactions"), json!({"event_id": original, "key": "🎉", "txn_id": "m5"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let reaction = v["event_id"].as_str().unwrap().to_string();
    eventually!(10, "A quotes the plan in Ben's answer", {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{room}/events/{answer}")).await;
        v["quote"]["text"] == "the new plan"
    });
    eventually!(10, "A counts Ben's reaction", {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{room}/events/{original}")).await;
        v["reactions"] == json!([{"key": "🎉", "count": 1, "senders": [ben.id], "event_ids": [reaction]}])
    });
    // Taken back on B, gone on A; Ana deletes her message on A, and B's quote loses its text.
    let (s, _) = ben.post(&format!("/api/v1/rooms/{room}/redact"), json!({"event_id": reaction})).await;
    assert_eq!(s, 200);
    eventually!(10, "A uncounts the reaction", {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{room}/events/{original}")).await;
        v.get("reactions").is_none()
    });
    let (s, _) = ana.post(&format!("/api/v1/rooms/{room}/redact"), json!({"event_id": original})).await;
    assert_eq!(s, 200);
    eventually!(10, "B's quote says the message was deleted", {
        let (_, v) = ben.get(&format!("/api/v1/rooms/{room}/events/{answer}")).await;
        v["quote"]["deleted"] == true && v["quote"]["text"] == ""
    });
    // Ana names Ben by his full id on A: a mention, counted on B.
    let thanks = ana.send(&room, &format!("thanks {}", ben.id), "m6").await;
    eventually!(10, "B counts the mention", {
        let (_, v) = ben.get("/api/v1/rooms").await;
        v["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == room.as_str() && r["mentions"] == 1)
    });
    let (_, v) = ben.get(&format!("/api/v1/rooms/{room}/events/{thanks}")).await;
    assert_eq!(v["content"]["m.mentions"]["user_ids"], json!([ben.id]), "{v}");
    // Ana's display name, set on A, travels in her member event: B shows it.
    let (s, v) = ana.call("PUT", "/api/v1/profile", Some(json!({"display_name": "Ana Ó"}))).await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "B shows Ana's name", {
        ben.page(&format!("/rooms/{room}")).await.contains(&format!("data-name-of=\"{}\">Ana Ó</span>", ana.id))
    });
    // Ben's profile card asks B, which asks A: the name Ana goes by; A knows no @nobody.
    let (s, v) = ben.get(&format!("/api/v1/profile/{}", urlencode(&ana.id))).await;
    assert_eq!((s, v["display_name"].as_str()), (200, Some("Ana Ó")), "{v}");
    let nobody = format!("@nobody:{}", ana.id.split_once(':').unwrap().1);
    assert_eq!(ben.get(&format!("/api/v1/profile/{}", urlencode(&nobody))).await.0, 404);
    assert_eq!(ben.get("/api/v1/profile/not-a-user").await.0, 400);
}

/// A file shared on A is opened by a member on B: B fetches it from A over signed federation
/// (Matrix's authenticated media) once, keeps it, and serves it like its own. Nobody outside
/// the room gets it, on B or by asking A directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shared_on_one_server_is_opened_on_the_other() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |_| {}).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Files", "files").await;
    let cara = Client::register(&p.ca, &b.addr.to_string(), "cara").await;
    let bytes: Vec<u8> = (0..150_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let auth = |c: &Client| ("authorization", format!("Bearer {}", c.token));
    let (st, _, up) = common::tls::request_bytes(
        &p.ca,
        &ana.addr,
        "POST",
        "/api/v1/media/upload?filename=plan%20v2.pdf",
        &[auth(&ana), ("content-type", "application/pdf".into())],
        &bytes,
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&up));
    let up: Value = serde_json::from_slice(&up).unwrap();
    let uri = up["content_uri"].as_str().unwrap().to_string();
    let (st, v) = ana
        .post(&format!("/api/v1/rooms/{room}/messages"), json!({"txn_id": "f1", "file": {"content_uri": uri}}))
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["event_id"].as_str().unwrap().to_string();
    eventually!(10, "B has the file message", ben.event(&room, &id).await.is_some());
    let got = ben.event(&room, &id).await.unwrap();
    assert_eq!(
        (got["content"]["msgtype"].as_str(), got["content"]["url"].as_str()),
        (Some("m.file"), Some(uri.as_str()))
    );

    let path = format!("/api/v1/media/download/{}", uri.strip_prefix("mxc://").unwrap().replace(':', "%3A"));
    let (st, headers, body) = common::tls::request_bytes(&p.ca, &ben.addr, "GET", &path, &[auth(&ben)], &[]).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == bytes, "B served other bytes ({} of {})", body.len(), bytes.len());
    let disposition = &headers.iter().find(|(k, _)| k == "content-disposition").unwrap().1;
    assert!(disposition.starts_with("attachment") && disposition.contains("plan%20v2.pdf"), "{disposition}");
    // Kept on B: a range is served from its copy.
    let range = [auth(&ben), ("range", "bytes=100-199".into())];
    let (st, _, part) = common::tls::request_bytes(&p.ca, &ben.addr, "GET", &path, &range, &[]).await;
    assert_eq!((st, part.as_slice()), (206, &bytes[100..200]));
    // Cara on B is in no room with it; F, a server with nobody in the room, asks A itself.
    let (st, _, _) = common::tls::request_bytes(&p.ca, &cara.addr, "GET", &path, &[auth(&cara)], &[]).await;
    assert_eq!(st, 404);
    let f = PlayedServer::start(&p.ca, &p.cert, &p.key).await;
    let media_id = uri.rsplit('/').next().unwrap();
    let na = a.addr.to_string();
    let (st, _) = f.signed(Method::GET, &na, &format!("/_matrix/federation/v1/media/download/{media_id}"), None).await;
    assert_eq!(st, 404);
}

/// The copies of another server's files are kept within `limits.remote_media_cache_bytes`:
/// past it the copy fetched longest ago goes, and is fetched again when someone opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_other_servers_files_stay_within_the_cache_size() {
    let p = Pki::new();
    let a = TestServer::federating(&p, |_| {}).await;
    let b = TestServer::federating(&p, |c| c.limits.remote_media_cache_bytes = 250_000).await;
    let (ana, ben, room) = ana_and_ben_share(&p, &a, &b, "Cache", "cache").await;
    let auth = |c: &Client| ("authorization", format!("Bearer {}", c.token));
    let mut files = Vec::new();
    for k in 0..3u32 {
        let bytes: Vec<u8> = (0..150_000u32).map(|i| ((i * (k + 3)) % 251) as u8).collect();
        let (st, _, up) = common::tls::request_bytes(
            &p.ca,
            &ana.addr,
            "POST",
            &format!("/api/v1/media/upload?filename=f{k}.bin"),
            &[auth(&ana), ("content-type", "application/octet-stream".into())],
            &bytes,
        )
        .await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&up));
        let uri = serde_json::from_slice::<Value>(&up).unwrap()["content_uri"].as_str().unwrap().to_string();
        let body = json!({"txn_id": format!("c{k}"), "file": {"content_uri": uri}});
        let (st, v) = ana.post(&format!("/api/v1/rooms/{room}/messages"), body).await;
        assert_eq!(st, 200, "{v}");
        let id = v["event_id"].as_str().unwrap().to_string();
        eventually!(10, "B has the file message", ben.event(&room, &id).await.is_some());
        let path = format!("/api/v1/media/download/{}", uri.strip_prefix("mxc://").unwrap().replace(':', "%3A"));
        files.push((path, bytes));
    }
    let open = async |k: usize| {
        let (path, bytes) = &files[k];
        let (st, _, body) = common::tls::request_bytes(&p.ca, &ben.addr, "GET", path, &[auth(&ben)], &[]).await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        assert!(body == *bytes, "file {k} came back as {} other bytes", body.len());
    };
    open(0).await;
    assert_eq!(b.metric("chat_media_remote_bytes").await, Some(150_000.0));
    // Two copies would take 300 KB: the older one goes.
    open(1).await;
    assert_eq!(b.metric("chat_media_remote_bytes").await, Some(150_000.0));
    open(2).await;
    assert_eq!(b.metric("chat_media_remote_bytes").await, Some(150_000.0));
    // The first, opened again, is fetched again from A, whole.
    open(0).await;
    assert_eq!(b.metric("chat_media_remote_bytes").await, Some(150_000.0));
    // A's own files are A's uploads, not copies: its cache is empty.
    assert_eq!(a.metric("chat_media_remote_bytes").await, Some(0.0));
}
