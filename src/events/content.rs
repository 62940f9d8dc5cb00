//! Event types used by the server and typed views of their content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Creates a room; the first event of every room.
pub const M_ROOM_CREATE: &str = "m.room.create";
/// Membership of one user (state key = user id).
pub const M_ROOM_MEMBER: &str = "m.room.member";
/// Who may do what.
pub const M_ROOM_POWER_LEVELS: &str = "m.room.power_levels";
/// `public` or `invite`.
pub const M_ROOM_JOIN_RULES: &str = "m.room.join_rules";
/// Room name.
pub const M_ROOM_NAME: &str = "m.room.name";
/// Room topic.
pub const M_ROOM_TOPIC: &str = "m.room.topic";
/// A chat message.
pub const M_ROOM_MESSAGE: &str = "m.room.message";
/// The messages pinned in a room (`{"pinned": [event ids]}`).
pub const M_ROOM_PINNED_EVENTS: &str = "m.room.pinned_events";
/// Most messages pinned in one room (a longer list from another server is cut).
pub const MAX_PINNED: usize = 50;
/// Takes back an earlier event: its content is stripped (`redacts` in content, room version 11+).
pub const M_ROOM_REDACTION: &str = "m.room.redaction";
/// An event with no content that only joins the room's branches (its `prev_events` name
/// them all), as Synapse sends them; never shown.
pub const DUMMY_EVENT: &str = "org.matrix.dummy_event";

/// Longest room name, in characters (local names are refused beyond it; others' are cut).
pub const MAX_NAME_CHARS: usize = 100;
/// Longest topic, in characters (local topics are refused beyond it; others' are cut).
pub const MAX_TOPIC_CHARS: usize = 1000;

/// A name or topic as this server keeps and shows it: at most `max_chars` characters, without
/// control characters but newlines. Local text was refused beyond these limits; text from other
/// servers' state events is cut to them, so the room's state (the events themselves, signed and
/// hashed) stays the same on every server while no one shows more than the local limit.
pub fn capped_text(s: &str, max_chars: usize) -> String {
    s.chars().filter(|c| !c.is_control() || *c == '\n').take(max_chars).collect()
}

/// A user's membership in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// A member: may read and post.
    Join,
    /// Invited: may join a private room.
    Invite,
    /// Left (or was never in the room).
    Leave,
    /// Banned: may not join again.
    Ban,
    /// Asked to be let in (a `knock` room): a moderator may invite them, or turn them away.
    Knock,
}

impl Membership {
    /// The string stored in membership tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
            Membership::Knock => "knock",
        }
    }

    /// Parses a stored membership string; anything unknown counts as `Leave`.
    pub fn parse(s: &str) -> Self {
        match s {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "ban" => Membership::Ban,
            "knock" => Membership::Knock,
            _ => Membership::Leave,
        }
    }

    /// Reads `content.membership` of a member event.
    pub fn of_content(content: &Value) -> Option<Self> {
        content.get("membership").and_then(Value::as_str).map(Membership::parse)
    }
}

/// Who may join: anyone (`public`), only invited users (`invite`), or (in rooms made on
/// Matrix servers) users who asked and were let in (`knock`), members of other rooms
/// (`restricted`), or either (`knock_restricted`). This server makes rooms of the first two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRule {
    /// Listed in the directory; anyone may join.
    Public,
    /// Private: join by invitation only.
    Invite,
    /// Private; anyone may ask to be let in.
    Knock,
    /// Open to the members of the rooms the join rules name.
    Restricted,
    /// `knock` and `restricted` together.
    KnockRestricted,
}

impl JoinRule {
    /// The Matrix string.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRule::Public => "public",
            JoinRule::Invite => "invite",
            JoinRule::Knock => "knock",
            JoinRule::Restricted => "restricted",
            JoinRule::KnockRestricted => "knock_restricted",
        }
    }

    /// Reads `content.join_rule` of a join-rules event; a rule this server does not know
    /// (or none) counts as invite-only, the rule that lets fewest in.
    pub fn of_content(content: &Value) -> Self {
        match content.get("join_rule").and_then(Value::as_str) {
            Some("public") => JoinRule::Public,
            Some("knock") => JoinRule::Knock,
            Some("restricted") => JoinRule::Restricted,
            Some("knock_restricted") => JoinRule::KnockRestricted,
            _ => JoinRule::Invite,
        }
    }
}

/// The rooms whose members a restricted room lets in: the `m.room_membership` entries of its
/// join rules' `allow` (at most 50 read).
pub fn allowed_rooms(join_rules: &Value) -> Vec<crate::ids::RoomId> {
    let allow = join_rules.get("allow").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    allow
        .iter()
        .take(50)
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("m.room_membership"))
        .filter_map(|a| a.get("room_id").and_then(Value::as_str).and_then(|r| crate::ids::RoomId::parse(r).ok()))
        .collect()
}

/// Content of `m.room.power_levels`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PowerLevels {
    /// Level needed to ban.
    #[serde(default = "fifty")]
    pub ban: i64,
    /// Level needed to invite.
    #[serde(default)]
    pub invite: i64,
    /// Level needed to kick.
    #[serde(default = "fifty")]
    pub kick: i64,
    /// Level needed to redact others' events.
    #[serde(default = "fifty")]
    pub redact: i64,
    /// Level needed for a non-state event with no entry in `events`.
    #[serde(default)]
    pub events_default: i64,
    /// Level needed for a state event with no entry in `events`.
    #[serde(default = "fifty")]
    pub state_default: i64,
    /// Per-event-type levels.
    #[serde(default)]
    pub events: BTreeMap<String, i64>,
    /// Per-user levels.
    #[serde(default)]
    pub users: BTreeMap<String, i64>,
    /// Level of users not listed.
    #[serde(default)]
    pub users_default: i64,
    /// Levels for notifying: `room` is the level needed to mention everyone (`@room`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationLevels>,
}

/// A power-levels event's `notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationLevels {
    /// Level needed to mention the whole room.
    #[serde(default = "fifty")]
    pub room: i64,
}

fn fifty() -> i64 {
    50
}

/// The level of a room's creator (room version 12): above every level a power-levels event
/// can give, so the creator may do anything and nobody else can act on them.
pub const CREATOR_LEVEL: i64 = i64::MAX;

impl PowerLevels {
    /// The levels of a new room: everyone 0; the creator is not listed, as room version 12
    /// wants (a creator's level is [`CREATOR_LEVEL`] whatever `users` says).
    pub fn for_new_room() -> Self {
        PowerLevels {
            ban: 50,
            invite: 0,
            kick: 50,
            redact: 50,
            events_default: 0,
            state_default: 50,
            events: BTreeMap::from([(M_ROOM_POWER_LEVELS.to_string(), 100)]),
            users: BTreeMap::new(),
            users_default: 0,
            notifications: None,
        }
    }

    /// The level needed to mention everyone (`@room`).
    pub fn room_notification_level(&self) -> i64 {
        self.notifications.as_ref().map_or(50, |n| n.room)
    }

    /// A user's level in the room made by `creators`: [`CREATOR_LEVEL`] for a creator (rooms
    /// made before version 12 rules also list theirs in `users`, which changes nothing), else
    /// from `users`, else `users_default`.
    pub fn level_of(&self, creators: Creators<'_>, user: &str) -> i64 {
        if creators.contains(user) {
            CREATOR_LEVEL
        } else {
            self.users.get(user).copied().unwrap_or(self.users_default)
        }
    }

    /// Level needed to send an event of `kind`.
    pub fn event_level(&self, kind: &str, is_state: bool) -> i64 {
        self.events.get(kind).copied().unwrap_or(if is_state { self.state_default } else { self.events_default })
    }

    /// As JSON content.
    pub fn to_content(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// Content of a member event.
pub fn member_content(m: Membership) -> Value {
    json!({ "membership": m.as_str() })
}

/// Most user ids of one event's `m.mentions` that count (another server's may name more).
pub const MAX_MENTIONED: usize = 100;

/// An event's intentional mentions (`m.mentions`): the user ids it names (at most
/// [`MAX_MENTIONED`]), and whether it names the whole room (`room: true`).
pub fn mentions_of(content: &Value) -> (Vec<&str>, bool) {
    let Some(m) = content.get("m.mentions") else { return (Vec::new(), false) };
    let users = m.get("user_ids").and_then(Value::as_array).into_iter().flatten();
    let users = users.filter_map(Value::as_str).take(MAX_MENTIONED).collect();
    (users, m.get("room").and_then(Value::as_bool) == Some(true))
}

/// Longest display name shown, in characters (a longer one from another server is cut).
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// A display name as it may be shown: control characters and surrounding space removed, at
/// most [`MAX_DISPLAY_NAME_CHARS`]; none when nothing is left.
pub fn clean_display_name(name: &str) -> Option<String> {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    let clean: String = clean.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    let clean = clean.trim_end().to_string();
    (!clean.is_empty()).then_some(clean)
}

/// Content of a plain-text message.
pub fn text_message(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

/// Most additional creators a create event may name.
pub const MAX_ADDITIONAL_CREATORS: usize = 100;

/// Who has every right in a room (room version 12): the create event's sender, and the users
/// its content names in `additional_creators`.
#[derive(Debug, Clone, Copy)]
pub struct Creators<'a> {
    /// The create event's sender.
    pub sender: &'a str,
    /// `additional_creators` of the create event.
    pub additional: &'a [String],
}

impl Creators<'_> {
    /// Whether `user` is one of them.
    pub fn contains(&self, user: &str) -> bool {
        user == self.sender || self.additional.iter().any(|a| a == user)
    }
}

/// The valid user ids a create event's content names in `additional_creators` (at most
/// [`MAX_ADDITIONAL_CREATORS`]).
pub fn additional_creators(create_content: &Value) -> Vec<String> {
    let list = create_content.get("additional_creators").and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|u| crate::ids::UserId::parse(u).is_ok())
        .take(MAX_ADDITIONAL_CREATORS)
        .map(str::to_string)
        .collect()
}
