//! Which events notify whom, decided once on the server so every device of a user agrees. In
//! the spirit of Matrix's default push rules:
//!
//! - a message in a direct chat or a room of two notifies; elsewhere a message notifies the
//!   users it mentions (`m.mentions.user_ids`), everyone when it mentions the room
//!   (`m.mentions.room`, from a sender whose power allows it: `notifications.room`), and whoever has one of its words among their keywords;
//! - a call invite notifies the people it is for;
//! - one's own events, edits and notices (bots) never notify;
//! - the user's settings come first: do not disturb and a muted room silence everything, a
//!   room set to "all messages" notifies every message, one set to "mentions" only what
//!   mentions them (also in a direct chat).

use serde_json::Value;

use crate::events::{M_ROOM_MESSAGE, call};
use crate::store::push::{Level, NotifyPrefs};

/// Most keywords a user may have.
pub const MAX_KEYWORDS: usize = 50;
/// Longest keyword, characters.
pub const MAX_KEYWORD_CHARS: usize = 64;

/// What notifies a user, with the room's facts the rules need.
pub struct Facts<'a> {
    /// The event type.
    pub kind: &'a str,
    /// The event content.
    pub content: &'a Value,
    /// The room id.
    pub room_id: &'a str,
    /// The room is a direct chat or has two members.
    pub one_to_one: bool,
    /// The sender's power level allows mentioning the whole room (`notifications.room`).
    pub may_mention_room: bool,
}

/// Whether the sender of an event in `room` may mention the whole room.
pub fn may_mention_room(room: &crate::store::rooms::RoomRecord, sender: &str) -> bool {
    let pl = &room.power_levels;
    pl.level_of(room.creators(), sender) >= pl.room_notification_level()
}

/// Whether an event notifies `user` (not its sender) with `prefs`, at `now` (ms).
pub fn notifies(facts: &Facts<'_>, user: &str, prefs: &NotifyPrefs, now: u64) -> bool {
    if prefs.dnd {
        return false;
    }
    let pref = prefs.rooms.get(facts.room_id).copied().unwrap_or_default();
    let level = match pref.level {
        Level::Mute if pref.mute_until.is_none_or(|until| until > now) => return false,
        Level::Mute => Level::Default,
        other => other,
    };
    let content = facts.content;
    if facts.kind == call::INVITE {
        // A call rings for the person it is for (all the others in a room of two).
        return match content.get("invitee").and_then(Value::as_str) {
            Some(invitee) => invitee == user,
            None => facts.one_to_one,
        };
    }
    if facts.kind != M_ROOM_MESSAGE {
        return false;
    }
    let edit = content.get("m.relates_to").and_then(|r| r.get("rel_type")).and_then(Value::as_str) == Some("m.replace");
    let notice = content.get("msgtype").and_then(Value::as_str) == Some("m.notice");
    if edit || notice {
        return false;
    }
    if level == Level::All || (level == Level::Default && facts.one_to_one) {
        return true;
    }
    let mentions = content.get("m.mentions");
    let named = mentions
        .and_then(|m| m.get("user_ids"))
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(user)));
    let room = facts.may_mention_room && mentions.and_then(|m| m.get("room")).and_then(Value::as_bool) == Some(true);
    if named || room {
        return true;
    }
    let body = content.get("body").and_then(Value::as_str).unwrap_or_default();
    !prefs.keywords.is_empty() && says_any(body, &prefs.keywords)
}

/// Whether `text` has one of `words` as a whole word (or phrase), in any case.
pub fn says_any(text: &str, words: &[String]) -> bool {
    let text = text.to_lowercase();
    words.iter().any(|w| {
        let w = w.trim().to_lowercase();
        !w.is_empty()
            && text.match_indices(w.as_str()).any(|(at, m)| {
                let before = text[..at].chars().next_back();
                let after = text[at + m.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
            })
    })
}

/// Keywords as given (comma or newline separated) made into a clean list, or why not.
pub fn parse_keywords(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split([',', '\n']) {
        let w = w.trim();
        if w.is_empty() || out.iter().any(|o| o.to_lowercase() == w.to_lowercase()) {
            continue;
        }
        if w.chars().count() > MAX_KEYWORD_CHARS {
            return Err(format!("a keyword may have at most {MAX_KEYWORD_CHARS} characters"));
        }
        if w.chars().any(char::is_control) {
            return Err("keywords cannot contain control characters".into());
        }
        out.push(w.to_string());
    }
    if out.len() > MAX_KEYWORDS {
        return Err(format!("at most {MAX_KEYWORDS} keywords"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::push::RoomPref;

    fn facts<'a>(content: &'a Value, one_to_one: bool) -> Facts<'a> {
        Facts { kind: M_ROOM_MESSAGE, content, room_id: "!r:x", one_to_one, may_mention_room: true }
    }

    #[test]
    fn who_a_message_notifies() {
        let me = "@ben:x";
        let p = NotifyPrefs::default();
        let plain = json!({"msgtype": "m.text", "body": "hi"});
        assert!(!notifies(&facts(&plain, false), me, &p, 0));
        assert!(notifies(&facts(&plain, true), me, &p, 0));
        let named = json!({"msgtype": "m.text", "body": "hi ben", "m.mentions": {"user_ids": [me]}});
        assert!(notifies(&facts(&named, false), me, &p, 0));
        assert!(!notifies(&facts(&named, false), "@cara:x", &p, 0));
        let room = json!({"msgtype": "m.text", "body": "@room hi", "m.mentions": {"room": true}});
        assert!(notifies(&facts(&room, false), "@cara:x", &p, 0));
        let weak = Facts { may_mention_room: false, ..facts(&room, false) };
        assert!(!notifies(&weak, "@cara:x", &p, 0), "a sender below notifications.room mentions no one");
        let edit = json!({"msgtype": "m.text", "body": "* hi", "m.mentions": {"user_ids": [me]},
                          "m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}});
        assert!(!notifies(&facts(&edit, true), me, &p, 0));
        let notice = json!({"msgtype": "m.notice", "body": "build passed"});
        assert!(!notifies(&facts(&notice, true), me, &p, 0));
        // Malformed mentions from another server notify nobody and break nothing.
        let odd = json!({"msgtype": "m.text", "body": "x", "m.mentions": {"user_ids": "@ben:x", "room": "yes"}});
        assert!(!notifies(&facts(&odd, false), me, &p, 0));
    }

    #[test]
    fn settings_come_first() {
        let me = "@ben:x";
        let plain = json!({"msgtype": "m.text", "body": "lunch at the Café?"});
        let named = json!({"msgtype": "m.text", "body": "ben?", "m.mentions": {"user_ids": [me]}});
        let mut p = NotifyPrefs::default();
        p.rooms.insert("!r:x".into(), RoomPref { level: Level::All, mute_until: None });
        assert!(notifies(&facts(&plain, false), me, &p, 0));
        p.rooms.insert("!r:x".into(), RoomPref { level: Level::Mentions, mute_until: None });
        assert!(!notifies(&facts(&plain, true), me, &p, 0));
        assert!(notifies(&facts(&named, true), me, &p, 0));
        p.rooms.insert("!r:x".into(), RoomPref { level: Level::Mute, mute_until: Some(1000) });
        assert!(!notifies(&facts(&named, true), me, &p, 999));
        assert!(notifies(&facts(&named, true), me, &p, 1000), "the mute has ended");
        p.rooms.clear();
        p.keywords = vec!["café".into()];
        assert!(notifies(&facts(&plain, false), me, &p, 0));
        p.keywords = vec!["caf".into()];
        assert!(!notifies(&facts(&plain, false), me, &p, 0), "whole words only");
        p.dnd = true;
        assert!(!notifies(&facts(&named, true), me, &p, 0));
        let invite = json!({"call_id": "c", "invitee": me});
        let call =
            Facts { kind: call::INVITE, content: &invite, room_id: "!r:x", one_to_one: false, may_mention_room: true };
        assert!(!notifies(&call, me, &p, 0));
        p.dnd = false;
        assert!(notifies(&call, me, &p, 0));
        assert!(!notifies(&call, "@cara:x", &p, 0));
    }

    #[test]
    fn keywords_are_cleaned() {
        assert_eq!(parse_keywords(" deploy, Release\nrelease,, ").unwrap(), vec!["deploy", "Release"]);
        assert!(parse_keywords(&"x".repeat(65)).is_err());
        assert!(parse_keywords(&(0..51).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",")).is_err());
    }
}
