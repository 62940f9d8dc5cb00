//! Schema upgrades: a database written by an older schema opens in this build, is upgraded in
//! place, and keeps everything. `tests/data/schema-1/chat.redb` was written by the last build
//! with schema 1: server B of a two-server federation over HTTPS (`127.0.0.1:38035`), where
//! ben joined ana's `#lobby` on A after 60 messages (so B holds outlier events: the room's
//! state and auth chain from the join, older than the 50 events of history it fetched), said
//! hello, and created a room of his own. `tests/data/schema-2/chat.redb` was written by the
//! last build with schema 2 (`127.0.0.1:38036`, one server): ana created the public rooms Lobby
//! (`#lobby`, topic "Say hello to everyone"; ben joined and said hi) and Rust (`#rustaceans`,
//! "Crabs welcome") and the private room "Secret plans" (`#secret`); ben created the public room
//! Gardening.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

const SERVER: &str = "127.0.0.1:38035";
const LOBBY: &str = "!2P_lMZgVqc4barY5GyAWm5fyhq9Y7_5wA3uGfoMExJg";
const LOCAL: &str = "!fHW9jss_2gC4A3NDU0C-12JObfUhpgzHtYknYZN6PAM";

fn schema_copy(version: u32) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = format!("{}/tests/data/schema-{version}/chat.redb", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(fixture, tmp.path().join("chat.redb")).unwrap();
    tmp
}

fn schema_1_copy() -> tempfile::TempDir {
    schema_copy(1)
}

async fn start(dir: &std::path::Path) -> TestServer {
    start_as(dir, SERVER).await
}

async fn start_as(dir: &std::path::Path, server: &str) -> TestServer {
    let mut config = chat::Config::with_data_dir(dir);
    config.server_name = Some(chat::ids::ServerName::parse(server).unwrap());
    TestServer::start_with(config).await
}

async fn login(s: &TestServer, name: &str) -> common::User {
    let (st, v) = s.post(None, "/api/v1/login", json!({"username": name, "password": "password123"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    common::User {
        id: v["user_id"].as_str().unwrap().into(),
        name: name.into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

/// The directory's rooms as (name, members, alias), in order.
async fn directory(s: &TestServer, u: &common::User, query: &str) -> Vec<(String, u64, Option<String>)> {
    let (st, v) = s.get(Some(&u.token), &format!("/api/v1/rooms/public?{query}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let alias = r["alias"].as_str().map(str::to_string);
            (r["name"].as_str().unwrap().to_string(), r["members"].as_u64().unwrap(), alias)
        })
        .collect()
}

fn events_in_backup(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let (_, rest) = text.split_once(" (").unwrap();
    rest.split_once(" events").unwrap().0.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_is_upgraded_and_keeps_its_data() {
    let tmp = schema_1_copy();
    let s = start(tmp.path()).await;
    let (st, v) = s.post(None, "/api/v1/login", json!({"username": "ben", "password": "password123"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ben = common::User {
        id: v["user_id"].as_str().unwrap().into(),
        name: "ben".into(),
        token: v["token"].as_str().unwrap().into(),
    };
    assert_eq!(ben.id, format!("@ben:{SERVER}"));
    let (_, rooms) = s.get(Some(&ben.token), "/api/v1/rooms").await;
    let text = rooms.to_string();
    assert!(text.contains(LOBBY) && text.contains(LOCAL), "{rooms}");
    let lobby = s.bodies(&ben, LOBBY).await;
    assert!(lobby.ends_with(&["before ben came 59".to_string(), "hi from B".to_string()]), "{lobby:?}");
    assert_eq!(s.bodies(&ben, LOCAL).await, ["only here"]);
    // The public directory was built in the upgrade (the lobby's alias is A's, not ours).
    let listed = directory(&s, &ben, "").await;
    assert_eq!(listed, [("Lobby".to_string(), 2, None), ("Local".to_string(), 1, None)]);
    // The stream was built from the timelines in the upgrade: the search index, built from
    // it, finds messages sent long before (received from A, and local).
    s.until_metric("chat_search_behind", |v| v == 0.0).await;
    let (st, v) = s.get(Some(&ben.token), "/api/v1/search?q=%22before+ben+came+59%22").await;
    assert_eq!((st, v["count"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (_, v) = s.get(Some(&ben.token), "/api/v1/search?q=only+here").await;
    assert_eq!(v["results"][0]["room_id"], LOCAL, "{v}");
    // New writes go on from the stored stream position.
    s.send(&ben, LOCAL, "after the upgrade", "u1").await;
    let _keep = s.stop().await;

    // Opening it again (already upgraded) changes nothing.
    let s = start(tmp.path()).await;
    assert_eq!(s.bodies(&ben, LOCAL).await, ["only here", "after the upgrade"]);
    let _keep = s.stop().await;

    // Everything of a room goes with it, including the events stored before the upgrade as
    // outliers (the state and auth chain B received when ben joined): with both rooms deleted,
    // a backup holds no event.
    for room in [LOBBY, LOCAL] {
        let out = common::cli(tmp.path(), &["admin", "room", "delete", room, "--yes"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let backup = tmp.path().join("after-delete.redb");
    let out = common::cli(tmp.path(), &["backup", backup.to_str().unwrap()], None);
    assert_eq!(events_in_backup(&out), 0);
}

const SERVER_2: &str = "127.0.0.1:38036";

/// Schema 3 adds the public directory's index: opening a schema 2 database builds it from the
/// rooms (public ones only, with their aliases), and it is kept from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_2_database_gets_its_public_directory() {
    let tmp = schema_copy(2);
    let s = start_as(tmp.path(), SERVER_2).await;
    let ana = login(&s, "ana").await;
    let lobby = Some(format!("#lobby:{SERVER_2}"));
    let rust = Some(format!("#rustaceans:{SERVER_2}"));
    let expected = vec![
        ("Lobby".to_string(), 2, lobby.clone()),
        ("Gardening".to_string(), 1, None),
        ("Rust".to_string(), 1, rust.clone()),
    ];
    assert_eq!(directory(&s, &ana, "").await, expected);
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms/public").await;
    assert_eq!(v["total"], 3);
    // Searched by alias and by topic; the private room is not found.
    assert_eq!(directory(&s, &ana, "q=RUSTACEANS").await, [("Rust".to_string(), 1, rust.clone())]);
    assert_eq!(directory(&s, &ana, "q=hello").await, [("Lobby".to_string(), 2, lobby.clone())]);
    assert_eq!(directory(&s, &ana, "q=secret").await, []);
    let _keep = s.stop().await;

    // Opened again, it is the same; and it follows changes.
    let s = start_as(tmp.path(), SERVER_2).await;
    assert_eq!(directory(&s, &ana, "").await, expected);
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms/public?q=gardening").await;
    let garden = v["rooms"][0]["room_id"].as_str().unwrap().to_string();
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms/public?q=lobby").await;
    let lobby_id = v["rooms"][0]["room_id"].as_str().unwrap().to_string();
    s.join(&ana, &garden).await;
    let order: Vec<String> = directory(&s, &ana, "").await.into_iter().map(|r| r.0).collect();
    assert_eq!(order, ["Gardening", "Lobby", "Rust"]);
    // Deleting a room frees the aliases it had before the upgrade.
    let out = common::cli_async(tmp.path(), &["admin", "room", "delete", &lobby_id, "--yes"], None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let order: Vec<String> = directory(&s, &ana, "").await.into_iter().map(|r| r.0).collect();
    assert_eq!(order, ["Gardening", "Rust"]);
    let (st, v) = s
        .post(Some(&ana.token), "/api/v1/rooms", json!({"name": "New lobby", "visibility": "public", "alias": "lobby"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(directory(&s, &ana, "q=lobby").await, [("New lobby".to_string(), 1, lobby)]);
    let _keep = s.stop().await;
}
