//! Durability and the binary: restarts keep every acknowledged message and account; group commit
//! batches concurrent writes; the CLI's settings, errors and signals.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::process::Command;

use common::{Binary, TestServer, message_bodies, post_json};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn restart_keeps_every_acknowledged_message_and_account() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path()).await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let room = s.create_room(&ana, "General", "private").await;
    s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/invite"), json!({"user_id": "ben"})).await;
    s.join(&ben, &room).await;

    // 200 concurrent sends from two users: every acknowledged one must survive.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (url, token) = (s.url.clone(), if i % 2 == 0 { ana.token.clone() } else { ben.token.clone() });
        let (http, room) = (s.http.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(format!("{url}/api/v1/rooms/{room}/messages"))
                .bearer_auth(token)
                .json(&json!({"body": format!("msg-{i}"), "txn_id": format!("t{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            format!("msg-{i}")
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let jobs = s.metric("chat_store_jobs_total").await.unwrap();
    let commits = s.metric("chat_store_commits_total").await.unwrap();
    assert!(jobs > commits, "no group commit happened: {jobs} jobs in {commits} commits");
    s.stop().await;

    let s = TestServer::start_in(tmp.path()).await;
    // Accounts and sessions survive: old tokens still work, passwords still check.
    assert_eq!(s.get(Some(&ana.token), "/api/v1/me").await.0, StatusCode::OK);
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "ben", "password": "password123"})).await;
    assert_eq!(st, StatusCode::OK);
    let mut bodies = s.bodies(&ben, &room).await;
    assert_eq!(bodies.len(), 200);
    bodies.sort();
    acked.sort();
    assert_eq!(bodies, acked);
    // Stream positions continue after the restart (no reuse).
    let before = s.stream_pos().await;
    let (_, v) = s.send(&ana, &room, "after restart", "after").await;
    assert_eq!(v["pos"].as_u64(), Some(before + 1));
    // A retried send from before the restart is still recognised.
    let (_, v) = s.send(&ana, &room, "msg-0", "t0").await;
    assert!(v["pos"].as_u64().unwrap() < before);
    s.stop().await;
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    TestServer::start_in(tmp.path()).await.stop().await;
    {
        let db = redb::Database::create(tmp.path().join("chat.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            // The server's settings table, as any redb reader sees it.
            let meta_table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta_table).unwrap();
            meta.insert("schema_version", 99u32.to_le_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let mut cfg = chat::Config::with_data_dir(tmp.path());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let err = chat::start(cfg, Default::default()).await.err().expect("newer schema accepted");
    assert!(err.contains("newer version of chat") && err.contains("schema 99"), "{err}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chat"))
}

#[test]
fn cli_version_help_and_config_errors() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("chat "));
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--data-dir", "--server-name", "--config", "CHAT_LISTEN"] {
        assert!(help.contains(flag), "help lacks {flag}: {help}");
    }
    let out = bin().args(["serve", "--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen:"));
    let out = bin().args(["serve"]).env("CHAT_SERVER_NAME", "bad name!").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server_name:"));
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("chat.toml");
    std::fs::write(&cfg, "listen = 5\n").unwrap();
    let out = bin().args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chat.toml"));
    let out = bin().args(["serve", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_example_and_check() {
    let tmp = tempfile::tempdir().unwrap();
    // The example is a valid file, and `check` prints the effective settings.
    let out = bin().args(["config", "example"]).output().unwrap();
    assert!(out.status.success());
    let example = tmp.path().join("example.toml");
    std::fs::write(&example, &out.stdout).unwrap();
    let out = bin().args(["config", "check"]).arg(&example).env_remove("CHAT_LISTEN").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("listen = \"127.0.0.1:8080\"") && printed.contains("[turn]"), "{printed}");
    // Environment variables count, as for `serve`.
    let out = bin().args(["config", "check"]).arg(&example).env("CHAT_LISTEN", "127.0.0.1:9999").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:9999"));
    // Bad values, unknown keys and unreadable files: exit code 2 with the key or file named.
    for (text, named) in [
        ("listen = \"nope\"\n", "listen:"),
        ("[limits]\nlive_queu = 3\n", "live_queu"),
        ("[turn]\nallocations_total = 0\n", "turn.allocations_total: must be greater than 0"),
        ("tls_cert = \"/x.pem\"\n", "tls_key:"),
        ("[limits]\ntoken_ttl_secs = \"long\"\n", "token_ttl_secs"),
    ] {
        let f = tmp.path().join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let out = bin().args(["config", "check"]).arg(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{text}: {err}");
    }
    let out = bin().args(["config", "check", "/nonexistent/chat.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/chat.toml"));
    let out = bin().args(["serve"]).env("CHAT_LOG_FORMAT", "xml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Binary::start(tmp.path(), "127.0.0.1:0", &[]);
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let (_, v) = post_json(
        &http,
        &format!("{url}/api/v1/register"),
        None,
        json!({"username": "ana", "password": "password123"}),
    )
    .await;
    let token = v["token"].as_str().unwrap().to_string();
    let (_, v) = post_json(
        &http,
        &format!("{url}/api/v1/rooms"),
        Some(&token),
        json!({"name": "General", "visibility": "public"}),
    )
    .await;
    let room = v["room_id"].as_str().unwrap().to_string();
    for i in 0..20 {
        let body = json!({"body": format!("m{i}"), "txn_id": format!("t{i}")});
        let (st, _) = post_json(&http, &format!("{url}/api/v1/rooms/{room}/messages"), Some(&token), body).await;
        assert_eq!(st, StatusCode::OK);
    }
    let mut child = server.child;
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let waited = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(waited.success(), "exit after SIGTERM: {waited:?}");

    let server = Binary::start(tmp.path(), "127.0.0.1:0", &[]);
    let bodies = message_bodies(&http, &server.url, &token, &room).await;
    assert_eq!(bodies, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    server.kill();
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Binary::start(tmp.path(), "127.0.0.1:0", &[]);
    let out = bin().args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(tmp.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.kill();
}
