//! Settings: defaults for a zero-config start, an optional TOML file, `CHAT_*` environment
//! variables and command-line flags, merged in that order (later wins).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::ServerName;

/// Default listen address of the web app.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "chat-data";
/// Default address of the metrics listener (loopback only).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9187";
/// Default port of the TURN relay (UDP and TCP), the IANA port for STUN/TURN.
pub const DEFAULT_TURN_PORT: u16 = 3478;

/// The effective settings of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP listener binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory holding the redb file.
    pub data_dir: PathBuf,
    /// This server's name, the part after `:` in user ids. `None` derives it from the bound address.
    pub server_name: Option<ServerName>,
    /// Size, rate and queue limits.
    pub limits: Limits,
    /// The built-in TURN relay.
    pub turn: TurnConfig,
    /// HTTPS for the web listener.
    pub tls: TlsConfig,
    /// Where `/metrics` is served; `None` turns it off.
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR networks).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// PEM CA certificates trusted for other servers, besides the system's roots.
    pub federation_ca: Option<PathBuf>,
}

/// HTTPS settings. With neither certificate files nor `self_signed`, the listener speaks plain
/// HTTP (behind a reverse proxy that terminates TLS, or on localhost).
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM certificate chain; reloaded when the file changes or on SIGHUP.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Create (once) and use a self-signed certificate kept in the data directory.
    pub self_signed: bool,
    /// A plain-HTTP listener that redirects every request to HTTPS.
    pub redirect_listen: Option<SocketAddr>,
}

impl TlsConfig {
    /// Whether the web listener speaks HTTPS.
    pub fn enabled(&self) -> bool {
        self.self_signed || self.cert.is_some()
    }

    fn check(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err("tls_key: required with tls_cert".into()),
            (None, Some(_)) => return Err("tls_cert: required with tls_key".into()),
            _ => {}
        }
        if self.self_signed && self.cert.is_some() {
            return Err("tls_self_signed: cannot be combined with tls_cert/tls_key".into());
        }
        if self.redirect_listen.is_some() && !self.enabled() {
            return Err("http_redirect_listen: needs HTTPS (tls_cert/tls_key or tls_self_signed)".into());
        }
        Ok(())
    }
}

/// The built-in TURN relay (the `[turn]` table).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Run the relay.
    pub enabled: bool,
    /// UDP and TCP address; `None` means the web listener's IP on port 3478.
    pub listen: Option<SocketAddr>,
    /// The address browsers reach the relay at; `None` means the listen IP.
    pub public_ip: Option<IpAddr>,
    /// Relay to loopback, private and link-local peers too (LAN-only setups and tests).
    pub allow_private_peers: bool,
    /// Most live allocations per user.
    pub allocations_per_user: usize,
    /// Most live allocations in total.
    pub allocations_total: usize,
    /// Lifetime of a minted TURN credential, seconds (a call longer than this cannot refresh).
    pub credential_ttl_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: true,
            listen: None,
            public_ip: None,
            allow_private_peers: false,
            allocations_per_user: 32,
            allocations_total: 1000,
            credential_ttl_secs: 12 * 3600,
        }
    }
}

impl TurnConfig {
    /// Rejects values that would make the relay unusable.
    pub fn check(&self) -> Result<(), String> {
        if self.allocations_per_user == 0 || self.allocations_total == 0 {
            return Err("turn.allocations_per_user and turn.allocations_total must be greater than 0".into());
        }
        if self.credential_ttl_secs < 60 {
            return Err("turn.credential_ttl_secs: must be at least 60".into());
        }
        Ok(())
    }
}

/// Bounds on sizes, queues and rates. Every one has a default suited to a small box.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest HTTP request body, bytes.
    pub max_body_bytes: usize,
    /// Largest message body, bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Largest WebSocket frame from a client, bytes.
    pub max_ws_frame_bytes: usize,
    /// Frames queued for one live connection before it is switched to catch-up from the store.
    pub live_queue: usize,
    /// Most events a reconnecting tab is sent from the store before it is told to resync instead.
    pub max_catchup_events: usize,
    /// Lifetime of an access token (JWT), seconds.
    pub token_ttl_secs: u64,
    /// Login attempts allowed per account per minute.
    pub logins_per_account_per_minute: u32,
    /// Login attempts allowed per client IP per minute.
    pub logins_per_ip_per_minute: u32,
    /// Open WebSockets allowed per user.
    pub max_sockets_per_user: usize,
    /// Messages a user may send per minute (in bursts of as many); more get 429.
    pub messages_per_user_per_minute: u32,
    /// Accounts that may be registered per client IP per minute.
    pub registrations_per_ip_per_minute: u32,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    pub header_timeout_secs: u64,
    /// Seconds a request (with its body) may take until the response starts; then 408.
    pub request_timeout_secs: u64,
    /// HTTP connections served at once (WebSockets not counted); more wait to be accepted.
    pub max_connections: usize,
    /// Signed requests another server may make per minute.
    pub federation_requests_per_origin_per_minute: u32,
    /// Longest wait, in seconds, between attempts to deliver to a server that does not answer
    /// (the wait doubles from 1 s with jitter; contact from that server retries at once).
    pub federation_retry_max_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_message_bytes: 16 * 1024,
            max_ws_frame_bytes: 64 * 1024,
            live_queue: 256,
            max_catchup_events: 2000,
            token_ttl_secs: 24 * 3600,
            logins_per_account_per_minute: 10,
            logins_per_ip_per_minute: 30,
            max_sockets_per_user: 32,
            messages_per_user_per_minute: 300,
            registrations_per_ip_per_minute: 5,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 4096,
            federation_requests_per_origin_per_minute: 3000,
            federation_retry_max_secs: 600,
        }
    }
}

/// The TOML file's shape. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Config::listen`].
    pub listen: Option<String>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::server_name`].
    pub server_name: Option<String>,
    /// See [`Limits`].
    #[serde(default)]
    pub limits: Option<Limits>,
    /// See [`TurnConfig`].
    #[serde(default)]
    pub turn: Option<TurnConfig>,
    /// See [`TlsConfig::cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`TlsConfig::key`].
    pub tls_key: Option<PathBuf>,
    /// See [`TlsConfig::self_signed`].
    pub tls_self_signed: Option<bool>,
    /// See [`TlsConfig::redirect_listen`].
    pub http_redirect_listen: Option<String>,
    /// See [`Config::metrics_listen`]; `"off"` turns it off.
    pub metrics_listen: Option<String>,
    /// See [`Config::trusted_proxies`].
    pub trusted_proxies: Option<Vec<String>>,
    /// See [`Config::federation_ca`].
    pub federation_ca: Option<PathBuf>,
}

/// Settings as given on the command line or in the environment (already merged by clap).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "CHAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for the web app [default: 127.0.0.1:8080].
    #[arg(long, env = "CHAT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the database [default: ./chat-data].
    #[arg(long, env = "CHAT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Server name used in user ids [default: derived from the listen address].
    #[arg(long, env = "CHAT_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// UDP and TCP address of the TURN relay [default: the listen IP, port 3478].
    #[arg(long, env = "CHAT_TURN_LISTEN", value_name = "ADDR")]
    pub turn_listen: Option<String>,
    /// Address browsers reach the TURN relay at [default: the relay's listen IP].
    #[arg(long, env = "CHAT_TURN_PUBLIC_IP", value_name = "IP")]
    pub turn_public_ip: Option<String>,
    /// Let the relay reach loopback, private and link-local addresses (LAN-only setups, tests).
    #[arg(long, env = "CHAT_TURN_ALLOW_PRIVATE_PEERS")]
    pub turn_allow_private_peers: bool,
    /// Do not run the TURN relay.
    #[arg(long, env = "CHAT_TURN_DISABLED")]
    pub turn_disabled: bool,
    /// Serve HTTPS with this PEM certificate chain (reloaded on change or SIGHUP).
    #[arg(long, env = "CHAT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate kept in the data directory (LAN use).
    #[arg(long, env = "CHAT_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// Also listen for plain HTTP here and redirect it to HTTPS (e.g. 0.0.0.0:80).
    #[arg(long, env = "CHAT_HTTP_REDIRECT_LISTEN", value_name = "ADDR")]
    pub http_redirect_listen: Option<String>,
    /// Serve /metrics (Prometheus) here, or "off" [default: 127.0.0.1:9187].
    #[arg(long, env = "CHAT_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Reverse proxies whose X-Forwarded-For names the client (comma-separated IPs or CIDRs).
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_name = "IP|CIDR,...", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Trust these PEM CA certificates for other servers too (private deployments, tests).
    #[arg(long, env = "CHAT_FEDERATION_CA", value_name = "FILE")]
    pub federation_ca: Option<PathBuf>,
}

impl Config {
    /// Zero-config defaults, with the given data directory.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: data_dir.into(),
            server_name: None,
            limits: Limits::default(),
            turn: TurnConfig::default(),
            tls: TlsConfig::default(),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            trusted_proxies: Vec::new(),
            federation_ca: None,
        }
    }

    /// Builds the effective config: defaults < file < environment/flags. Errors name the bad setting.
    pub fn from_args(args: &ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let mut cfg = Config::with_data_dir(DEFAULT_DATA_DIR);
        if let Some(listen) = args.listen.as_deref().or(file.listen.as_deref()) {
            cfg.listen = parse_listen(listen)?;
        }
        if let Some(dir) = args.data_dir.clone().or(file.data_dir) {
            if dir.as_os_str().is_empty() {
                return Err("data_dir: must not be empty".into());
            }
            cfg.data_dir = dir;
        }
        if let Some(name) = args.server_name.as_deref().or(file.server_name.as_deref()) {
            cfg.server_name = Some(ServerName::parse(name).map_err(|e| format!("server_name: {e}"))?);
        }
        if let Some(limits) = file.limits {
            cfg.limits = limits;
        }
        cfg.limits.check()?;
        if let Some(turn) = file.turn {
            cfg.turn = turn;
        }
        if let Some(addr) = &args.turn_listen {
            cfg.turn.listen =
                Some(addr.parse().map_err(|_| format!("turn_listen: {addr:?} is not an address like 0.0.0.0:3478"))?);
        }
        if let Some(ip) = &args.turn_public_ip {
            cfg.turn.public_ip = Some(ip.parse().map_err(|_| format!("turn_public_ip: {ip:?} is not an IP address"))?);
        }
        cfg.turn.allow_private_peers |= args.turn_allow_private_peers;
        if args.turn_disabled {
            cfg.turn.enabled = false;
        }
        cfg.turn.check()?;
        cfg.tls.cert = args.tls_cert.clone().or(file.tls_cert);
        cfg.tls.key = args.tls_key.clone().or(file.tls_key);
        cfg.tls.self_signed = args.tls_self_signed || file.tls_self_signed.unwrap_or(false);
        if let Some(addr) = args.http_redirect_listen.as_deref().or(file.http_redirect_listen.as_deref()) {
            cfg.tls.redirect_listen = Some(
                addr.parse()
                    .map_err(|_| format!("http_redirect_listen: {addr:?} is not an address like 0.0.0.0:80"))?,
            );
        }
        cfg.tls.check()?;
        if let Some(m) = args.metrics_listen.as_deref().or(file.metrics_listen.as_deref()) {
            cfg.metrics_listen = match m {
                "off" => None,
                addr => Some(addr.parse().map_err(|_| {
                    format!("metrics_listen: {addr:?} is not an address like 127.0.0.1:9187 or \"off\"")
                })?),
            };
        }
        if let Some(ca) = args.federation_ca.clone().or(file.federation_ca) {
            if !ca.is_file() {
                return Err(format!("federation_ca: {} is not a readable file", ca.display()));
            }
            cfg.federation_ca = Some(ca);
        }
        if let Some(list) = args.trusted_proxies.as_ref().or(file.trusted_proxies.as_ref()) {
            cfg.trusted_proxies = parse_proxies(list)?;
        }
        Ok(cfg)
    }
}

/// `127.0.0.1`, `::1`, `10.0.0.0/8`, `fd00::/8`: one address (a /32 or /128) or a network.
fn parse_proxies(list: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("trusted_proxies: {s:?} is not an IP address or a network like 10.0.0.0/8"))
        })
        .collect()
}

impl Limits {
    /// Rejects limits that would make the server unusable.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_message_bytes", self.max_message_bytes),
            ("max_ws_frame_bytes", self.max_ws_frame_bytes),
            ("live_queue", self.live_queue),
            ("max_catchup_events", self.max_catchup_events),
            ("max_sockets_per_user", self.max_sockets_per_user),
            ("max_connections", self.max_connections),
            ("messages_per_user_per_minute", self.messages_per_user_per_minute as usize),
            ("registrations_per_ip_per_minute", self.registrations_per_ip_per_minute as usize),
            ("logins_per_account_per_minute", self.logins_per_account_per_minute as usize),
            ("logins_per_ip_per_minute", self.logins_per_ip_per_minute as usize),
            ("header_timeout_secs", self.header_timeout_secs as usize),
            ("federation_requests_per_origin_per_minute", self.federation_requests_per_origin_per_minute as usize),
            ("request_timeout_secs", self.request_timeout_secs as usize),
            ("federation_retry_max_secs", self.federation_retry_max_secs as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("limits.{name}: must be greater than 0"));
            }
        }
        if self.token_ttl_secs < 60 {
            return Err("limits.token_ttl_secs: must be at least 60".into());
        }
        Ok(())
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("listen: {s:?} is not an address like 127.0.0.1:8080 or [::1]:8080"))
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// `chat config example`: every setting with its default, commented. `docs/configuration.md`
/// says the same in a table; a test checks this text parses to the defaults.
pub const EXAMPLE: &str = r#"# chat configuration (TOML). Every key is optional; shown with its default.
# Precedence: defaults < this file (--config / CHAT_CONFIG) < CHAT_* variables < flags.

# Address of the web app (HTTP or HTTPS). Port 0 picks a free port.   CHAT_LISTEN
listen = "127.0.0.1:8080"
# Directory of the database (chat.redb) and the self-signed certificate.   CHAT_DATA_DIR
data_dir = "chat-data"
# The name in user ids (@ana:NAME). Default: the listen address, or the hostname for 0.0.0.0.
# CHAT_SERVER_NAME
# server_name = "chat.example.org"

# HTTPS. Give a certificate and key (PEM; reloaded when the files change or on SIGHUP) ...
# CHAT_TLS_CERT, CHAT_TLS_KEY
# tls_cert = "/etc/letsencrypt/live/chat.example.org/fullchain.pem"
# tls_key = "/etc/letsencrypt/live/chat.example.org/privkey.pem"
# ... or a self-signed certificate kept in data_dir (LAN use).   CHAT_TLS_SELF_SIGNED
tls_self_signed = false
# Plain-HTTP listener redirecting to HTTPS.   CHAT_HTTP_REDIRECT_LISTEN
# http_redirect_listen = "0.0.0.0:80"
# Prometheus /metrics, on loopback by default; "off" turns it off.   CHAT_METRICS_LISTEN
metrics_listen = "127.0.0.1:9187"
# Reverse proxies (IPs or networks) whose X-Forwarded-For names the client, for rate limits
# and logs. Empty: the TCP peer is the client.   CHAT_TRUSTED_PROXIES (comma-separated)
trusted_proxies = []
# CA certificates (PEM) trusted for other servers besides the system's (private
# federations, tests).   CHAT_FEDERATION_CA
# federation_ca = "/etc/chat/federation-ca.pem"

[limits]
max_body_bytes = 65536                # largest HTTP request body
max_message_bytes = 16384             # largest message (UTF-8 bytes)
max_ws_frame_bytes = 65536            # largest WebSocket frame from a client
live_queue = 256                      # frames queued per live connection before catch-up
max_catchup_events = 2000             # events replayed on reconnect before "resync"
token_ttl_secs = 86400                # sign-in token lifetime
logins_per_account_per_minute = 10
logins_per_ip_per_minute = 30
max_sockets_per_user = 32             # open WebSockets per user
messages_per_user_per_minute = 300    # sends per user (bursts of as many); more get 429
registrations_per_ip_per_minute = 5   # sign-ups per client IP
header_timeout_secs = 10              # to send request headers; idle keep-alive lifetime
request_timeout_secs = 30             # per request until the response starts (408 after)
max_connections = 4096                # HTTP connections at once (WebSockets not counted)
federation_requests_per_origin_per_minute = 3000   # signed requests per other server
federation_retry_max_secs = 600       # longest wait between deliveries to a server that is down

[turn]
enabled = true                        # CHAT_TURN_DISABLED=true turns it off
# UDP and TCP address of the relay. Default: the listen IP, port 3478.   CHAT_TURN_LISTEN
# listen = "0.0.0.0:3478"
# The address browsers reach the relay at (set it behind NAT). Default: the listen IP, or the
# first non-loopback IPv4 address when listening on 0.0.0.0.   CHAT_TURN_PUBLIC_IP
# public_ip = "203.0.113.5"
allow_private_peers = false           # relay to loopback/private/link-local peers (LAN only)
allocations_per_user = 32
allocations_total = 1000
credential_ttl_secs = 43200           # lifetime of minted TURN credentials
"#;

/// The effective settings as TOML, for `chat config check` (nothing in the config is secret:
/// the token and TURN secrets live in the database).
pub fn effective_toml(cfg: &Config) -> String {
    #[derive(Serialize)]
    struct Effective<'a> {
        listen: String,
        data_dir: String,
        server_name: String,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        tls_self_signed: bool,
        http_redirect_listen: Option<String>,
        metrics_listen: String,
        trusted_proxies: Vec<String>,
        federation_ca: Option<String>,
        limits: &'a Limits,
        turn: &'a TurnConfig,
    }
    let e = Effective {
        listen: cfg.listen.to_string(),
        data_dir: cfg.data_dir.display().to_string(),
        server_name: cfg
            .server_name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("{} (derived from listen)", derive_server_name(cfg.listen))),
        tls_cert: cfg.tls.cert.as_ref().map(|p| p.display().to_string()),
        tls_key: cfg.tls.key.as_ref().map(|p| p.display().to_string()),
        tls_self_signed: cfg.tls.self_signed,
        http_redirect_listen: cfg.tls.redirect_listen.map(|a| a.to_string()),
        metrics_listen: cfg.metrics_listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        trusted_proxies: cfg.trusted_proxies.iter().map(|n| n.to_string()).collect(),
        federation_ca: cfg.federation_ca.as_ref().map(|p| p.display().to_string()),
        limits: &cfg.limits,
        turn: &cfg.turn,
    };
    toml::to_string(&e).unwrap_or_else(|err| format!("# cannot print the configuration: {err}\n"))
}

/// The server name implied by a bound address when none is configured.
///
/// A wildcard address (`0.0.0.0`, `::`) names no host, so the machine's hostname is used.
pub fn derive_server_name(bound: SocketAddr) -> ServerName {
    let host = if bound.ip().is_unspecified() {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    } else {
        bound.ip().to_string()
    };
    let text = match bound.ip() {
        std::net::IpAddr::V6(_) if !bound.ip().is_unspecified() => format!("[{host}]:{}", bound.port()),
        _ => format!("{host}:{}", bound.port()),
    };
    // A hostname with characters a server name may not have falls back to `localhost:PORT`.
    ServerName::parse(&text).unwrap_or_else(|_| ServerName::localhost(bound.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nserver_name = \"chat.test\"\n[limits]\nmax_message_bytes = 100\n",
        )
        .unwrap();
        let args =
            ServeArgs { config: Some(path.clone()), listen: Some("127.0.0.1:9001".into()), ..Default::default() };
        let cfg = Config::from_args(&args).unwrap();
        assert_eq!(cfg.listen.port(), 9001);
        assert_eq!(cfg.server_name.unwrap().as_str(), "chat.test");
        assert_eq!(cfg.limits.max_message_bytes, 100);
        assert_eq!(cfg.limits.live_queue, Limits::default().live_queue);
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_args(&ServeArgs { listen: Some("nope".into()), ..Default::default() }).unwrap_err();
        assert!(e.starts_with("listen:"), "{e}");
        let e = Config::from_args(&ServeArgs { server_name: Some("a b".into()), ..Default::default() }).unwrap_err();
        assert!(e.starts_with("server_name:"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = 1").unwrap();
        let e = Config::from_args(&ServeArgs { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn the_example_is_the_defaults() {
        let file: FileConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(file.limits.unwrap(), Limits::default());
        assert_eq!(file.turn.unwrap(), TurnConfig::default());
        assert_eq!(file.listen.as_deref(), Some(DEFAULT_LISTEN));
        assert_eq!(file.data_dir.unwrap(), PathBuf::from(DEFAULT_DATA_DIR));
        // Every key the effective config prints is in the example (commented or not).
        let printed = effective_toml(&Config::with_data_dir("chat-data"));
        for line in printed.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(EXAMPLE.contains(&format!("{key} =")), "{key} missing from the example");
        }
    }

    #[test]
    fn derived_names() {
        assert_eq!(derive_server_name("127.0.0.1:8080".parse().unwrap()).as_str(), "127.0.0.1:8080");
        assert_eq!(derive_server_name("[::1]:80".parse().unwrap()).as_str(), "[::1]:80");
    }
}
