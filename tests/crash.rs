//! Crash consistency: the real binary under a steady write load is killed with SIGKILL at
//! random moments, restarted on the same data directory, and checked: every acknowledged
//! message is there exactly once, nothing unsent appears, and retrying an unanswered send with
//! its txn_id never duplicates it.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Binary, message_bodies, post_json};
use serde_json::json;

fn start(dir: &std::path::Path) -> Binary {
    Binary::start(dir, "127.0.0.1:0", &["--server-name", "crash.test"])
}

const ROUNDS: usize = 20;
const SENDERS: usize = 4;

/// A small deterministic generator (the seed is printed so a failure can be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_write_load_loses_and_duplicates_nothing() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let mut server = start(data.path());
    let mut url = server.url.clone();
    let creds = json!({"username": "writer", "password": "password123"});
    let (_, v) = post_json(&http, &format!("{url}/api/v1/register"), None, creds).await;
    let token = v["token"].as_str().unwrap().to_string();
    let room_req = json!({"name": "Crash", "visibility": "private"});
    let (_, v) = post_json(&http, &format!("{url}/api/v1/rooms"), Some(&token), room_req).await;
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
        server.kill(); // SIGKILL
        for t in tasks {
            t.await.unwrap();
        }

        server = start(data.path());
        url = server.url.clone();
        let stored = message_bodies(&http, &url, &token, &room).await;
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
        let stored = message_bodies(&http, &url, &token, &room).await;
        let unique: BTreeSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "round {round}: a retry duplicated a message (seed {seed})");
        assert_eq!(stored.len(), attempted.lock().unwrap().len(), "round {round}: count mismatch (seed {seed})");
    }
    server.kill();
    println!("crash test: {ROUNDS} SIGKILL rounds, {verified} acknowledged messages verified");
    assert!(verified > ROUNDS * SENDERS, "too little load to mean anything: {verified} messages");
}
