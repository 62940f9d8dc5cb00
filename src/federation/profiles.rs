//! Profiles of users on other servers: `GET /_matrix/federation/v1/query/profile` asked of
//! their server, and the answer kept for ten minutes (at most [`MAX_CACHED`] users), so a
//! profile card costs one request per user per ten minutes, whoever opens it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};

use super::FedState;
use crate::error::{Error, Result};
use crate::ids::UserId;

/// How long an answer is kept.
const TTL: Duration = Duration::from_secs(600);
/// Users whose profiles are kept at most; the oldest answers go first beyond.
const MAX_CACHED: usize = 10_000;

/// What we know of a remote user's profile.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteProfile {
    /// The name they go by, if any (cleaned as local names are).
    pub display_name: Option<String>,
}

/// Answers of other servers, by user id.
#[derive(Default)]
pub struct ProfileCache {
    map: Mutex<HashMap<String, (Instant, RemoteProfile)>>,
}

impl ProfileCache {
    fn get(&self, user: &str) -> Option<RemoteProfile> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(user).filter(|(at, _)| at.elapsed() < TTL).map(|(_, p)| p.clone())
    }

    fn put(&self, user: &str, profile: RemoteProfile) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED && !map.contains_key(user) {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
            if map.len() >= MAX_CACHED
                && let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(user.to_string(), (Instant::now(), profile));
    }
}

/// The profile of `user`, a user of another server, asked of that server (or as it answered
/// in the last ten minutes). `asker` is held to their per-user rate for the requests it causes.
/// A server that does not know the user: [`Error::NotFound`]; one that cannot be reached or
/// answers oddly: [`Error::Unavailable`].
pub async fn remote_profile(state: &FedState, asker: &UserId, user: &UserId) -> Result<RemoteProfile> {
    if let Some(p) = state.federation.profiles.get(user.as_str()) {
        return Ok(p);
    }
    state.rooms.messages_per_user.check(asker.as_str())?;
    let server = user.server();
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", super::urlencode(user.as_str()));
    let (status, v) = state
        .federation
        .client
        .signed(&state.federation.key, state.server_name.as_str(), server, Method::GET, &path, None)
        .await
        .map_err(|e| super::client::public(server, &e))?;
    if status == StatusCode::NOT_FOUND {
        return Err(Error::NotFound(format!("{server} has no user {user}")));
    }
    if status != StatusCode::OK {
        return Err(Error::Unavailable(format!("{server} answered {status}")));
    }
    let display_name = v.get("displayname").and_then(|n| n.as_str()).and_then(crate::events::clean_display_name);
    let profile = RemoteProfile { display_name };
    state.federation.profiles.put(user.as_str(), profile.clone());
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_at_most_its_bound() {
        let c = ProfileCache::default();
        for i in 0..MAX_CACHED + 5 {
            c.put(&format!("@u{i}:x"), RemoteProfile { display_name: None });
        }
        assert_eq!(c.map.lock().unwrap().len(), MAX_CACHED);
        assert!(c.get(&format!("@u{}:x", MAX_CACHED + 4)).is_some());
    }
}
