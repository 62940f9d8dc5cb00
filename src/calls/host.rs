//! Calls across servers. A room's calls through a media server are held by one server, the
//! room's call host: every server in the room works it out the same way from the room's
//! members ([`host_candidates`], tried in order, the first that answers hosts), so people
//! from every server end up in one call. Another server's user joins a call here with a call
//! token ([`guest_token`]) that their server asks for over federation, signed as itself, for
//! one of its own users who is joined to the room here; their browser presents it to this
//! server's call socket. Leaving the room (as this server sees it) takes them off the call,
//! as for local members.

use super::Calls;
use crate::error::{Error, Result};
use crate::events::Membership;
use crate::ids::{RoomId, ServerName, UserId};
use crate::store::Store;

/// How long a call token admits its user to open a call socket, seconds.
pub const CALL_TOKEN_TTL: u64 = 60;
/// Most servers tried for a room's call host.
pub const MAX_HOST_CANDIDATES: usize = 5;

/// The servers that may host a room's calls, in the order every server tries them: the
/// server of the room's creator if one of its users is still joined, then the other servers
/// with a joined member, by name. At most [`MAX_HOST_CANDIDATES`].
pub fn host_candidates(store: &Store, room: &RoomId) -> Result<Vec<ServerName>> {
    let record = store.room(room)?.ok_or_else(|| Error::NotFound("no such room".into()))?;
    let mut servers: Vec<String> = store
        .members(room)?
        .into_iter()
        .filter(|(_, m)| *m == Membership::Join)
        .map(|(u, _)| crate::ids::server_of(&u).to_string())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    let creator = crate::ids::server_of(&record.creator);
    if let Some(i) = servers.iter().position(|s| s == creator) {
        let first = servers.remove(i);
        servers.insert(0, first);
    }
    Ok(servers.into_iter().filter_map(|s| ServerName::parse(&s).ok()).take(MAX_HOST_CANDIDATES).collect())
}

/// A call token for `user`, of the server `origin` that asks for it, to join `room`'s calls
/// here: only if this server runs a media server, the user is of `origin`, and joined to the
/// room as this server sees it.
pub fn guest_token(calls: &Calls, origin: &str, user: &UserId, room: &RoomId) -> Result<String> {
    let Some(keys) = &calls.guest_tokens else {
        return Err(Error::NotFound("this server hosts no calls (it runs no media server)".into()));
    };
    if user.server() != origin {
        return Err(Error::Forbidden(format!("{origin} may ask only for its own users")));
    }
    if user.server() == calls.server_name.as_str() {
        return Err(Error::bad("our own users need no call token"));
    }
    if calls.store.membership(room, user.as_str())? != Membership::Join {
        return Err(Error::Forbidden(format!("{user} is not in this room")));
    }
    keys.issue_call(user.as_str(), room.as_str(), CALL_TOKEN_TTL)
}

/// Who a call token admits, and to which room's calls.
pub fn guest_of(calls: &Calls, token: &str) -> Result<(UserId, RoomId)> {
    let keys = calls.guest_tokens.as_ref().ok_or_else(|| Error::NotFound("this server hosts no calls".into()))?;
    let claims = keys.verify_call(token)?;
    let bad = || Error::Unauthorized("invalid call token".into());
    let user = UserId::parse(&claims.sub).map_err(|_| bad())?;
    let room = RoomId::parse(&claims.room).map_err(|_| bad())?;
    if user.server() == calls.server_name.as_str() {
        return Err(bad());
    }
    Ok((user, room))
}

/// Most calls of one room another server's roster may name.
pub const MAX_REMOTE_CALLS: usize = 8;
/// Most people in one call of another server's roster.
pub const MAX_REMOTE_PEOPLE: usize = 500;

/// The content of a `chat.call.roster` EDU: who is in each of a room's calls held here, for the
/// room's other servers to show in the room (their members join through [`guest_token`]). No
/// calls: the last one ended.
pub fn roster_content(room: &RoomId, calls: &[super::CallPeople]) -> serde_json::Value {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(
            |c| serde_json::json!({ "conf_id": c.conf_id, "user_ids": c.user_ids, "hands": c.hands, "muted": c.muted }),
        )
        .collect();
    serde_json::json!({ "room_id": room.as_str(), "calls": calls })
}

/// A `chat.call.roster` EDU from `origin`, checked: the room, if `origin` has a member joined
/// to it here, and its calls, keeping only people joined to it here (hands and microphones of
/// people in the call). Anything malformed or too large: none.
pub fn roster_from(
    store: &Store,
    origin: &str,
    content: &serde_json::Value,
) -> Option<(RoomId, Vec<super::CallPeople>)> {
    let room = RoomId::parse(content.get("room_id")?.as_str()?).ok()?;
    let members = store.members(&room).ok()?;
    if !members.iter().any(|(m, s)| *s == Membership::Join && crate::ids::server_of(m) == origin) {
        return None;
    }
    let joined = |u: &str| members.iter().any(|(m, s)| m == u && *s == Membership::Join);
    Some((room, parse_roster(content, joined)?))
}

/// The calls of a `chat.call.roster` EDU's content, keeping only people `joined` says are in
/// the room, each once: none if it is malformed or too large.
pub fn parse_roster(content: &serde_json::Value, joined: impl Fn(&str) -> bool) -> Option<Vec<super::CallPeople>> {
    let calls = content.get("calls")?.as_array()?;
    if calls.len() > MAX_REMOTE_CALLS {
        return None;
    }
    let mut out = Vec::new();
    for c in calls {
        let conf_id = c.get("conf_id")?.as_str()?;
        super::check_conf_id(conf_id).ok()?;
        let list = |k: &str| -> Option<Vec<String>> {
            let items = c.get(k).and_then(|v| v.as_array()).map(Vec::as_slice).unwrap_or_default();
            if items.len() > MAX_REMOTE_PEOPLE {
                return None;
            }
            Some(items.iter().filter_map(|u| u.as_str()).map(str::to_string).collect())
        };
        let mut user_ids: Vec<String> = Vec::new();
        for u in list("user_ids")? {
            if joined(&u) && !user_ids.contains(&u) {
                user_ids.push(u);
            }
        }
        if user_ids.is_empty() {
            continue;
        }
        let hands = list("hands")?.into_iter().filter(|u| user_ids.contains(u)).collect();
        let muted = list("muted")?.into_iter().filter(|u| user_ids.contains(u)).collect();
        out.push(super::CallPeople { conf_id: conf_id.to_string(), user_ids, hands, muted });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn another_servers_roster_is_bounded_and_names_only_members() {
        let joined = |u: &str| u.ends_with(":a.test") || u == "@ben:b.test";
        let content = json!({ "room_id": "!r:a.test", "calls": [
            { "conf_id": "sfu-1", "user_ids": ["@ana:a.test", "@eve:e.test", "@ben:b.test", "@ana:a.test"],
              "hands": ["@ben:b.test", "@eve:e.test"], "muted": ["@zed:a.test"] },
            { "conf_id": "sfu-2", "user_ids": ["@eve:e.test"] },
        ]});
        let calls = parse_roster(&content, joined).unwrap();
        assert_eq!(calls.len(), 1, "a call of no members is dropped");
        assert_eq!(calls[0].user_ids, ["@ana:a.test", "@ben:b.test"]);
        assert_eq!(calls[0].hands, ["@ben:b.test"]);
        assert!(calls[0].muted.is_empty());
        for bad in [
            json!({ "calls": [{ "conf_id": "../x", "user_ids": ["@ana:a.test"] }] }),
            json!({ "calls": (0..=MAX_REMOTE_CALLS).map(|i| json!({ "conf_id": format!("c{i}"), "user_ids": [] })).collect::<Vec<_>>() }),
            json!({ "calls": [{ "conf_id": "c", "user_ids": vec!["@ana:a.test"; MAX_REMOTE_PEOPLE + 1] }] }),
            json!({ "calls": "no" }),
        ] {
            assert!(parse_roster(&bad, joined).is_none(), "{bad}");
        }
        let rebuilt = roster_content(&RoomId::from_hash("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), &calls);
        assert_eq!(parse_roster(&rebuilt, joined).unwrap(), calls, "what we send, we take");
    }
}
