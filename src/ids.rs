//! Identifier newtypes, parsed once at the edge: `@user:server`, `!room`, `$event`, server names.
//!
//! The shapes follow Matrix: user ids are `@localpart:server_name`; room ids (room version 12
//! style) are `!` plus the unpadded URL-safe base64 SHA-256 reference hash of the room's create
//! event; event ids are `$` plus the reference hash of the event.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest accepted identifier of any kind, in bytes (Matrix caps ids at 255).
pub const MAX_ID_LEN: usize = 255;

/// A server's name: a DNS name or IP literal, with an optional port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerName(String);

impl ServerName {
    /// Validates a server name: host (DNS name, IPv4, or `[IPv6]`) and optional `:port`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::bad(format!("invalid server name {s:?}: expected host or host:port"));
        if s.is_empty() || s.len() > MAX_ID_LEN {
            return Err(bad());
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or_else(bad)?;
            let host = &rest[..end];
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (host, rest[end + 1..].strip_prefix(':'))
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if let Some(port) = port {
            port.parse::<u16>().map_err(|_| bad())?;
        }
        let host_ok =
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !host_ok {
            return Err(bad());
        }
        Ok(ServerName(s.to_ascii_lowercase()))
    }

    /// `localhost:PORT`, always valid.
    pub fn localhost(port: u16) -> Self {
        ServerName(format!("localhost:{port}"))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a username chosen at registration and returns its canonical (lower-case) form.
///
/// Rules: 2 to 32 characters from `a-z 0-9 . _ -`, starting with a letter or digit.
/// Upper-case input is accepted and folded, so `Ana` and `ana` are the same account.
pub fn normalize_username(name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    let len_ok = (2..=32).contains(&lower.len());
    let chars_ok = lower.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let first_ok = lower.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !(len_ok && chars_ok && first_ok) {
        return Err(Error::bad(
            "username must be 2-32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    Ok(lower)
}

/// A full user id, `@localpart:server`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserId(String);

impl UserId {
    /// Builds the id of a local user from a canonical localpart.
    pub fn new(localpart: &str, server: &ServerName) -> Self {
        UserId(format!("@{localpart}:{server}"))
    }

    /// Parses a full `@localpart:server` id.
    pub fn parse(s: &str) -> Result<Self> {
        if !s.trim_start().starts_with('@') {
            return Err(Error::bad(format!("invalid user id {s:?}")));
        }
        Self::parse_or_local(s, &ServerName::localhost(1))
    }

    /// Parses `@localpart:server`, or a bare local username resolved against `local_server`.
    pub fn parse_or_local(s: &str, local_server: &ServerName) -> Result<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix('@') {
            let (local, server) = rest.split_once(':').ok_or_else(|| Error::bad(format!("invalid user id {s:?}")))?;
            // Any server's localparts: Matrix's historical character set, lower-cased.
            let local = local.to_ascii_lowercase();
            let ok = !local.is_empty()
                && s.len() <= MAX_ID_LEN
                && local.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/+".contains(&b));
            if !ok {
                return Err(Error::bad(format!("invalid user id {s:?}")));
            }
            let server = ServerName::parse(server)?;
            Ok(UserId::new(&local, &server))
        } else {
            Ok(UserId::new(&normalize_username(s)?, local_server))
        }
    }

    /// The part between `@` and `:`.
    pub fn localpart(&self) -> &str {
        self.0[1..].split(':').next().unwrap_or_default()
    }

    /// The server part after the first `:`.
    pub fn server(&self) -> &str {
        self.0.split_once(':').map(|(_, s)| s).unwrap_or_default()
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room id: `!` + 43 URL-safe base64 characters, the reference hash of the room's create
/// event. Parsed once where it enters (a path, a body, a frame, a PDU); serialised as the
/// plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct RoomId(String);

impl RoomId {
    /// Checks the shape of a room id taken from a request; a malformed one is a room that
    /// does not exist (`NotFound`).
    pub fn parse(s: &str) -> Result<Self> {
        Self::try_from(s.to_string())
    }

    /// The id of the room a create event with this reference hash names (`!` + hash). For the
    /// ids the server computes itself, so not checked again.
    pub(crate) fn from_hash(hash: &str) -> Self {
        RoomId(format!("!{hash}"))
    }

    /// An id read back from this server's own tables, where only checked ids are written.
    pub(crate) fn from_stored(s: &str) -> Self {
        RoomId(s.to_string())
    }

    /// The id of the room's create event, which has the same hash (room version 12).
    pub fn create_event_id(&self) -> EventId {
        EventId::from_hash(&self.0[1..])
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        if hash_id_ok(&s, '!') { Ok(RoomId(s)) } else { Err(Error::NotFound(format!("no such room {s:?}"))) }
    }
}

/// An event id: `$` + 43 URL-safe base64 characters, the event's reference hash. Serialised as
/// the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct EventId(String);

impl EventId {
    /// Checks the shape of an event id taken from a request (`BadRequest` if malformed).
    pub fn parse(s: &str) -> Result<Self> {
        Self::try_from(s.to_string())
    }

    /// The id of an event with this reference hash (`$` + hash). For the ids the server
    /// computes itself, so not checked again.
    pub(crate) fn from_hash(hash: &str) -> Self {
        EventId(format!("${hash}"))
    }

    /// An id read back from this server's own tables, where only checked ids are written.
    pub(crate) fn from_stored(s: &str) -> Self {
        EventId(s.to_string())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        if hash_id_ok(&s, '$') { Ok(EventId(s)) } else { Err(Error::bad(format!("invalid event id {s:?}"))) }
    }
}

macro_rules! string_id {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Hash, Eq and Ord are the inner string's, so maps keyed by the id can be looked up by `&str`.
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$t> for String {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$t> for str {
            fn eq(&self, other: &$t) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$t> for &str {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }

        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
    )*};
}

string_id!(RoomId, EventId);

fn hash_id_ok(s: &str, sigil: char) -> bool {
    s.strip_prefix(sigil).is_some_and(|body| {
        body.len() == 43 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The server part of a user id (`@name:server` -> `server`; empty without one).
pub fn server_of(user: &str) -> &str {
    user.split_once(':').map(|(_, s)| s).unwrap_or_default()
}

/// A new random id (sessions, media ids, temporary file names): 128 bits from the OS,
/// URL-safe base64.
pub fn random_id() -> crate::error::Result<String> {
    use base64::Engine;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| crate::error::Error::Internal(format!("random source: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_reject_bad_shapes() {
        assert_eq!(normalize_username("Ana").ok().as_deref(), Some("ana"));
        for bad in ["a", "", "_ana", "ana smith", "ánä", &"a".repeat(33)] {
            assert!(normalize_username(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn server_names() {
        for ok in ["example.org", "127.0.0.1:8080", "[::1]:8448", "chat-1.local"] {
            assert!(ServerName::parse(ok).is_ok(), "{ok} rejected");
        }
        for bad in ["", "a b", "host:99999", "[zz]:1", "ex/ample"] {
            assert!(ServerName::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn user_ids() {
        let local = ServerName::parse("chat.test").unwrap();
        let u = UserId::parse_or_local("Ben", &local).unwrap();
        assert_eq!(u.as_str(), "@ben:chat.test");
        assert_eq!(u.localpart(), "ben");
        assert_eq!(u.server(), "chat.test");
        let r = UserId::parse_or_local("@cy:other.test:8448", &local).unwrap();
        assert_eq!(r.server(), "other.test:8448");
        assert!(UserId::parse_or_local("@:x", &local).is_err());
    }

    #[test]
    fn hash_ids() {
        let id = format!("!{}", "a".repeat(43));
        assert_eq!(RoomId::parse(&id).unwrap().as_str(), id);
        assert!(matches!(RoomId::parse("!short"), Err(Error::NotFound(m)) if m == "no such room \"!short\""));
        let ev = format!("${}", "b".repeat(43));
        assert_eq!(EventId::parse(&ev).unwrap().to_string(), ev);
        assert!(matches!(EventId::parse("$x"), Err(Error::BadRequest(m)) if m == "invalid event id \"$x\""));
        // On the wire a plain string, checked when read.
        let json = serde_json::to_string(&RoomId::parse(&id).unwrap()).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert!(serde_json::from_str::<RoomId>(&json).is_ok());
        assert!(serde_json::from_str::<EventId>("\"$x\"").is_err());
        assert_eq!(RoomId::parse(&id).unwrap().create_event_id().as_str(), format!("${}", "a".repeat(43)));
    }
}
