//! Identifiers as they arrive in requests, frames and call signals: server names, user ids (full
//! or a bare local username), usernames at registration, room and event ids.
//!
//! Checks that whatever is accepted is canonical: it parses again to itself and its parts are
//! valid on their own.

#![no_main]

use chat::ids::{self, MAX_ID_LEN, ServerName, UserId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let local = ServerName::parse("chat.test").expect("a valid server name");

    if let Ok(name) = ServerName::parse(s) {
        assert!(name.as_str().len() <= MAX_ID_LEN);
        assert_eq!(ServerName::parse(name.as_str()).ok(), Some(name.clone()), "server name is not canonical");
    }

    if let Ok(user) = ids::normalize_username(s) {
        assert!((2..=32).contains(&user.len()), "{user:?}");
        assert_eq!(ids::normalize_username(&user).ok().as_deref(), Some(user.as_str()));
        let id = UserId::new(&user, &local);
        assert_eq!(UserId::parse(id.as_str()).ok(), Some(id.clone()), "a local user id does not parse back");
    }

    for parsed in [UserId::parse(s), UserId::parse_or_local(s, &local)] {
        let Ok(id) = parsed else { continue };
        assert!(id.as_str().starts_with('@'));
        assert!(!id.localpart().is_empty());
        assert!(ServerName::parse(id.server()).is_ok(), "user id {id} has a bad server part");
        assert_eq!(UserId::parse(id.as_str()).ok(), Some(id.clone()), "user id {id} is not canonical");
        assert_eq!(format!("@{}:{}", id.localpart(), id.server()), id.as_str());
    }

    if let Ok(room) = ids::RoomId::parse(s) {
        assert!(room.as_str().len() == 44 && room.as_str().starts_with('!'));
        assert_eq!(room.as_str(), s, "a room id is kept as given");
    }
    if let Ok(event) = ids::EventId::parse(s) {
        assert!(event.as_str().len() == 44 && event.as_str().starts_with('$'));
        assert_eq!(event.as_str(), s, "an event id is kept as given");
    }
});
