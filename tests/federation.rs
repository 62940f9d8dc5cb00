//! Federation, first part: two real servers over real HTTPS with a throwaway CA. Each
//! publishes a self-signed key document; a signed request from A is verified by B, and so is
//! one from a server the test plays (B fetches its key over HTTPS once and caches it); forged,
//! tampered and misdirected requests are refused, and a repeated one is answered the same (Matrix
//! signs no time); a server that does not trust the CA cannot fetch keys at all.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;

use std::path::Path;

use axum::http::Method;
use chat::federation::client::SignedRequest;
use chat::federation::keys::check_document;
use chat::federation::urlencode;
use chat::keys::SigningKey;
use common::TestServer;
use common::played::PlayedServer;
use common::tls::{Client, pki};
use serde_json::{Value, json};

async fn server(cert: &Path, key: &Path, ca: Option<&Path>) -> TestServer {
    let (cert, key, ca) = (cert.to_path_buf(), key.to_path_buf(), ca.map(Path::to_path_buf));
    TestServer::start_tuned(move |c| {
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        c.federation_ca = ca;
        c.federation_private_addresses = true;
    })
    .await
}

/// One HTTPS GET to `server` trusting only the test CA, with extra headers.
async fn get(ca: &Path, server: &str, path: &str, headers: &[(&str, String)]) -> (u16, Value) {
    common::tls::request(ca, server, "GET", path, headers, None).await
}

/// A server's name, as its key document states it.
async fn name(ca: &Path, s: &TestServer) -> String {
    let (_, doc) = get(ca, &s.addr.to_string(), "/_matrix/key/v2/server", &[]).await;
    doc["server_name"].as_str().unwrap().to_string()
}

/// `user` invites `whom` to a new private room of theirs; returns the status.
async fn invite_to_new_room(user: &Client, whom: &str) -> u16 {
    let (s, v) = user.post("/api/v1/rooms", json!({"name": "Invites", "visibility": "private"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap();
    user.post(&format!("/api/v1/rooms/{room}/invite"), json!({"user_id": whom})).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_documents_and_signed_requests_between_two_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let a = server(&cert, &key, Some(&ca)).await;
    let b = server(&cert, &key, Some(&ca)).await;
    let (na, nb) = (name(&ca, &a).await, name(&ca, &b).await);
    assert_eq!(na, format!("127.0.0.1:{}", a.addr.port()));
    let ben = Client::register(&ca, &nb, "ben").await;

    // Each key document names its server, is valid for days, and carries its own signature.
    let (_, doc) = get(&ca, &na, "/_matrix/key/v2/server", &[]).await;
    let now = chat::events::now_ms();
    let keys = check_document(&na, doc.clone(), now).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(doc["valid_until_ts"].as_u64().unwrap() > now + 6 * 24 * 3600 * 1000);
    // A tampered document fails its own signature; one claiming another name is refused.
    let mut tampered = doc.clone();
    tampered["valid_until_ts"] = json!(doc["valid_until_ts"].as_u64().unwrap() + 1);
    assert!(check_document(&na, tampered, now).is_err());
    assert!(check_document(&nb, doc.clone(), now).is_err());
    // The key is the same after a restart of the same data dir (it is kept in the store).
    let (_, well) = get(&ca, &na, "/.well-known/matrix/server", &[]).await;
    assert_eq!(well["m.server"], na.as_str());

    // Ana on A invites Ben on B: A asks B with a signed request, which B verifies with A's
    // key (fetched over HTTPS); B answers for its users, and knows no @nobody.
    let ana = Client::register(&ca, &na, "ana").await;
    assert_eq!(invite_to_new_room(&ana, &ben.id).await, 200);
    assert_eq!(invite_to_new_room(&ana, &format!("@nobody:{nb}")).await, 404);

    // F, a server the test plays, asks B for Ben's profile: a signed request; B fetches F's key
    // over HTTPS, once, and caches it.
    let f = PlayedServer::start(&ca, &cert, &key).await;
    let nf = f.name.clone();
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", urlencode(&ben.id));
    let (st, v) = f.signed(Method::GET, &nb, &path, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["displayname"], "ben");
    assert_eq!(f.key_fetches(), 1);
    let nobody = format!("/_matrix/federation/v1/query/profile?user_id={}", urlencode(&format!("@nobody:{nb}")));
    assert_eq!(f.signed(Method::GET, &nb, &nobody, None).await.0, 404);
    assert_eq!(f.key_fetches(), 1, "B asked for F's key again instead of using its copy");

    // Hand-made requests to B, signed with F's real key unless said otherwise.
    let key_id = f.key.id.clone();
    let a_key = &*f.key;
    let send = |auth: Option<String>| {
        let h: Vec<(&str, String)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (ca, nb, path) = (ca.clone(), nb.clone(), path.clone());
        async move { get(&ca, &nb, &path, &h).await.0 }
    };
    let header = |origin: &str, dest: &str, kid: &str, sig: &str| {
        format!("X-Matrix origin=\"{origin}\",destination=\"{dest}\",key=\"{kid}\",sig=\"{sig}\"")
    };
    let sign = |key: &SigningKey, origin: &str, dest: &str, uri: &str| {
        SignedRequest { origin, destination: dest, method: "GET", uri, content: None }.sign(key).unwrap()
    };
    let good = |uri: &str| sign(a_key, &nf, &nb, uri);

    // The genuine article works, and again (Matrix signs no time: the same request signs the
    // same way; TLS keeps captures out, and every endpoint is idempotent), with the signature
    // spelled with padding too. Without `destination` (older servers) it means us.
    let sig = good(&path);
    for spelled in [sig.clone(), sig.clone(), format!("{sig}=")] {
        assert_eq!(send(Some(header(&nf, &nb, &key_id, &spelled))).await, 200, "as {spelled}");
    }
    let r = send(Some(format!("X-Matrix origin={nf},key=\"{key_id}\",sig=\"{sig}\""))).await;
    assert_eq!(r, 200);
    // Unsigned, or malformed authorization.
    assert_eq!(send(None).await, 401u16);
    assert_eq!(send(Some("X-Matrix nonsense".into())).await, 401u16);
    // Signed for another path (tampered uri).
    let other_path = path.replace("ben", "bob");
    assert_eq!(send(Some(header(&nf, &nb, &key_id, &good(&other_path)))).await, 401u16);
    // Meant for another destination.
    let sig = sign(a_key, &nf, "127.0.0.1:1", &path);
    assert_eq!(send(Some(header(&nf, "127.0.0.1:1", &key_id, &sig))).await, 401u16);
    // Signed by a key that is not F's (a forger speaking for F).
    let (der, version) = chat::keys::SigningKey::generate().unwrap();
    let forger = chat::keys::SigningKey::from_der(&der, version).unwrap();
    let sig = sign(&forger, &nf, &nb, &path);
    for kid in [key_id.as_str(), forger.id.as_str()] {
        assert_eq!(send(Some(header(&nf, &nb, kid, &sig))).await, 401u16, "forged with key id {kid}");
    }
    // An origin that does not answer: its key cannot be had.
    let sig = sign(&forger, "127.0.0.1:9", &nb, &path);
    assert_eq!(send(Some(header("127.0.0.1:9", &nb, &forger.id, &sig))).await, 401u16);

    // Endpoints we do not have answer as Matrix servers expect (a peer then falls back), and
    // errors under /_matrix have the Matrix shape.
    for (method, p) in [("GET", "/_matrix/federation/v1/publicRooms"), ("PUT", "/_matrix/federation/v3/invite/x/y")] {
        let (st, v) = common::tls::request(&ca, &nb, method, p, &[], None).await;
        assert_eq!((st, v["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{method} {p}: {v}");
    }
    let (st, v) = common::tls::request(&ca, &nb, "DELETE", "/_matrix/key/v2/server", &[], None).await;
    assert_eq!((st, v["errcode"].as_str()), (405, Some("M_UNRECOGNIZED")), "{v}");
    assert_eq!(send(None).await, 401u16);
    let (_, v) = get(&ca, &nb, &path, &[]).await;
    assert_eq!(v["errcode"], "M_UNAUTHORIZED", "{v}");

    // B still serves F, and A, after all that.
    assert_eq!(f.signed(Method::GET, &nb, &path, None).await.0, 200);
    assert_eq!(invite_to_new_room(&ana, &ben.id).await, 200);

    // The signing key survives a restart.
    let doc_before = check_document(&na, doc, now).unwrap();
    let dir = a.dir.clone();
    let addr = a.addr;
    let _keep = a.stop().await;
    let mut cfg = chat::Config::with_data_dir(&dir);
    cfg.listen = addr;
    cfg.tls.cert = Some(cert.clone());
    cfg.tls.key = Some(key.clone());
    cfg.federation_ca = Some(ca.clone());
    cfg.federation_private_addresses = true;
    cfg.turn.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.metrics_listen = None;
    let a2 = TestServer::start_at(cfg).await;
    let (_, doc2) = get(&ca, &na, "/_matrix/key/v2/server", &[]).await;
    assert_eq!(
        check_document(&na, doc2, now).unwrap().keys().collect::<Vec<_>>(),
        doc_before.keys().collect::<Vec<_>>()
    );
    drop(a2);
}

/// Every event leaves its server signed: another server (played by the test, joined to the
/// room) holding only the published key document verifies each one it is served (ruma, room
/// version 12 rules), and a changed event fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_signed_by_its_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let a = server(&cert, &key, Some(&ca)).await;
    let na = name(&ca, &a).await;
    let ana = Client::register(&ca, &na, "ana").await;
    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "Signed", "topic": "t", "visibility": "public"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    ana.send(&room, "hello", "t1").await;
    let events: Vec<Value> = ana.events(&room).await;
    // F joins, so that A serves it the room's events.
    let f = PlayedServer::start(&ca, &cert, &key).await;
    f.join(&na, &room, &format!("@fred:{}", f.name)).await;

    let (_, doc) = get(&ca, &na, "/_matrix/key/v2/server", &[]).await;
    let keys = check_document(&na, doc, chat::events::now_ms()).unwrap();
    let mut set = std::collections::BTreeMap::new();
    for (id, k) in keys {
        set.insert(id, ruma_common::serde::Base64::parse(k.key).unwrap());
    }
    let map = std::collections::BTreeMap::from([(na.clone(), set)]);
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    assert!(events.len() >= 5, "create, member, power levels, join rules, name, message: {}", events.len());
    let mut signed = Vec::new();
    for e in &events {
        let id = e["event_id"].as_str().unwrap();
        let (st, v) =
            f.signed(Method::GET, &na, &format!("/_matrix/federation/v1/event/{}", urlencode(id)), None).await;
        assert_eq!(st, 200, "{v}");
        let pdu = v["pdus"][0].clone();
        let object = chat::keys::to_canonical(pdu.clone()).unwrap();
        let verified = ruma_signatures::verify_event(&map, &object, &rules)
            .unwrap_or_else(|err| panic!("{} {id}: {err}", e["type"]));
        assert_eq!(verified, ruma_signatures::Verified::All, "{}", e["type"]);
        assert_eq!(format!("${}", ruma_signatures::reference_hash(&object, &rules).unwrap()), id);
        signed.push(pdu);
    }
    // A changed message body: the signature (over the redacted form) holds, the hash does not,
    // so a receiver treats the event as redacted, never as what was sent.
    let mut forged = signed.into_iter().find(|e| e["type"] == "m.room.message").unwrap();
    forged["content"]["body"] = json!("changed");
    let forged = chat::keys::to_canonical(forged).unwrap();
    assert_eq!(ruma_signatures::verify_event(&map, &forged, &rules).unwrap(), ruma_signatures::Verified::Signatures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_trust_the_ca_reaches_no_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let a = server(&cert, &key, None).await;
    let b = server(&cert, &key, Some(&ca)).await;
    let ben = Client::register(&ca, &name(&ca, &b).await, "ben").await;
    let ana = Client::register(&ca, &name(&ca, &a).await, "ana").await;
    // A cannot even connect to B (unknown issuer): Ana's invitation of Ben fails there.
    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "Invites", "visibility": "private"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap();
    let (s, v) = ana.post(&format!("/api/v1/rooms/{room}/invite"), json!({"user_id": ben.id})).await;
    assert_eq!(s, 503, "{v}");
    assert!(v["message"].as_str().unwrap().contains("cannot reach"), "{v}");
    // B can reach A's key document (B trusts the CA), but A's request never got there: Ben has
    // no invitation.
    let (_, mine) = ben.get("/api/v1/rooms").await;
    assert!(mine["rooms"].as_array().unwrap().is_empty(), "{mine}");
}

/// A TCP service on loopback that counts the connections made to it and closes each at once
/// (it speaks no TLS), standing for something inside the server's network.
async fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, seen)
}

/// A signed-looking request claiming to come from `origin` (the signature is never checked:
/// the key is fetched first).
async fn forged_from(ca: &Path, server: &str, origin: &str, key: &str) -> (u16, Value) {
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", urlencode(&format!("@ana:{server}")));
    let auth = format!(r#"X-Matrix origin="{origin}",destination="{server}",key="{key}",sig="c2lnbmF0dXJl""#);
    get(ca, server, &path, &[("authorization", auth)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_origins_and_aliases_cannot_probe_the_servers_network() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let (cert2, key2, ca2) = (cert.clone(), key.clone(), ca.clone());
    // The default: servers at internal addresses are not federated with.
    let a = TestServer::start_tuned(move |c| {
        c.tls.cert = Some(cert2);
        c.tls.key = Some(key2);
        c.federation_ca = Some(ca2);
    })
    .await;
    let na = name(&ca, &a).await;
    let (open, seen) = counting_listener().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    // An unauthenticated request naming an internal origin: no connection is made, and the
    // answer is the same for an open and a closed port.
    let mut answers = Vec::new();
    for port in [open, closed] {
        let (s, v) = forged_from(&ca, &na, &format!("127.0.0.1:{port}"), "ed25519:k").await;
        assert_eq!((s, v["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{v}");
        answers.push(v["error"].as_str().unwrap().replace(&port.to_string(), "PORT"));
    }
    assert_eq!(answers[0], answers[1], "the answer tells an open port from a closed one");
    assert_eq!(answers[0], "cannot get the keys of 127.0.0.1:PORT (cannot reach 127.0.0.1:PORT)");
    // A signed-in user joining by an alias on an internal address: the same.
    let ana = Client::register(&ca, &na, "ana").await;
    let mut answers = Vec::new();
    for port in [open, closed] {
        let (s, v) = ana.post(&format!("/api/v1/join/%23x:127.0.0.1:{port}"), json!({})).await;
        assert_eq!(s, 503, "{v}");
        answers.push(v["message"].as_str().unwrap().replace(&port.to_string(), "PORT"));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], "cannot reach 127.0.0.1:PORT");
    // Names that only resolve to loopback are refused the same way.
    let (s, v) = forged_from(&ca, &na, &format!("localhost:{open}"), "ed25519:k").await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (401, format!("cannot get the keys of localhost:{open} (cannot reach localhost:{open})").as_str())
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0, "the server connected to an internal address");

    // With private addresses allowed (a LAN federation), key fetches that unknown origins
    // cause are limited per client address: past the limit, 429 and no connection.
    let (cert2, key2, ca2) = (cert.clone(), key.clone(), ca.clone());
    let b = TestServer::start_tuned(move |c| {
        c.tls.cert = Some(cert2);
        c.tls.key = Some(key2);
        c.federation_ca = Some(ca2);
        c.federation_private_addresses = true;
        c.limits.federation_key_fetches_per_ip_per_minute = 3;
    })
    .await;
    let nb = name(&ca, &b).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(forged_from(&ca, &nb, &format!("127.0.0.1:{open}"), &format!("ed25519:k{i}")).await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3, "one connection per allowed key fetch");
    a.stop().await;
    b.stop().await;
}
