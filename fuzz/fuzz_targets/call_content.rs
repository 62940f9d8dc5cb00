//! Call signals as clients send them (`{"t":"call","type":…,"content":…}`): a sequence of
//! signals, one per line as `TYPE SENDER CONTENT-JSON`, goes through `calls::clean_content` and
//! then the call state machine `calls::apply`, as `calls::submit_signal` does in its write job.
//!
//! Checks: cleaned content is rebuilt from known fields only (and cleaning it again changes
//! nothing); only the two parties move a call along; nothing is accepted after the end.

#![no_main]

use std::collections::HashMap;

use chat::calls::{self, CallRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const USERS: [&str; 4] = ["@ana:chat.test", "@ben:chat.test", "@cy:chat.test", "@dan:chat.test"];
/// `@dan` is not a member of the room.
fn is_member(u: &str) -> chat::error::Result<bool> {
    Ok(USERS[..3].contains(&u))
}

fn allowed_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        calls::INVITE => &["lifetime", "offer", "invitee", "chat.media", "chat.ring", "chat.conf_id"],
        calls::ANSWER => &["answer"],
        calls::NEGOTIATE => &["description"],
        calls::CANDIDATES => &["candidates"],
        calls::SELECT_ANSWER => &["selected_party_id"],
        calls::HANGUP => &["reason", "chat.moved_to"],
        _ => &[],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut records: HashMap<String, CallRecord> = HashMap::new();
    let mut now: u64 = 1_800_000_000_000;
    for line in text.lines().take(32) {
        let mut parts = line.splitn(3, ' ');
        let (Some(kind), Some(sender), Some(json)) = (parts.next(), parts.next(), parts.next()) else { continue };
        // Short names for the seeds: `invite` means `m.call.invite`.
        let kind = if kind.contains('.') { kind.to_string() } else { format!("m.call.{kind}") };
        let sender = sender.parse::<usize>().ok().and_then(|i| USERS.get(i)).copied().unwrap_or(sender);
        let Ok(content) = serde_json::from_str::<Value>(json) else { continue };
        now += 1 + (json.len() as u64 % 50_000); // time moves on between signals

        let Ok(mut clean) = calls::clean_content(&kind, &content) else { continue };
        let obj = clean.as_object().expect("clean content is an object");
        for key in obj.keys() {
            let known = ["call_id", "party_id", "version"].contains(&key.as_str())
                || allowed_keys(&kind).contains(&key.as_str());
            assert!(known, "{kind}: unknown key {key:?} kept");
        }
        assert_eq!(clean["version"], "1");
        assert_eq!(calls::clean_content(&kind, &clean).ok().as_ref(), Some(&clean), "cleaning is not idempotent");

        let call_id = clean["call_id"].as_str().expect("call_id is a string").to_string();
        let before = records.get(&call_id).cloned();
        let ended_before = before.as_ref().is_some_and(|r| r.ended.is_some());
        match calls::apply(&kind, &mut clean, sender, before.clone(), now, is_member, || Ok(USERS[..3].iter().map(|u| u.to_string()).collect())) {
            Ok(rec) => {
                assert!(!ended_before, "{kind} accepted after the call ended");
                assert!(rec.caller == sender || rec.invitee == sender, "{sender} is not a party");
                assert_ne!(rec.caller, rec.invitee, "a call with oneself");
                assert!(is_member(&rec.invitee).unwrap_or(false), "the invitee is not a member");
                if kind == calls::ANSWER {
                    assert_eq!(sender, rec.invitee, "only the callee answers");
                }
                if kind == calls::REJECT || kind == calls::HANGUP {
                    assert!(rec.ended.is_some() && clean.get("chat.call").is_some());
                }
                records.insert(call_id, rec);
            }
            Err(e) => assert!(e.status().is_client_error(), "signal refused with {}", e.status()),
        }
    }
});
