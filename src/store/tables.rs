//! Every redb table of the server, declared once. Values that are records are JSON bytes of the
//! record types in the sibling modules; ids are stored as their string form.

use redb::TableDefinition;

/// Setting name -> bytes. Keys: `schema_version` (u32 LE), `stream_pos` (u64 LE, last position
/// handed out), `jwt_secret` and `turn_secret` (32 random bytes each),
/// `server_name` (UTF-8, the name the server last started with), `signing_key` (PKCS#8 DER of
/// the ed25519 server key) and `signing_key_version`, `state_group_seq` (u64 LE, the last state group handed out).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Canonical (lower-case) username -> JSON [`super::accounts::UserRecord`].
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// Session id -> JSON [`super::accounts::SessionRecord`]. A token is valid only while its
/// session row exists; logout and password change delete rows.
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// (user id, session id) -> () index, to revoke all sessions of a user.
pub const USER_SESSIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("user_sessions");

/// Event id -> JSON [`super::events::StoredEvent`] (the event and its stream position).
pub const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");

/// Room id -> JSON [`super::rooms::RoomRecord`]: the summary derived from state, plus the
/// forward extremities and depth needed to build the next event.
pub const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");

/// (room id, stream position) -> (event id, sender, event type): the room's timeline order.
pub const ROOM_TIMELINE: TableDefinition<(&str, u64), (&str, &str, &str)> = TableDefinition::new("room_timeline");

/// (room id, event type, state key) -> event id: the room's current state.
pub const ROOM_STATE: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("room_state");

/// (room id, user id) -> membership (`join`, `invite`, `leave`, `ban`).
pub const ROOM_MEMBERS: TableDefinition<(&str, &str), &str> = TableDefinition::new("room_members");

/// (user id, room id) -> membership; the reverse of `ROOM_MEMBERS`, for "my rooms".
pub const USER_ROOMS: TableDefinition<(&str, &str), &str> = TableDefinition::new("user_rooms");

/// (user id, client txn id) -> event id, so a retried send returns the first event.
pub const TXN_IDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("txn_ids");

/// (user id, room id) -> stream position of the last event the user has read.
pub const READ_MARKERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("read_markers");

/// (user id, other user id) -> room id of their direct-message room, stored for both orders.
pub const DIRECT_ROOMS: TableDefinition<(&str, &str), &str> = TableDefinition::new("direct_rooms");

/// (room id, call id) -> JSON [`super::calls::CallRecord`]: who called whom, answered, ended.
pub const CALLS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("calls");

/// (server name, key id) -> JSON [`super::keys::CachedKey`]: other servers' signing
/// keys, fetched from their key documents; kept after expiry to verify what they signed before.
pub const SERVER_KEYS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("server_keys");

/// (user id, room id, stream position) -> (): messages that mention the user, for mention counts.
pub const MENTIONS: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("mentions");

/// (room id, event id) -> (): events of a room stored without a timeline position (outliers:
/// the state and auth chain received when joining through another server), so that deleting
/// the room finds them. Added in schema 2.
pub const ROOM_OUTLIERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("room_outliers");

/// Room alias (`#name:server`, lower-case) -> room id: this server's aliases.
pub const ALIASES: TableDefinition<&str, &str> = TableDefinition::new("aliases");

/// (room id, alias) -> (): the reverse of `ALIASES`, so a room's aliases are found without a
/// scan (the directory shows the first). Added in schema 3.
pub const ROOM_ALIASES: TableDefinition<(&str, &str), ()> = TableDefinition::new("room_aliases");

/// (u32::MAX - joined members, sort name, room id) -> JSON [`super::directory::DirectoryEntry`]:
/// the public directory in its order (most members first, then by name), so a page is a range
/// read. Kept with the room's summary in the same write; see [`super::directory`]. Schema 3.
pub const PUBLIC_ROOMS: TableDefinition<(u32, &str, &str), &[u8]> = TableDefinition::new("public_rooms");

/// Room id -> (u32::MAX - joined members, sort name): where a listed room's row is in
/// `PUBLIC_ROOMS`, so a change moves or removes it without a scan. Schema 3.
pub const PUBLIC_ROOM_KEYS: TableDefinition<&str, (u32, &str)> = TableDefinition::new("public_room_keys");

/// (destination server, lane, stream position) -> event id: the persistent outbound federation
/// queue. Lane 0 carries call signalling, lane 1 everything else; each lane of each
/// destination has one transaction in flight. Rows are written in the event's own transaction
/// and deleted when the destination has accepted them.
pub const FED_QUEUE: TableDefinition<(&str, u8, u64), &str> = TableDefinition::new("fed_queue");

/// (origin server, transaction id) -> when it was received (ms): inbound transactions already
/// processed, so a retried transaction is answered without processing it twice.
pub const FED_TXNS: TableDefinition<(&str, &str), u64> = TableDefinition::new("fed_txns");

/// (room id, redacted event id) -> redaction event id: every redaction received or sent, by
/// the event it takes back, so that one stored before its target is applied when the target
/// arrives (see [`super::redactions`]). Schema 4.
pub const REDACTIONS: TableDefinition<(&str, &str), &str> = TableDefinition::new("redactions");

/// (room id, state group) -> JSON [`super::state::Group`]: a room's state at some event, as the
/// changes from an earlier group (or in full); each stored event names the group of the state
/// after it (`StoredEvent::state_group`). Schema 5.
pub const STATE_GROUPS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("state_groups");

/// (room id, state groups joined by `,`, ascending) -> the group of their resolution, so the
/// same branches meeting again (a sender who keeps answering an old event) are resolved once.
/// Schema 5.
pub const STATE_MERGES: TableDefinition<(&str, &str), u64> = TableDefinition::new("state_merges");

/// (room id, edited message id, edit event id) -> the edit's `origin_server_ts`: every edit
/// (`m.replace`) received or sent, by the message it edits (see [`super::edits`]). Schema 6.
pub const EDITS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("edits");

/// (room id, related event id, relation, relating event id) -> (): every reply
/// (`m.in_reply_to`) and reaction (`m.annotation`) received or sent, by the event it names
/// (see [`super::relations`]). Schema 7.
pub const RELATIONS: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("relations");

/// Media id (`server/id`, ours) -> JSON [`super::media::MediaRecord`]: every file uploaded
/// here. Schema 8.
pub const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media");

/// SHA-256 (hex) -> how many media ids name that content: a blob file is deleted when its
/// count goes to zero. Schema 8.
pub const MEDIA_BLOBS: TableDefinition<&str, u64> = TableDefinition::new("media_blobs");

/// (`mxc://` URI, room id, event id) -> (): where a file is shared, by the events that name it
/// in `url`; a member of such a room may download it. Schema 8.
pub const MEDIA_SHARES: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("media_shares");

/// User id -> bytes of files they uploaded (a file uploaded twice counts twice), for the
/// quota. Schema 8.
pub const MEDIA_USAGE: TableDefinition<&str, u64> = TableDefinition::new("media_usage");

/// User id -> their notification settings (JSON `NotifyPrefs`): do not disturb, keywords,
/// sound, push previews, and each room's level. Schema 9.
pub const NOTIFY_PREFS: TableDefinition<&str, &[u8]> = TableDefinition::new("notify_prefs");

/// (user id, subscription id) -> a Web Push subscription of one of their devices (JSON
/// `PushSub`). Schema 9.
pub const PUSH_SUBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("push_subs");

/// Stream position -> event id of a committed message or call invite not yet turned into
/// pushes, written with the event (only while any subscription exists), removed by the push
/// worker once it has sent them or queued their retries. Schema 9.
pub const PUSH_PENDING: TableDefinition<u64, &str> = TableDefinition::new("push_pending");

/// (due time ms, user id, subscription id, stream position) -> a push to try again (JSON
/// `PushRetry`), after the push service failed or could not be reached. Schema 9.
pub const PUSH_RETRY: TableDefinition<(u64, &str, &str, u64), &[u8]> = TableDefinition::new("push_retry");

/// Stream position -> (room id, event id): every timeline event in the order this server
/// committed it, across rooms, written with the event's `room_timeline` row; what the search
/// index follows. A deleted room leaves a row with an empty event id at a new position (and
/// its older rows go). Schema 10.
pub const STREAM: TableDefinition<u64, (&str, &str)> = TableDefinition::new("stream");

/// Calls `$m!(TABLE, ...)` with every table above: the one list that creating the schema and
/// copying a backup use, so a new table cannot be left out of either.
macro_rules! every_table {
    ($m:ident) => {
        $m!(
            META,
            USERS,
            SESSIONS,
            USER_SESSIONS,
            EVENTS,
            ROOMS,
            ROOM_TIMELINE,
            ROOM_STATE,
            ROOM_MEMBERS,
            USER_ROOMS,
            TXN_IDS,
            READ_MARKERS,
            DIRECT_ROOMS,
            CALLS,
            SERVER_KEYS,
            MENTIONS,
            ROOM_OUTLIERS,
            ALIASES,
            ROOM_ALIASES,
            PUBLIC_ROOMS,
            PUBLIC_ROOM_KEYS,
            FED_QUEUE,
            FED_TXNS,
            REDACTIONS,
            STATE_GROUPS,
            STATE_MERGES,
            EDITS,
            RELATIONS,
            MEDIA,
            MEDIA_BLOBS,
            MEDIA_SHARES,
            MEDIA_USAGE,
            NOTIFY_PREFS,
            PUSH_SUBS,
            PUSH_PENDING,
            PUSH_RETRY,
            STREAM
        )
    };
}
pub(crate) use every_table;
