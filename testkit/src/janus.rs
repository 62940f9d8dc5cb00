//! The same test peer in a Janus VideoRoom (Debian's `janus`), for the media server benchmark's
//! comparison: Janus's HTTP API (a session, a publisher handle and one multistream subscriber
//! handle per peer, events by long poll), the same connections, tracks and synthetic media as
//! in our calls ([`crate::media`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::media::{MediaPeer, Parts, answer_offer};

/// A Janus process with the VideoRoom plugin and the HTTP transport on loopback.
pub struct Janus {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT/janus`.
    pub url: String,
}

impl Janus {
    /// Starts `janus` in the network namespace `netns` with a configuration written to `dir`:
    /// only VideoRoom and HTTP (on `ip`), ICE on the interface `iface` only (Janus never gathers
    /// on loopback), RTP ports `rtp_ports`. Waits until it answers.
    pub async fn start(dir: &Path, netns: &str, ip: &str, iface: &str, rtp_ports: &str) -> Janus {
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        let port = 18_088;
        let plugins = [
            "audiobridge",
            "duktape",
            "echotest",
            "lua",
            "nosip",
            "recordplay",
            "sip",
            "streaming",
            "textroom",
            "videocall",
            "voicemail",
        ]
        .map(|p| format!("libjanus_{p}.so"))
        .join(",");
        let transports =
            ["websockets", "mqtt", "nanomsg", "pfunix", "rabbitmq"].map(|p| format!("libjanus_{p}.so")).join(",");
        let conf = format!(
            "general: {{ configs_folder = \"{d}\" plugins_folder = \"{lib}/plugins\" transports_folder = \"{lib}/transports\" \
             events_folder = \"{lib}/events\" loggers_folder = \"{lib}/loggers\" debug_level = 3 }}\n\
             media: {{ rtp_port_range = \"{rtp_ports}\" }}\n\
             nat: {{ ice_enforce_list = \"{iface}\" }}\n\
             plugins: {{ disable = \"{plugins}\" }}\n\
             transports: {{ disable = \"{transports}\" }}\n\
             loggers: {{ disable = \"libjanus_jsonlog.so\" }}\n\
             events: {{ broadcast = false }}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("janus.jcfg"), conf).unwrap();
        std::fs::write(
            dir.join("janus.transport.http.jcfg"),
            format!(
                "general: {{ base_path = \"/janus\" http = true port = {port} https = false ip = \"{ip}\" }}\nadmin: {{ admin_http = false }}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: { }\n").unwrap();
        let log = std::fs::File::create(dir.join("janus.log")).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", netns, "janus", "-F"])
            .arg(dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("janus runs (apt-get install janus)");
        // Killed and waited for when dropped, also when it never answers.
        let janus = Janus { child, url: format!("http://{ip}:{port}/janus") };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.post(&janus.url).json(&json!({"janus": "create", "transaction": "probe"})).send().await.is_ok() {
                return janus;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("janus did not answer on {}; see {}", janus.url, dir.join("janus.log").display());
    }

    /// Creates VideoRoom room `room` for up to `publishers`, VP8 and Opus with audio levels.
    pub async fn create_room(&self, room: u64, publishers: usize) {
        let http = reqwest::Client::new();
        let session = call(&http, &self.url, json!({"janus": "create"})).await["data"]["id"].as_u64().unwrap();
        let s_url = format!("{}/{session}", self.url);
        let handle = call(&http, &s_url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await["data"]
            ["id"]
            .as_u64()
            .unwrap();
        let body = json!({
            "request": "create", "room": room, "publishers": publishers, "bitrate": 0,
            "videocodec": "vp8", "audiocodec": "opus", "audiolevel_ext": true, "notify_joining": false,
        });
        let r = call(&http, &format!("{s_url}/{handle}"), json!({"janus": "message", "body": body})).await;
        assert_eq!(r["plugindata"]["data"]["videoroom"], "created", "{r}");
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request to Janus's HTTP API: the answer, or why there is none (an error answer, or
/// Janus gone, as at the end of a run).
async fn try_call(http: &reqwest::Client, url: &str, mut body: Value) -> Result<Value, String> {
    body["transaction"] = json!(format!("t{}", crate::media::rand_u32()));
    let res = http.post(url).json(&body).send().await.map_err(|e| e.to_string())?;
    let v: Value = res.json().await.map_err(|e| e.to_string())?;
    if v["janus"] == "error" {
        return Err(format!("janus: {body} -> {v}"));
    }
    Ok(v)
}

/// [`try_call`] while setting up, where a failure ends the run.
async fn call(http: &reqwest::Client, url: &str, body: Value) -> Value {
    try_call(http, url, body).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Janus's answer and events for one peer's session, by handle.
struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn attach(&self) -> u64 {
        call(&self.http, &self.url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await["data"]["id"]
            .as_u64()
            .unwrap()
    }

    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<(), String> {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        try_call(&self.http, &format!("{}/{handle}", self.url), m).await.map(|_| ())
    }
}

/// Track id -> (user, purpose, stream) for the subscribe connection's tracks, from Janus's
/// offer (`a=mid`, `a=msid`) and its list of streams (mid, type, feed display name).
fn names_of(sdp: &str, streams: &[Value]) -> HashMap<String, (String, String, String)> {
    let mut out = HashMap::new();
    let (mut mid, mut msid) = (None::<String>, None::<String>);
    let mut flush = |mid: &mut Option<String>, msid: &mut Option<String>| {
        if let (Some(m), Some(t)) = (mid.take(), msid.take())
            && let Some(s) = streams.iter().find(|s| s["mid"].as_str() == Some(m.as_str()))
        {
            let who = s["feed_display"].as_str().unwrap_or_default().to_string();
            let purpose = if s["type"] == "video" { "camera" } else { "audio" };
            out.insert(t, (who.clone(), purpose.to_string(), who));
        }
    };
    for line in sdp.lines() {
        if line.starts_with("m=") {
            flush(&mut mid, &mut msid);
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim().to_string());
        } else if let Some(m) = line.strip_prefix("a=msid:") {
            msid = m.split_whitespace().nth(1).map(str::to_string);
        }
    }
    flush(&mut mid, &mut msid);
    out
}

impl MediaPeer {
    /// Joins Janus's VideoRoom `room` as `display`: publishes like [`MediaPeer::join`] and
    /// subscribes (one multistream subscriber) to every other publisher, at the simulcast
    /// layer `substream` (0 lowest).
    pub async fn join_janus(janus: &Janus, room: u64, display: &str, layers: usize, substream: u8) -> MediaPeer {
        let http = reqwest::Client::new();
        let session = call(&http, &janus.url, json!({"janus": "create"})).await["data"]["id"].as_u64().unwrap();
        let s = Arc::new(Session { http: http.clone(), url: format!("{}/{session}", janus.url) });
        let publisher = s.attach().await;
        let subscriber = s.attach().await;
        let parts = Parts::new(layers, true).await;
        let stop = parts.stop.clone();
        // Events, by long poll, into one queue.
        let (events_tx, mut events) = mpsc::channel::<Value>(256);
        {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let poll = s.http.get(format!("{}?maxev=10", s.url)).send();
                    let r = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = poll => r,
                    };
                    let Ok(r) = r else { return };
                    let Ok(v) = r.json::<Value>().await else { continue };
                    let list = if v.is_array() { v.as_array().cloned().unwrap_or_default() } else { vec![v] };
                    for e in list {
                        if std::env::var_os("JANUS_DEBUG").is_some() {
                            let mut shown = e.clone();
                            if let Some(j) = shown.get_mut("jsep") {
                                j["sdp"] = json!("…");
                            }
                            eprintln!("janus event: {shown}");
                        }
                        if events_tx.send(e).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        let sdp = parts.publish_offer().await;
        let join = json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "display": display,
            "audio": true, "video": true});
        s.message(publisher, join, Some(json!({"type": "offer", "sdp": sdp, "trickle": false}))).await.unwrap();
        // Until the publisher is answered: other publishers seen meanwhile are kept.
        let mut feeds: Vec<u64> = Vec::new();
        let mut early = Vec::new();
        loop {
            let e = tokio::time::timeout(Duration::from_secs(15), events.recv())
                .await
                .expect("janus answers the publisher")
                .unwrap();
            let data = &e["plugindata"]["data"];
            if e["sender"].as_u64() == Some(publisher) && e["jsep"]["type"] == "answer" {
                if std::env::var_os("JANUS_DEBUG").is_some() {
                    eprintln!("offer:\n{sdp}\nanswer:\n{}", e["jsep"]["sdp"].as_str().unwrap_or_default());
                }
                let answer = rtc::peer_connection::sdp::RTCSessionDescription::answer(
                    e["jsep"]["sdp"].as_str().unwrap().to_string(),
                )
                .unwrap();
                parts.publish.set_remote_description(answer).await.unwrap();
                for p in data["publishers"].as_array().into_iter().flatten() {
                    feeds.extend(p["id"].as_u64());
                }
                break;
            }
            early.push(e);
        }
        parts.run();
        // The subscriber: joins with the feeds there are, adds new ones as they come, answers
        // each offer, and asks for the wanted layer of every video stream.
        {
            let (s, parts2, stop) = (s.clone(), parts.clone(), stop.clone());
            let mut gathered = parts.sub_gathered.clone();
            tokio::spawn(async move {
                let mut subscribed: HashSet<u64> = HashSet::new();
                let mut joined = false;
                let mut offered = false; // an offer is being answered
                let mut queue = feeds;
                let mut pending = early.into_iter();
                loop {
                    if !offered && !queue.is_empty() {
                        let streams: Vec<Value> =
                            queue.drain(..).filter(|f| subscribed.insert(*f)).map(|f| json!({"feed": f})).collect();
                        if !streams.is_empty() {
                            let body = if joined {
                                json!({"request": "subscribe", "streams": streams})
                            } else {
                                json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams})
                            };
                            joined = true;
                            offered = true;
                            if s.message(subscriber, body, None).await.is_err() {
                                return;
                            }
                        }
                    }
                    let e = match pending.next() {
                        Some(e) => e,
                        None => tokio::select! {
                            _ = stop.cancelled() => return,
                            e = events.recv() => match e { Some(e) => e, None => return },
                        },
                    };
                    let data = &e["plugindata"]["data"];
                    for p in data["publishers"].as_array().into_iter().flatten() {
                        queue.extend(p["id"].as_u64());
                    }
                    if e["sender"].as_u64() == Some(subscriber) && e["jsep"]["type"] == "offer" {
                        let sdp = e["jsep"]["sdp"].as_str().unwrap_or_default();
                        let streams = data["streams"].as_array().cloned().unwrap_or_default();
                        *parts2.shared.names.lock().unwrap() = names_of(sdp, &streams);
                        let Ok(answer) = answer_offer(&parts2.subscribe, &mut gathered, sdp).await else { return };
                        let start = json!({"request": "start"});
                        let jsep = json!({"type": "answer", "sdp": answer, "trickle": false});
                        if s.message(subscriber, start, Some(jsep)).await.is_err() {
                            return;
                        }
                        let layers: Vec<Value> = streams
                            .iter()
                            .filter(|st| st["type"] == "video")
                            .map(|st| json!({"mid": st["mid"], "substream": substream}))
                            .collect();
                        if s.message(subscriber, json!({"request": "configure", "streams": layers}), None)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        offered = false;
                    }
                }
            });
        }
        let (out, _) = mpsc::channel(1);
        MediaPeer::from_parts(&parts, room.to_string(), "janus".into(), out)
    }
}
