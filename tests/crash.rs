//! Crash consistency: the real binary under a steady write load is killed with SIGKILL at
//! random moments, restarted on the same data directory, and checked: every acknowledged
//! message is there exactly once, nothing unsent appears, and retrying an unanswered send with
//! its txn_id never duplicates it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const ROUNDS: usize = 20;
const SENDERS: usize = 4;

fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["serve", "--listen", "127.0.0.1:0", "--server-name", "crash.test", "--data-dir"])
        .arg(dir)
        .env("CHAT_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("server did not start cleanly");
    (child, url.trim_end_matches('/').to_string())
}

/// A small deterministic generator (the seed is printed so a failure can be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

async fn bodies(http: &reqwest::Client, url: &str, token: &str, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&before={c}")).unwrap_or_default();
        let v: Value = http
            .get(format!("{url}/api/v1/rooms/{room}/messages?limit=200{q}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in v["events"].as_array().unwrap() {
            if e["type"] == "m.room.message" {
                out.push(e["content"]["body"].as_str().unwrap().to_string());
            }
        }
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_write_load_loses_and_duplicates_nothing() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let (mut child, mut url) = start(data.path());
    let v: Value = http
        .post(format!("{url}/api/v1/register"))
        .json(&json!({"username": "writer", "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let v: Value = http
        .post(format!("{url}/api/v1/rooms"))
        .bearer_auth(&token)
        .json(&json!({"name": "Crash", "visibility": "private"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = v["room_id"].as_str().unwrap().to_string();

    // txn id -> body; acked = the server answered 200 (so it must be stored).
    let attempted: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut verified = 0usize;
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for sender in 0..SENDERS {
            let (http, url, token, room) = (http.clone(), url.clone(), token.clone(), room.clone());
            let (attempted, acked) = (attempted.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let txn = format!("r{round}s{sender}n{n}");
                    let body = format!("msg {txn}");
                    attempted.lock().unwrap().insert(txn.clone(), body.clone());
                    let res = http
                        .post(format!("{url}/api/v1/rooms/{room}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"body": body, "txn_id": txn}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert(txn);
                        }
                        _ => return, // the server is gone
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.next() % 400)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }

        let (c, u) = start(data.path());
        (child, url) = (c, u);
        let stored = bodies(&http, &url, &token, &room).await;
        let attempted_now = attempted.lock().unwrap().clone();
        let acked_now = acked.lock().unwrap().clone();
        let mut seen = BTreeSet::new();
        for b in &stored {
            assert!(seen.insert(b.clone()), "round {round}: {b:?} stored twice (seed {seed})");
            let txn = b.strip_prefix("msg ").unwrap();
            assert!(attempted_now.contains_key(txn), "round {round}: {b:?} was never sent (seed {seed})");
        }
        for txn in &acked_now {
            assert!(seen.contains(&format!("msg {txn}")), "round {round}: acknowledged {txn} lost (seed {seed})");
        }
        verified = acked_now.len();

        // Retry every send whose answer was lost: with its txn id it lands exactly once.
        for (txn, body) in attempted_now.iter().filter(|(t, _)| !acked_now.contains(*t)) {
            let r = http
                .post(format!("{url}/api/v1/rooms/{room}/messages"))
                .bearer_auth(&token)
                .json(&json!({"body": body, "txn_id": txn}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "retry of {txn}: {}", r.status());
            acked.lock().unwrap().insert(txn.clone());
        }
        let stored = bodies(&http, &url, &token, &room).await;
        let unique: BTreeSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "round {round}: a retry duplicated a message (seed {seed})");
        assert_eq!(stored.len(), attempted.lock().unwrap().len(), "round {round}: count mismatch (seed {seed})");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    println!("crash test: {ROUNDS} SIGKILL rounds, {verified} acknowledged messages verified");
    assert!(verified > ROUNDS * SENDERS, "too little load to mean anything: {verified} messages");
}
