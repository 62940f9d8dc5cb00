//! The public room directory: an index of the listed rooms (public, not an invitation's stub),
//! in directory order, written by the same write that writes a room's summary, so that it
//! cannot drift from the rooms and a page of it is a range read, whatever the number of rooms.
//!
//! Order: most joined members first, then by name (case folded), then by room id. A page is
//! named by an opaque token: where the next page starts (`n`, that row included) or where the
//! previous one ends (`p`, that row excluded).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::Store;
use super::rooms::RoomRecord;
use super::tables::*;
use crate::error::{Error, Result};
use crate::events::JoinRule;
use crate::ids::RoomId;

/// Most rooms on one page.
pub const MAX_LIMIT: usize = 100;
/// Rooms on a page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 30;
/// Most directory rows one search request examines; a search that stops there answers with
/// what it found so far and a token that goes on from the next row.
pub const SEARCH_SCAN: usize = 1000;
/// Longest search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;
/// Characters of a name that order the directory (and so go into its key and tokens).
const SORT_CHARS: usize = 64;
/// Longest token accepted (a key of `SORT_CHARS` characters of 4 bytes, encoded, fits).
const MAX_TOKEN: usize = 800;

/// What the directory shows of a room: the value of its `public_rooms` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// Room id.
    pub room_id: RoomId,
    /// From `m.room.name`.
    pub name: String,
    /// From `m.room.topic`.
    pub topic: String,
    /// The room's first alias of this server (`#name:server`), if it has one.
    pub alias: Option<String>,
    /// Joined members.
    pub joined: u32,
    /// Who created the room.
    pub creator: String,
    /// A two-person direct-message room.
    pub direct: bool,
}

/// A row key of `public_rooms`: (u32::MAX - joined, sort name, room id); what a token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key(u32, String, String);

impl Key {
    fn of(room: &RoomRecord) -> Key {
        let name = room.name.trim();
        // Unnamed rooms after named ones of the same size.
        let sort = if name.is_empty() { "\u{10ffff}".to_string() } else { name.to_lowercase() };
        Key(u32::MAX - room.joined, sort.chars().take(SORT_CHARS).collect(), room.room_id.as_str().to_string())
    }

    fn as_tuple(&self) -> (u32, &str, &str) {
        (self.0, self.1.as_str(), self.2.as_str())
    }
}

/// Where a page of the directory is, as an opaque token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageToken {
    /// The page starting at this row (included), going forward.
    From(Key),
    /// The page ending before this row (excluded), going backward.
    Before(Key),
}

impl PageToken {
    /// Parses a token given back by a client: `400` if it is not one of ours.
    pub fn parse(s: &str) -> Result<PageToken> {
        let bad = || Error::bad("invalid since token");
        if s.len() > MAX_TOKEN || !s.is_ascii() {
            return Err(bad());
        }
        let (dir, rest) = s.split_at_checked(1).ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(rest).map_err(|_| bad())?;
        let key: Key = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        match dir {
            "n" => Ok(PageToken::From(key)),
            "p" => Ok(PageToken::Before(key)),
            _ => Err(bad()),
        }
    }

    /// The token's text (URL-safe).
    pub fn encode(&self) -> String {
        let (dir, key) = match self {
            PageToken::From(k) => ("n", k),
            PageToken::Before(k) => ("p", k),
        };
        // A key always serializes; an empty token would only name the first page.
        let json = serde_json::to_vec(key).unwrap_or_default();
        format!("{dir}{}", URL_SAFE_NO_PAD.encode(json))
    }
}

/// What a client asks of the directory.
#[derive(Debug, Clone)]
pub struct DirectoryQuery {
    /// Rooms per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Which page; `None` is the first.
    pub since: Option<PageToken>,
    /// Text the name, topic or alias contains (case folded, already lower-case), if any.
    pub search: Option<String>,
}

impl DirectoryQuery {
    /// Checks a client's parameters: `limit` 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]),
    /// `since` a token of ours, `q` at most [`MAX_SEARCH_CHARS`] characters (blank is none).
    pub fn parse(limit: Option<usize>, since: Option<&str>, q: Option<&str>) -> Result<DirectoryQuery> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::bad(format!("limit must be 1-{MAX_LIMIT}")));
        }
        let since = since.filter(|s| !s.is_empty()).map(PageToken::parse).transpose()?;
        let search = q.map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase);
        if search.as_ref().is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
            return Err(Error::bad(format!("q must be at most {MAX_SEARCH_CHARS} characters")));
        }
        Ok(DirectoryQuery { limit, since, search })
    }
}

/// One page of the directory.
#[derive(Debug, Clone)]
pub struct DirectoryPage {
    /// The rooms, in directory order.
    pub rooms: Vec<DirectoryEntry>,
    /// The token of the page after this one, if there are rows after it (for a search: rows
    /// not examined yet, which may not match).
    pub next: Option<PageToken>,
    /// The token of the page before this one, if there are rows before it.
    pub prev: Option<PageToken>,
    /// Listed rooms in all (without a search; a search does not count its matches).
    pub total: Option<u64>,
    /// A search stopped at [`SEARCH_SCAN`] rows before filling the page.
    pub search_cut: bool,
}

impl DirectoryEntry {
    fn of(room: &RoomRecord, alias: Option<String>) -> DirectoryEntry {
        DirectoryEntry {
            room_id: room.room_id.clone(),
            name: room.name.clone(),
            topic: room.topic.clone(),
            alias,
            joined: room.joined,
            creator: room.creator.clone(),
            direct: room.direct,
        }
    }

    fn matches(&self, search: &str) -> bool {
        let has = |s: &str| s.to_lowercase().contains(search);
        has(&self.name) || has(&self.topic) || self.alias.as_deref().is_some_and(has)
    }
}

/// Whether a room is in the directory: public, and not an invitation's stub (`partial`: only
/// what the inviting server claimed).
fn listed(room: &RoomRecord) -> bool {
    room.join_rule == JoinRule::Public && !room.partial
}

/// Brings a room's directory row in line with its summary `room` (just written): written or
/// moved for a listed room, removed otherwise. Runs in every write of `rooms`.
pub(super) fn sync_room(txn: &WriteTransaction, room: &RoomRecord) -> Result<()> {
    let rid = room.room_id.as_str();
    let mut keys = txn.open_table(PUBLIC_ROOM_KEYS)?;
    let mut rows = txn.open_table(PUBLIC_ROOMS)?;
    let old = keys.get(rid)?.map(|v| {
        let (rank, sort) = v.value();
        Key(rank, sort.to_string(), rid.to_string())
    });
    if !listed(room) {
        if let Some(old) = old {
            rows.remove(old.as_tuple())?;
            keys.remove(rid)?;
        }
        return Ok(());
    }
    let entry = DirectoryEntry::of(room, first_alias(txn, rid)?);
    let bytes = serde_json::to_vec(&entry)?;
    let key = Key::of(room);
    // Most writes are messages, which change nothing the directory shows.
    if old.as_ref() == Some(&key) && rows.get(key.as_tuple())?.is_some_and(|v| v.value() == bytes.as_slice()) {
        return Ok(());
    }
    if let Some(old) = old.filter(|old| *old != key) {
        rows.remove(old.as_tuple())?;
    }
    rows.insert(key.as_tuple(), bytes.as_slice())?;
    keys.insert(rid, (key.0, key.1.as_str()))?;
    Ok(())
}

/// Removes a room from the directory (the room is being deleted).
pub(super) fn remove_room(txn: &WriteTransaction, room_id: &str) -> Result<()> {
    let mut keys = txn.open_table(PUBLIC_ROOM_KEYS)?;
    let old = keys.remove(room_id)?.map(|v| {
        let (rank, sort) = v.value();
        Key(rank, sort.to_string(), room_id.to_string())
    });
    if let Some(old) = old {
        txn.open_table(PUBLIC_ROOMS)?.remove(old.as_tuple())?;
    }
    Ok(())
}

/// The first alias of this server a room has, from `room_aliases`.
fn first_alias(txn: &WriteTransaction, room_id: &str) -> Result<Option<String>> {
    let table = txn.open_table(ROOM_ALIASES)?;
    let first = table.range((room_id, "")..=(room_id, "\u{10ffff}"))?.next().transpose()?;
    Ok(first.map(|(k, _)| k.value().1.to_string()))
}

/// Schema 3: fills `room_aliases` from `aliases` and the directory from `rooms`.
pub(super) fn build(txn: &WriteTransaction) -> Result<()> {
    {
        let aliases = txn.open_table(ALIASES)?;
        let mut reverse = txn.open_table(ROOM_ALIASES)?;
        for row in aliases.iter()? {
            let (alias, rid) = row?;
            reverse.insert((rid.value(), alias.value()), ())?;
        }
    }
    let rooms = txn.open_table(ROOMS)?;
    for row in rooms.iter()? {
        let (_, v) = row?;
        let room: RoomRecord = serde_json::from_slice(v.value())?;
        sync_room(txn, &room)?;
    }
    Ok(())
}

impl Store {
    /// One page of the public directory: at most `limit` rows read, or for a search at most
    /// [`SEARCH_SCAN`] rows examined, from the page's token on.
    pub fn public_rooms(&self, q: &DirectoryQuery) -> Result<DirectoryPage> {
        let r = self.read()?;
        let rows = r.open_table(PUBLIC_ROOMS)?;
        let total = if q.search.is_none() { Some(rows.len()?) } else { None };
        let mut rooms = Vec::new();
        let mut examined = 0usize;
        let wanted = |entry: &DirectoryEntry| q.search.as_deref().is_none_or(|s| entry.matches(s));
        let full = |rooms: &Vec<DirectoryEntry>, examined: usize| {
            rooms.len() >= q.limit || (q.search.is_some() && examined >= SEARCH_SCAN)
        };
        let (next, prev) = match &q.since {
            None | Some(PageToken::From(_)) => {
                let start = match &q.since {
                    Some(PageToken::From(k)) => Some(k.clone()),
                    _ => None,
                };
                let mut iter = match &start {
                    Some(k) => rows.range(k.as_tuple()..)?,
                    None => rows.range::<(u32, &str, &str)>(..)?,
                };
                for row in iter.by_ref() {
                    let (_, v) = row?;
                    examined += 1;
                    let entry: DirectoryEntry = serde_json::from_slice(v.value())?;
                    if wanted(&entry) {
                        rooms.push(entry);
                    }
                    if full(&rooms, examined) {
                        break;
                    }
                }
                let next = iter.next().transpose()?.map(|(k, _)| PageToken::From(key_of(k.value())));
                let prev = match start {
                    Some(k) if rows.range(..k.as_tuple())?.next_back().is_some() => Some(PageToken::Before(k)),
                    _ => None,
                };
                (next, prev)
            }
            Some(PageToken::Before(end)) => {
                let mut iter = rows.range(..end.as_tuple())?.rev();
                let mut lowest = None;
                for row in iter.by_ref() {
                    let (k, v) = row?;
                    examined += 1;
                    lowest = Some(key_of(k.value()));
                    let entry: DirectoryEntry = serde_json::from_slice(v.value())?;
                    if wanted(&entry) {
                        rooms.push(entry);
                    }
                    if full(&rooms, examined) {
                        break;
                    }
                }
                rooms.reverse();
                let more_before = iter.next().transpose()?.is_some();
                let prev = lowest.filter(|_| more_before).map(PageToken::Before);
                (Some(PageToken::From(end.clone())), prev)
            }
        };
        let search_cut = q.search.is_some() && rooms.len() < q.limit && examined >= SEARCH_SCAN;
        Ok(DirectoryPage { rooms, next, prev, total, search_cut })
    }
}

fn key_of((rank, sort, rid): (u32, &str, &str)) -> Key {
    Key(rank, sort.to_string(), rid.to_string())
}
