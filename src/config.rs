//! Settings: defaults for a zero-config start, an optional TOML file, `CHAT_*` environment
//! variables and command-line flags, merged in that order (later wins).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
    /// The media server for room calls.
    pub sfu: SfuConfig,
    /// HTTPS for the web listener.
    pub tls: TlsConfig,
    /// Where `/metrics` is served; `None` turns it off.
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR networks).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Host names requests may name besides the server name, `localhost` and IP addresses.
    pub extra_hostnames: Vec<String>,
    /// PEM CA certificates trusted for other servers, besides the system's roots.
    pub federation_ca: Option<PathBuf>,
    /// Federate with servers at loopback, private and link-local addresses (LAN federations,
    /// tests); off, such addresses are never connected to.
    pub federation_private_addresses: bool,
    /// The DNS server for other servers' names (SRV and address lookups), instead of the
    /// system's (`/etc/resolv.conf`).
    pub federation_dns: Option<SocketAddr>,
    /// Offer HTTP/2 to other servers (ALPN); off, requests to them go over HTTP/1.1 only.
    pub federation_http2: bool,
    /// Web Push endpoints at loopback, private and link-local addresses, and over plain HTTP,
    /// are accepted (a push service on the LAN, tests); off, only HTTPS to public addresses.
    pub push_private_endpoints: bool,
    /// Keep the full-text search index (in `data_dir/search`) and answer searches.
    pub search: bool,
    /// Who runs this server, told to push services (a `mailto:` or `https:` URL); none: the
    /// server's own `https://` address.
    pub push_contact: Option<String>,
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
#[derive(Debug, Clone, PartialEq)]
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

/// The media server for room calls (the `[sfu]` table).
#[derive(Debug, Clone, PartialEq)]
pub struct SfuConfig {
    /// Run it; off, room calls connect everyone to everyone (at most 6 people).
    pub enabled: bool,
    /// The address its UDP sockets bind; `None` means the web listener's IP (or, listening on
    /// all addresses, the first non-loopback IPv4 address).
    pub ip: Option<IpAddr>,
    /// The address browsers reach it at, when it differs (behind NAT).
    pub public_ip: Option<IpAddr>,
    /// UDP ports, one per connection (two per participant); `(0, 0)`: any free port.
    pub ports: (u16, u16),
    /// Most participants in one call.
    pub call_participants: usize,
    /// Most participants in all calls together.
    pub participants_total: usize,
    /// Most kilobits per second sent to one participant.
    pub receive_kbps: u64,
    /// Most megabits per second forwarded in all calls together.
    pub forward_mbps: u64,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            enabled: true,
            ip: None,
            public_ip: None,
            ports: (20_000, 20_999),
            call_participants: 50,
            participants_total: 200,
            receive_kbps: 8_000,
            forward_mbps: 400,
        }
    }
}

/// Bounds on sizes, queues and rates. Every one has a default suited to a small box.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest HTTP request body, bytes.
    pub max_body_bytes: usize,
    /// Largest file one upload may be, bytes (`413` beyond).
    pub max_upload_bytes: u64,
    /// Bytes of files one user may have stored (`413` with "quota" beyond); files shared
    /// again count once.
    pub upload_quota_bytes: u64,
    /// Seconds an upload shared nowhere (never sent, or its messages deleted) is kept before
    /// its file is collected.
    pub unshared_upload_grace_secs: u64,
    /// Bytes the copies of other servers' files may take here; past it the copies fetched
    /// longest ago are deleted (and fetched again when someone opens them).
    pub remote_media_cache_bytes: u64,
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
    /// Login attempts allowed per account and client IP per minute.
    pub logins_per_account_per_minute: u32,
    /// Login attempts allowed per account per minute from all IPs together, except from IPs
    /// the account signed in from before.
    pub logins_per_account_all_ips_per_minute: u32,
    /// Login attempts allowed per client IP per minute.
    pub logins_per_ip_per_minute: u32,
    /// Open WebSockets allowed per user.
    pub max_sockets_per_user: usize,
    /// Messages a user may send per minute (in bursts of as many); more get 429.
    pub messages_per_user_per_minute: u32,
    /// Rooms a user may create per hour (in bursts of as many); more get 429.
    pub rooms_per_user_per_hour: u32,
    /// Accounts that may be registered per client IP per minute.
    pub registrations_per_ip_per_minute: u32,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    pub header_timeout_secs: u64,
    /// Seconds a request (with its body) may take until the response starts; then 408.
    pub request_timeout_secs: u64,
    /// HTTP connections served at once (WebSockets not counted); more wait to be accepted.
    pub max_connections: usize,
    /// HTTP connections open at once from one client address (an IPv6 /64; trusted proxies
    /// not limited); more are closed at once.
    pub max_connections_per_ip: usize,
    /// Signed requests another server may make per minute.
    pub federation_requests_per_origin_per_minute: u32,
    /// Key fetches that requests from one client address (IPv6: its /64) may cause per minute
    /// by naming an origin whose key is not known here yet.
    pub federation_key_fetches_per_ip_per_minute: u32,
    /// Seconds a request to another server may take once connected (a server that stopped
    /// answering, or hangs, counts as down after it).
    pub federation_request_timeout_secs: u64,
    /// Longest wait, in seconds, between attempts to deliver to a server that does not answer
    /// (the wait doubles from 1 s with jitter; contact from that server retries at once).
    pub federation_retry_max_secs: u64,
    /// Events another server may send per minute, all its users together (a remote user is held
    /// to `messages_per_user_per_minute` too); more are refused one by one, with a retry time.
    pub federation_events_per_origin_per_minute: u32,
    /// Events other servers may add to one room per hour, sent or fetched (in bursts of as
    /// many): the room's storage budget for remote traffic.
    pub federation_events_per_room_per_hour: u32,
    /// `get_missing_events` requests made to one server per minute (and at most 3 per received
    /// transaction); beyond it an event is taken with a gap before it.
    pub federation_missing_fetches_per_origin_per_minute: u32,
    /// Invitations another server may send per minute (429 beyond).
    pub federation_invites_per_origin_per_minute: u32,
    /// Invitations from other servers one local user may get per hour (429 beyond).
    pub federation_invites_per_user_per_hour: u32,
    /// Take an invitation from another server only if the inviter shares a room with the
    /// invitee here (403 otherwise).
    pub federation_invites_from_shared_rooms_only: bool,
    /// Milliseconds before a failed push is tried again; the wait doubles each time.
    pub push_retry_base_ms: u64,
    /// Longest wait between tries of a push, seconds.
    pub push_retry_max_secs: u64,
    /// Seconds after which a push not delivered is given up (also how long push services keep
    /// it for a device that is offline).
    pub push_give_up_secs: u64,
    /// Devices one user may have push on.
    pub push_devices_per_user: u32,
    /// Memory the database may keep of what it read and wrote (its page cache), MiB.
    pub store_cache_mib: u64,
    /// Pushes waiting to be tried again, all users together; more are dropped (counted).
    pub push_retry_queue: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            upload_quota_bytes: 2 * 1024 * 1024 * 1024,
            unshared_upload_grace_secs: 24 * 3600,
            remote_media_cache_bytes: 5 * 1024 * 1024 * 1024,
            max_message_bytes: 16 * 1024,
            max_ws_frame_bytes: 64 * 1024,
            live_queue: 256,
            max_catchup_events: 2000,
            token_ttl_secs: 24 * 3600,
            logins_per_account_per_minute: 10,
            logins_per_account_all_ips_per_minute: 100,
            logins_per_ip_per_minute: 30,
            max_sockets_per_user: 32,
            messages_per_user_per_minute: 300,
            rooms_per_user_per_hour: 30,
            registrations_per_ip_per_minute: 5,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 4096,
            max_connections_per_ip: 256,
            federation_requests_per_origin_per_minute: 3000,
            federation_key_fetches_per_ip_per_minute: 30,
            federation_request_timeout_secs: 30,
            federation_retry_max_secs: 600,
            federation_events_per_origin_per_minute: 1200,
            federation_events_per_room_per_hour: 6000,
            federation_missing_fetches_per_origin_per_minute: 20,
            federation_invites_per_origin_per_minute: 20,
            federation_invites_per_user_per_hour: 20,
            federation_invites_from_shared_rooms_only: false,
            push_retry_base_ms: 2000,
            push_retry_max_secs: 600,
            push_give_up_secs: 24 * 3600,
            push_devices_per_user: 10,
            store_cache_mib: 1024,
            push_retry_queue: 100_000,
        }
    }
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
            sfu: SfuConfig::default(),
            tls: TlsConfig::default(),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            trusted_proxies: Vec::new(),
            extra_hostnames: Vec::new(),
            federation_ca: None,
            federation_dns: None,
            federation_http2: true,
            federation_private_addresses: false,
            push_private_endpoints: false,
            search: true,
            push_contact: None,
        }
    }

    /// Builds the effective config: defaults < file < environment/flags. Errors name the bad setting.
    pub fn from_args(args: &ServeArgs) -> Result<Self, String> {
        let mut cfg = Config::with_data_dir(DEFAULT_DATA_DIR);
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
            cfg.apply_file(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        }
        for (key, value) in &args.values {
            apply(&mut cfg, setting(key).ok_or_else(|| format!("{key}: no such setting"))?, value)?;
        }
        cfg.tls.check()?;
        Ok(cfg)
    }

    /// Applies a TOML file's settings over this config.
    fn apply_file(&mut self, text: &str) -> Result<(), String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, value) in &table {
            match value {
                toml::Value::Table(section) if SECTIONS.contains(&name.as_str()) => {
                    for (inner, value) in section {
                        let key = format!("{name}.{inner}");
                        apply(self, setting(&key).ok_or_else(|| unknown(&key))?, value)?;
                    }
                }
                _ => apply(self, setting(name).ok_or_else(|| unknown(name))?, value)?,
            }
        }
        Ok(())
    }
}

fn unknown(key: &str) -> String {
    format!("unknown setting `{key}` (`chat config example` lists them all)")
}

fn apply(cfg: &mut Config, s: &Setting, value: &toml::Value) -> Result<(), String> {
    (s.set)(cfg, value).map_err(|e| format!("{}: {e}", s.key))
}

/// The tables of the file; every other key is top level.
const SECTIONS: &[&str] = &["limits", "turn", "sfu"];

/// How a setting is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flag {
    /// `--flag VALUE`, where the value is shown as the text given.
    Value(&'static str),
    /// `--flag` alone sets the setting to true.
    Switch,
    /// `--NAME` alone sets the setting to false (`--turn-disabled`).
    SwitchOff(&'static str),
}

/// One setting, declared once: its file key, its help, how it is given as a flag, and how it is
/// read from and written into a [`Config`]. The flag (`--` and the key with `.` and `_` as `-`),
/// the environment variable (`CHAT_` and the flag in capitals), the file key, `chat config
/// example` and `chat config check` all come from [`SETTINGS`].
pub struct Setting {
    /// The key in the file: `listen`, `limits.max_body_bytes`, `turn.listen`.
    pub key: &'static str,
    /// What it does, one or two sentences.
    pub help: &'static str,
    /// The flag's shape.
    pub flag: Flag,
    /// For a setting that is unset by default: a sample value for the example file (TOML).
    pub sample: Option<&'static str>,
    set: fn(&mut Config, &toml::Value) -> Result<(), String>,
    get: fn(&Config) -> Option<toml::Value>,
}

impl Setting {
    /// The long flag, without the dashes.
    pub fn flag_name(&self) -> String {
        match self.flag {
            Flag::SwitchOff(name) => name.to_string(),
            _ => self.key.replace(['.', '_'], "-"),
        }
    }

    /// The environment variable.
    pub fn env_name(&self) -> String {
        format!("CHAT_{}", self.flag_name().replace('-', "_").to_uppercase())
    }

    /// The whole-number limits and quotas are listed by `--help`, not `-h`.
    fn tuning(&self) -> bool {
        matches!(self.flag, Flag::Value("N"))
    }

    fn arg(&self) -> clap::Arg {
        let arg = clap::Arg::new(self.key)
            .long(self.flag_name())
            .env(self.env_name())
            .help(self.help)
            .hide_short_help(self.tuning());
        match self.flag {
            Flag::Value(name) => arg.value_name(name).action(clap::ArgAction::Set),
            Flag::Switch | Flag::SwitchOff(_) => {
                arg.action(clap::ArgAction::SetTrue).value_parser(clap::builder::BoolishValueParser::new())
            }
        }
    }
}

/// The setting with this file key.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

// Readers that accept a value from the file (typed TOML) or from a flag or variable (text).
fn text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => Ok(v.to_string()),
        _ => Err(format!("expected text, found {}", v.type_str())),
    }
}

fn whole<T: TryFrom<i64>>(v: &toml::Value, min: i64) -> Result<T, String> {
    let n = match v {
        toml::Value::Integer(n) => *n,
        toml::Value::String(s) => s.trim().parse().map_err(|_| format!("{s:?} is not a whole number"))?,
        _ => return Err(format!("expected a whole number, found {}", v.type_str())),
    };
    if n < min {
        return Err(if min == 1 { "must be greater than 0".into() } else { format!("must be at least {min}") });
    }
    T::try_from(n).map_err(|_| format!("{n} is too large"))
}

fn boolean(v: &toml::Value) -> Result<bool, String> {
    match v {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(s) => match s.trim() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(format!("{other:?} is not true or false")),
        },
        _ => Err(format!("expected true or false, found {}", v.type_str())),
    }
}

/// A list: a TOML array of strings, or comma-separated text.
fn list(v: &toml::Value) -> Result<Vec<String>, String> {
    match v {
        toml::Value::Array(items) => items.iter().map(text).collect(),
        toml::Value::String(s) => Ok(s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
        _ => Err(format!("expected a list, found {}", v.type_str())),
    }
}

fn addr(v: &toml::Value, like: &str) -> Result<SocketAddr, String> {
    let s = text(v)?;
    s.parse().map_err(|_| format!("{s:?} is not an address like {like}"))
}

fn path(v: &toml::Value) -> Result<PathBuf, String> {
    let s = text(v)?;
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(s))
}

fn shown(v: impl ToString) -> Option<toml::Value> {
    Some(toml::Value::String(v.to_string()))
}

fn shown_path(p: &Option<PathBuf>) -> Option<toml::Value> {
    p.as_ref().and_then(|p| shown(p.display()))
}

/// A setting that is a whole number field, at least `min`.
macro_rules! whole {
    ($key:literal, $min:expr, $help:literal, $($field:ident).+) => {
        Setting {
            key: $key,
            help: $help,
            flag: Flag::Value("N"),
            sample: None,
            set: |c, v| {
                c.$($field).+ = whole(v, $min)?;
                Ok(())
            },
            get: |c| i64::try_from(c.$($field).+).ok().map(toml::Value::Integer),
        }
    };
}

/// A setting that is a true/false field, given as a switch.
macro_rules! switch {
    ($key:literal, $help:literal, $($field:ident).+) => {
        Setting {
            key: $key,
            help: $help,
            flag: Flag::Switch,
            sample: None,
            set: |c, v| {
                c.$($field).+ = boolean(v)?;
                Ok(())
            },
            get: |c| Some(toml::Value::Boolean(c.$($field).+)),
        }
    };
}

/// Every setting, in the order `chat config example` lists them (top level, then each table).
pub static SETTINGS: &[Setting] = &[
    Setting {
        key: "listen",
        help: "Address of the web app (HTTP or HTTPS). Port 0 picks a free port.",
        flag: Flag::Value("ADDR"),
        sample: None,
        set: |c, v| {
            c.listen = addr(v, "127.0.0.1:8080 or [::1]:8080")?;
            Ok(())
        },
        get: |c| shown(c.listen),
    },
    Setting {
        key: "data_dir",
        help: "Directory of the database (chat.redb) and the self-signed certificate.",
        flag: Flag::Value("DIR"),
        sample: None,
        set: |c, v| {
            c.data_dir = path(v)?;
            Ok(())
        },
        get: |c| shown(c.data_dir.display()),
    },
    Setting {
        key: "server_name",
        help: "The name in user ids (@ana:NAME). Default: the listen address, or the hostname for 0.0.0.0.",
        flag: Flag::Value("NAME"),
        sample: Some("\"chat.example.org\""),
        set: |c, v| {
            c.server_name = Some(ServerName::parse(&text(v)?).map_err(|e| e.to_string())?);
            Ok(())
        },
        get: |c| c.server_name.as_ref().and_then(shown),
    },
    Setting {
        key: "tls_cert",
        help: "HTTPS: PEM certificate chain, reloaded when the file changes or on SIGHUP.",
        flag: Flag::Value("FILE"),
        sample: Some("\"/etc/letsencrypt/live/chat.example.org/fullchain.pem\""),
        set: |c, v| {
            c.tls.cert = Some(path(v)?);
            Ok(())
        },
        get: |c| shown_path(&c.tls.cert),
    },
    Setting {
        key: "tls_key",
        help: "The PEM private key of tls_cert (PKCS#8, PKCS#1 or SEC1).",
        flag: Flag::Value("FILE"),
        sample: Some("\"/etc/letsencrypt/live/chat.example.org/privkey.pem\""),
        set: |c, v| {
            c.tls.key = Some(path(v)?);
            Ok(())
        },
        get: |c| shown_path(&c.tls.key),
    },
    switch!("tls_self_signed", "HTTPS with a self-signed certificate kept in data_dir (LAN use).", tls.self_signed),
    Setting {
        key: "http_redirect_listen",
        help: "A plain-HTTP listener that redirects every request to HTTPS (e.g. 0.0.0.0:80).",
        flag: Flag::Value("ADDR"),
        sample: Some("\"0.0.0.0:80\""),
        set: |c, v| {
            c.tls.redirect_listen = Some(addr(v, "0.0.0.0:80")?);
            Ok(())
        },
        get: |c| c.tls.redirect_listen.and_then(shown),
    },
    Setting {
        key: "metrics_listen",
        help: "Where Prometheus /metrics is served (loopback by default), or \"off\".",
        flag: Flag::Value("ADDR|off"),
        sample: None,
        set: |c, v| {
            c.metrics_listen = match text(v)?.as_str() {
                "off" => None,
                _ => Some(addr(v, "127.0.0.1:9187 or \"off\"")?),
            };
            Ok(())
        },
        get: |c| shown(c.metrics_listen.map(|a| a.to_string()).unwrap_or_else(|| "off".into())),
    },
    Setting {
        key: "trusted_proxies",
        help: "Reverse proxies (IPs or networks) whose X-Forwarded-For names the client; \
               as a flag or variable, comma-separated. Empty: the TCP peer is the client.",
        flag: Flag::Value("IP|CIDR,..."),
        sample: None,
        set: |c, v| {
            c.trusted_proxies = parse_proxies(&list(v)?)?;
            Ok(())
        },
        get: |c| Some(toml::Value::Array(c.trusted_proxies.iter().filter_map(shown).collect())),
    },
    Setting {
        key: "extra_hostnames",
        help: "Host names the web app also answers to, besides server_name, localhost and IP addresses \
               (e.g. the host a .well-known delegation names); as a flag or variable, comma-separated. \
               Requests naming any other host get 421 (DNS rebinding).",
        flag: Flag::Value("NAME,..."),
        sample: None,
        set: |c, v| {
            let names = list(v)?;
            for n in &names {
                ServerName::parse(n).map_err(|_| format!("{n:?} is not a host name"))?;
            }
            c.extra_hostnames = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            Ok(())
        },
        get: |c| Some(toml::Value::Array(c.extra_hostnames.iter().filter_map(shown).collect())),
    },
    Setting {
        key: "federation_ca",
        help: "CA certificates (PEM) trusted for other servers besides the system's (private federations, tests).",
        flag: Flag::Value("FILE"),
        sample: Some("\"/etc/chat/federation-ca.pem\""),
        set: |c, v| {
            let ca = path(v)?;
            if !ca.is_file() {
                return Err(format!("{} is not a readable file", ca.display()));
            }
            c.federation_ca = Some(ca);
            Ok(())
        },
        get: |c| shown_path(&c.federation_ca),
    },
    Setting {
        key: "federation_dns",
        help: "DNS server (IP:PORT) for other servers' names, SRV records and addresses; default: the \
               system's resolvers (/etc/resolv.conf).",
        flag: Flag::Value("ADDR"),
        sample: Some("\"127.0.0.53:53\""),
        set: |c, v| {
            let t = text(v)?;
            c.federation_dns = Some(t.parse().map_err(|_| format!("{t:?} is not an IP:PORT address"))?);
            Ok(())
        },
        get: |c| c.federation_dns.as_ref().and_then(shown),
    },
    Setting {
        key: "federation_http2",
        help: "Offer HTTP/2 to other servers, and use it with those that choose it (one connection \
               carrying concurrent requests); --federation-http1-only or \
               CHAT_FEDERATION_HTTP1_ONLY=true speaks HTTP/1.1 with keep-alive only.",
        flag: Flag::SwitchOff("federation-http1-only"),
        sample: None,
        set: |c, v| {
            c.federation_http2 = boolean(v)?;
            Ok(())
        },
        get: |c| Some(toml::Value::Boolean(c.federation_http2)),
    },
    switch!(
        "federation_private_addresses",
        "Federate with servers at loopback, private, link-local or unique-local addresses (a LAN \
         federation, tests). Off (the default), a server name, alias or .well-known delegation that \
         resolves only to such addresses is refused before any connection.",
        federation_private_addresses
    ),
    switch!(
        "push_private_endpoints",
        "Accept Web Push endpoints at loopback, private or link-local addresses and over plain HTTP \
         (a push service on the LAN, tests). Off (the default), pushes go only over HTTPS to public \
         addresses.",
        push_private_endpoints
    ),
    Setting {
        key: "search",
        help: "Keep a full-text search index of messages (in the data directory's search folder) and \
               answer searches; --search-disabled or CHAT_SEARCH_DISABLED=true turns it off.",
        flag: Flag::SwitchOff("search-disabled"),
        sample: None,
        set: |c, v| {
            c.search = boolean(v)?;
            Ok(())
        },
        get: |c| Some(toml::Value::Boolean(c.search)),
    },
    Setting {
        key: "push_contact",
        help: "Who runs this server, told to browser vendors' push services with each push (a mailto: \
               or https: URL); default: the server's own https:// address.",
        flag: Flag::Value("URL"),
        sample: Some("\"mailto:admin@example.org\""),
        set: |c, v| {
            let t = text(v)?;
            if !(t.starts_with("mailto:") || t.starts_with("https://")) || t.len() > 256 {
                return Err(format!("{t:?} is not a mailto: or https: URL"));
            }
            c.push_contact = Some(t.to_string());
            Ok(())
        },
        get: |c| c.push_contact.as_ref().map(|t| toml::Value::String(t.clone())),
    },
    whole!("limits.max_body_bytes", 1, "Largest HTTP request body, bytes.", limits.max_body_bytes),
    whole!(
        "limits.push_retry_base_ms",
        1,
        "Milliseconds before a failed push is tried again; the wait doubles each time.",
        limits.push_retry_base_ms
    ),
    whole!(
        "limits.push_retry_max_secs",
        1,
        "Longest wait between tries of a push, seconds.",
        limits.push_retry_max_secs
    ),
    whole!(
        "limits.push_give_up_secs",
        60,
        "Seconds after which a push not delivered is given up (and how long push services keep it).",
        limits.push_give_up_secs
    ),
    whole!("limits.push_devices_per_user", 1, "Devices one user may turn push on for.", limits.push_devices_per_user),
    whole!(
        "limits.store_cache_mib",
        16,
        "Memory the database keeps of the pages it read and wrote, MiB (the server's RSS grows to \
         about this after scans such as a search index rebuild or a backup; lower it on a small box).",
        limits.store_cache_mib
    ),
    whole!(
        "limits.push_retry_queue",
        1,
        "Pushes waiting to be tried again, all users together; more are dropped.",
        limits.push_retry_queue
    ),
    whole!("limits.max_upload_bytes", 0, "Largest file one upload may be, bytes.", limits.max_upload_bytes),
    whole!("limits.upload_quota_bytes", 0, "Bytes of files one user may have stored.", limits.upload_quota_bytes),
    whole!(
        "limits.remote_media_cache_bytes",
        0,
        "Bytes the copies of other servers' files may take; the oldest copies go past it.",
        limits.remote_media_cache_bytes
    ),
    whole!(
        "limits.unshared_upload_grace_secs",
        0,
        "Seconds an upload shared nowhere is kept before its file is collected.",
        limits.unshared_upload_grace_secs
    ),
    whole!("limits.max_message_bytes", 1, "Largest message, UTF-8 bytes.", limits.max_message_bytes),
    whole!("limits.max_ws_frame_bytes", 1, "Largest WebSocket frame from a client, bytes.", limits.max_ws_frame_bytes),
    whole!("limits.live_queue", 1, "Frames queued per live connection before it catches up.", limits.live_queue),
    whole!(
        "limits.max_catchup_events",
        1,
        "Events replayed on reconnect before \"resync\".",
        limits.max_catchup_events
    ),
    whole!("limits.token_ttl_secs", 60, "Sign-in token lifetime, seconds.", limits.token_ttl_secs),
    whole!(
        "limits.logins_per_account_per_minute",
        1,
        "Login attempts per account and client IP per minute.",
        limits.logins_per_account_per_minute
    ),
    whole!(
        "limits.logins_per_account_all_ips_per_minute",
        1,
        "Login attempts per account per minute from all IPs but those it signed in from before.",
        limits.logins_per_account_all_ips_per_minute
    ),
    whole!(
        "limits.logins_per_ip_per_minute",
        1,
        "Login attempts per client IP per minute.",
        limits.logins_per_ip_per_minute
    ),
    whole!("limits.max_sockets_per_user", 1, "Open WebSockets per user.", limits.max_sockets_per_user),
    whole!(
        "limits.messages_per_user_per_minute",
        1,
        "Sends per user per minute (bursts of as many); more get 429.",
        limits.messages_per_user_per_minute
    ),
    whole!(
        "limits.rooms_per_user_per_hour",
        1,
        "Rooms a user may create per hour (bursts of as many); more get 429.",
        limits.rooms_per_user_per_hour
    ),
    whole!(
        "limits.registrations_per_ip_per_minute",
        1,
        "Sign-ups per client IP per minute.",
        limits.registrations_per_ip_per_minute
    ),
    whole!(
        "limits.header_timeout_secs",
        1,
        "Seconds to send request headers; also the idle keep-alive lifetime.",
        limits.header_timeout_secs
    ),
    whole!(
        "limits.request_timeout_secs",
        1,
        "Seconds per request until the response starts (408 after).",
        limits.request_timeout_secs
    ),
    whole!("limits.max_connections", 1, "HTTP connections at once (WebSockets not counted).", limits.max_connections),
    whole!(
        "limits.max_connections_per_ip",
        1,
        "HTTP connections at once from one client address (IPv6: its /64; trusted proxies not limited).",
        limits.max_connections_per_ip
    ),
    whole!(
        "limits.federation_requests_per_origin_per_minute",
        1,
        "Signed requests per other server per minute.",
        limits.federation_requests_per_origin_per_minute
    ),
    whole!(
        "limits.federation_key_fetches_per_ip_per_minute",
        1,
        "Key fetches per minute that requests from one client address may cause by naming a server whose key is not known yet.",
        limits.federation_key_fetches_per_ip_per_minute
    ),
    whole!(
        "limits.federation_request_timeout_secs",
        1,
        "Seconds a request to another server may take once connected; after it the server counts as down.",
        limits.federation_request_timeout_secs
    ),
    whole!(
        "limits.federation_retry_max_secs",
        1,
        "Longest wait, seconds, between deliveries to a server that is down.",
        limits.federation_retry_max_secs
    ),
    whole!(
        "limits.federation_events_per_origin_per_minute",
        1,
        "Events per other server per minute; more are refused per event with a retry time.",
        limits.federation_events_per_origin_per_minute
    ),
    whole!(
        "limits.federation_events_per_room_per_hour",
        1,
        "Events other servers may add to one room per hour (sent or fetched).",
        limits.federation_events_per_room_per_hour
    ),
    whole!(
        "limits.federation_missing_fetches_per_origin_per_minute",
        1,
        "get_missing_events requests to one server per minute; beyond, events are taken with a gap.",
        limits.federation_missing_fetches_per_origin_per_minute
    ),
    whole!(
        "limits.federation_invites_per_origin_per_minute",
        1,
        "Invitations another server may send per minute (429 beyond).",
        limits.federation_invites_per_origin_per_minute
    ),
    whole!(
        "limits.federation_invites_per_user_per_hour",
        1,
        "Invitations from other servers per local user per hour (429 beyond).",
        limits.federation_invites_per_user_per_hour
    ),
    switch!(
        "limits.federation_invites_from_shared_rooms_only",
        "Take invitations from other servers only from users who share a room with the invitee.",
        limits.federation_invites_from_shared_rooms_only
    ),
    Setting {
        key: "turn.enabled",
        help: "Run the built-in TURN relay; --turn-disabled or CHAT_TURN_DISABLED=true turns it off.",
        flag: Flag::SwitchOff("turn-disabled"),
        sample: None,
        set: |c, v| {
            c.turn.enabled = boolean(v)?;
            Ok(())
        },
        get: |c| Some(toml::Value::Boolean(c.turn.enabled)),
    },
    Setting {
        key: "turn.listen",
        help: "UDP and TCP address of the relay. Default: the listen IP, port 3478.",
        flag: Flag::Value("ADDR"),
        sample: Some("\"0.0.0.0:3478\""),
        set: |c, v| {
            c.turn.listen = Some(addr(v, "0.0.0.0:3478")?);
            Ok(())
        },
        get: |c| c.turn.listen.and_then(shown),
    },
    Setting {
        key: "turn.public_ip",
        help: "The address browsers reach the relay at (set it behind NAT). Default: the listen IP, \
               or the first non-loopback IPv4 address when listening on 0.0.0.0.",
        flag: Flag::Value("IP"),
        sample: Some("\"203.0.113.5\""),
        set: |c, v| {
            let ip = text(v)?;
            c.turn.public_ip = Some(ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?);
            Ok(())
        },
        get: |c| c.turn.public_ip.and_then(shown),
    },
    switch!(
        "turn.allow_private_peers",
        "Relay to loopback, private and link-local peers too (LAN-only setups, tests).",
        turn.allow_private_peers
    ),
    whole!("turn.allocations_per_user", 1, "Live relay allocations per user.", turn.allocations_per_user),
    whole!("turn.allocations_total", 1, "Live relay allocations in total.", turn.allocations_total),
    whole!("turn.credential_ttl_secs", 60, "Lifetime of minted TURN credentials, seconds.", turn.credential_ttl_secs),
    Setting {
        key: "sfu.enabled",
        help: "Run the media server for room calls; --sfu-disabled or CHAT_SFU_DISABLED=true turns it off \
               (room calls then connect everyone to everyone, at most 6 people).",
        flag: Flag::SwitchOff("sfu-disabled"),
        sample: None,
        set: |c, v| {
            c.sfu.enabled = boolean(v)?;
            Ok(())
        },
        get: |c| Some(toml::Value::Boolean(c.sfu.enabled)),
    },
    Setting {
        key: "sfu.ip",
        help: "Address the media server's UDP sockets bind. Default: the listen IP, or the first \
               non-loopback IPv4 address when listening on all addresses.",
        flag: Flag::Value("IP"),
        sample: Some("\"192.0.2.10\""),
        set: |c, v| {
            let ip = text(v)?;
            c.sfu.ip = Some(ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?);
            Ok(())
        },
        get: |c| c.sfu.ip.and_then(shown),
    },
    Setting {
        key: "sfu.public_ip",
        help: "The address browsers reach the media server at (set it behind NAT). Default: sfu.ip.",
        flag: Flag::Value("IP"),
        sample: Some("\"203.0.113.5\""),
        set: |c, v| {
            let ip = text(v)?;
            c.sfu.public_ip = Some(ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?);
            Ok(())
        },
        get: |c| c.sfu.public_ip.and_then(shown),
    },
    Setting {
        key: "sfu.ports",
        help: "UDP ports of the media server, LOW-HIGH: two per participant. \"0\" takes any free port.",
        flag: Flag::Value("RANGE"),
        sample: None,
        set: |c, v| {
            c.sfu.ports = port_range(&text(v)?)?;
            Ok(())
        },
        get: |c| match c.sfu.ports {
            (0, 0) => shown("0"),
            (lo, hi) => shown(format!("{lo}-{hi}")),
        },
    },
    whole!("sfu.call_participants", 2, "Most participants in one room call.", sfu.call_participants),
    whole!("sfu.participants_total", 1, "Most participants in all room calls together.", sfu.participants_total),
    whole!(
        "sfu.receive_kbps",
        100,
        "Most kilobits per second the media server sends one participant.",
        sfu.receive_kbps
    ),
    whole!(
        "sfu.forward_mbps",
        1,
        "Most megabits per second the media server forwards in all calls together.",
        sfu.forward_mbps
    ),
];

/// `LOW-HIGH` (at least 2 ports, none below 1024), or `0` for any free port.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    if s.trim() == "0" {
        return Ok((0, 0));
    }
    let bad = || format!("{s:?} is not a port range like 20000-20999");
    let (lo, hi) = s.trim().split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if lo < 1024 || hi <= lo {
        return Err(format!("{s:?}: the range must be at least 2 ports, from 1024 up"));
    }
    Ok((lo, hi))
}

/// Settings given as flags or environment variables (already merged by clap), and the file.
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML configuration file (`--config`, `CHAT_CONFIG`).
    pub config: Option<PathBuf>,
    /// Setting values by file key, applied over the file.
    pub values: Vec<(&'static str, toml::Value)>,
}

impl ServeArgs {
    /// Sets a setting as a flag would (`set("listen", "127.0.0.1:9001")`).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        let key = setting(key).map_or("unknown", |s| s.key);
        self.values.push((key, toml::Value::String(value.into())));
        self
    }
}

fn config_arg() -> clap::Arg {
    clap::Arg::new("config")
        .long("config")
        .short('c')
        .env("CHAT_CONFIG")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("TOML configuration file")
}

fn from_matches(m: &clap::ArgMatches, settings: &[&'static Setting]) -> ServeArgs {
    let mut args = ServeArgs { config: m.get_one::<PathBuf>("config").cloned(), values: Vec::new() };
    for s in settings {
        let given = matches!(
            m.value_source(s.key),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        if !given {
            continue;
        }
        let value = match s.flag {
            Flag::Value(_) => m.get_one::<String>(s.key).map(|v| toml::Value::String(v.clone())),
            Flag::Switch => Some(toml::Value::Boolean(m.get_flag(s.key))),
            Flag::SwitchOff(_) => Some(toml::Value::Boolean(!m.get_flag(s.key))),
        };
        if let Some(v) = value {
            args.values.push((s.key, v));
        }
    }
    args
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(from_matches(m, &SETTINGS.iter().collect::<Vec<_>>()))
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(config_arg()).args(SETTINGS.iter().map(Setting::arg))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// `--data-dir` and `--config` alone, for the commands that only need the data (`backup`,
/// `restore`, `admin`), from the same declarations as `serve`'s.
#[derive(Debug, Default, Clone)]
pub struct DataDirArgs(pub ServeArgs);

impl clap::FromArgMatches for DataDirArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(DataDirArgs(from_matches(m, &[data_dir_setting()])))
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for DataDirArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(config_arg().global(true)).arg(data_dir_setting().arg().global(true))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

fn data_dir_setting() -> &'static Setting {
    &SETTINGS[1]
}

/// `chat config example`: every setting with its help and default (a sample, commented, for
/// those unset by default). A test checks it parses to the defaults.
pub fn example() -> String {
    let mut out = String::from(
        "# chat configuration (TOML). Every key is optional; shown with its default.\n\
         # Precedence: defaults < this file (--config / CHAT_CONFIG) < CHAT_* variables < flags.\n",
    );
    write_settings(&mut out, &Config::with_data_dir(DEFAULT_DATA_DIR), true);
    out
}

/// The effective settings as TOML, for `chat config check` (nothing in the config is secret:
/// the token and TURN secrets live in the database).
pub fn effective_toml(cfg: &Config) -> String {
    let mut out = String::from("# The effective configuration (file, CHAT_* variables and flags).\n");
    write_settings(&mut out, cfg, false);
    out
}

fn write_settings(out: &mut String, cfg: &Config, example: bool) {
    use std::fmt::Write;
    let mut section = "";
    for s in SETTINGS {
        let (table, name) = s.key.split_once('.').unwrap_or(("", s.key));
        if table != section {
            section = table;
            let _ = write!(out, "\n[{table}]\n");
        } else if table.is_empty() {
            out.push('\n');
        }
        if example || table.is_empty() {
            let how = format!("{} / --{}", s.env_name(), s.flag_name());
            match s.help.len() + how.len() > 96 {
                true => writeln!(out, "# {}\n#   {how}", s.help),
                false => writeln!(out, "# {}   {how}", s.help),
            }
            .ok();
        }
        match ((s.get)(cfg), s.sample) {
            (Some(v), _) => {
                let _ = writeln!(out, "{name} = {v}");
            }
            (None, _) if s.key == "server_name" && !example => {
                let _ = writeln!(out, "server_name = \"{}\"   # derived from listen", derive_server_name(cfg.listen));
            }
            (None, Some(sample)) if example => {
                let _ = writeln!(out, "# {name} = {sample}");
            }
            (None, _) => {
                let _ = writeln!(out, "# {name} is not set");
            }
        }
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
                .map_err(|_| format!("{s:?} is not an IP address or a network like 10.0.0.0/8"))
        })
        .collect()
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

    fn with_file(text: &str) -> (tempfile::TempDir, ServeArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, text).unwrap();
        (dir, ServeArgs { config: Some(path), values: Vec::new() })
    }

    #[test]
    fn file_then_flags() {
        let (_dir, mut args) =
            with_file("listen = \"127.0.0.1:9000\"\nserver_name = \"chat.test\"\n[limits]\nmax_message_bytes = 100\n");
        args.set("listen", "127.0.0.1:9001").set("limits.live_queue", "7").set("turn.allow_private_peers", "true");
        let cfg = Config::from_args(&args).unwrap();
        assert_eq!(cfg.listen.port(), 9001);
        assert_eq!(cfg.server_name.unwrap().as_str(), "chat.test");
        assert_eq!(cfg.limits.max_message_bytes, 100);
        assert_eq!(cfg.limits.live_queue, 7);
        assert_eq!(cfg.limits.max_body_bytes, Limits::default().max_body_bytes);
        assert!(cfg.turn.allow_private_peers);
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |key: &str, value: &str| {
            let mut args = ServeArgs::default();
            args.set(key, value);
            Config::from_args(&args).unwrap_err()
        };
        assert!(bad("listen", "nope").starts_with("listen:"));
        assert!(bad("server_name", "a b").starts_with("server_name:"));
        assert!(bad("limits.live_queue", "0").starts_with("limits.live_queue: must be greater than 0"));
        assert!(bad("limits.token_ttl_secs", "59").starts_with("limits.token_ttl_secs: must be at least 60"));
        assert!(bad("trusted_proxies", "10.0.0.0/8,nope").starts_with("trusted_proxies: \"nope\""));
        assert!(bad("turn.public_ip", "x").starts_with("turn.public_ip:"));
        let (_dir, args) = with_file("lisen = 1");
        let e = Config::from_args(&args).unwrap_err();
        assert!(e.contains("unknown setting `lisen`"), "{e}");
        let (_dir, args) = with_file("[limits]\ntoken_ttl_secs = \"long\"\n");
        let e = Config::from_args(&args).unwrap_err();
        assert!(e.contains("limits.token_ttl_secs: \"long\" is not a whole number"), "{e}");
    }

    #[test]
    fn the_example_is_the_defaults() {
        let (_dir, args) = with_file(&example());
        let parsed = Config::from_args(&args).unwrap();
        let defaults = Config::with_data_dir(DEFAULT_DATA_DIR);
        assert_eq!(effective_toml(&parsed), effective_toml(&defaults));
        assert_eq!(parsed.limits, Limits::default());
        assert_eq!(parsed.turn, TurnConfig::default());
        // Every setting is in the example, set or as a commented sample.
        let text = example();
        for s in SETTINGS {
            let name = s.key.rsplit('.').next().unwrap();
            assert!(text.contains(&format!("{name} = ")), "{} missing from the example", s.key);
            assert!(text.contains(&s.env_name()), "{} missing from the example", s.env_name());
        }
    }

    #[test]
    fn every_setting_is_documented_and_distinct() {
        let doc = include_str!("../docs/configuration.md");
        let mut flags = std::collections::HashSet::new();
        for s in SETTINGS {
            let name = s.key.rsplit('.').next().unwrap();
            assert!(doc.contains(&format!("`{name}`")), "docs/configuration.md lacks {}", s.key);
            assert!(doc.contains(&s.env_name()), "docs/configuration.md lacks {}", s.env_name());
            assert!(flags.insert(s.flag_name()), "two settings share --{}", s.flag_name());
        }
        assert_eq!(data_dir_setting().key, "data_dir");
    }

    #[test]
    fn derived_names() {
        assert_eq!(derive_server_name("127.0.0.1:8080".parse().unwrap()).as_str(), "127.0.0.1:8080");
        assert_eq!(derive_server_name("[::1]:80".parse().unwrap()).as_str(), "[::1]:80");
    }
}
