//! `chat backup` and `chat restore` with the real binary: a backup taken while messages are
//! being written holds every message acknowledged before it started; a restored server serves
//! them; a server killed during a backup leaves no half-written backup file.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Binary, message_bodies, post_json};
use serde_json::json;

fn chat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chat"))
}

async fn setup(http: &reqwest::Client, url: &str) -> (String, String) {
    let (_, v) =
        post_json(http, &format!("{url}/api/v1/register"), None, json!({"username": "ana", "password": "password123"}))
            .await;
    let token = v["token"].as_str().unwrap().to_string();
    let (_, v) =
        post_json(http, &format!("{url}/api/v1/rooms"), Some(&token), json!({"name": "Log", "visibility": "public"}))
            .await;
    (token, v["room_id"].as_str().unwrap().to_string())
}

/// Signs Ana in on the server at `url` and reads every message body of `room`.
async fn bodies_as_ana(http: &reqwest::Client, url: &str, room: &str) -> Vec<String> {
    let login = json!({"username": "ana", "password": "password123"});
    let (_, v) = post_json(http, &format!("{url}/api/v1/login"), None, login).await;
    message_bodies(http, url, v["token"].as_str().unwrap(), room).await
}

/// Waits until `cond` holds, checking every 10 ms (30 s at most).
async fn until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_then_restore_keeps_every_acknowledged_message() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let server = Binary::start(data.path(), "127.0.0.1:0", &[]);
    let http = reqwest::Client::new();
    let (token, room) = setup(&http, &server.url).await;

    // Four writers send messages as fast as they are acknowledged, recording when each ack came.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, Instant)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, token, room, acked, stop) =
            (http.clone(), server.url.clone(), token.clone(), room.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = format!("w{w}-m{i}");
                let (status, _) = post_json(
                    &http,
                    &format!("{url}/api/v1/rooms/{room}/messages"),
                    Some(&token),
                    json!({"body": body, "txn_id": body}),
                )
                .await;
                if status.is_success() {
                    acked.lock().unwrap().push((body, Instant::now()));
                }
                i += 1;
            }
        }));
    }
    // The backup starts with writes acknowledged before it and goes on under them.
    until(|| acked.lock().unwrap().len() > 100).await;
    let file = out.path().join("chat-backup.redb");
    let started = Instant::now();
    let backup = tokio::task::spawn_blocking({
        let (file, dir) = (file.clone(), data.path().to_path_buf());
        move || chat().arg("backup").arg(&file).arg("--data-dir").arg(&dir).output().unwrap()
    })
    .await
    .unwrap();
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let done = Instant::now();
    until(|| acked.lock().unwrap().iter().filter(|(_, t)| *t > done).count() > 20).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&String> = acked.iter().filter(|(_, t)| *t < started).map(|(b, _)| b).collect();
    let after = acked.len() - before.len();
    assert!(before.len() > 50 && after > 0, "load too small: {} before, {after} after", before.len());
    eprintln!("{}", String::from_utf8_lossy(&backup.stdout).trim());
    server.kill();

    // Restore into an empty directory and serve it.
    let restored = tempfile::tempdir().unwrap();
    let r = chat().arg("restore").arg(&file).arg("--data-dir").arg(restored.path()).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let again = Binary::start(restored.path(), "127.0.0.1:0", &[]);
    let bodies = bodies_as_ana(&http, &again.url, &room).await;
    let mut seen = std::collections::HashSet::new();
    for b in &bodies {
        assert!(seen.insert(b.clone()), "{b} twice in the restored room");
    }
    for b in &before {
        assert!(seen.contains(*b), "{b} was acknowledged before the backup but is missing");
    }
    eprintln!(
        "{} acknowledged before the backup, all restored; {} messages in the backup in all",
        before.len(),
        bodies.len()
    );
    again.kill();

    // Restoring again over a database is refused, and so is a file that is not a backup.
    let r = chat().arg("restore").arg(&file).arg("--data-dir").arg(restored.path()).output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("already holds a database"));
    let junk = out.path().join("junk.redb");
    std::fs::write(&junk, b"not a database").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let r = chat().arg("restore").arg(&junk).arg("--data-dir").arg(empty.path()).output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("is not a chat backup"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(!empty.path().join("chat.redb").exists());
    // A backup never overwrites a file.
    let r = chat().arg("backup").arg(&file).arg("--data-dir").arg(restored.path()).output().unwrap();
    assert!(!r.status.success());
}

#[tokio::test]
async fn offline_backup_and_a_kill_during_a_backup_leaves_no_partial_file() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let server = Binary::start(data.path(), "127.0.0.1:0", &[]);
    let http = reqwest::Client::new();
    let (token, room) = setup(&http, &server.url).await;
    for i in 0..300 {
        let b = format!("m{i}");
        post_json(
            &http,
            &format!("{}/api/v1/rooms/{room}/messages", server.url),
            Some(&token),
            json!({"body": b, "txn_id": b}),
        )
        .await;
    }
    // Kill the server while it writes a backup: the file is then either complete or absent.
    let file = out.path().join("during-kill.redb");
    let mut child = chat().arg("backup").arg(&file).arg("--data-dir").arg(data.path()).spawn().unwrap();
    // The kill comes once the server has begun writing (a file appears next to the final name),
    // or, if the backup is already over by then, after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(out.path()).unwrap().next().is_none() && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the backup never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let _ = child.wait();
    if file.exists() {
        let check = tempfile::tempdir().unwrap();
        let r = chat().arg("restore").arg(&file).arg("--data-dir").arg(check.path()).output().unwrap();
        assert!(r.status.success(), "a backup file exists but is not complete: {}", String::from_utf8_lossy(&r.stderr));
    }
    // With the server stopped, the command opens the database itself.
    let offline = out.path().join("offline.redb");
    let r = chat().arg("backup").arg(&offline).arg("--data-dir").arg(data.path()).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let restored = tempfile::tempdir().unwrap();
    let r = chat().arg("restore").arg(&offline).arg("--data-dir").arg(restored.path()).output().unwrap();
    assert!(r.status.success());
    let again = Binary::start(restored.path(), "127.0.0.1:0", &[]);
    let bodies = bodies_as_ana(&http, &again.url, &room).await;
    assert_eq!(bodies.len(), 300);
    again.kill();
    // The original directory still opens cleanly after the kill.
    let reopened = Binary::start(data.path(), "127.0.0.1:0", &[]);
    reopened.kill();
}

/// The data directory, the database, backups and restored databases are the server user's
/// alone (0700 / 0600) whatever the umask; a data directory others could read is tightened.
#[tokio::test]
async fn data_backups_and_restores_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Binary::start(&data, "127.0.0.1:0", &[]);
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("chat.redb")), 0o600, "the database");
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = open.join("chat.backup");
    let out = chat().arg("backup").arg(&file).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&file), 0o600, "the backup");
    server.kill();
    let restored = open.join("restored");
    let out = chat().arg("restore").arg(&file).arg("--data-dir").arg(&restored).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&restored), 0o700, "the restored data directory");
    assert_eq!(mode(&restored.join("chat.redb")), 0o600, "the restored database");
}

/// Shared files go with a backup (beside it, in `FILE.media`) and come back with a restore.
#[tokio::test]
async fn files_travel_with_a_backup_and_a_restore() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // One address for both servers: it is the server's name, which names its files.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let server = Binary::start(data.path(), &listen, &[]);
    let http = reqwest::Client::new();
    let (token, room) = setup(&http, &server.url).await;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let res = http
        .post(format!("{}/api/v1/media/upload?filename=plan.pdf", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let up: serde_json::Value = res.json().await.unwrap();
    let uri = up["content_uri"].as_str().unwrap().to_string();
    let send = json!({"txn_id": "f1", "body": "", "file": {"content_uri": uri}});
    let (st, v) = post_json(&http, &format!("{}/api/v1/rooms/{room}/messages", server.url), Some(&token), send).await;
    assert_eq!(st, 200, "{v}");
    let file = out.path().join("with-files.redb");
    let r = chat().arg("backup").arg(&file).arg("--data-dir").arg(data.path()).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("1 files"), "{}", String::from_utf8_lossy(&r.stdout));
    assert!(out.path().join("with-files.redb.media").is_dir());
    server.kill();

    let restored = tempfile::tempdir().unwrap();
    let r = chat().arg("restore").arg(&file).arg("--data-dir").arg(restored.path()).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let again = Binary::start(restored.path(), &listen, &[]);
    // A new client: the old one keeps a connection to the killed server at that address.
    let http = reqwest::Client::new();
    let login = json!({"username": "ana", "password": "password123"});
    let (_, v) = post_json(&http, &format!("{}/api/v1/login", again.url), None, login).await;
    let token = v["token"].as_str().unwrap();
    let path = uri.strip_prefix("mxc://").unwrap();
    let res = http.get(format!("{}/api/v1/media/download/{path}", again.url)).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
    again.kill();
}
