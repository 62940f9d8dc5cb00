//! A server the test plays: its own signing key, its key document served over HTTPS (with the
//! test CA's certificate for 127.0.0.1), and requests signed with that key to real servers.
//! What a real peer can do, the test can do through it, without reaching into a server.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::Method;
use chat::events::{Event, NewEvent, Parents, ROOM_VERSION};
use chat::federation::client::FedClient;
use chat::federation::urlencode;
use chat::keys::SigningKey;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct PlayedServer {
    /// `127.0.0.1:PORT`, where its key document is served.
    pub name: String,
    pub key: Arc<SigningKey>,
    client: FedClient,
    key_fetches: Arc<AtomicUsize>,
    missing: Arc<Missing>,
    stop: CancellationToken,
}

/// The events the played server serves to `get_missing_events`, and the requests it got.
#[derive(Default)]
struct Missing {
    events: Mutex<HashMap<String, Event>>,
    requests: AtomicUsize,
}

impl Missing {
    /// Like a real server: back from the `prev_events` of `latest_events`, breadth-first, up
    /// to `limit`, not past `earliest_events`; oldest first.
    fn answer(&self, body: &Value) -> Value {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let strings = |k: &str| -> Vec<String> {
            body[k].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
        };
        let limit = body["limit"].as_u64().unwrap_or(10).min(100) as usize;
        let stop: HashSet<String> = strings("earliest_events").into_iter().collect();
        let events = self.events.lock().unwrap();
        let mut seen: HashSet<String> = HashSet::new();
        let mut frontier: Vec<String> = strings("latest_events")
            .iter()
            .filter_map(|id| events.get(id))
            .flat_map(|e| e.prev_events.clone())
            .collect();
        let mut out: Vec<&Event> = Vec::new();
        while !frontier.is_empty() && out.len() < limit {
            let mut next = Vec::new();
            for id in frontier {
                if out.len() >= limit || stop.contains(&id) || !seen.insert(id.clone()) {
                    continue;
                }
                if let Some(e) = events.get(&id) {
                    next.extend(e.prev_events.iter().cloned());
                    out.push(e);
                }
            }
            frontier = next;
        }
        out.sort_by_key(|e| e.depth);
        json!({ "events": out.iter().map(|e| e.pdu()).collect::<Vec<_>>() })
    }
}

impl PlayedServer {
    /// Listens on a free port with `cert`/`key` (for 127.0.0.1) and trusts `ca` for its requests.
    pub async fn start(ca: &Path, cert: &Path, key: &Path) -> PlayedServer {
        let (der, version) = SigningKey::generate().unwrap();
        let signing = Arc::new(SigningKey::from_der(&der, version).unwrap());
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let name = tcp.local_addr().unwrap().to_string();
        let key_fetches = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let doc = {
            let (signing, name, fetches) = (signing.clone(), name.clone(), key_fetches.clone());
            move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let doc = signing.document(&name, chat::events::now_ms()).unwrap();
                std::future::ready(axum::Json(doc))
            }
        };
        // Transactions from servers of rooms it is in are taken (and ignored).
        let accept = || std::future::ready(axum::Json(json!({ "pdus": {} })));
        let missing = Arc::new(Missing::default());
        let serve_missing = {
            let missing = missing.clone();
            move |body: axum::Json<Value>| std::future::ready(axum::Json(missing.answer(&body)))
        };
        let app = axum::Router::new()
            .route("/_matrix/key/v2/server", axum::routing::get(doc))
            .route("/_matrix/federation/v1/send/{txn}", axum::routing::put(accept))
            .route("/_matrix/federation/v1/get_missing_events/{room}", axum::routing::post(serve_missing));
        let certs = chat::tls::Certs::load(cert.to_path_buf(), key.to_path_buf()).unwrap();
        let acceptor = chat::tls::acceptor(certs).unwrap();
        let listener = chat::tls::TlsListener::start(tcp, acceptor, stop.clone()).unwrap();
        crate::serve_tls(listener, app, stop.clone());
        PlayedServer {
            name,
            key: signing,
            client: FedClient::new(Some(ca), chat::addrs::PeerPolicy::new(true), None, true).unwrap(),
            key_fetches,
            missing,
            stop,
        }
    }

    /// How many times its key document was fetched.
    pub fn key_fetches(&self) -> usize {
        self.key_fetches.load(Ordering::SeqCst)
    }

    /// Makes `events` (signed by the test) known to this server: it serves them to
    /// `get_missing_events`.
    pub fn has_events(&self, events: impl IntoIterator<Item = Event>) {
        let mut m = self.missing.events.lock().unwrap();
        for e in events {
            m.insert(e.event_id.to_string(), e);
        }
    }

    /// How many `get_missing_events` requests it was sent.
    pub fn missing_requests(&self) -> usize {
        self.missing.requests.load(Ordering::SeqCst)
    }

    /// Joins `user` (one of this server's users) to `room` through `resident`, as a server
    /// does: `make_join` gives the event's place in the room, which is built, signed and sent
    /// with `send_join`. Returns the join event and the answer (the room's state, signed).
    pub async fn join(&self, resident: &str, room: &str, user: &str) -> (Event, Value) {
        let (rid, uid) = (urlencode(room), urlencode(user));
        let path = format!("/_matrix/federation/v1/make_join/{rid}/{uid}?ver={ROOM_VERSION}");
        let (st, made) = self.signed(Method::GET, resident, &path, None).await;
        assert_eq!(st, 200, "make_join: {made}");
        let t = &made["event"];
        let ids = |k: &str| -> Vec<String> {
            t[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        let parents = Parents {
            prev_events: ids("prev_events"),
            auth_events: ids("auth_events"),
            depth: t["depth"].as_u64().unwrap(),
        };
        let new = NewEvent::state(t["type"].as_str().unwrap(), user, t["content"].clone());
        let room = chat::ids::RoomId::parse(room).unwrap();
        let mut ev = Event::build(Some(&room), user, new, parents, chat::events::now_ms());
        ev.sign(&self.name, &self.key).unwrap();
        let path = format!("/_matrix/federation/v2/send_join/{rid}/{}", urlencode(ev.event_id.as_str()));
        let (st, answer) = self.signed(Method::PUT, resident, &path, Some(ev.pdu())).await;
        assert_eq!(st, 200, "send_join: {answer}");
        (ev, answer)
    }

    /// PUTs `pdus` as one transaction to `to`; returns the per-PDU results.
    pub async fn send_txn(&self, to: &str, txn: &str, pdus: Vec<Value>) -> serde_json::Map<String, Value> {
        let path = format!("/_matrix/federation/v1/send/{txn}");
        let (st, v) = self.signed(Method::PUT, to, &path, Some(json!({ "pdus": pdus }))).await;
        assert_eq!(st, 200, "{v}");
        v["pdus"].as_object().unwrap().clone()
    }

    /// A request to `destination`, signed as this server; returns status and JSON body.
    pub async fn signed(&self, method: Method, destination: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, v) = self.client.signed(&self.key, &self.name, destination, method, path, body).await.unwrap();
        (status.as_u16(), v)
    }
}

impl Drop for PlayedServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What F needs to send events into a room it joined through a resident server: the room, the
/// events its users' messages may name as auth events, and the newest event it knows.
pub struct InRoom {
    /// The room.
    pub room_id: chat::ids::RoomId,
    /// The power levels event its users' events name as an auth event.
    pub levels: String,
    /// Each user's join event.
    pub joins: HashMap<String, Event>,
}

impl InRoom {
    /// `users` of F join `room` through `resident`, one after another.
    pub async fn join(f: &PlayedServer, resident: &str, room: &str, users: &[&str]) -> InRoom {
        let room_id = chat::ids::RoomId::parse(room).unwrap();
        let mut joins = HashMap::new();
        let mut levels = String::new();
        for u in users {
            let (join, answer) = f.join(resident, room, u).await;
            let state = answer["state"].as_array().unwrap();
            let pl = state.iter().find(|e| e["type"] == "m.room.power_levels").unwrap();
            levels = Event::from_pdu(pl, &room_id).unwrap().event_id.to_string();
            joins.insert(u.to_string(), join);
        }
        InRoom { room_id, levels, joins }
    }

    /// An event of `sender` after `prev` (depth `depth`), signed by F.
    pub fn event(&self, f: &PlayedServer, sender: &str, new: NewEvent, prev: &[String], depth: u64, n: u64) -> Event {
        self.event_also_authed_by(f, sender, new, prev, depth, n, &[])
    }

    /// [`InRoom::event`] with `more` auth events (the target's membership, for a kick).
    #[allow(clippy::too_many_arguments)]
    pub fn event_also_authed_by(
        &self,
        f: &PlayedServer,
        sender: &str,
        new: NewEvent,
        prev: &[String],
        depth: u64,
        n: u64,
        more: &[String],
    ) -> Event {
        let mut auth = vec![self.levels.clone(), self.joins[sender].event_id.to_string()];
        auth.extend(more.iter().cloned());
        let parents = Parents { prev_events: prev.to_vec(), auth_events: auth, depth };
        let mut ev = Event::build(Some(&self.room_id), sender, new, parents, chat::events::now_ms() + n);
        ev.sign(&f.name, &f.key).unwrap();
        ev
    }

    /// A message of `sender` after their join.
    pub fn message(&self, f: &PlayedServer, sender: &str, content: Value, n: u64) -> Event {
        let join = &self.joins[sender];
        self.event(
            f,
            sender,
            NewEvent::message(chat::events::M_ROOM_MESSAGE, content),
            &[join.event_id.to_string()],
            join.depth + 1,
            n,
        )
    }
}
