//! A real Synapse (the Matrix reference homeserver) for interop tests: started from the
//! virtualenv `scripts/test` installs (`CHAT_SYNAPSE_PYTHON`, else
//! `~/.cache/chat/synapse-venv/bin/python`), on loopback, with a client listener over plain
//! HTTP and a federation listener over TLS with the test CA's certificate. It trusts the test CA
//! for federation (`federation_custom_ca_list`), may reach loopback
//! (`federation_ip_range_blacklist: []`), asks no key server, and has its rate limits raised
//! for tests. Driven through its client-server API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A running Synapse; killed on drop.
pub struct Synapse {
    /// Its server name, `127.0.0.1:PORT` (the federation listener).
    pub name: String,
    /// Base URL of its client-server API.
    pub client_url: String,
    http: reqwest::Client,
    child: Child,
    dir: tempfile::TempDir,
}

/// A Synapse user.
#[derive(Clone)]
pub struct MatrixUser {
    /// `@name:server`.
    pub id: String,
    /// Access token.
    pub token: String,
}

/// The Python of the Synapse virtualenv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CHAT_SYNAPSE_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("chat/synapse-venv/bin/python")
}

/// Runs Synapse on the config in `dir`, logging to `dir/synapse.log` (appended).
fn spawn(py: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("synapse.log")).unwrap();
    Command::new(py)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(dir.join("homeserver.yaml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Synapse {
    /// Starts Synapse with `cert`/`key` (for 127.0.0.1) on its federation listener, trusting
    /// `ca`; returns once its client API answers.
    pub async fn start(ca: &Path, cert: &Path, key: &Path) -> Synapse {
        let py = python();
        assert!(
            py.exists(),
            "Synapse is not installed at {} (scripts/test installs it; or set CHAT_SYNAPSE_PYTHON)",
            py.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let (client_port, fed_port) = (free_port(), free_port());
        let name = format!("127.0.0.1:{fed_port}");
        let d = dir.path().display().to_string();
        let limit = "{per_second: 10000, burst_count: 10000}";
        let config = format!(
            r#"server_name: "{name}"
pid_file: {d}/homeserver.pid
listeners:
  - port: {client_port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
  - port: {fed_port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    resources:
      - names: [federation, keys]
        compress: false
tls_certificate_path: {cert}
tls_private_key_path: {key}
federation_custom_ca_list: [{ca}]
federation_verify_certificates: true
ip_range_whitelist: ['127.0.0.0/8']
federation_ip_range_blacklist: []
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: "test"
bcrypt_rounds: 4
macaroon_secret_key: "test-macaroon"
form_secret: "test-form"
enable_registration: true
enable_registration_without_verification: true
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
default_room_version: "12"
presence:
  enabled: true
rc_message: {limit}
rc_registration: {limit}
rc_login:
  address: {limit}
  account: {limit}
  failed_attempts: {limit}
rc_joins:
  local: {limit}
  remote: {limit}
rc_presence:
  per_user: {limit}
rc_joins_per_room: {limit}
rc_invites:
  per_room: {limit}
  per_user: {limit}
  per_issuer: {limit}
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 0
  reject_limit: 10000
  concurrent: 100
"#,
            cert = cert.display(),
            key = key.display(),
            ca = ca.display(),
        );
        let config_path = dir.path().join("homeserver.yaml");
        std::fs::write(&config_path, config).unwrap();
        let keys = Command::new(&py)
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(keys.success(), "synapse --generate-keys failed");
        let child = spawn(&py, dir.path());
        let mut s = Synapse {
            name,
            client_url: format!("http://127.0.0.1:{client_port}"),
            http: reqwest::Client::new(),
            child,
            dir,
        };
        s.wait_up().await;
        s
    }

    async fn wait_up(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let up = self.http.get(format!("{}/_matrix/client/versions", self.client_url)).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Synapse exited ({status}) while starting:\n{}", self.log_tail());
            }
            assert!(tokio::time::Instant::now() < deadline, "Synapse did not start:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Shuts Synapse down (SIGTERM) and waits for it to exit; its data and ports stay for
    /// [`Synapse::start_again`].
    pub async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts Synapse again on its data and ports; returns once its client API answers.
    pub async fn start_again(&mut self) {
        self.child = spawn(&python(), self.dir.path());
        self.wait_up().await;
    }

    /// Its whole log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("synapse.log")
    }

    /// The last lines of its log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Registers `name` (open registration with the dummy flow).
    pub async fn register(&self, name: &str) -> MatrixUser {
        let body = json!({"username": name, "password": "password123", "auth": {"type": "m.login.dummy"}});
        let (st, v) = self.call(None, "POST", "/_matrix/client/v3/register", Some(body)).await;
        assert_eq!(st, 200, "register {name} on Synapse: {v}");
        MatrixUser { id: v["user_id"].as_str().unwrap().into(), token: v["access_token"].as_str().unwrap().into() }
    }

    /// A client-server API call as `user`; the status and the JSON body.
    pub async fn call(&self, user: Option<&MatrixUser>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.client_url));
        if let Some(u) = user {
            req = req.bearer_auth(&u.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.timeout(Duration::from_secs(60)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A client-server API call with a raw body (an upload) or answer (a download): the status,
    /// the answer's content type and bytes.
    pub async fn call_bytes(
        &self,
        user: &MatrixUser,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        let req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.client_url));
        let req = req.bearer_auth(&user.token).header("content-type", content_type).body(body);
        let res = req.timeout(Duration::from_secs(60)).send().await.unwrap();
        let status = res.status().as_u16();
        let ty = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (status, ty, res.bytes().await.unwrap_or_default().to_vec())
    }

    /// Sends a text message as `user`; returns its event id.
    pub async fn send(&self, user: &MatrixUser, room: &str, body: &str, txn: &str) -> String {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room));
        let (st, v) = self.call(Some(user), "PUT", &path, Some(json!({"msgtype": "m.text", "body": body}))).await;
        assert_eq!(st, 200, "send on Synapse: {v}");
        v["event_id"].as_str().unwrap().to_string()
    }

    /// The room's timeline as `user` sees it, oldest first (up to 1,000 events).
    pub async fn timeline(&self, user: &MatrixUser, room: &str) -> Vec<Value> {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", enc(room));
        let (st, v) = self.call(Some(user), "GET", &path, None).await;
        assert_eq!(st, 200, "messages on Synapse: {v}");
        let mut events = v["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }

    /// The message bodies of the room as `user` sees them, oldest first.
    pub async fn bodies(&self, user: &MatrixUser, room: &str) -> Vec<String> {
        self.timeline(user, room)
            .await
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a path segment.
pub fn enc(s: &str) -> String {
    chat::federation::urlencode(s)
}
