//! The test kit, shared by the integration tests, the benches and `chat-load`: the real server
//! in-process on port 0 with a temporary data dir, the built binary as a process, and real
//! HTTP, WebSocket and TLS clients (with a throwaway CA). The helpers the tests use panic on
//! failure; the ones the load tool uses return errors.
#![allow(clippy::unwrap_used, missing_docs)]

// The clients, for tests that build their own requests.
pub use {reqwest, tokio_tungstenite};

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The built `chat` binary: `CHAT_BIN`, else the `chat` beside the running program (the load
/// tool in `target/release/`) or one directory up (a test in `target/debug/deps/`).
pub fn chat_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHAT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let beside = exe.with_file_name("chat");
    match exe.parent().and_then(Path::parent).map(|up| up.join("chat")) {
        Some(up) if !beside.is_file() && up.is_file() => up,
        _ => beside,
    }
}

/// Starts `chat serve` (`args` after `serve`) with its output going nowhere but the first line
/// of stdout, which names its URL; returns the process and `http(s)://ADDR`.
pub fn spawn_serve(
    bin: &Path,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> Result<(std::process::Child, String), String> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(bin)
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.split_whitespace().find(|w| w.starts_with("http")) {
        Some(url) => Ok((child, url.trim_end_matches('/').to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the server did not print its URL: {line:?}"))
        }
    }
}

/// A live connection.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the live channel at `ws://HOST/ws` (`query` such as `?since=5`) as `token`.
pub async fn live_connect(
    host: &str,
    token: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{host}/ws{query}").into_client_request()?;
    use tokio_tungstenite::tungstenite::{Error, http::HeaderValue};
    let header = |v: String| HeaderValue::try_from(v).map_err(|e| Error::HttpFormat(e.into()));
    req.headers_mut().insert("authorization", header(format!("Bearer {token}"))?);
    if let Some(o) = origin {
        req.headers_mut().insert("origin", header(o.to_string())?);
    }
    let (stream, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
    Ok(stream)
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub url: String,
    pub dir: PathBuf,
    shutdown: CancellationToken,
    running: Option<chat::Running>,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
}

/// Tests sign up many users from 127.0.0.1 and send as fast as acknowledgements come: the
/// per-IP and per-user rates a real server uses would refuse them. Tests of those limits set
/// them back with `start_tuned`.
pub fn relax_rates(config: &mut chat::Config) {
    config.limits.registrations_per_ip_per_minute = 1_000_000;
    config.limits.logins_per_ip_per_minute = 1_000_000;
    config.limits.messages_per_user_per_minute = 1_000_000_000;
    config.limits.rooms_per_user_per_hour = 1_000_000;
}

/// The same for the binary, as a config file.
pub const RELAXED_RATES_TOML: &str = "[limits]\nregistrations_per_ip_per_minute = 1000000\n\
    logins_per_ip_per_minute = 1000000\nmessages_per_user_per_minute = 1000000000\n\
    rooms_per_user_per_hour = 1000000\n";

/// Serves `app` on `listener` until `stop` as the real server serves HTTPS (HTTP/2 or
/// HTTP/1.1, as the client chooses), for the servers and endpoints a test plays.
pub fn serve_tls(listener: chat::tls::TlsListener, app: axum::Router, stop: tokio_util::sync::CancellationToken) {
    let limits = chat::web::serve::ConnLimits {
        header_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        max_connections: 1_000,
        max_connections_per_ip: 1_000,
        unlimited: Vec::new().into(),
    };
    let open = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(chat::web::serve::serve(listener, app, stop, limits, open));
}

pub struct User {
    pub id: String,
    pub name: String,
    pub token: String,
}

impl TestServer {
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_with(chat::Config::with_data_dir(&dir)).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_in(dir: &Path) -> Self {
        Self::start_with(chat::Config::with_data_dir(dir)).await
    }

    pub async fn start_with(mut config: chat::Config) -> Self {
        relax_rates(&mut config);
        config.listen = "127.0.0.1:0".parse().unwrap();
        // Tests run in parallel: each relay on a free port, and relaying between local browsers.
        config.turn.listen = Some("127.0.0.1:0".parse().unwrap());
        config.turn.allow_private_peers = true;
        config.sfu.ports = (0, 0);
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        Self::start_at(config).await
    }

    /// Starts with the test defaults, then `tune` applied to the config.
    pub async fn start_tuned(tune: impl FnOnce(&mut chat::Config)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = chat::Config::with_data_dir(tmp.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.turn.listen = Some("127.0.0.1:0".parse().unwrap());
        config.turn.allow_private_peers = true;
        config.sfu.ports = (0, 0);
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        relax_rates(&mut config);
        tune(&mut config);
        let mut s = Self::start_at(config).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server that speaks HTTPS with `p`'s certificate and federates over loopback,
    /// trusting `p`'s CA, then `tune` applied to the config.
    pub async fn federating(p: &tls::Pki, tune: impl FnOnce(&mut chat::Config)) -> Self {
        let (cert, key, ca) = (p.cert.clone(), p.key.clone(), p.ca.clone());
        Self::start_tuned(move |c| {
            c.tls.cert = Some(cert);
            c.tls.key = Some(key);
            c.federation_ca = Some(ca);
            c.federation_private_addresses = true;
            tune(c);
        })
        .await
    }

    /// Starts on exactly `config.listen` (e.g. to restart on the same port).
    pub async fn start_at(config: chat::Config) -> Self {
        let shutdown = CancellationToken::new();
        let running = chat::start(config.clone(), shutdown.clone()).await.unwrap();
        let addr = running.addr;
        TestServer {
            addr,
            url: format!("http://{addr}"),
            dir: config.data_dir.clone(),
            shutdown,
            running: Some(running),
            _tmp: None,
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        }
    }

    pub fn running(&self) -> &chat::Running {
        self.running.as_ref().unwrap()
    }

    /// One value of the server's `/metrics` (a line `NAME VALUE`, labels included in `name`).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.running().metrics_addr.unwrap());
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// The stream position (events committed in all), as `/metrics` shows it.
    pub async fn stream_pos(&self) -> u64 {
        self.metric("chat_stream_position").await.expect("chat_stream_position in /metrics") as u64
    }

    /// Waits until `/metrics` shows `name` satisfying `ok`, checking every 20 ms (10 s at most).
    pub async fn until_metric(&self, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.metric(name).await.filter(|v| ok(*v)) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "metric {name} never got there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop; returns the temp dir (if owned) so the data can be reopened.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await.unwrap();
        }
        self._tmp.take()
    }

    pub async fn register(&self, name: &str) -> User {
        let (status, v) =
            self.post(None, "/api/v1/register", json!({"username": name, "password": "password123"})).await;
        assert_eq!(status, StatusCode::OK, "register {name}: {v}");
        User {
            id: v["user_id"].as_str().unwrap().into(),
            name: name.into(),
            token: v["token"].as_str().unwrap().into(),
        }
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        answer(self.http.post(format!("{}{path}", self.url)).json(&body), token).await
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> (StatusCode, Value) {
        answer(self.http.get(format!("{}{path}", self.url)), token).await
    }

    pub async fn put(&self, token: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        answer(self.http.put(format!("{}{path}", self.url)).json(&body), token).await
    }

    /// Ana and Ben registered; Ana created the public room "General" and Ben joined it.
    pub async fn ana_and_ben_in_general(&self) -> (User, User, String) {
        let ana = self.register("ana").await;
        let ben = self.register("ben").await;
        let room = self.create_room(&ana, "General", "public").await;
        self.join(&ben, &room).await;
        (ana, ben, room)
    }

    pub async fn create_room(&self, u: &User, name: &str, visibility: &str) -> String {
        let (s, v) = self.post(Some(&u.token), "/api/v1/rooms", json!({"name": name, "visibility": visibility})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["room_id"].as_str().unwrap().to_string()
    }

    pub async fn join(&self, u: &User, room: &str) {
        let (s, v) = self.post(Some(&u.token), &format!("/api/v1/rooms/{room}/join"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    pub async fn send(&self, u: &User, room: &str, body: &str, txn: &str) -> (StatusCode, Value) {
        self.post(Some(&u.token), &format!("/api/v1/rooms/{room}/messages"), json!({"body": body, "txn_id": txn})).await
    }

    /// All message bodies of a room, oldest first, following the cursor.
    pub async fn bodies(&self, u: &User, room: &str) -> Vec<String> {
        message_bodies(&self.http, &self.url, &u.token, room).await
    }

    /// Connects with `since` and returns the raw stream and every frame before `ready`.
    pub async fn raw_until_ready(&self, u: &User, since: u64) -> (WsStream, Vec<Value>) {
        let mut stream =
            live_connect(&self.addr.to_string(), &u.token, &format!("?since={since}"), None).await.unwrap();
        let mut frames = Vec::new();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
            let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            if v["t"] == "ready" || v["t"] == "resync" {
                frames.push(v);
                return (stream, frames);
            }
            frames.push(v);
        }
    }

    pub async fn ws(&self, u: &User, since: Option<u64>) -> Ws {
        self.ws_with(u, since, None).await.unwrap()
    }

    pub async fn ws_with(
        &self,
        u: &User,
        since: Option<u64>,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let q = since.map(|s| format!("?since={s}")).unwrap_or_default();
        let stream = live_connect(&self.addr.to_string(), &u.token, &q, origin).await?;
        let mut ws = Ws { stream, ready: None, presence: Value::Null };
        let ready = ws.next_of("ready").await;
        ws.ready = ready["pos"].as_u64();
        // The presence snapshot always follows `ready`.
        let snapshot = ws.next().await;
        assert_eq!(snapshot["t"], "presence", "{snapshot}");
        ws.presence = snapshot["users"].clone();
        Ok(ws)
    }
}

pub struct Ws {
    pub stream: WsStream,
    /// Position in the `ready` frame.
    pub ready: Option<u64>,
    /// The presence snapshot sent after `ready`.
    pub presence: Value,
}

impl Ws {
    /// Next JSON frame, or panics after 5 s. Events before `ready` are returned too.
    pub async fn next(&mut self) -> Value {
        self.try_next(Duration::from_secs(5)).await.expect("no frame within 5 s")
    }

    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        next_json(&mut self.stream, wait).await
    }

    /// Reads until the server's close frame and returns its code (within 10 s).
    pub async fn close_code(&mut self) -> Option<u16> {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(m)) = self.stream.next().await {
                if let Message::Close(Some(f)) = m {
                    return Some(u16::from(f.code));
                }
            }
            None
        })
        .await
        .expect("no close frame within 10 s")
    }

    /// Skips frames until one of type `t`.
    pub async fn next_of(&mut self, t: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["t"] == t {
                return f;
            }
        }
    }

    /// Next `event` frame carrying a message, skipping others.
    pub async fn next_message(&mut self) -> Value {
        loop {
            let f = self.next_of("event").await;
            if f["event"]["type"] == "m.room.message" {
                return f;
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.unwrap();
    }
}

/// The built `chat` binary, started as a separate process (for signals and crashes).
pub struct Binary {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Binary {
    /// Starts `chat serve` on `listen` (e.g. `127.0.0.1:0`) with `dir`; returns once it printed
    /// its URL. Extra arguments go after `serve`.
    pub fn start(dir: &Path, listen: &str, extra: &[&str]) -> Binary {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("test-rates.toml");
        std::fs::write(&config, RELAXED_RATES_TOML).unwrap();
        let mut args: Vec<&std::ffi::OsStr> = vec!["--config".as_ref(), config.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend(["--listen".as_ref(), listen.as_ref(), "--data-dir".as_ref(), dir.as_os_str()]);
        let envs = [("CHAT_LOG", "off"), ("CHAT_TURN_LISTEN", "127.0.0.1:0"), ("CHAT_METRICS_LISTEN", "127.0.0.1:0")];
        // A restart on a fixed port (crash and outage tests) can find it taken for a moment, by
        // another test's outgoing connection that got it as its ephemeral port: try again.
        let mut tries = 0;
        loop {
            match spawn_serve(&chat_bin(), &args, &envs) {
                Ok((child, url)) => return Binary { child, url },
                Err(e) if tries < 20 && !listen.ends_with(":0") => {
                    tries += 1;
                    eprintln!("server did not start ({e}), trying again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("server did not start: {e}"),
            }
        }
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Sends a request with an optional bearer token; returns status and JSON body (Null if none).
pub async fn answer(req: reqwest::RequestBuilder, token: Option<&str>) -> (StatusCode, Value) {
    try_answer(req, token).await.unwrap()
}

/// [`answer`], with a failed connection as an error.
pub async fn try_answer(
    req: reqwest::RequestBuilder,
    token: Option<&str>,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let res = req.send().await?;
    let status = res.status();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// POSTs JSON with an optional bearer token; returns status and body.
pub async fn post_json(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    answer(http.post(url).json(&body), token).await
}

/// All message bodies of a room on the server at `base`, oldest first, following the cursor.
pub async fn message_bodies(http: &reqwest::Client, base: &str, token: &str, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&before={c}")).unwrap_or_default();
        let url = format!("{base}/api/v1/rooms/{room}/messages?limit=200{q}");
        let (status, v) = answer(http.get(url), Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        cursor = message_page(&v, &mut out);
        if cursor.is_none() {
            break;
        }
    }
    out.reverse();
    out
}

/// The next text frame of a WebSocket as JSON, within `wait`; `None` on close, error or timeout.
pub async fn next_json<S>(stream: &mut S, wait: Duration) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(wait, stream.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Adds the message bodies of one history page (newest first) to `out`; returns the cursor
/// of the next page, if any.
pub fn message_page(page: &Value, out: &mut Vec<String>) -> Option<String> {
    for e in page["events"].as_array().unwrap() {
        if e["type"] == "m.room.message" {
            out.push(e["content"]["body"].as_str().unwrap().to_string());
        }
    }
    page["next"].as_str().map(str::to_string)
}

pub mod dns;
pub mod janus;
pub mod media;
pub mod played;
pub mod push;
pub mod synapse;

/// Waits until `cond` (an expression that may `.await`) holds, checking every 50 ms; fails the
/// test with `what` after `secs` seconds.
#[macro_export]
macro_rules! eventually {
    ($secs:expr, $what:expr, $cond:expr) => {{
        let until = std::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            assert!(std::time::Instant::now() < until, "timed out waiting for: {}", $what);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// HTTPS and WebSocket-over-TLS clients for servers with a certificate from a test CA
/// (federation tests): hand-made HTTP/1.1, so tests can also send what no client would.
pub mod tls {
    use super::*;
    use std::sync::Arc;
    use tokio_rustls::client::TlsStream;

    /// A throwaway CA and a certificate for 127.0.0.1/localhost, in a directory kept while this
    /// lives.
    pub struct Pki {
        _dir: tempfile::TempDir,
        pub ca: PathBuf,
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    impl Pki {
        pub fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let (ca, cert, key) = pki(dir.path());
            Pki { _dir: dir, ca, cert, key }
        }

        /// The name of the HTTPS server `s`, as its key document states it.
        pub async fn name_of(&self, s: &super::TestServer) -> String {
            let (_, doc) = request(&self.ca, &s.addr.to_string(), "GET", "/_matrix/key/v2/server", &[], None).await;
            doc["server_name"].as_str().unwrap().to_string()
        }
    }

    impl Default for Pki {
        fn default() -> Self {
            Pki::new()
        }
    }

    /// A CA and a server certificate for 127.0.0.1, localhost and `*.chat.test` (server names
    /// tests find through their own DNS) signed by it, as PEM files in `dir`.
    pub fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "chat test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into(), "*.chat.test".into()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let (ca_pem, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        std::fs::write(&cert, leaf.pem()).unwrap();
        std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
        (ca_pem, cert, key)
    }

    /// A TLS connection to `addr` (`127.0.0.1:PORT`) trusting only the CA in `ca`.
    pub async fn connect(ca: &Path, addr: &str) -> TlsStream<TcpStream> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.unwrap()
    }

    /// One HTTPS request; returns the whole response as text.
    pub async fn raw(
        ca: &Path,
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = connect(ca, addr).await;
        let mut extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        if body.is_some() {
            extra.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", payload.len()));
        }
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
        s.write_all(format!("{head}{payload}").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One HTTPS request with a binary body: the status, the headers (names in lower case) and
    /// the body's bytes (a chunked one put together).
    pub async fn request_bytes(
        ca: &Path,
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = connect(ca, addr).await;
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\ncontent-length: {}\r\n{extra}\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
            .collect();
        let mut rest = out[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
            let mut joined = Vec::new();
            let mut at = 0;
            while let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(String::from_utf8_lossy(&rest[at..at + eol]).trim(), 16).unwrap_or(0);
                if size == 0 {
                    break;
                }
                let start = at + eol + 2;
                joined.extend_from_slice(&rest[start..start + size]);
                at = start + size + 2;
            }
            rest = joined;
        }
        (status, headers, rest)
    }

    /// One HTTPS request; returns the status and the JSON body (Null if none).
    pub async fn request(
        ca: &Path,
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        let text = raw(ca, addr, method, path, headers, body).await;
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path} to {addr}: no HTTP status in the answer {text:?}"));
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // Bodies may come chunked: take the JSON between the first `{` and the last `}`.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (status, json)
    }

    /// A user of an HTTPS test server.
    pub struct Client {
        pub ca: PathBuf,
        pub addr: String,
        pub token: String,
        pub id: String,
    }

    impl Client {
        /// Registers `name` on the server at `addr`.
        pub async fn register(ca: &Path, addr: &str, name: &str) -> Client {
            let body = json!({"username": name, "password": "password123"});
            let (s, v) = request(ca, addr, "POST", "/api/v1/register", &[], Some(&body)).await;
            assert_eq!(s, 200, "register {name}: {v}");
            Client {
                ca: ca.to_path_buf(),
                addr: addr.to_string(),
                token: v["token"].as_str().unwrap().into(),
                id: v["user_id"].as_str().unwrap().into(),
            }
        }

        pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
            let auth = [("authorization", format!("Bearer {}", self.token))];
            request(&self.ca, &self.addr, method, path, &auth, body.as_ref()).await
        }

        pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
            self.call("POST", path, Some(body)).await
        }

        pub async fn get(&self, path: &str) -> (u16, Value) {
            self.call("GET", path, None).await
        }

        /// Sends a message and returns its event id.
        pub async fn send(&self, room: &str, body: &str, txn: &str) -> String {
            let (s, v) =
                self.post(&format!("/api/v1/rooms/{room}/messages"), json!({"body": body, "txn_id": txn})).await;
            assert_eq!(s, 200, "send: {v}");
            v["event_id"].as_str().unwrap().to_string()
        }

        /// Every event of a room as the history API gives them, newest first.
        pub async fn events(&self, room: &str) -> Vec<Value> {
            let mut out = Vec::new();
            let mut before: Option<String> = None;
            loop {
                let q = before.as_ref().map(|b| format!("&before={b}")).unwrap_or_default();
                let (s, v) = self.get(&format!("/api/v1/rooms/{room}/messages?limit=100{q}")).await;
                assert_eq!(s, 200, "{v}");
                out.extend(v["events"].as_array().unwrap().iter().cloned());
                before = v["next"].as_str().map(str::to_string);
                if before.is_none() {
                    break;
                }
            }
            out
        }

        /// Every message body of a room, oldest first (redacted messages have none).
        pub async fn bodies(&self, room: &str) -> Vec<String> {
            let events = self.events(room).await;
            let messages = events.iter().rev().filter(|e| e["type"] == "m.room.message");
            messages.filter_map(|e| e["content"]["body"].as_str().map(str::to_string)).collect()
        }

        /// One event of a room as the history API gives it.
        pub async fn event(&self, room: &str, event_id: &str) -> Option<Value> {
            self.events(room).await.into_iter().find(|e| e["event_id"] == event_id)
        }

        /// A page as the browser gets it (signed in by cookie): status line, headers and body.
        pub async fn page(&self, path: &str) -> String {
            let cookie = [("cookie", format!("chat_token={}", self.token))];
            raw(&self.ca, &self.addr, "GET", path, &cookie, None).await
        }

        /// A live connection (over TLS), after its `ready` frame.
        pub async fn ws(&self, since: Option<u64>) -> TlsWs {
            let q = since.map(|s| format!("?since={s}")).unwrap_or_default();
            let mut req = format!("wss://{}/ws{q}", self.addr).into_client_request().unwrap();
            req.headers_mut().insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
            let stream = connect(&self.ca, &self.addr).await;
            let (stream, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
            let mut ws = TlsWs { stream, ready: None, before_ready: Vec::new() };
            loop {
                let f = ws.try_next(Duration::from_secs(10)).await.expect("no ready frame");
                if f["t"] == "ready" {
                    ws.ready = f["pos"].as_u64();
                    return ws;
                }
                ws.before_ready.push(f);
            }
        }
    }

    /// A call socket at the server of `url` (`wss://host:port/ws/call`), after presenting
    /// `token` and getting its `ready`; or the frame that refused it.
    pub async fn call_socket(ca: &Path, url: &str, token: &str) -> Result<TlsWs, Value> {
        let addr = url.strip_prefix("wss://").and_then(|r| r.split('/').next()).expect("a wss:// url");
        let stream = connect(ca, addr).await;
        let req = url.into_client_request().unwrap();
        let (stream, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
        let mut ws = TlsWs { stream, ready: None, before_ready: Vec::new() };
        ws.send(json!({ "t": "call_auth", "token": token })).await;
        let f = ws.try_next(Duration::from_secs(10)).await.unwrap_or_else(|| json!({ "t": "closed" }));
        if f["t"] != "ready" {
            return Err(f);
        }
        ws.ready = f["pos"].as_u64();
        Ok(ws)
    }

    /// A WebSocket over TLS.
    pub struct TlsWs {
        pub stream: WebSocketStream<TlsStream<TcpStream>>,
        pub ready: Option<u64>,
        /// Frames before `ready` (catch-up after `since`).
        pub before_ready: Vec<Value>,
    }

    impl TlsWs {
        /// Next JSON frame within `wait`.
        pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
            next_json(&mut self.stream, wait).await
        }

        /// Skips frames until one of type `t` (10 s at most).
        pub async fn next_of(&mut self, t: &str) -> Value {
            loop {
                let f = self.try_next(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("no {t} frame"));
                if f["t"] == t {
                    return f;
                }
            }
        }

        pub async fn send(&mut self, v: Value) {
            self.stream.send(Message::Text(v.to_string().into())).await.unwrap();
        }

        /// Sends a call signal and returns the `ack` or `error` frame for it.
        pub async fn signal(&mut self, room: &str, kind: &str, content: Value, txn: &str) -> Value {
            self.send(json!({ "t": "call", "room_id": room, "type": kind, "content": content, "txn_id": txn })).await;
            loop {
                let f = self.try_next(Duration::from_secs(10)).await.expect("no ack");
                if (f["t"] == "ack" || f["t"] == "error") && f["txn_id"] == txn {
                    return f;
                }
            }
        }

        /// The next `call` frame of event type `kind`.
        pub async fn next_call(&mut self, kind: &str) -> Value {
            loop {
                let f = self.next_of("call").await;
                if f["event"]["type"] == kind {
                    return f;
                }
            }
        }

        /// The body of the next message event.
        /// Skips frames until the `event` frame of an `m.room.redaction` (10 s at most per frame).
        pub async fn next_redaction(&mut self) -> Value {
            loop {
                let f = self.next_of("event").await;
                if f["event"]["type"] == "m.room.redaction" {
                    return f;
                }
            }
        }

        pub async fn next_body(&mut self) -> String {
            loop {
                let f = self.next_of("event").await;
                if f["event"]["type"] == "m.room.message" {
                    return f["event"]["content"]["body"].as_str().unwrap().to_string();
                }
            }
        }
    }
}

/// Runs the `chat` binary with `ARGS... --data-dir DIR` and `stdin` on its standard input.
pub fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(chat_bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("CHAT_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// [`cli`] on a blocking thread (for a server running on the test's runtime).
pub async fn cli_async(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let (dir, args, stdin) =
        (dir.to_path_buf(), args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), stdin.map(String::from));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&dir, &args, stdin.as_deref())
    })
    .await
    .unwrap()
}
