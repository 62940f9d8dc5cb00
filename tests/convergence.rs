//! Three servers of ours over real HTTPS (issue 22): after kicks, bans and rejoins, every
//! server ends with the same room: the same memberships, the same set of messages, each
//! sender's messages in the order sent, nothing twice, nothing left queued. Every check is a
//! bounded poll of what users and operators can see (the API and `/metrics`).
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chat::events::{Event, M_ROOM_MEMBER, M_ROOM_POWER_LEVELS, NewEvent};
use chat::federation::urlencode;
use common::eventually;
use common::played::{InRoom, PlayedServer};
use common::tls::{Client, Pki};
use common::{Binary, TestServer};
use serde_json::{Value, json};

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

/// One of the three servers: in the test's process, or `chat serve` in its own (to be
/// stopped with SIGTERM and hung with SIGSTOP), on a fixed port so a restart keeps its name.
enum Host {
    InProcess(TestServer),
    Process(Node),
}

struct Node {
    dir: tempfile::TempDir,
    listen: String,
    metrics: String,
    bin: Option<Binary>,
}

/// How a server is taken out of the federation for a while.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    /// SIGTERM: it shuts down, and starts again on the same port and data.
    Down,
    /// SIGSTOP, until the others count it as down (longer than their request timeout), then
    /// SIGCONT.
    Hung,
}

/// A federation request timeout short enough for a test to outlast it.
const REQUEST_TIMEOUT_SECS: &str = "2";

impl Node {
    fn start(p: &Pki) -> Node {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let mut n = Node { dir: tempfile::tempdir().unwrap(), listen: free(), metrics: free(), bin: None };
        n.run(p);
        n
    }

    fn run(&mut self, p: &Pki) {
        let (ca, cert, key) = (p.ca.to_str().unwrap(), p.cert.to_str().unwrap(), p.key.to_str().unwrap());
        let args = [
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--federation-ca",
            ca,
            "--federation-private-addresses",
            "--metrics-listen",
            &self.metrics,
            "--limits-federation-request-timeout-secs",
            REQUEST_TIMEOUT_SECS,
            "--limits-federation-retry-max-secs",
            "2",
        ];
        self.bin = Some(Binary::start(self.dir.path(), &self.listen, &args));
    }

    fn signal(&self, sig: &str) {
        let pid = self.bin.as_ref().unwrap().child.id().to_string();
        let st = std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success(), "kill {sig} {pid}");
    }

    fn interrupt(&mut self, how: Outage) {
        match how {
            Outage::Down => {
                self.signal("-TERM");
                let mut bin = self.bin.take().unwrap();
                let st = bin.child.wait().unwrap();
                assert!(st.success(), "shut down with {st}");
            }
            Outage::Hung => self.signal("-STOP"),
        }
    }

    fn resume(&mut self, p: &Pki, how: Outage) {
        match how {
            Outage::Down => self.run(p),
            Outage::Hung => self.signal("-CONT"),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.bin.is_some() {
            self.signal("-CONT");
        }
        if let Some(bin) = self.bin.take() {
            bin.kill();
        }
    }
}

impl Host {
    fn metrics_url(&self) -> String {
        match self {
            Host::InProcess(s) => format!("http://{}/metrics", s.running().metrics_addr.unwrap()),
            Host::Process(n) => format!("http://{}/metrics", n.metrics),
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        match self {
            Host::InProcess(s) => s.dir.clone(),
            Host::Process(n) => n.dir.path().to_path_buf(),
        }
    }
}

/// Three servers; ana (A), ben (B) and cara (C) in ana's room.
struct Three {
    p: Pki,
    hosts: [Host; 3],
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
        let (p, servers, _, [ana, ben, cara]) = three_servers().await;
        Three::begin(p, servers.map(Host::InProcess), [ana, ben, cara], public).await
    }

    /// [`Three::start`] with each server in its own process.
    async fn start_processes(public: bool) -> Three {
        let p = Pki::new();
        let nodes = [Node::start(&p), Node::start(&p), Node::start(&p)];
        let ana = Client::register(&p.ca, &nodes[0].listen, "ana").await;
        let ben = Client::register(&p.ca, &nodes[1].listen, "ben").await;
        let cara = Client::register(&p.ca, &nodes[2].listen, "cara").await;
        Three::begin(p, nodes.map(Host::Process), [ana, ben, cara], public).await
    }

    async fn begin(p: Pki, hosts: [Host; 3], [ana, ben, cara]: [Client; 3], public: bool) -> Three {
        let visibility = if public { "public" } else { "private" };
        let (s, v) =
            ana.post("/api/v1/rooms", json!({"name": "Lobby", "visibility": visibility, "alias": "lobby"})).await;
        assert_eq!(s, 200, "{v}");
        let room = v["room_id"].as_str().unwrap().to_string();
        let alias = format!("#lobby:{}", ana.addr);
        let t = Three { p, hosts, ana, ben, cara, room, alias };
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

    /// ben (an admin on B) kicks or bans cara, and C and A hear of it (A must, before ana can
    /// invite her again: until then A still holds her as a member).
    async fn moderate_cara(&self, what: &str) {
        let (s, v) =
            self.ben.post(&format!("/api/v1/rooms/{}/{what}", self.room), json!({"user_id": self.cara.id})).await;
        assert_eq!(s, 200, "{what}: {v}");
        eventually!(10, format!("C hears of the {what}"), {
            self.cara.get(&format!("/api/v1/rooms/{}", self.room)).await.0 == 403
        });
        eventually!(10, format!("A hears of the {what}"), {
            self.cara_as_seen_by(&self.ana).await.as_deref() != Some("join")
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
                let twice: Vec<String> = events
                    .iter()
                    .filter(|e| ids.iter().filter(|i| **i == e["event_id"].as_str().unwrap()).count() > 1)
                    .map(|e| {
                        format!("{} {} {} {} pos {}", e["type"], e["state_key"], e["content"], e["event_id"], e["pos"])
                    })
                    .collect();
                return Err(format!(
                    "{} sees {} events, {} of them distinct; twice: {twice:?}",
                    u.id,
                    ids.len(),
                    unique.len()
                ));
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
            let (_, room) = u.get(&format!("/api/v1/rooms/{}", self.room)).await;
            let shown = json!([room["name"], room["topic"], room["visibility"], room["power_levels"]]);
            views.push((u.id.clone(), members, message_ids, shown));
        }
        for (user, members, ids, shown) in &views[1..] {
            if *shown != views[0].3 {
                return Err(format!(
                    "name, topic, visibility or power levels differ: {} sees {}, {} sees {}",
                    views[0].0, views[0].3, user, shown
                ));
            }
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
        for (s, u) in self.hosts.iter().zip(self.users()) {
            let m = reqwest::get(&s.metrics_url()).await.unwrap().text().await.unwrap();
            let queued =
                m.lines().filter(|l| l.starts_with("chat_federation_queued_events{")).any(|l| !l.ends_with(" 0"));
            if queued {
                return Err(format!("{} still has events queued", u.addr));
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
    let o = common::cli_async(&t.hosts[2].dir(), &["admin", "room", "show", &t.room], None).await;
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

impl Three {
    /// `who` (ana or ben) sets `user`'s power level; answers 200.
    async fn set_level(&self, who: &Client, user: &str, level: i64) {
        let (s, v) =
            who.post(&format!("/api/v1/rooms/{}/power", self.room), json!({"user_id": user, "level": level})).await;
        assert_eq!(s, 200, "{v}");
    }

    /// The room as A's API shows it.
    async fn room_at_a(&self) -> Value {
        self.ana.get(&format!("/api/v1/rooms/{}", self.room)).await.1
    }

    /// The newest event A holds of the room (F's events follow it), and the newest event of
    /// `kind` (with `state_key`, if given).
    async fn newest_at_a(&self, kind: &str, state_key: Option<&str>) -> (Event, Event) {
        let events = self.ana.events(&self.room).await;
        let parse = |v: &Value| serde_json::from_value::<Event>(v.clone()).unwrap();
        let found = events
            .iter()
            .find(|e| e["type"] == kind && state_key.is_none_or(|k| e["state_key"] == k))
            .unwrap_or_else(|| panic!("A holds no {kind}"));
        (parse(&events[0]), parse(found))
    }

    /// `user`'s power level as every server shows it.
    async fn levels_of(&self, user: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for u in self.users() {
            let (_, room) = u.get(&format!("/api/v1/rooms/{}", self.room)).await;
            out.push(room["power_levels"]["users"].get(user).cloned().unwrap_or(json!(0)));
        }
        out
    }
}

/// Sends `first`, then `second`, to `to` from F, in separate transactions (or in one, in that
/// order, when `together`); returns each event's result.
async fn deliver(f: &PlayedServer, to: &str, tag: &str, first: &Event, second: &Event, together: bool) -> Vec<Value> {
    let (a, b) = (first.event_id.to_string(), second.event_id.to_string());
    if together {
        let r = f.send_txn(to, &format!("{tag}-both"), vec![first.pdu(), second.pdu()]).await;
        vec![r[&a].clone(), r[&b].clone()]
    } else {
        let r1 = f.send_txn(to, &format!("{tag}-1"), vec![first.pdu()]).await;
        let r2 = f.send_txn(to, &format!("{tag}-2"), vec![second.pdu()]).await;
        vec![r1[&a].clone(), r2[&b].clone()]
    }
}

/// F (a server the test plays) holds two of the room's moderators, pam (100) and pat (50).
/// Each race is two changes made on two branches from the same event, as two servers make
/// them at the same moment: pam demotes pat while pat renames the room; later, pam demotes pat
/// while pat kicks cara. F delivers them to A, B and C in different orders (A: demotion first;
/// B: the other first; C: both in one transaction, the other first). Every server ends with
/// the state resolution's answer: the demotion holds, the rename and the kick do not, and
/// cara can still talk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_resolve_alike_in_any_order() {
    let t = Three::start(true).await;
    let f = PlayedServer::start(&t.p.ca, &t.p.cert, &t.p.key).await;
    let (pam, pat) = (format!("@pam:{}", f.name), format!("@pat:{}", f.name));
    let mut r = InRoom::join(&f, &t.ana.addr, &t.room, &[&pam, &pat]).await;
    t.set_level(&t.ana, &pam, 100).await;
    t.set_level(&t.ana, &pat, 50).await;
    t.converged("F's moderators", &[]).await;
    let orders = [(&t.ana.addr, false, false), (&t.ben.addr, true, false), (&t.cara.addr, true, true)];

    // Race 1: a demotion and a rename.
    let (tip, levels) = t.newest_at_a(M_ROOM_POWER_LEVELS, None).await;
    r.levels = levels.event_id.to_string();
    let mut demoted = t.room_at_a().await["power_levels"].clone();
    demoted["users"].as_object_mut().unwrap().remove(&pat);
    let prev = [tip.event_id.to_string()];
    let demote = r.event(&f, &pam, NewEvent::state(M_ROOM_POWER_LEVELS, "", demoted), &prev, tip.depth + 1, 1);
    let rename = NewEvent::state("m.room.name", "", json!({"name": "Renamed by pat"}));
    let rename = r.event(&f, &pat, rename, &prev, tip.depth + 1, 2);
    for (to, other_first, together) in orders {
        let (first, second) = if other_first { (&rename, &demote) } else { (&demote, &rename) };
        let results = deliver(&f, to, "race1", first, second, together).await;
        eprintln!("race 1 at {to}: {results:?}");
    }
    let took = t.converged("a demotion racing a rename", &[]).await;
    assert_eq!(t.room_at_a().await["name"], "Lobby", "the rename of a concurrently demoted moderator holds");
    assert_eq!(t.levels_of(&pat).await, vec![json!(0); 3]);
    eprintln!("demotion racing a rename: converged {took:?} after the last delivery");

    // The branches merge: each server's next event follows what it holds.
    let merged = BTreeMap::from([
        (t.ana.id.clone(), vec![t.ana.send(&t.room, "after race 1", "m1").await]),
        (t.ben.id.clone(), vec![t.ben.send(&t.room, "after race 1", "m1").await]),
    ]);
    t.converged("the merge after race 1", &[&merged]).await;

    // Race 2: pat is made a moderator again; then a demotion and a kick of cara.
    let (tip, levels) = t.newest_at_a(M_ROOM_POWER_LEVELS, None).await;
    r.levels = levels.event_id.to_string();
    let mut promoted = t.room_at_a().await["power_levels"].clone();
    promoted["users"][&pat] = json!(50);
    let promote = NewEvent::state(M_ROOM_POWER_LEVELS, "", promoted.clone());
    let promote = r.event(&f, &pam, promote, &[tip.event_id.to_string()], tip.depth + 1, 3);
    for (to, _, _) in orders {
        assert_eq!(f.send_txn(to, "promote", vec![promote.pdu()]).await[promote.event_id.as_str()], json!({}));
    }
    r.levels = promote.event_id.to_string();
    assert_eq!(t.levels_of(&pat).await, vec![json!(50); 3], "every server has pat's promotion");
    let (_, cara_join) = t.newest_at_a(M_ROOM_MEMBER, Some(&t.cara.id)).await;
    promoted["users"].as_object_mut().unwrap().remove(&pat);
    let prev = [promote.event_id.to_string()];
    let demote = r.event(&f, &pam, NewEvent::state(M_ROOM_POWER_LEVELS, "", promoted), &prev, promote.depth + 1, 4);
    let kick = NewEvent::state(M_ROOM_MEMBER, &t.cara.id, json!({"membership": "leave"}));
    let also = [cara_join.event_id.to_string()];
    let kick = r.event_also_authed_by(&f, &pat, kick, &prev, promote.depth + 1, 5, &also);
    for (to, other_first, together) in orders {
        let (first, second) = if other_first { (&kick, &demote) } else { (&demote, &kick) };
        let results = deliver(&f, to, "race2", first, second, together).await;
        eprintln!("race 2 at {to}: {results:?}");
    }
    let took = t.converged("a demotion racing a kick", &[]).await;
    assert_eq!(t.cara_as_seen_by(&t.ana).await.as_deref(), Some("join"), "the kick of a demoted moderator holds");
    assert_eq!(t.levels_of(&pat).await, vec![json!(0); 3]);
    eprintln!("demotion racing a kick: converged {took:?} after the last delivery");
    let after = t.everyone_sends("late").await;
    t.converged("messages after the races", &[&merged, &after]).await;
}

/// The same races between three of our own servers, as people make them: ana (the creator,
/// on A) demotes ben (on B) while ben renames the room; ana and ben rename it and change its
/// topic at once; ana demotes ben while ben kicks cara (on C). Each race runs three times
/// (whether the changes cross on the wire is up to timing). Every run converges: the same
/// name, topic, power levels and members on all three, and ben demoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demotions_racing_renames_and_kicks_converge_every_time() {
    let t = Three::start(true).await;
    let mut times = Vec::new();
    for i in 0..3 {
        if i > 0 {
            t.set_level(&t.ana, &t.ben.id, 100).await;
            t.converged("ben promoted again", &[]).await;
        }
        let settings = format!("/api/v1/rooms/{}/settings", t.room);
        let power = format!("/api/v1/rooms/{}/power", t.room);
        let ((s1, v1), (s2, v2)) = tokio::join!(
            t.ana.post(&power, json!({"user_id": t.ben.id, "level": 0})),
            t.ben.post(&settings, json!({"name": format!("Ben's name {i}")})),
        );
        assert_eq!(s1, 200, "{v1}");
        assert!(s2 == 200 || s2 == 403, "{s2} {v2}");
        times.push(t.converged(&format!("demotion racing a rename, run {i}"), &[]).await);
        assert_eq!(t.levels_of(&t.ben.id).await, vec![json!(0); 3]);

        t.set_level(&t.ana, &t.ben.id, 100).await;
        t.converged("ben promoted again", &[]).await;
        // Renames and topic changes from two servers at once.
        let ((s1, v1), (s2, v2), (s3, v3)) = tokio::join!(
            t.ana.post(&settings, json!({"name": format!("Ana's name {i}"), "topic": format!("Ana's topic {i}")})),
            t.ben.post(&settings, json!({"name": format!("Ben's name {i}")})),
            t.ben.post(&settings, json!({"topic": format!("Ben's topic {i}")})),
        );
        assert!(s1 == 200 && s2 == 200 && s3 == 200, "{v1} {v2} {v3}");
        times.push(t.converged(&format!("concurrent renames and topics, run {i}"), &[]).await);
        let kick = format!("/api/v1/rooms/{}/kick", t.room);
        let ((s1, v1), (s2, v2)) = tokio::join!(
            t.ana.post(&power, json!({"user_id": t.ben.id, "level": 0})),
            t.ben.post(&kick, json!({"user_id": t.cara.id})),
        );
        assert_eq!(s1, 200, "{v1}");
        assert!(s2 == 200 || s2 == 403, "{s2} {v2}");
        // A kicked cara cannot read the room on C: first agreement on her, then her return.
        let start = Instant::now();
        eventually!(CONVERGE_SECS, "A, B and C agree on cara", {
            let (a, b) = (t.cara_as_seen_by(&t.ana).await, t.cara_as_seen_by(&t.ben).await);
            let at_c = t.cara.get(&format!("/api/v1/rooms/{}", t.room)).await.0;
            a == b && ((a.as_deref() == Some("join")) == (at_c == 200))
        });
        if t.cara_as_seen_by(&t.ana).await.as_deref() != Some("join") {
            t.enter(&t.cara).await;
        }
        t.converged(&format!("demotion racing a kick, run {i}"), &[]).await;
        times.push(start.elapsed());
        assert_eq!(t.levels_of(&t.ben.id).await, vec![json!(0); 3]);
    }
    let sent = t.everyone_sends("late").await;
    t.converged("messages after the races", &[&sent]).await;
    eprintln!("races converged in {times:?}");
}

impl Three {
    fn node(&mut self, i: usize) -> &mut Node {
        match &mut self.hosts[i] {
            Host::Process(n) => n,
            Host::InProcess(_) => panic!("server {i} runs in the test's process"),
        }
    }

    /// Brings server `i` back after an outage.
    fn resume(&mut self, i: usize, how: Outage) {
        let Three { p, hosts, .. } = self;
        match &mut hosts[i] {
            Host::Process(n) => n.resume(p, how),
            Host::InProcess(_) => panic!("server {i} runs in the test's process"),
        }
    }

    /// Waits until every server but `i` counts server `i` as down (its deliveries failing).
    async fn counted_down(&self, i: usize) {
        let name = self.users()[i].addr.clone();
        let line = format!("chat_federation_destination_failing{{destination=\"{name}\"}} 1");
        for (j, host) in self.hosts.iter().enumerate().filter(|(j, _)| *j != i) {
            let url = host.metrics_url();
            eventually!(CONVERGE_SECS, format!("server {j} counts {name} as down"), {
                reqwest::get(&url).await.unwrap().text().await.unwrap().lines().any(|l| l == line)
            });
        }
    }
}

/// A server goes down (SIGTERM, then a restart on the same port and data) or hangs (SIGSTOP
/// until the others count it as down, past their request timeout, then SIGCONT): first cara's
/// server C, then the creator's server A. Meanwhile the other two keep sending and change the
/// topic. Once it is back, all three hold the same room (the topic too), with every message
/// once and in order; then its own user's messages reach the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_or_hung_catches_up_and_loses_nothing() {
    let mut t = Three::start_processes(true).await;
    let mut all: Vec<BTreeMap<String, Vec<String>>> = Vec::new();
    let mut times = Vec::new();
    for (round, (victim, how)) in
        [(2, Outage::Down), (2, Outage::Hung), (0, Outage::Down), (0, Outage::Hung)].into_iter().enumerate()
    {
        t.node(victim).interrupt(how);
        let awake: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
        let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in 0..N {
            for &i in &awake {
                let u = t.users()[i];
                let id = u.send(&t.room, &format!("round {round} {k} from {}", u.id), &format!("r{round}-{k}")).await;
                sent.entry(u.id.clone()).or_default().push(id);
            }
        }
        // ben (an admin) changes the topic while the victim is away.
        let topic = format!("topic of round {round}");
        let (s, v) = t.ben.post(&format!("/api/v1/rooms/{}/settings", t.room), json!({"topic": topic})).await;
        assert_eq!(s, 200, "{v}");
        if how == Outage::Hung {
            t.counted_down(victim).await;
        }
        t.resume(victim, how);
        all.push(sent);
        let refs: Vec<&BTreeMap<String, Vec<String>>> = all.iter().collect();
        let took = t.converged(&format!("server {victim} {how:?}"), &refs).await;
        let (_, room) = t.users()[victim].get(&format!("/api/v1/rooms/{}", t.room)).await;
        assert_eq!(room["topic"], topic.as_str());
        times.push((victim, how, took));
        // The victim's own user talks again.
        let u = t.users()[victim];
        let id = u.send(&t.room, &format!("back after round {round}"), &format!("back-{round}")).await;
        all.push(BTreeMap::from([(u.id.clone(), vec![id])]));
        let refs: Vec<&BTreeMap<String, Vec<String>>> = all.iter().collect();
        t.converged(&format!("server {victim}'s user after {how:?}"), &refs).await;
    }
    eprintln!("outages: converged after the server came back in {times:?}");
}
