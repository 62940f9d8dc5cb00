//! Three servers of ours over real HTTPS (issue 22): after kicks, bans and rejoins, every
//! server ends with the same room: the same memberships, the same set of messages, each
//! sender's messages in the order sent, nothing twice, nothing left queued. Every check is a
//! bounded poll of what users and operators can see (the API and `/metrics`).
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chat::federation::urlencode;
use common::TestServer;
use common::eventually;
use common::tls::{Client, Pki};
use serde_json::json;

/// How long a convergence check may take before it counts as a failure.
const CONVERGE_SECS: u64 = 30;
/// Messages each user sends after a rejoin.
const N: usize = 8;

/// Three servers over HTTPS from one CA, with ana on A, ben on B and cara on C; also A's name.
async fn three_servers() -> (Pki, [TestServer; 3], String, [Client; 3]) {
    let p = Pki::new();
    let servers = [
        TestServer::federating(&p, |_| {}).await,
        TestServer::federating(&p, |_| {}).await,
        TestServer::federating(&p, |_| {}).await,
    ];
    let na = p.name_of(&servers[0]).await;
    let ana = Client::register(&p.ca, &na, "ana").await;
    let ben = Client::register(&p.ca, &p.name_of(&servers[1]).await, "ben").await;
    let cara = Client::register(&p.ca, &p.name_of(&servers[2]).await, "cara").await;
    (p, servers, na, [ana, ben, cara])
}

/// Three servers; ana (A), ben (B) and cara (C) in ana's room.
struct Three {
    p: Pki,
    servers: [TestServer; 3],
    ana: Client,
    ben: Client,
    cara: Client,
    room: String,
    alias: String,
}

impl Three {
    /// ana creates a room (public with an alias, or private) and makes ben, who joins by alias
    /// or invitation, an admin; cara joins the same way.
    async fn start(public: bool) -> Three {
        let (p, servers, na, [ana, ben, cara]) = three_servers().await;
        let visibility = if public { "public" } else { "private" };
        let (s, v) =
            ana.post("/api/v1/rooms", json!({"name": "Lobby", "visibility": visibility, "alias": "lobby"})).await;
        assert_eq!(s, 200, "{v}");
        let room = v["room_id"].as_str().unwrap().to_string();
        let alias = format!("#lobby:{na}");
        let t = Three { p, servers, ana, ben, cara, room, alias };
        t.enter(&t.ben).await;
        let (s, v) =
            t.ana.post(&format!("/api/v1/rooms/{}/power", t.room), json!({"user_id": t.ben.id, "level": 100})).await;
        assert_eq!(s, 200, "{v}");
        t.enter(&t.cara).await;
        t.converged("the start", &[]).await;
        t
    }

    /// `user` joins: by alias into a public room, after an invitation into a private one.
    async fn enter(&self, user: &Client) {
        let public = self.ana.get(&format!("/api/v1/rooms/{}", self.room)).await.1["visibility"] == "public";
        if !public {
            let (s, v) =
                self.ana.post(&format!("/api/v1/rooms/{}/invite", self.room), json!({"user_id": user.id})).await;
            assert_eq!(s, 200, "{v}");
            let mine = || async {
                let (_, v) = user.get("/api/v1/rooms").await;
                v["rooms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["room_id"] == self.room.as_str() && r["membership"] == "invite")
            };
            eventually!(10, format!("{} sees the invitation", user.id), mine().await);
            let (s, v) = user.post(&format!("/api/v1/rooms/{}/join", self.room), json!({})).await;
            assert_eq!(s, 200, "{v}");
        } else {
            let (s, v) = user.post(&format!("/api/v1/join/{}", urlencode(&self.alias)), json!({})).await;
            assert_eq!(s, 200, "{v}");
        }
    }

    fn users(&self) -> [&Client; 3] {
        [&self.ana, &self.ben, &self.cara]
    }

    /// ben (an admin on B) does `what` (kick, ban, unban) to cara, and C hears of it.
    async fn moderate_cara(&self, what: &str) {
        let (s, v) =
            self.ben.post(&format!("/api/v1/rooms/{}/{what}", self.room), json!({"user_id": self.cara.id})).await;
        assert_eq!(s, 200, "{what}: {v}");
        eventually!(10, format!("C hears of the {what}"), {
            self.cara.get(&format!("/api/v1/rooms/{}", self.room)).await.0 == 403
        });
    }

    /// Each of ana, ben and cara sends `N` messages, interleaved; returns their ids per sender
    /// in the order sent.
    async fn everyone_sends(&self, tag: &str) -> BTreeMap<String, Vec<String>> {
        let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..N {
            for u in self.users() {
                let id = u.send(&self.room, &format!("{tag} {i} from {}", u.id), &format!("{tag}-{i}")).await;
                sent.entry(u.id.clone()).or_default().push(id);
            }
        }
        sent
    }

    /// Waits (bounded) until the three servers show the same room: the same members, every
    /// message of `sent` once and each sender's in order, the same set of message ids, no
    /// event twice, and no event left queued for another server. Returns the time it took.
    async fn converged(&self, step: &str, sent: &[&BTreeMap<String, Vec<String>>]) -> Duration {
        let start = Instant::now();
        loop {
            let last = match self.check(sent).await {
                Ok(()) => return start.elapsed(),
                Err(e) => e,
            };
            assert!(start.elapsed() < Duration::from_secs(CONVERGE_SECS), "not converged after {step}: {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn check(&self, sent: &[&BTreeMap<String, Vec<String>>]) -> Result<(), String> {
        let mut views = Vec::new();
        for u in self.users() {
            let (s, v) = u.get(&format!("/api/v1/rooms/{}/members", self.room)).await;
            if s != 200 {
                return Err(format!("{} cannot read the members: {s} {v}", u.id));
            }
            let mut members: Vec<(String, String)> = v["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (m["user_id"].as_str().unwrap().to_string(), m["membership"].as_str().unwrap().to_string()))
                .collect();
            members.sort();
            // Oldest first.
            let events: Vec<serde_json::Value> = u.events(&self.room).await.into_iter().rev().collect();
            let ids: Vec<String> = events.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
            let unique: BTreeSet<&String> = ids.iter().collect();
            if unique.len() != ids.len() {
                return Err(format!("{} sees {} events, {} of them distinct", u.id, ids.len(), unique.len()));
            }
            let messages: Vec<(String, String)> = events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| (e["sender"].as_str().unwrap().to_string(), e["event_id"].as_str().unwrap().to_string()))
                .collect();
            for batch in sent {
                for (sender, wanted) in batch.iter() {
                    let seen: Vec<&String> = messages
                        .iter()
                        .filter(|(s, id)| s == sender && wanted.contains(id))
                        .map(|(_, id)| id)
                        .collect();
                    let wanted: Vec<&String> = wanted.iter().collect();
                    if seen != wanted {
                        return Err(format!(
                            "{} sees {} of {}'s {} messages (in order: {})",
                            u.id,
                            seen.len(),
                            sender,
                            wanted.len(),
                            seen.len() == wanted.len()
                        ));
                    }
                }
            }
            let message_ids: BTreeSet<String> = messages.into_iter().map(|(_, id)| id).collect();
            views.push((u.id.clone(), members, message_ids));
        }
        for (user, members, ids) in &views[1..] {
            if *members != views[0].1 {
                return Err(format!(
                    "members differ: {} sees {:?}, {} sees {:?}",
                    views[0].0, views[0].1, user, members
                ));
            }
            if *ids != views[0].2 {
                return Err(format!(
                    "messages differ: {} has {}, {} has {}",
                    views[0].0,
                    views[0].2.len(),
                    user,
                    ids.len()
                ));
            }
        }
        for s in &self.servers {
            let url = format!("http://{}/metrics", s.running().metrics_addr.unwrap());
            let m = reqwest::get(&url).await.unwrap().text().await.unwrap();
            let queued =
                m.lines().filter(|l| l.starts_with("chat_federation_queued_events{")).any(|l| !l.ends_with(" 0"));
            if queued {
                return Err(format!("{} still has events queued", s.addr));
            }
        }
        Ok(())
    }

    /// cara's membership as the members list of `user`'s server shows it.
    async fn cara_as_seen_by(&self, user: &Client) -> Option<String> {
        let (_, v) = user.get(&format!("/api/v1/rooms/{}/members", self.room)).await;
        let list = v["members"].as_array()?.iter();
        list.clone()
            .find(|m| m["user_id"] == self.cara.id.as_str())
            .map(|m| m["membership"].as_str().unwrap_or("").to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_then_rejoin_with_no_other_local_member() {
    let t = Three::start(true).await;
    // eve (on A) is in the room when cara is kicked, and leaves while C is out of it.
    let eve = Client::register(&t.p.ca, &t.ana.addr, "eve").await;
    t.enter(&eve).await;
    let before = t.everyone_sends("before").await;
    t.converged("messages before the kick", &[&before]).await;

    t.moderate_cara("kick").await;
    let (s, v) = eve.post(&format!("/api/v1/rooms/{}/leave", t.room), json!({})).await;
    assert_eq!(s, 200, "{v}");
    t.enter(&t.cara).await;
    let rejoined = t.converged("cara's rejoin", &[&before]).await;
    let after = t.everyone_sends("after").await;
    let took = t.converged("messages after the rejoin", &[&before, &after]).await;
    eprintln!("kick/rejoin: rejoin converged in {rejoined:?}, {} messages in {took:?}", 3 * N);

    // An operator on C sees whom C sends the room's events to, and the memberships it holds.
    let o = common::cli_async(&t.servers[2].dir, &["admin", "room", "show", &t.room], None).await;
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    let (na, nb) = (&t.ana.addr, &t.ben.addr);
    assert!(
        out.contains(&format!("sends new events to: {}", [na.as_str(), nb.as_str()].join(", ")))
            || out.contains(&format!("sends new events to: {nb}, {na}")),
        "{out}"
    );
    assert!(out.contains(&format!("{} (join)", t.cara.id)) && !out.contains(&eve.id), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_unban_then_rejoin_with_no_other_local_member() {
    let t = Three::start(true).await;
    t.moderate_cara("ban").await;
    // While cara is out, the room moves on without C.
    let away = t.ana.send(&t.room, "while cara is banned", "away").await;
    let (s, v) = t.ben.post(&format!("/api/v1/rooms/{}/unban", t.room), json!({"user_id": t.cara.id})).await;
    assert_eq!(s, 200, "{v}");
    eventually!(10, "C hears of the unban", t.cara_as_seen_by(&t.ana).await.is_none());
    t.enter(&t.cara).await;
    let away = BTreeMap::from([(t.ana.id.clone(), vec![away])]);
    let rejoined = t.converged("cara's rejoin", &[&away]).await;
    let after = t.everyone_sends("after").await;
    let took = t.converged("messages after the rejoin", &[&away, &after]).await;
    eprintln!("ban/unban/rejoin: rejoin converged in {rejoined:?}, {} messages in {took:?}", 3 * N);
}

/// A join through A reaches B (relayed by A, signed by C), so B sends to C at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_server_learns_of_a_join_through_another() {
    let (_p, servers, na, [ana, ben, cara]) = three_servers().await;
    let (s, v) = ana.post("/api/v1/rooms", json!({"name": "Quiet", "visibility": "public", "alias": "quiet"})).await;
    assert_eq!(s, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    let alias = urlencode(&format!("#quiet:{na}"));
    assert_eq!(ben.post(&format!("/api/v1/join/{alias}"), json!({})).await.0, 200);
    assert_eq!(cara.post(&format!("/api/v1/join/{alias}"), json!({})).await.0, 200);
    let start = Instant::now();
    eventually!(5, "B lists cara as joined", {
        let (_, v) = ben.get(&format!("/api/v1/rooms/{room}/members")).await;
        v["members"].as_array().unwrap().iter().any(|m| m["user_id"] == cara.id.as_str() && m["membership"] == "join")
    });
    let learned = start.elapsed();
    // Nothing else happens in the room: only B's own sending can bring this to C.
    let id = ben.send(&room, "right after cara came", "quiet-1").await;
    let sent = Instant::now();
    eventually!(2, "ben's message reaches C", {
        cara.events(&room).await.iter().any(|e| e["event_id"] == id.as_str())
    });
    eprintln!("third server: B learned of the join in {learned:?}; the message reached C in {:?}", sent.elapsed());
    drop(servers);
}

/// cara, kicked from a private room, is invited again: the invitation reaches her although C
/// holds a full (old) copy of the room, and she can join and talk again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinvitation_after_a_kick_reaches_the_invitee() {
    let t = Three::start(false).await;
    t.moderate_cara("kick").await;
    t.enter(&t.cara).await;
    let after = t.everyone_sends("back").await;
    let took = t.converged("cara's return to the private room", &[&after]).await;
    eprintln!("re-invitation: {} messages converged in {took:?}", 3 * N);
}
