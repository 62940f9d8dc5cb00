//! Request headers that carry credentials: `Authorization: Bearer …` and the `chat_token` cookie,
//! through `auth::session::authenticate` with a real `TokenKeys` and a real store holding one
//! session; `Origin`/`Referer`/`Host` through `same_origin` and `origin_allowed`;
//! `X-Forwarded-For` through `web::extract::client_ip` (the address rate limits count); and the
//! whole input as a token through `TokenKeys::verify`.
//!
//! Input: header lines `Name: value` (names and values hyper would refuse are skipped).
//!
//! Checks: only a token signed with our key for the one live session gets in, as its user;
//! every refusal is `401 Unauthorized`.

#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chat::auth::session::{self, authenticate};
use chat::auth::{Accounts, AccountsInner, COOKIE, TokenKeys};
use chat::ids::ServerName;
use chat::store::Store;
use chat::store::accounts::UserRecord;
use chat::web::extract::client_ip;
use libfuzzer_sys::fuzz_target;

/// The key the seed tokens in `seeds/auth_header` are signed with (HS256).
const SECRET: &[u8] = b"chat-fuzz-token-secret";
/// The one live session, of `@ana:chat.test`.
const SID: &str = "fuzz-session-ana";
const ANA: &str = "@ana:chat.test";

/// The reverse proxies whose `X-Forwarded-For` is believed.
fn trusted() -> &'static [ipnet::IpNet] {
    static NETS: OnceLock<Vec<ipnet::IpNet>> = OnceLock::new();
    NETS.get_or_init(|| ["127.0.0.0/8", "10.0.0.0/8", "::1/128"].iter().map(|n| n.parse().expect("net")).collect())
}

fn state() -> &'static Accounts {
    static STATE: OnceLock<Accounts> = OnceLock::new();
    STATE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = std::env::temp_dir().join(format!("chat-fuzz-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, writer) = Store::open(&dir, Box::new(|_, _| {})).expect("store");
        let rec = UserRecord {
            user_id: ANA.into(),
            password_hash: String::new(),
            created_ts: 0,
            disabled: false,
            admin: false,
            appear_offline: false,
            hide_receipts: false,
            display_name: None,
        };
        rt.block_on(store.create_user("ana".into(), rec, SID.into())).expect("create user");
        // The writer thread lives as long as the fuzzer; only reads follow.
        std::mem::forget(writer);
        Accounts::new(AccountsInner {
            store,
            tokens: TokenKeys::new(SECRET, 3600),
            server_name: ServerName::parse("chat.test").expect("a valid server name"),
            logins_per_ip: chat::auth::ratelimit::RateLimiter::new(30),
            logins_per_account: chat::auth::ratelimit::RateLimiter::new(10),
            registrations_per_ip: chat::auth::ratelimit::RateLimiter::new(10),
            logins_per_account_all_ips: chat::auth::ratelimit::RateLimiter::new(100),
            known_ips: Default::default(),
            password_checks: Default::default(),
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n').take(16) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }

    match authenticate(&headers, state) {
        Ok(s) => {
            assert_eq!(s.sid, SID, "signed in with a session that does not exist");
            assert_eq!(s.user.as_str(), ANA, "signed in as someone else");
            assert!(s.claims.exp > 0);
        }
        Err(e) => assert_eq!(e.status(), 401, "refused with {}: {e}", e.status()),
    }
    let _ = session::cookie(&headers, COOKIE);

    // The client address behind trusted proxies: an untrusted peer is always the client, and
    // otherwise the answer is the peer or an address from the header.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    for peer in ["127.0.0.1", "10.1.2.3", "192.0.2.1"] {
        let peer: IpAddr = peer.parse().expect("ip");
        let ip = client_ip(peer, &headers, trusted());
        let peer_trusted = trusted().iter().any(|n| n.contains(&peer));
        assert!(ip == peer || (peer_trusted && hops.contains(&ip)), "{ip} from {peer}");
    }
    if session::same_origin(&headers) {
        assert!(session::origin_allowed(&headers));
    }

    if let Ok(token) = std::str::from_utf8(data)
        && let Ok(claims) = state.tokens.verify(token)
    {
        // Only a compact HS256 JWT of bounded size, signed with our key, verifies.
        assert!(token.len() <= 4096 && token.split('.').count() == 3, "{claims:?}");
    }
});
