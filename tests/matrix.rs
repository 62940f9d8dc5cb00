//! Interop with a real Matrix homeserver: Synapse (installed by `scripts/test` into a cached
//! virtualenv) on loopback, federating with our server over TLS from one test CA. Our user
//! joins a Synapse room by alias and a Synapse user joins ours; messages cross both ways,
//! live and in order, none lost.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;

use std::time::Duration;

use common::TestServer;
use common::synapse::{MatrixUser, Synapse, enc};
use common::tls::{Client, Pki};
use serde_json::{Value, json};

/// Polls until `get` returns a list with all of `want` (by value), up to 60 s; returns it.
async fn until_all<F, Fut>(what: &str, want: &[String], mut get: F) -> Vec<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = get().await;
        if want.iter().all(|w| got.contains(w)) {
            return got;
        }
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        assert!(tokio::time::Instant::now() < deadline, "{what}: still missing {missing:?}; have {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each sender's messages appear once and in the order sent.
fn in_order(got: &[String], prefix: &str, n: usize) {
    let mine: Vec<&String> = got.iter().filter(|b| b.starts_with(prefix)).collect();
    let want: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(mine, want.iter().collect::<Vec<_>>(), "{prefix}* once each, in order");
}

/// Messages from both sides, interleaved, in `room`; checked on both servers and live on ours.
async fn exchange(syn: &Synapse, sam: &MatrixUser, ana: &Client, room: &str, tag: &str, n: usize) {
    let mut ws = ana.ws(None).await;
    let mut want = Vec::new();
    for i in 0..n {
        syn.send(sam, room, &format!("{tag}-sam-{i}"), &format!("{tag}s{i}")).await;
        ana.send(&enc(room), &format!("{tag}-ana-{i}"), &format!("{tag}a{i}")).await;
        want.push(format!("{tag}-sam-{i}"));
        want.push(format!("{tag}-ana-{i}"));
    }
    // Live on our WebSocket: every one of Sam's, in order.
    let mut live = Vec::new();
    while live.len() < 2 * n {
        live.push(ws.next_body().await);
    }
    in_order(&live, &format!("{tag}-sam-"), n);
    // In both servers' history.
    let path_room = enc(room);
    let here = until_all("our history", &want, || ana.bodies(&path_room)).await;
    in_order(&here, &format!("{tag}-sam-"), n);
    in_order(&here, &format!("{tag}-ana-"), n);
    let there = until_all("Synapse's history", &want, || syn.bodies(sam, room)).await;
    in_order(&there, &format!("{tag}-sam-"), n);
    in_order(&there, &format!("{tag}-ana-"), n);
}

/// Files both ways in `room` (ours, with Sam in it), as Matrix's authenticated media does it:
/// Sam's file from Synapse opened by Ana here (we fetch it from Synapse over signed
/// federation), Ana's opened by Sam on Synapse (Synapse fetches it from us).
async fn files_cross(syn: &Synapse, sam: &MatrixUser, ana: &Client, room: &str) {
    let theirs: Vec<u8> = (0..120_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let (st, _, up) =
        syn.call_bytes(sam, "POST", "/_matrix/media/v3/upload?filename=sun.png", "image/png", theirs.clone()).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&up));
    let uri = serde_json::from_slice::<Value>(&up).unwrap()["content_uri"].as_str().unwrap().to_string();
    let content = json!({"msgtype": "m.image", "body": "sun.png", "url": uri,
                         "info": {"mimetype": "image/png", "size": theirs.len(), "w": 40, "h": 30,
                                  "xyz.amorgan.blurhash": "LNAdAqj[00aymkj[TKay9}ay-Sj["}});
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/file1", enc(room));
    let (st, v) = syn.call(Some(sam), "PUT", &path, Some(content)).await;
    assert_eq!(st, 200, "{v}");
    let id = v["event_id"].as_str().unwrap().to_string();
    until("Sam's file message here", async || ana.event(room, &id).await.is_some()).await;
    let ours = format!("/api/v1/media/download/{}", uri.strip_prefix("mxc://").unwrap().replace(':', "%3A"));
    let auth = [("authorization", format!("Bearer {}", ana.token))];
    let (st, _, got) = chat_testkit::tls::request_bytes(&ana.ca, &ana.addr, "GET", &ours, &auth, &[]).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&got));
    assert!(got == theirs, "Synapse's file came as {} other bytes", got.len());
    // Its BlurHash (as Element sends it) is its placeholder on our room page.
    let cookie = [("cookie", format!("chat_token={}", ana.token))];
    let (st, _, page) =
        chat_testkit::tls::request_bytes(&ana.ca, &ana.addr, "GET", &format!("/rooms/{room}"), &cookie, &[]).await;
    assert_eq!(st, 200);
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains(r#"<img class="ph" src="data:image/png;base64,"#), "no placeholder for Sam's picture");

    let mine: Vec<u8> = (0..90_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (st, _, up) = chat_testkit::tls::request_bytes(
        &ana.ca,
        &ana.addr,
        "POST",
        "/api/v1/media/upload?filename=notes.txt",
        &[auth[0].clone(), ("content-type", "text/plain".into())],
        &mine,
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&up));
    let uri = serde_json::from_slice::<Value>(&up).unwrap()["content_uri"].as_str().unwrap().to_string();
    let (st, v) = ana
        .post(&format!("/api/v1/rooms/{room}/messages"), json!({"txn_id": "file2", "file": {"content_uri": uri}}))
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["event_id"].as_str().unwrap().to_string();
    until("Ana's file message on Synapse", async || {
        syn.timeline(sam, room).await.iter().any(|e| e["event_id"] == id.as_str())
    })
    .await;
    let theirs_path = format!("/_matrix/client/v1/media/download/{}", uri.strip_prefix("mxc://").unwrap());
    let (st, _, got) = syn.call_bytes(sam, "GET", &theirs_path, "application/octet-stream", Vec::new()).await;
    assert_eq!(st, 200, "{}\n{}", String::from_utf8_lossy(&got), syn.log_tail());
    assert!(got == mine, "our file came to Synapse as {} other bytes", got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_messages_cross_between_us_and_synapse() {
    let p = Pki::new();
    let syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let s = TestServer::federating(&p, |_| {}).await;
    let ana = Client::register(&p.ca, &s.addr.to_string(), "ana").await;
    let sam = syn.register("sam").await;

    // Synapse asks us for a profile: its signed request passes our checks.
    let (st, v) = syn.call(Some(&sam), "GET", &format!("/_matrix/client/v3/profile/{}", enc(&ana.id)), None).await;
    assert_eq!((st, v["displayname"].as_str()), (200, Some("ana")), "{v}");

    // Sam's public room on Synapse (room version 12: Sam, its creator, is not in the power
    // levels' users); Ana joins it by alias through our server.
    let body = json!({"preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby", "topic": "on Synapse"});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let theirs = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = ana.post(&format!("/api/v1/join/{}", enc(&format!("#lobby:{}", syn.name))), json!({})).await;
    assert_eq!((st, v["room_id"].as_str()), (200, Some(theirs.as_str())), "{v}");
    let (st, v) = ana.get(&format!("/api/v1/rooms/{}", enc(&theirs))).await;
    assert_eq!((st, v["name"].as_str(), v["topic"].as_str()), (200, Some("Lobby"), Some("on Synapse")), "{v}");
    exchange(&syn, &sam, &ana, &theirs, "t", 15).await;

    // Ana's public room here; Sam joins it by alias through Synapse.
    let (st, v) = ana.post("/api/v1/rooms", json!({"name": "Ours", "visibility": "public", "alias": "ours"})).await;
    assert_eq!(st, 200, "{v}");
    let mine = v["room_id"].as_str().unwrap().to_string();
    let alias = enc(&format!("#ours:{}", s.addr));
    let (st, v) = syn.call(Some(&sam), "POST", &format!("/_matrix/client/v3/join/{alias}"), Some(json!({}))).await;
    assert_eq!((st, v["room_id"].as_str()), (200, Some(mine.as_str())), "{v}\n{}", syn.log_tail());
    exchange(&syn, &sam, &ana, &mine, "o", 15).await;

    // Sam renames himself: Synapse sends a join over his join into both rooms, which our rules
    // take (it was refused as "already a member"), and the rooms go on.
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(&sam.id));
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(json!({"displayname": "Sam Smith"}))).await;
    assert_eq!(st, 200, "{v}");
    for room in [&theirs, &mine] {
        let path_room = enc(room);
        let renamed = || async {
            let events = ana.events(&path_room).await;
            let named = events.iter().any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == sam.id.as_str()
                    && e["content"]["displayname"] == "Sam Smith"
            });
            if named { vec!["renamed".to_string()] } else { Vec::new() }
        };
        until_all("Sam's new name", &["renamed".to_string()], renamed).await;
    }
    exchange(&syn, &sam, &ana, &mine, "r", 3).await;
    typing_and_receipts_in(&syn, &sam, &ana, &mine).await;
    files_cross(&syn, &sam, &ana, &mine).await;

    // A room Sam makes with Ana as an additional creator (room version 12): she has every
    // right there without an entry in the power levels, here as on Synapse.
    let body = json!({"preset": "public_chat", "room_alias_name": "ours-both", "name": "Both",
                      "creation_content": {"additional_creators": [ana.id]}});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let both = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = ana.post(&format!("/api/v1/join/{}", enc(&format!("#ours-both:{}", syn.name))), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/settings", enc(&both)), json!({"name": "Renamed by Ana"})).await;
    assert_eq!(st, 200, "a creator may rename it: {v}");
    let name_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&both));
    until("Ana's name on Synapse", async || {
        let (_, v) = syn.call(Some(&sam), "GET", &name_path, None).await;
        v["name"] == "Renamed by Ana"
    })
    .await;
    s.stop().await;
}

/// Synapse's `/sync` as one user, each call going on from the last (Synapse answers a repeated
/// identical sync from a cache, and ephemeral events show once).
struct Syncer<'a> {
    syn: &'a Synapse,
    user: &'a MatrixUser,
    since: Option<String>,
}

impl<'a> Syncer<'a> {
    fn new(syn: &'a Synapse, user: &'a MatrixUser) -> Self {
        Syncer { syn, user, since: None }
    }

    /// Polls (up to 60 s) until a sync answer passes `check`.
    async fn until(&mut self, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let since = self.since.as_ref().map(|t| format!("&since={}", enc(t))).unwrap_or_default();
            let path = format!("/_matrix/client/v3/sync?timeout=200{since}");
            let (st, v) = self.syn.call(Some(self.user), "GET", &path, None).await;
            assert_eq!(st, 200, "sync: {v}");
            if let Some(next) = v["next_batch"].as_str() {
                self.since = Some(next.to_string());
            }
            if check(&v) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: not in time");
        }
    }
}

/// Typing notices, read receipts and presence cross both ways (Matrix EDUs): Sam's show live
/// on Ana's tab, Ana's in Sam's `/sync` and presence; Sam's receipt is kept here, so a reload
/// shows it.
async fn typing_and_receipts_in(syn: &Synapse, sam: &MatrixUser, ana: &Client, room: &str) {
    let mut ws = ana.ws(None).await;
    let mut sync = Syncer::new(syn, sam);
    sync.until("a first sync", |_| true).await;
    let typists = async |ws: &mut common::tls::TlsWs| loop {
        let f = ws.next_of("typing").await;
        if f["room_id"] == room {
            return f["user_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
                .collect::<Vec<_>>();
        }
    };
    let typing_path = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(room), enc(&sam.id));
    let (st, v) = syn.call(Some(sam), "PUT", &typing_path, Some(json!({"typing": true, "timeout": 30000}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(typists(&mut ws).await, vec![sam.id.clone()], "Sam types, live here");
    let (st, v) = syn.call(Some(sam), "PUT", &typing_path, Some(json!({"typing": false}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(typists(&mut ws).await, Vec::<String>::new(), "Sam stopped");

    ws.send(json!({"t": "typing", "room_id": room, "typing": true})).await;
    let typing_on_synapse =
        |who: &str, v: &serde_json::Value| {
            v["rooms"]["join"][room]["ephemeral"]["events"].as_array().into_iter().flatten().any(|e| {
                e["type"] == "m.typing" && e["content"]["user_ids"].as_array().unwrap().iter().any(|u| u == who)
            })
        };
    sync.until("Ana typing on Synapse", |v| typing_on_synapse(&ana.id, v)).await;
    ws.send(json!({"t": "typing", "room_id": room, "typing": false})).await;
    let stopped_on_synapse = |v: &serde_json::Value| {
        v["rooms"]["join"][room]["ephemeral"]["events"].as_array().into_iter().flatten().any(|e| {
            e["type"] == "m.typing"
                && !e["content"]["user_ids"].as_array().unwrap().iter().any(|u| u == ana.id.as_str())
        })
    };
    sync.until("Ana stopped on Synapse", stopped_on_synapse).await;
    // A notice left to expire here (6 s) ends on Synapse too, long before Synapse's own
    // 60 s timeout for another server's notice.
    ws.send(json!({"t": "typing", "room_id": room, "typing": true})).await;
    sync.until("Ana typing again on Synapse", |v| typing_on_synapse(&ana.id, v)).await;
    let left = std::time::Instant::now();
    sync.until("Ana's expired notice ended on Synapse", stopped_on_synapse).await;
    assert!(left.elapsed() < std::time::Duration::from_secs(30), "ended by Synapse's timeout, not ours");

    // Sam reads Ana's message: the receipt shows live here, and after a reload.
    let ana_msg = ana.send(&enc(room), "read me", "rr1").await;
    until_all("Ana's message on Synapse", &["read me".to_string()], || syn.bodies(sam, room)).await;
    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(room), enc(&ana_msg));
    let (st, v) = syn.call(Some(sam), "POST", &path, Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    let pos = ana.event(&enc(room), &ana_msg).await.unwrap()["pos"].as_u64();
    loop {
        let f = ws.next_of("receipt").await;
        if f["room_id"] == room && f["user_id"] == sam.id.as_str() {
            assert_eq!(f["pos"].as_u64(), pos, "{f}");
            break;
        }
    }
    let page = ana.page(&format!("/rooms/{}", enc(room))).await;
    assert!(page.contains(&format!("data-user=\"{}\"", sam.id)), "Sam's receipt after a reload");

    // Ana reads Sam's message: Synapse shows her receipt on it.
    let sam_msg = syn.send(sam, room, "read me too", "rr2").await;
    let path_room = enc(room);
    until_all("Sam's message here", &["read me too".to_string()], || ana.bodies(&path_room)).await;
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/read", enc(room)), json!({"event_id": sam_msg})).await;
    assert_eq!(st, 200, "{v}");
    sync.until("Ana's receipt on Synapse", |v| {
        v["rooms"]["join"][room]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "m.receipt" && e["content"][&sam_msg]["m.read"].get(&ana.id).is_some())
    })
    .await;

    // Presence: Sam's as he sets it shows live here (Matrix's `unavailable` is our idle; his
    // syncs made him online already); Ana's (online while a tab is open, offline once the last
    // closed) on Synapse.
    let sam_presence = format!("/_matrix/client/v3/presence/{}/status", enc(&sam.id));
    for (theirs, ours) in [("unavailable", "idle"), ("online", "online")] {
        let (st, v) = syn.call(Some(sam), "PUT", &sam_presence, Some(json!({"presence": theirs}))).await;
        assert_eq!(st, 200, "{v}");
        loop {
            let f = ws.next_of("presence").await;
            if f["user_id"] == sam.id.as_str() && f["presence"] == ours {
                break;
            }
        }
    }
    let ana_presence = format!("/_matrix/client/v3/presence/{}/status", enc(&ana.id));
    let ana_is = async |want: &str| {
        until(&format!("Ana {want} on Synapse"), async || {
            let (_, v) = syn.call(Some(sam), "GET", &ana_presence, None).await;
            v["presence"] == want
        })
        .await
    };
    ana_is("online").await;
    drop(ws);
    ana_is("offline").await;
}

/// Polls `check` (up to 60 s) until it is true.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_cross_between_us_and_synapse() {
    let p = Pki::new();
    let syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let s = TestServer::federating(&p, |_| {}).await;
    let ana = Client::register(&p.ca, &s.addr.to_string(), "ana").await;
    let sam = syn.register("sam").await;

    // Sam invites Ana to a private room on Synapse; she sees the invitation, who sent it and
    // the room's name, accepts, and they talk.
    let body = json!({"preset": "private_chat", "name": "Sam's", "invite": [ana.id]});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    let theirs = v["room_id"].as_str().unwrap().to_string();
    until("Ana's invitation", async || {
        let (_, v) = ana.get("/api/v1/rooms").await;
        v["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == theirs.as_str() && r["membership"] == "invite")
    })
    .await;
    let (_, v) = ana.get("/api/v1/rooms").await;
    let invited = v["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == theirs.as_str()).unwrap().clone();
    assert_eq!(invited["name"], "Sam's", "{invited}");
    assert_eq!((invited["direct"].as_bool(), &invited["peer"]), (Some(false), &json!(null)), "{invited}");
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/join", enc(&theirs)), json!({})).await;
    assert_eq!(st, 200, "{v}");
    exchange(&syn, &sam, &ana, &theirs, "i", 3).await;

    // Ana invites Sam to a private room here; Synapse shows him the invitation and he joins.
    let (st, v) = ana.post("/api/v1/rooms", json!({"name": "Ana's", "visibility": "private"})).await;
    assert_eq!(st, 200, "{v}");
    let mine = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/invite", enc(&mine)), json!({"user_id": sam.id})).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    until("Sam's invitation", async || {
        let (_, v) = syn.call(Some(&sam), "GET", "/_matrix/client/v3/sync?timeout=0", None).await;
        v["rooms"]["invite"].get(&mine).is_some()
    })
    .await;
    let (st, v) =
        syn.call(Some(&sam), "POST", &format!("/_matrix/client/v3/join/{}", enc(&mine)), Some(json!({}))).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    exchange(&syn, &sam, &ana, &mine, "j", 3).await;

    // Ana opens a direct chat with Sam: Synapse shows him an invitation marked direct (so
    // Element lists it with people, not rooms), and he can join it.
    let (st, v) = ana.post("/api/v1/dm", json!({"user_id": sam.id})).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    let dm = v["room_id"].as_str().unwrap().to_string();
    // Synapse answers a repeated identical sync from a cache: each poll goes on from the last.
    let since = std::sync::Mutex::new(String::new());
    until("Sam's direct invitation", async || {
        let token = since.lock().unwrap().clone();
        let path = format!(
            "/_matrix/client/v3/sync?timeout=0{}",
            if token.is_empty() { "".into() } else { format!("&since={}", enc(&token)) }
        );
        let (_, v) = syn.call(Some(&sam), "GET", &path, None).await;
        if let Some(next) = v["next_batch"].as_str() {
            *since.lock().unwrap() = next.to_string();
        }
        let events = v["rooms"]["invite"][&dm]["invite_state"]["events"].as_array().cloned().unwrap_or_default();
        events.iter().any(|e| {
            e["type"] == "m.room.member" && e["state_key"] == sam.id.as_str() && e["content"]["is_direct"] == true
        })
    })
    .await;
    let (st, v) = syn.call(Some(&sam), "POST", &format!("/_matrix/client/v3/join/{}", enc(&dm)), Some(json!({}))).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    exchange(&syn, &sam, &ana, &dm, "d", 2).await;
    element_call_in(&syn, &sam, &ana, &dm).await;

    // Sam starts a direct chat with Ana as Element does (`is_direct` on the invite): it is a
    // direct chat here too, titled with Sam's name, before and after she joins.
    let body = json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [ana.id]});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    let their_dm = v["room_id"].as_str().unwrap().to_string();
    let direct_here = async || {
        let (_, v) = ana.get("/api/v1/rooms").await;
        let r = v["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == their_dm.as_str()).cloned();
        r.is_some_and(|r| r["direct"] == true && r["peer"] == sam.id.as_str())
    };
    until("Sam's direct chat, marked direct here", direct_here).await;
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/join", enc(&their_dm)), json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert!(direct_here().await, "still direct once joined");
    let page = ana.page(&format!("/rooms/{}", enc(&their_dm))).await;
    assert!(page.contains("<title>sam"), "titled with Sam's name: {}", &page[..page.len().min(2000)]);
    exchange(&syn, &sam, &ana, &their_dm, "e", 2).await;
    // Ana's "message Sam" now opens it (the newest direct chat with him, as Element does).
    let (st, v) = ana.post("/api/v1/dm", json!({"user_id": sam.id})).await;
    assert_eq!((st, v["room_id"].as_str()), (200, Some(their_dm.as_str())), "{v}");
    s.stop().await;
}

/// Sam calls Ana in their direct chat the way Element does (Matrix VoIP v1: no `invitee` in a
/// 1:1 room, Element's extra fields, `m.call.sdp_stream_metadata_changed`, which we do not
/// track): Ana's tab rings, her answer reaches Synapse, Sam's hangup ends the call here, and
/// every one of those events is stored, so the next message arrives with no gap to fetch.
async fn element_call_in(syn: &Synapse, sam: &MatrixUser, ana: &Client, dm: &str) {
    const SDP: &str = "v=0\r\no=- 4 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let mut ws = ana.ws(None).await;
    let put = async |kind: &str, txn: &str, content: serde_json::Value| {
        let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(dm));
        let (st, v) = syn.call(Some(sam), "PUT", &path, Some(content)).await;
        assert_eq!(st, 200, "{kind} on Synapse: {v}");
        v["event_id"].as_str().unwrap().to_string()
    };
    let stream = json!({"sam-stream": {"purpose": "m.usermedia", "audio_muted": false, "video_muted": false}});
    put(
        "m.call.invite",
        "c1",
        json!({
            "call_id": "1733100000000abcdEF", "party_id": "SAMDEVICE", "version": "1", "lifetime": 60000,
            "offer": {"type": "offer", "sdp": SDP},
            "capabilities": {"m.call.transferee": false, "m.call.dtmf": false},
            "sdp_stream_metadata": stream,
        }),
    )
    .await;
    let f = ws.next_call("m.call.invite").await;
    assert_eq!((f["event"]["sender"].as_str(), f["room_id"].as_str()), (Some(sam.id.as_str()), Some(dm)), "{f}");
    assert!(f["event"]["content"].get("invitee").is_none(), "stored as Synapse signed it: {f}");

    let answer =
        json!({"call_id": "1733100000000abcdEF", "party_id": "anatab", "answer": {"type": "answer", "sdp": SDP}});
    let ack = ws.signal(dm, "m.call.answer", answer, "a1").await;
    assert_eq!(ack["t"], "ack", "Ana, the room's other member, answers: {ack}");
    until("Ana's answer on Synapse", async || {
        syn.timeline(sam, dm).await.iter().any(|e| {
            e["type"] == "m.call.answer"
                && e["sender"] == ana.id.as_str()
                && e["content"]["call_id"] == "1733100000000abcdEF"
                && e["content"]["answer"]["sdp"] == SDP
        })
    })
    .await;

    let metadata = json!({"call_id": "1733100000000abcdEF", "party_id": "SAMDEVICE", "version": "1",
                          "sdp_stream_metadata": stream});
    let changed = put("m.call.sdp_stream_metadata_changed", "c2", metadata).await;
    let hangup =
        json!({"call_id": "1733100000000abcdEF", "party_id": "SAMDEVICE", "version": "1", "reason": "user_hangup"});
    put("m.call.hangup", "c3", hangup).await;
    ws.next_call("m.call.hangup").await;
    let late = json!({"call_id": "1733100000000abcdEF", "party_id": "anatab", "candidates": [{"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}]});
    let refused = ws.signal(dm, "m.call.candidates", late, "a2").await;
    assert_eq!(refused["t"], "error", "Sam's hangup ended the call here: {refused}");
    assert!(ana.event(&enc(dm), &changed).await.is_some(), "the event we do not track is stored");
    syn.send(sam, dm, "after the call", "c4").await;
    let path_room = enc(dm);
    until_all("Sam's next message", &["after the call".to_string()], || ana.bodies(&path_room)).await;
}

/// Redactions both ways with Synapse. Sam redacts his message on Synapse: it disappears here
/// (live, history, a reload), and our next message still reaches Synapse (our id of Synapse's
/// redaction was wrong, so that message named an unknown prev_event and was lost). Ana
/// redacts hers here: Synapse shows it redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redactions_cross_between_us_and_synapse() {
    let p = Pki::new();
    let syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let s = TestServer::federating(&p, |_| {}).await;
    let ana = Client::register(&p.ca, &s.addr.to_string(), "ana").await;
    let sam = syn.register("sam").await;
    let body = json!({"preset": "public_chat", "room_alias_name": "slips", "name": "Slips"});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = ana.post(&format!("/api/v1/join/{}", enc(&format!("#slips:{}", syn.name))), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let path_room = enc(&room);
    let sam_slip = syn.send(&sam, &room, "sam's slip", "x1").await;
    until_all("Sam's slip here", &["sam's slip".to_string()], || ana.bodies(&path_room)).await;

    // Sam redacts it on Synapse.
    let mut ws = ana.ws(None).await;
    let path = format!("/_matrix/client/v3/rooms/{path_room}/redact/{}/r1", enc(&sam_slip));
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(json!({"reason": "oops"}))).await;
    assert_eq!(st, 200, "{v}");
    let sam_redaction = v["event_id"].as_str().unwrap().to_string();
    let f = ws.next_redaction().await;
    assert_eq!(
        (f["event"]["event_id"].as_str(), f["event"]["content"]["redacts"].as_str()),
        (Some(sam_redaction.as_str()), Some(sam_slip.as_str())),
        "{f}"
    );
    until("Sam's slip redacted here", async || {
        ana.event(&path_room, &sam_slip).await.is_some_and(|e| e["content"] == json!({}))
    })
    .await;
    let e = ana.event(&path_room, &sam_slip).await.unwrap();
    assert_eq!(e["unsigned"]["redacted_because"], sam_redaction.as_str(), "{e}");
    assert!(!ana.bodies(&path_room).await.contains(&"sam's slip".to_string()));
    let page = ana.page(&format!("/rooms/{path_room}")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Message deleted") && !page.contains("slip</div>"), "{page}");

    // Our next message names Synapse's redaction by Synapse's id, so Synapse takes it.
    ana.send(&path_room, "after the redaction", "a1").await;
    until_all("our message on Synapse", &["after the redaction".to_string()], || syn.bodies(&sam, &room)).await;

    // Ana redacts her own message here: Synapse shows it redacted.
    let ana_slip = ana.send(&path_room, "ana's slip", "a2").await;
    until_all("Ana's slip on Synapse", &["ana's slip".to_string()], || syn.bodies(&sam, &room)).await;
    let (st, v) =
        ana.post(&format!("/api/v1/rooms/{path_room}/redact"), json!({"event_id": ana_slip, "reason": "oops"})).await;
    assert_eq!(st, 200, "{v}");
    let ana_redaction = v["event_id"].as_str().unwrap().to_string();
    until("Ana's slip redacted on Synapse", async || {
        let events = syn.timeline(&sam, &room).await;
        events.iter().any(|e| {
            e["event_id"] == ana_slip.as_str()
                && e["content"] == json!({})
                && e["unsigned"]["redacted_because"]["event_id"] == ana_redaction.as_str()
        })
    })
    .await;
    // Both go on.
    syn.send(&sam, &room, "still here", "x2").await;
    until_all("Sam's next message here", &["still here".to_string()], || ana.bodies(&path_room)).await;
    ana.send(&path_room, "me too", "a3").await;
    until_all("our next message on Synapse", &["me too".to_string()], || syn.bodies(&sam, &room)).await;

    // Formatting and edits, both ways. Ours: Synapse has the HTML, then the edit (its
    // relations API lists it, with the new content).
    let formatted = ana.send(&path_room, "see **this**", "a4").await;
    let (st, v) = ana
        .post(
            &format!("/api/v1/rooms/{path_room}/messages"),
            json!({"body": "see **that**", "txn_id": "a5", "replaces": formatted}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let relations = format!("/_matrix/client/v1/rooms/{path_room}/relations/{}/m.replace", enc(&formatted));
    until("Ana's edit on Synapse", async || {
        let (_, v) = syn.call(Some(&sam), "GET", &relations, None).await;
        v["chunk"].as_array().is_some_and(|c| {
            c.iter().any(|e| e["content"]["m.new_content"]["formatted_body"] == "see <strong>that</strong>")
        })
    })
    .await;
    let (_, orig) = syn
        .call(Some(&sam), "GET", &format!("/_matrix/client/v3/rooms/{path_room}/event/{}", enc(&formatted)), None)
        .await;
    assert_eq!(orig["content"]["formatted_body"], "see <strong>this</strong>", "{orig}");
    // Synapse's: Sam sends HTML as Element does (with a reply fallback and an attribute to
    // strip) and edits it; we show the newest content, sanitised.
    let html = json!({
        "msgtype": "m.text", "body": "hello *you*", "format": "org.matrix.custom.html",
        "formatted_body": "<mx-reply><blockquote>old</blockquote></mx-reply>hello <em onclick=\"x()\">you</em>",
    });
    let path = format!("/_matrix/client/v3/rooms/{path_room}/send/m.room.message/x3");
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(html)).await;
    assert_eq!(st, 200, "{v}");
    let sams = v["event_id"].as_str().unwrap().to_string();
    let edit = json!({
        "msgtype": "m.text", "body": "* hello *all*", "format": "org.matrix.custom.html",
        "formatted_body": "* hello <em>all</em>",
        "m.new_content": {"msgtype": "m.text", "body": "hello *all*", "format": "org.matrix.custom.html",
                          "formatted_body": "hello <em>all</em><script>alert(1)</script>"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": sams},
    });
    let path = format!("/_matrix/client/v3/rooms/{path_room}/send/m.room.message/x4");
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(edit)).await;
    assert_eq!(st, 200, "{v}");
    until("Sam's edit here", async || {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{path_room}/events/{}", enc(&sams))).await;
        v["content_now"]["body"] == "hello *all*"
    })
    .await;
    let page = ana.page(&format!("/rooms/{path_room}")).await;
    assert!(page.contains("hello <em>all</em>") && page.contains("(edited)"), "Sam's edit on our page");
    assert!(!page.contains("alert(1)") && !page.contains("onclick") && !page.contains("mx-reply"), "sanitised");

    // Replies and reactions, both ways. Sam answers Ana's message (with the reply fallback
    // older clients send) and reacts to it: we quote it without the fallback and count it.
    let reply = json!({
        "msgtype": "m.text", "body": "> <@ana> see this\n\nlooks good",
        "m.relates_to": {"m.in_reply_to": {"event_id": formatted}},
    });
    let path = format!("/_matrix/client/v3/rooms/{path_room}/send/m.room.message/x5");
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(reply)).await;
    assert_eq!(st, 200, "{v}");
    let sams_reply = v["event_id"].as_str().unwrap().to_string();
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": formatted, "key": "👍"}});
    let path = format!("/_matrix/client/v3/rooms/{path_room}/send/m.reaction/x6");
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(reaction)).await;
    assert_eq!(st, 200, "{v}");
    until("Sam's reply and reaction here", async || {
        let (_, r) = ana.get(&format!("/api/v1/rooms/{path_room}/events/{}", enc(&sams_reply))).await;
        let (_, o) = ana.get(&format!("/api/v1/rooms/{path_room}/events/{}", enc(&formatted))).await;
        r["quote"]["text"] == "see that" && o["reactions"][0]["key"] == "👍" && o["reactions"][0]["count"] == 1
    })
    .await;
    let page = ana.page(&format!("/rooms/{path_room}")).await;
    assert!(page.contains(">looks good</div>") && !page.contains("&gt; &lt;@ana&gt;"), "no fallback on the page");
    // Ana answers Sam's message and reacts to it: Synapse has both, in Matrix's shape.
    let (st, v) = ana
        .post(
            &format!("/api/v1/rooms/{path_room}/messages"),
            json!({"body": "thanks", "txn_id": "a6", "reply_to": sams_reply}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let anas_reply = v["event_id"].as_str().unwrap().to_string();
    let (st, v) = ana
        .post(
            &format!("/api/v1/rooms/{path_room}/reactions"),
            json!({"event_id": sams_reply, "key": "🎉", "txn_id": "a7"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let annotations = format!("/_matrix/client/v1/rooms/{path_room}/relations/{}/m.annotation", enc(&sams_reply));
    until("Ana's reply and reaction on Synapse", async || {
        let (_, r) = syn
            .call(Some(&sam), "GET", &format!("/_matrix/client/v3/rooms/{path_room}/event/{}", enc(&anas_reply)), None)
            .await;
        let (_, a) = syn.call(Some(&sam), "GET", &annotations, None).await;
        r["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == sams_reply.as_str()
            && a["chunk"].as_array().is_some_and(|c| c.iter().any(|e| e["content"]["m.relates_to"]["key"] == "🎉"))
    })
    .await;

    // Display names both ways: Sam's, set on Synapse, shows on our page; Ana's, set here, is in
    // her member event on Synapse.
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(&sam.id));
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(json!({"displayname": "Sam Sýnapse"}))).await;
    assert_eq!(st, 200, "{v}");
    until("Sam's name here", async || ana.page(&format!("/rooms/{path_room}")).await.contains(">Sam Sýnapse</span>"))
        .await;
    let (st, v) = ana.call("PUT", "/api/v1/profile", Some(json!({"display_name": "Ana Here"}))).await;
    assert_eq!(st, 200, "{v}");
    // Ana's profile card of Sam: our server asks Synapse, and Synapse asks us for Ana's.
    let (st, v) = ana.get(&format!("/api/v1/profile/{}", enc(&sam.id))).await;
    assert_eq!((st, v["display_name"].as_str()), (200, Some("Sam Sýnapse")), "{v}");
    let path = format!("/_matrix/client/v3/profile/{}", enc(&ana.id));
    until("Ana's profile on Synapse", async || {
        let (_, v) = syn.call(Some(&sam), "GET", &path, None).await;
        v["displayname"] == "Ana Here"
    })
    .await;
    let member = format!("/_matrix/client/v3/rooms/{path_room}/state/m.room.member/{}", enc(&ana.id));
    until("Ana's name on Synapse", async || {
        let (_, v) = syn.call(Some(&sam), "GET", &member, None).await;
        v["displayname"] == "Ana Here"
    })
    .await;
    s.stop().await;
}

/// Each side down in turn while the other sends 50 messages: all 50 arrive once each, in order,
/// once it is back (our restart tells Synapse we are back, which resets its backoff and sends
/// what we missed; our queue is durable and retried). Then both sides send and rename at once:
/// the two servers end with the same messages and the same room state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downtime_and_forks_with_synapse_lose_nothing() {
    let p = Pki::new();
    let mut syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let tune = |c: &mut chat::Config| c.limits.federation_retry_max_secs = 2;
    let s = TestServer::federating(&p, tune).await;
    let (addr, data) = (s.addr, s.dir.clone());
    let ana = Client::register(&p.ca, &addr.to_string(), "ana").await;
    let sam = syn.register("sam").await;
    let body = json!({"preset": "public_chat", "room_alias_name": "outages", "name": "Outages"});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = ana.post(&format!("/api/v1/join/{}", enc(&format!("#outages:{}", syn.name))), json!({})).await;
    assert_eq!(st, 200, "{v}");
    exchange(&syn, &sam, &ana, &room, "b", 2).await;
    let path_room = enc(&room);

    // Our server is down while Sam sends 50.
    let kept = s.stop().await;
    let want: Vec<String> = (0..50).map(|i| format!("ours-down-{i}")).collect();
    for (i, b) in want.iter().enumerate() {
        syn.send(&sam, &room, b, &format!("od{i}")).await;
    }
    let s = TestServer::federating(&p, |c| {
        tune(c);
        c.listen = addr;
        c.data_dir = data.clone();
    })
    .await;
    let here = until_all("Sam's 50 here after our restart", &want, || ana.bodies(&path_room)).await;
    in_order(&here, "ours-down-", 50);

    // Synapse is down while Ana sends 50.
    syn.stop().await;
    let want: Vec<String> = (0..50).map(|i| format!("theirs-down-{i}")).collect();
    for (i, b) in want.iter().enumerate() {
        ana.send(&path_room, b, &format!("td{i}")).await;
    }
    syn.start_again().await;
    let there = until_all("Ana's 50 on Synapse after its restart", &want, || syn.bodies(&sam, &room)).await;
    in_order(&there, "theirs-down-", 50);

    // Both at once: messages and renames race (Sam makes Ana a moderator first).
    let path = format!("/_matrix/client/v3/rooms/{path_room}/state/m.room.power_levels/");
    let (st, mut pl) = syn.call(Some(&sam), "GET", &path, None).await;
    assert_eq!(st, 200, "{pl}");
    pl["users"][&ana.id] = json!(50);
    let (st, v) = syn.call(Some(&sam), "PUT", &path, Some(pl)).await;
    assert_eq!(st, 200, "{v}");
    until("Ana a moderator here", async || {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{path_room}")).await;
        v["power_levels"]["users"][&ana.id] == 50
    })
    .await;
    let theirs = async {
        for i in 0..10 {
            syn.send(&sam, &room, &format!("fork-sam-{i}"), &format!("fs{i}")).await;
            if i == 5 {
                let name = format!("/_matrix/client/v3/rooms/{path_room}/state/m.room.name/");
                syn.call(Some(&sam), "PUT", &name, Some(json!({"name": "Sam's name"}))).await;
            }
        }
    };
    let ours = async {
        for i in 0..10 {
            ana.send(&path_room, &format!("fork-ana-{i}"), &format!("fa{i}")).await;
            if i == 5 {
                ana.post(&format!("/api/v1/rooms/{path_room}/settings"), json!({"name": "Ana's name"})).await;
            }
        }
    };
    tokio::join!(theirs, ours);
    let want: Vec<String> = (0..10).flat_map(|i| [format!("fork-sam-{i}"), format!("fork-ana-{i}")]).collect();
    let here = until_all("the fork here", &want, || ana.bodies(&path_room)).await;
    let there = until_all("the fork on Synapse", &want, || syn.bodies(&sam, &room)).await;
    for got in [&here, &there] {
        in_order(got, "fork-sam-", 10);
        in_order(got, "fork-ana-", 10);
    }
    let mut a = here.clone();
    let mut b = there.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same messages on both servers");
    // One name on both, whichever resolution picked.
    let name_path = format!("/_matrix/client/v3/rooms/{path_room}/state/m.room.name/");
    until("the same name on both servers", async || {
        let (_, ours) = ana.get(&format!("/api/v1/rooms/{path_room}")).await;
        let (_, theirs) = syn.call(Some(&sam), "GET", &name_path, None).await;
        ours["name"].is_string() && ours["name"] == theirs["name"]
    })
    .await;
    drop(kept);
    s.stop().await;
}

/// Membership and power changes cross both ways: Ana (here) promotes, kicks and bans Sam in
/// her room, and Synapse holds him to it; Sam (on Synapse) kicks and bans Ana in his, and she
/// is held to it here; a leave reaches the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_kicks_bans_and_leaves_cross_between_us_and_synapse() {
    let p = Pki::new();
    let syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let s = TestServer::federating(&p, |_| {}).await;
    let ana = Client::register(&p.ca, &s.addr.to_string(), "ana").await;
    let sam = syn.register("sam").await;
    let joined_on_synapse = async |room: &str| {
        let (_, v) = syn.call(Some(&sam), "GET", "/_matrix/client/v3/joined_rooms", None).await;
        v["joined_rooms"].as_array().unwrap().iter().any(|r| r == room)
    };
    let sam_joins = async |room: &str| {
        let path = format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(&s.addr.to_string()));
        syn.call(Some(&sam), "POST", &path, Some(json!({}))).await
    };
    let ana_in = async |room: &str| {
        let (_, v) = ana.get("/api/v1/rooms").await;
        v["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == room && r["membership"] == "join")
    };

    // Ana's room: Sam joins, Ana makes him a moderator; Synapse has the new power levels.
    let (st, v) = ana.post("/api/v1/rooms", json!({"name": "Ana's", "visibility": "public"})).await;
    assert_eq!(st, 200, "{v}");
    let mine = v["room_id"].as_str().unwrap().to_string();
    let (st, v) = sam_joins(&mine).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    let (st, v) =
        ana.post(&format!("/api/v1/rooms/{}/power", enc(&mine)), json!({"user_id": sam.id, "level": 50})).await;
    assert_eq!(st, 200, "{v}");
    let pl_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&mine));
    until("Sam a moderator on Synapse", async || {
        let (_, v) = syn.call(Some(&sam), "GET", &pl_path, None).await;
        v["users"][&sam.id] == 50
    })
    .await;
    // Kicked: he is out on Synapse, and may come back (the room is public); banned: he may not.
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/kick", enc(&mine)), json!({"user_id": sam.id})).await;
    assert_eq!(st, 200, "{v}");
    until("Sam kicked, on Synapse", async || !joined_on_synapse(&mine).await).await;
    let (st, v) = sam_joins(&mine).await;
    assert_eq!(st, 200, "back after a kick: {v}");
    until("Sam back here", async || {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{}/members", enc(&mine))).await;
        v["members"].as_array().unwrap().iter().any(|m| m["user_id"] == sam.id.as_str() && m["membership"] == "join")
    })
    .await;
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/ban", enc(&mine)), json!({"user_id": sam.id})).await;
    assert_eq!(st, 200, "{v}");
    until("Sam banned, on Synapse", async || !joined_on_synapse(&mine).await).await;
    let (st, v) = sam_joins(&mine).await;
    assert_eq!(st, 403, "banned: {v}");

    // Sam's room: Ana joins; he kicks her (out here), she comes back and leaves (out there);
    // she comes back and he bans her (she cannot join again).
    let body = json!({"preset": "public_chat", "room_alias_name": "sams", "name": "Sam's"});
    let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let theirs = v["room_id"].as_str().unwrap().to_string();
    let alias = format!("/api/v1/join/{}", enc(&format!("#sams:{}", syn.name)));
    let (st, v) = ana.post(&alias, json!({})).await;
    assert_eq!(st, 200, "{v}");
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", enc(&theirs));
    let (st, v) = syn.call(Some(&sam), "POST", &kick, Some(json!({"user_id": ana.id}))).await;
    assert_eq!(st, 200, "{v}");
    until("Ana kicked, here", async || !ana_in(&theirs).await).await;
    let (st, v) = ana.post(&alias, json!({})).await;
    assert_eq!(st, 200, "back after a kick: {v}");
    let members_there = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&theirs));
    let ana_joined_there = async || {
        let (_, v) = syn.call(Some(&sam), "GET", &members_there, None).await;
        v["joined"].get(&ana.id).is_some()
    };
    until("Ana back, on Synapse", ana_joined_there).await;
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/leave", enc(&theirs)), json!({})).await;
    assert_eq!(st, 200, "{v}");
    until("Ana gone, on Synapse", async || !ana_joined_there().await).await;
    let (st, v) = ana.post(&alias, json!({})).await;
    assert_eq!(st, 200, "back after leaving: {v}");
    until("Ana back again, on Synapse", ana_joined_there).await;
    let ban = format!("/_matrix/client/v3/rooms/{}/ban", enc(&theirs));
    let (st, v) = syn.call(Some(&sam), "POST", &ban, Some(json!({"user_id": ana.id}))).await;
    assert_eq!(st, 200, "{v}");
    until("Ana banned, here", async || !ana_in(&theirs).await).await;
    let (st, v) = ana.post(&alias, json!({})).await;
    assert_eq!(st, 403, "banned: {v}");
    s.stop().await;
}

/// Rooms with the join rules Matrix servers make and we do not: `restricted` (members of
/// another room may join) and `knock` (people ask, a member lets them in). Our user joins a
/// restricted Synapse room through a room she is in; Synapse users' restricted joins and
/// knocks reach us, and what they say after arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_and_knock_rooms_on_synapse() {
    let p = Pki::new();
    let syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let s = TestServer::federating(&p, |_| {}).await;
    let ana = Client::register(&p.ca, &s.addr.to_string(), "ana").await;
    let (sam, sue) = (syn.register("sam").await, syn.register("sue").await);
    let create = async |body: serde_json::Value| {
        let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
        assert_eq!(st, 200, "{v}");
        v["room_id"].as_str().unwrap().to_string()
    };
    let synapse_join = async |who: &MatrixUser, room: &str| {
        let path = format!("/_matrix/client/v3/join/{}", enc(room));
        syn.call(Some(who), "POST", &path, Some(json!({}))).await
    };
    let lobby = create(json!({"preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby"})).await;
    let rule = json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": lobby}]});
    let inner = create(json!({
        "preset": "private_chat", "name": "Inner",
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": rule}],
    }))
    .await;
    let door = create(json!({
        "preset": "private_chat", "name": "Door",
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
    }))
    .await;

    // Not in the lobby, Ana may not join the inner room; once in it, she may.
    let join_inner = format!("/api/v1/join/{}", enc(&inner));
    let (st, v) = ana.post(&join_inner, json!({"via": [syn.name]})).await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = ana.post(&format!("/api/v1/join/{}", enc(&format!("#lobby:{}", syn.name))), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = ana.post(&join_inner, json!({"via": [syn.name]})).await;
    assert_eq!(st, 200, "{v}\n{}", syn.log_tail());
    let members_of = |room: &str| format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room));
    let (st, v) = syn.call(Some(&sam), "GET", &members_of(&inner), None).await;
    assert!(st == 200 && v["joined"].get(&ana.id).is_some(), "Ana in the inner room, on Synapse: {v}");
    let (_, v) = ana.get(&format!("/api/v1/rooms/{}", enc(&inner))).await;
    assert_eq!(v["visibility"], "private", "{v}");

    // Sue joins the lobby, then the inner room by the rule: her join and what she says reach us.
    let (st, v) = synapse_join(&sue, &lobby).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = synapse_join(&sue, &inner).await;
    assert_eq!(st, 200, "{v}");
    syn.send(&sue, &inner, "in by the lobby", "r1").await;
    until_all("Sue's message in the inner room", &["in by the lobby".to_string()], || ana.bodies(&inner)).await;
    ana.send(&inner, "hi Sue", "r2").await;
    until_all("Ana's answer on Synapse", &["hi Sue".to_string()], || syn.bodies(&sue, &inner)).await;

    // The knock room: Sam invites Ana; Sue knocks, Sam lets her in, and she talks.
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&door));
    let (st, v) = syn.call(Some(&sam), "POST", &invite, Some(json!({"user_id": ana.id}))).await;
    assert_eq!(st, 200, "{v}");
    until("Ana's invitation to the knock room", async || {
        let (_, v) = ana.get("/api/v1/rooms").await;
        v["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == door.as_str())
    })
    .await;
    let (st, v) = ana.post(&format!("/api/v1/rooms/{}/join", enc(&door)), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = syn
        .call(Some(&sue), "POST", &format!("/_matrix/client/v3/knock/{}", enc(&door)), Some(json!({"reason": "hi"})))
        .await;
    assert_eq!(st, 200, "{v}");
    until("Sue's knock, here", async || {
        let events = ana.events(&door).await;
        events.iter().any(|e| e["state_key"] == sue.id.as_str() && e["content"]["membership"] == "knock")
    })
    .await;
    let (st, v) = syn.call(Some(&sam), "POST", &invite, Some(json!({"user_id": sue.id}))).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = synapse_join(&sue, &door).await;
    assert_eq!(st, 200, "{v}");
    syn.send(&sue, &door, "thanks for letting me in", "k1").await;
    until_all("Sue's message in the knock room", &["thanks for letting me in".to_string()], || ana.bodies(&door)).await;
    let page = ana.page(&format!("/rooms/{door}")).await;
    assert!(page.contains("asked to join"), "the knock shows in the timeline");
    s.stop().await;
}

/// The same rules on our side: a Synapse user knocks on our room and Ana lets him in (our
/// invitation reaches Synapse); another is turned down; a Synapse user who is in our club
/// joins our restricted back room (we name Ana as the member letting him in and co-sign the
/// join), and one who is not is refused. Our user knocks on a Synapse room, is let in there,
/// and withdraws a knock on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knocks_and_restricted_joins_on_our_rooms_and_from_our_users() {
    let p = Pki::new();
    let syn = Synapse::start(&p.ca, &p.cert, &p.key).await;
    let s = TestServer::federating(&p, |_| {}).await;
    let ana = Client::register(&p.ca, &s.addr.to_string(), "ana").await;
    let bob = Client::register(&p.ca, &s.addr.to_string(), "bob").await;
    let (sam, sue) = (syn.register("sam").await, syn.register("sue").await);
    let ours = |alias: &str| format!("#{alias}:{}", s.addr);
    let create = async |body: serde_json::Value| {
        let (st, v) = ana.post("/api/v1/rooms", body).await;
        assert_eq!(st, 200, "{v}");
        v["room_id"].as_str().unwrap().to_string()
    };
    let membership_here = async |room: &str, user: &str| {
        let (_, v) = ana.get(&format!("/api/v1/rooms/{}/members", enc(room))).await;
        let found = v["members"].as_array().unwrap().iter().find(|m| m["user_id"] == user).cloned();
        found.map(|m| m["membership"].as_str().unwrap().to_string()).unwrap_or_else(|| "leave".into())
    };

    // Knocks on our room.
    let porch = create(json!({"name": "Porch", "visibility": "private", "alias": "porch"})).await;
    let settings = format!("/api/v1/rooms/{}/settings", enc(&porch));
    let (st, v) = ana.post(&settings, json!({"visibility": "knock"})).await;
    assert_eq!(st, 200, "{v}");
    let knock = async |who: &MatrixUser, target: &str| {
        let path = format!("/_matrix/client/v3/knock/{}", enc(target));
        syn.call(Some(who), "POST", &path, Some(json!({"reason": "it's me"}))).await
    };
    let (st, v) = knock(&sam, &ours("porch")).await;
    assert_eq!(st, 200, "Sam knocks on our room: {v}\n{}", syn.log_tail());
    until("Sam's knock, here", async || membership_here(&porch, &sam.id).await == "knock").await;
    let page = ana.page(&format!("/rooms/{porch}")).await;
    assert!(page.contains("Asking to join") && page.contains("asked to join: “it"), "the request shows: {page}");
    let (st, v) = knock(&sue, &ours("porch")).await;
    assert_eq!(st, 200, "{v}");
    until("Sue's knock, here", async || membership_here(&porch, &sue.id).await == "knock").await;
    let requests = format!("/api/v1/rooms/{}/requests", enc(&porch));
    let (st, v) = ana.post(&requests, json!({"user_id": sam.id, "accept": true})).await;
    assert_eq!(st, 200, "Ana lets Sam in: {v}");
    let (st, v) = ana.post(&requests, json!({"user_id": sue.id, "accept": false})).await;
    assert_eq!(st, 200, "Ana turns Sue down: {v}");
    assert_eq!(membership_here(&porch, &sue.id).await, "leave");
    let (st, v) = ana.post(&requests, json!({"user_id": sue.id, "accept": true})).await;
    assert_eq!(st, 400, "no request left to answer: {v}");
    until("Sam's invitation, on Synapse", async || {
        let (_, v) = syn.call(Some(&sam), "GET", "/_matrix/client/v3/sync?timeout=0", None).await;
        v["rooms"]["invite"].get(&porch).is_some()
    })
    .await;
    let (st, v) =
        syn.call(Some(&sam), "POST", &format!("/_matrix/client/v3/join/{}", enc(&porch)), Some(json!({}))).await;
    assert_eq!(st, 200, "Sam joins: {v}\n{}", syn.log_tail());
    syn.send(&sam, &porch, "thanks for letting me in", "p1").await;
    until_all("Sam's message on our porch", &["thanks for letting me in".to_string()], || ana.bodies(&porch)).await;

    // A room open to our club's members.
    let club = create(json!({"name": "Club", "visibility": "public", "alias": "club"})).await;
    let back = create(json!({"name": "Back room", "visibility": "private", "alias": "back"})).await;
    let (st, v) = ana
        .post(&format!("/api/v1/rooms/{}/settings", enc(&back)), json!({"visibility": "restricted", "allow": [club]}))
        .await;
    assert_eq!(st, 200, "{v}");
    let synapse_join = async |who: &MatrixUser, room: &str| {
        let path = format!("/_matrix/client/v3/join/{}", enc(room));
        syn.call(Some(who), "POST", &path, Some(json!({}))).await
    };
    let (st, v) = synapse_join(&sue, &ours("back")).await;
    assert_eq!(st, 403, "Sue is not in the club: {v}");
    let (st, v) = synapse_join(&sam, &ours("club")).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = synapse_join(&sam, &ours("back")).await;
    assert_eq!(st, 200, "Sam, in the club, joins the back room: {v}\n{}", syn.log_tail());
    until("Sam in the back room, here", async || membership_here(&back, &sam.id).await == "join").await;
    let join = ana.events(&back).await.into_iter().rev().find(|e| e["state_key"] == sam.id.as_str()).unwrap();
    assert_eq!(join["content"]["join_authorised_via_users_server"], ana.id.as_str(), "{join}");
    syn.send(&sam, &back, "made it through the club", "b1").await;
    until_all("Sam's message in the back room", &["made it through the club".to_string()], || ana.bodies(&back)).await;
    ana.send(&back, "welcome", "b2").await;
    until_all("Ana's answer on Synapse", &["welcome".to_string()], || syn.bodies(&sam, &back)).await;
    // Bob, ours, is let in the same way here (no federation) once in the club.
    let (st, v) = bob.post(&format!("/api/v1/rooms/{}/join", enc(&back)), json!({})).await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = bob.post(&format!("/api/v1/rooms/{}/join", enc(&club)), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = bob.post(&format!("/api/v1/rooms/{}/join", enc(&back)), json!({})).await;
    assert_eq!(st, 200, "{v}");
    bob.send(&back, "bob here", "b3").await;
    until_all("Bob's message on Synapse", &["bob here".to_string()], || syn.bodies(&sam, &back)).await;

    // Our user knocks on Synapse's rooms.
    let door_rule = json!([{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]);
    let mut doors = Vec::new();
    for name in ["Door", "Gate"] {
        let body = json!({"preset": "private_chat", "name": name, "initial_state": door_rule});
        let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
        assert_eq!(st, 200, "{v}");
        doors.push(v["room_id"].as_str().unwrap().to_string());
    }
    let state_on_synapse = async |room: &str, user: &str| {
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(room), enc(user));
        let (_, v) = syn.call(Some(&sam), "GET", &path, None).await;
        v["membership"].as_str().unwrap_or("none").to_string()
    };
    for door in &doors {
        let (st, v) =
            bob.post(&format!("/api/v1/knock/{}", enc(door)), json!({"via": [syn.name], "reason": "hello"})).await;
        assert_eq!(st, 200, "Bob knocks on Synapse's room: {v}\n{}", syn.log_tail());
        until("Bob's knock on Synapse", async || state_on_synapse(door, &bob.id).await == "knock").await;
    }
    let (_, v) = bob.get("/api/v1/rooms").await;
    let listed = v["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == doors[0].as_str()).cloned();
    assert_eq!(listed.map(|r| r["membership"].clone()), Some(json!("knock")), "{v}");
    let page = bob.page(&format!("/rooms/{}", doors[0])).await;
    assert!(page.contains("You asked to join Door") && page.contains("Withdraw request"), "{page}");
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&doors[0]));
    let (st, v) = syn.call(Some(&sam), "POST", &invite, Some(json!({"user_id": bob.id}))).await;
    assert_eq!(st, 200, "Sam lets Bob in: {v}");
    until("Bob's invitation here", async || {
        let (_, v) = bob.get("/api/v1/rooms").await;
        v["rooms"].as_array().unwrap().iter().any(|r| r["room_id"] == doors[0].as_str() && r["membership"] == "invite")
    })
    .await;
    let (st, v) = bob.post(&format!("/api/v1/rooms/{}/join", enc(&doors[0])), json!({})).await;
    assert_eq!(st, 200, "{v}");
    bob.send(&doors[0], "knock knock", "d1").await;
    until_all("Bob's message on Synapse", &["knock knock".to_string()], || syn.bodies(&sam, &doors[0])).await;
    let (st, v) = bob.post(&format!("/api/v1/rooms/{}/leave", enc(&doors[1])), json!({})).await;
    assert_eq!(st, 200, "Bob withdraws his knock: {v}");
    until("the withdrawn knock on Synapse", async || state_on_synapse(&doors[1], &bob.id).await == "leave").await;

    // Sam withdraws an invitation to another room: it reaches Bob here, though our server is
    // not in the room. (Synapse sends a turned-down request only to the room's servers, so Bob
    // learns of that when he next tries; between our servers it reaches him: federation_rooms.)
    let attic = {
        let body = json!({"preset": "private_chat", "name": "Attic"});
        let (st, v) = syn.call(Some(&sam), "POST", "/_matrix/client/v3/createRoom", Some(body)).await;
        assert_eq!(st, 200, "{v}");
        v["room_id"].as_str().unwrap().to_string()
    };
    let (st, v) = syn
        .call(
            Some(&sam),
            "POST",
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&attic)),
            Some(json!({"user_id": bob.id})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let bobs = async |room: &str| {
        let (_, v) = bob.get("/api/v1/rooms").await;
        let found = v["rooms"].as_array().unwrap().iter().find(|r| r["room_id"] == room).cloned();
        found.map(|r| r["membership"].as_str().unwrap().to_string()).unwrap_or_else(|| "none".into())
    };
    until("Bob's invitation to the attic", async || bobs(&attic).await == "invite").await;
    let path = format!("/_matrix/client/v3/rooms/{}/kick", enc(&attic));
    let (st, v) = syn.call(Some(&sam), "POST", &path, Some(json!({"user_id": bob.id, "reason": "not now"}))).await;
    assert_eq!(st, 200, "{v}");
    until("the withdrawn invitation here", async || bobs(&attic).await == "none").await;
    s.stop().await;
}
