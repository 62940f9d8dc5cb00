//! Schema upgrades: a database written by an older schema opens in this build, is upgraded in
//! place, and keeps everything. `tests/data/schema-1/chat.redb` was written by the last build
//! with schema 1: server B of a two-server federation over HTTPS (`127.0.0.1:38035`), where
//! ben joined ana's `#lobby` on A after 60 messages (so B holds outlier events: the room's
//! state and auth chain from the join, older than the 50 events of history it fetched), said
//! hello, and created a room of his own.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

const SERVER: &str = "127.0.0.1:38035";
const LOBBY: &str = "!2P_lMZgVqc4barY5GyAWm5fyhq9Y7_5wA3uGfoMExJg";
const LOCAL: &str = "!fHW9jss_2gC4A3NDU0C-12JObfUhpgzHtYknYZN6PAM";

fn schema_1_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/schema-1/chat.redb");
    std::fs::copy(fixture, tmp.path().join("chat.redb")).unwrap();
    tmp
}

async fn start(dir: &std::path::Path) -> TestServer {
    let mut config = chat::Config::with_data_dir(dir);
    config.server_name = Some(chat::ids::ServerName::parse(SERVER).unwrap());
    TestServer::start_with(config).await
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
