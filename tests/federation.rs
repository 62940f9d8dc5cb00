//! Federation, first part: two real servers over real HTTPS with a throwaway CA. Each
//! publishes a self-signed key document; a signed request from A is verified by B (which
//! fetches and caches A's key over HTTPS); forged, tampered, misdirected, stale and replayed
//! requests are refused; a server that does not trust the CA cannot fetch keys at all.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::path::Path;

use chat::federation::client::{SignedRequest, TS_HEADER};
use chat::federation::keys::check_document;
use chat::keys::SigningKey;
use common::TestServer;
use common::tls::pki;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn server(cert: &Path, key: &Path, ca: Option<&Path>) -> TestServer {
    let (cert, key, ca) = (cert.to_path_buf(), key.to_path_buf(), ca.map(Path::to_path_buf));
    TestServer::start_tuned(move |c| {
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        c.federation_ca = ca;
    })
    .await
}

/// One HTTPS GET to `server` trusting only the test CA, with extra headers.
async fn get(ca: &Path, server: &str, path: &str, headers: &[(&str, String)]) -> (u16, Value) {
    common::tls::request(ca, server, "GET", path, headers, None).await
}

fn name(s: &TestServer) -> String {
    s.state().server_name.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_documents_and_signed_requests_between_two_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let a = server(&cert, &key, Some(&ca)).await;
    let b = server(&cert, &key, Some(&ca)).await;
    let (na, nb) = (name(&a), name(&b));
    assert_eq!(na, format!("127.0.0.1:{}", a.addr.port()));
    chat::auth::account::register(&b.state().accounts, "ben", "password123", [127, 0, 0, 1].into()).await.unwrap();

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

    // A asks B for Ben's profile: a signed request; B fetches A's key over HTTPS and caches it.
    let ben = chat::ids::UserId::parse(&format!("@ben:{nb}")).unwrap();
    let (st, v) = chat::federation::query_profile(&a.state().fed, &ben).await.unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["displayname"], "ben");
    let key_id = a.state().federation().key.id.clone();
    assert!(b.state().store.server_key(&na, &key_id).unwrap().is_some());
    let nobody = chat::ids::UserId::parse(&format!("@nobody:{nb}")).unwrap();
    assert_eq!(chat::federation::query_profile(&a.state().fed, &nobody).await.unwrap().0, StatusCode::NOT_FOUND);

    // Hand-made requests to B, signed with A's real key unless said otherwise.
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", chat::federation::urlencode(ben.as_str()));
    let a_key = &a.state().federation().key;
    let send = |auth: Option<String>, ts: Option<u64>| {
        let mut h = Vec::new();
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        if let Some(t) = ts {
            h.push((TS_HEADER, t.to_string()));
        }
        let (ca, nb, path) = (ca.clone(), nb.clone(), path.clone());
        async move { get(&ca, &nb, &path, &h).await.0 }
    };
    let header = |origin: &str, dest: &str, kid: &str, sig: &str| {
        format!("X-Matrix origin=\"{origin}\",destination=\"{dest}\",key=\"{kid}\",sig=\"{sig}\"")
    };
    let sign = |key: &SigningKey, origin: &str, dest: &str, uri: &str, ts: u64| {
        SignedRequest { origin, destination: dest, method: "GET", uri, content: None, ts }.sign(key).unwrap()
    };
    let good_at = |ts: u64, uri: &str| sign(a_key, &na, &nb, uri, ts);

    // The genuine article works, once.
    let ts = chat::events::now_ms();
    let sig = good_at(ts, &path);
    let r = send(Some(header(&na, &nb, &key_id, &sig)), Some(ts)).await;
    assert_eq!(r, 200);
    // Replayed as is: refused.
    let r = send(Some(header(&na, &nb, &key_id, &sig)), Some(ts)).await;
    assert_eq!(r, 401u16);
    // Unsigned, or malformed authorization.
    assert_eq!(send(None, None).await, 401u16);
    assert_eq!(send(Some("X-Matrix nonsense".into()), Some(ts)).await, 401u16);
    // Signed for another path (tampered uri).
    let ts = chat::events::now_ms();
    let other_path = path.replace("ben", "bob");
    let r = send(Some(header(&na, &nb, &key_id, &good_at(ts, &other_path))), Some(ts)).await;
    assert_eq!(r, 401u16);
    // A time other than the signed one, and a signed time out of the window.
    let r = send(Some(header(&na, &nb, &key_id, &good_at(ts, &path))), Some(ts + 1)).await;
    assert_eq!(r, 401u16);
    let stale = ts - 10 * 60 * 1000;
    let r = send(Some(header(&na, &nb, &key_id, &good_at(stale, &path))), Some(stale)).await;
    assert_eq!(r, 401u16);
    // Meant for another destination.
    let sig = sign(a_key, &na, "127.0.0.1:1", &path, ts);
    let r = send(Some(header(&na, "127.0.0.1:1", &key_id, &sig)), Some(ts)).await;
    assert_eq!(r, 401u16);
    // Signed by a key that is not A's (a forger speaking for A).
    let (der, version) = chat::keys::SigningKey::generate().unwrap();
    let forger = chat::keys::SigningKey::from_der(&der, version).unwrap();
    let sig = sign(&forger, &na, &nb, &path, ts);
    for kid in [key_id.as_str(), forger.id.as_str()] {
        let r = send(Some(header(&na, &nb, kid, &sig)), Some(ts)).await;
        assert_eq!(r, 401u16, "forged with key id {kid}");
    }
    // An origin that does not answer: its key cannot be had.
    let sig = sign(&forger, "127.0.0.1:9", &nb, &path, ts);
    let r = send(Some(header("127.0.0.1:9", &nb, &forger.id, &sig)), Some(ts)).await;
    assert_eq!(r, 401u16);

    // B still serves A after all that.
    assert_eq!(chat::federation::query_profile(&a.state().fed, &ben).await.unwrap().0, StatusCode::OK);

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

/// Every event leaves its server signed: another server holding only the published key
/// document verifies each one (ruma, room version 12 rules), and a changed event fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_signed_by_its_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let a = server(&cert, &key, Some(&ca)).await;
    let na = name(&a);
    let st = a.state();
    let ana = chat::auth::account::register(&st.accounts, "ana", "password123", [127, 0, 0, 1].into()).await.unwrap();
    let room = chat::rooms::create_room(
        &st.rooms,
        &ana.user_id,
        chat::rooms::CreateRoom {
            name: "Signed".into(),
            topic: "t".into(),
            join_rule: chat::events::JoinRule::Public,
            alias: None,
        },
    )
    .await
    .unwrap();
    chat::rooms::send_message(&st.rooms, &ana.user_id, &room, "hello", "t1").await.unwrap();

    let (_, doc) = get(&ca, &na, "/_matrix/key/v2/server", &[]).await;
    let keys = check_document(&na, doc, chat::events::now_ms()).unwrap();
    let mut set = std::collections::BTreeMap::new();
    for (id, k) in keys {
        set.insert(id, ruma_common::serde::Base64::parse(k.key).unwrap());
    }
    let map = std::collections::BTreeMap::from([(na.clone(), set)]);
    let rules = ruma_common::room_version_rules::RoomVersionRules::V12;
    let (events, _) = st.store.timeline(&room, None, 100).unwrap();
    assert!(events.len() >= 5, "create, member, power levels, join rules, name, message: {}", events.len());
    let signed = |e: &chat::events::Event| st.federation().signed_pdu(&na, e).unwrap();
    for e in &events {
        let object = chat::keys::to_canonical(signed(&e.event)).unwrap();
        let verified = ruma_signatures::verify_event(&map, &object, &rules)
            .unwrap_or_else(|err| panic!("{} {}: {err}", e.event.kind, e.event.event_id));
        assert_eq!(verified, ruma_signatures::Verified::All, "{}", e.event.kind);
        assert_eq!(format!("${}", ruma_signatures::reference_hash(&object, &rules).unwrap()), e.event.event_id);
    }
    // A changed message body: the signature (over the redacted form) holds, the hash does not,
    // so a receiver treats the event as redacted, never as what was sent.
    let msg = events.iter().find(|e| e.event.kind == "m.room.message").unwrap();
    let mut forged = signed(&msg.event);
    forged["content"]["body"] = serde_json::json!("changed");
    let forged = chat::keys::to_canonical(forged).unwrap();
    assert_eq!(ruma_signatures::verify_event(&map, &forged, &rules).unwrap(), ruma_signatures::Verified::Signatures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_trust_the_ca_reaches_no_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(tmp.path());
    let a = server(&cert, &key, None).await;
    let b = server(&cert, &key, Some(&ca)).await;
    chat::auth::account::register(&b.state().accounts, "ben", "password123", [127, 0, 0, 1].into()).await.unwrap();
    let ben = chat::ids::UserId::parse(&format!("@ben:{}", name(&b))).unwrap();
    // A cannot even connect to B (unknown issuer).
    let e = chat::federation::query_profile(&a.state().fed, &ben).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach"), "{e}");
    // B can reach A's key document (B trusts the CA), but A's request never got there.
    assert!(b.state().store.server_key(&name(&a), &a.state().federation().key.id).unwrap().is_none());
}
