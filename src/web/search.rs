//! Searching messages: `GET /api/v1/search` (JSON) and `GET /search` (the page). Both read
//! the same parameters into a [`search::Ask`] over the rooms the asker is in now.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::event_json;
use super::extract::PageSession;
use super::pages::or_error_page;
use crate::auth::Session;
use crate::error::{Error, Result};
use crate::events::Membership;
use crate::ids::{RoomId, UserId};
use crate::render::{self as views, SearchView};
use crate::search::{self, Ask, Found, query};
use crate::state::AppState;

/// A search's parameters: `q` (words, "phrases", and the shortcuts `from:`, `in:`,
/// `before:`, `after:`, `has:file`), `room` (a room id), `sender` (a user id or a name here),
/// `since` and `until` (days, `YYYY-MM-DD`, both included), `has_file`, `order` (`recent`, the
/// default, or `relevance`), `limit` (1-50, default 20) and `next` (from the page before).
#[derive(Deserialize, Default, Clone)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    room: Option<String>,
    sender: Option<String>,
    since: Option<String>,
    until: Option<String>,
    has_file: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
    next: Option<String>,
}

impl SearchParams {
    fn has_filters(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        set(&self.sender) || set(&self.since) || set(&self.until) || self.files()
    }

    fn files(&self) -> bool {
        matches!(self.has_file.as_deref(), Some("1" | "true" | "on" | "yes"))
    }
}

/// What a search asks, over which rooms; and the one room it is limited to, if it is.
struct Asked {
    ask: Ask,
    rooms: Vec<RoomId>,
    room: Option<RoomId>,
}

/// Reads the parameters. `400` for what cannot be read (or nothing to search for), `403` for a
/// room the asker is not in.
fn read(state: &AppState, user: &UserId, p: &SearchParams) -> Result<Asked> {
    let parsed = query::parse(&p.q)?;
    let joined = state.store.joined_rooms(user.as_str())?;
    let mut rooms: Vec<RoomId> = joined.iter().filter_map(|r| RoomId::parse(r).ok()).collect();
    let named = match (p.room.as_deref().map(str::trim).filter(|r| !r.is_empty()), parsed.room.as_deref()) {
        (Some(id), _) => Some(RoomId::parse(id)?),
        (None, Some(name)) => {
            let titles: Vec<(RoomId, String)> =
                rooms.iter().map(|id| (id.clone(), room_name(state, user, id))).collect();
            let found =
                search::room_named(name, titles.iter().map(|(id, t)| (id, t.as_str())), |a| state.store.alias(a))?;
            Some(found.ok_or_else(|| Error::bad(format!("in:{name} names none of your rooms")))?)
        }
        (None, None) => None,
    };
    if let Some(room) = &named {
        if state.store.membership(room, user.as_str())? != Membership::Join {
            return Err(Error::Forbidden("you are not a member of that room".into()));
        }
        rooms = vec![room.clone()];
    }
    let sender = match p.sender.as_deref().map(str::trim).filter(|s| !s.is_empty()).or(parsed.from.as_deref()) {
        Some(s) => Some(UserId::parse_or_local(s, &state.server_name)?.as_str().to_string()),
        None => None,
    };
    let day = |v: &Option<String>| -> Result<Option<u64>> {
        match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(d) => query::day_ms(d).map(Some),
            None => Ok(None),
        }
    };
    let since = [day(&p.since)?, parsed.after_ms].into_iter().flatten().max();
    let until = [day(&p.until)?.map(|d| d + query::DAY_MS), parsed.before_ms].into_iter().flatten().min();
    let has_file = p.files() || parsed.has_file;
    if parsed.parts.is_empty() && sender.is_none() && since.is_none() && until.is_none() && !has_file {
        return Err(Error::bad("type something to search for"));
    }
    let by_relevance = match p.order.as_deref() {
        None | Some("" | "recent") => false,
        Some("relevance") => true,
        Some(other) => return Err(Error::bad(format!("order {other:?} is not recent or relevance"))),
    };
    let limit = p.limit.unwrap_or(20);
    if limit == 0 || limit > search::MAX_LIMIT {
        return Err(Error::bad(format!("limit must be 1-{}", search::MAX_LIMIT)));
    }
    let offset = match p.next.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => {
            n.parse::<usize>().ok().filter(|n| *n <= search::MAX_OFFSET).ok_or_else(|| Error::bad("bad next"))?
        }
        None => 0,
    };
    let ask =
        Ask { parts: parsed.parts, sender, since_ms: since, until_ms: until, has_file, by_relevance, limit, offset };
    Ok(Asked { ask, rooms, room: named })
}

/// A room's name as its member sees it (a direct chat: the other person's id).
fn room_name(state: &AppState, user: &UserId, id: &RoomId) -> String {
    let Ok(Some(room)) = state.store.room(id) else { return String::new() };
    if (room.direct || room.name.is_empty())
        && let Ok(members) = state.store.members(id)
        && let Some((peer, _)) =
            members.iter().find(|(u, m)| u != user.as_str() && matches!(m, Membership::Join | Membership::Invite))
    {
        return views::display_name(peer);
    }
    room.name
}

/// Runs the search off the async threads.
async fn run(state: &AppState, asked: Asked) -> Result<(Found, Asked)> {
    let Some(search) = state.search.clone() else {
        return Err(Error::Unavailable("search is turned off on this server".into()));
    };
    tokio::task::spawn_blocking(move || search.search(&asked.ask, &asked.rooms).map(|f| (f, asked)))
        .await
        .map_err(|e| Error::Internal(format!("search task: {e}")))?
}

/// `GET /api/v1/search?q=…` → `{results: [{event, room_id, room_name, snippet: [{text,
/// hit}]}], count, next, indexing}`: messages of the asker's rooms, newest first (or by
/// relevance), the words matched marked in each snippet.
pub async fn api(
    State(state): State<AppState>,
    session: Session,
    params: std::result::Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(p) = params.map_err(|e| Error::bad(e.body_text()))?;
    let asked = read(&state, &session.user, &p)?;
    let (found, _) = run(&state, asked).await?;
    // Each room's name read once for the page, however many of its messages are in it.
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut results = Vec::with_capacity(found.hits.len());
    for h in &found.hits {
        let room = h.stored.event.room_id.as_str();
        let name = names
            .entry(room.to_string())
            .or_insert_with(|| RoomId::parse(room).map(|id| room_name(&state, &session.user, &id)).unwrap_or_default());
        results.push(json!({
            "event": event_json(&h.stored),
            "room_id": room,
            "room_name": name,
            "snippet": h.snippet,
        }));
    }
    Ok(Json(json!({
        "results": results,
        "count": found.count,
        "next": found.next.map(|n| n.to_string()),
        "indexing": found.indexing,
    })))
}

/// `GET /search?q=…`: the search page (a form, and a page of results when something was asked).
pub async fn page(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    params: std::result::Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = params.map(|Query(p)| p).unwrap_or_default();
    or_error_page(
        async {
            let user = &s.user;
            let mine = state.store.my_rooms(user.as_str())?;
            let since = state.store.stream_pos()?;
            let asked = if p.q.trim().is_empty() && !p.has_filters() { None } else { Some(read(&state, user, &p)) };
            let scope = p.room.as_deref().and_then(|r| RoomId::parse(r).ok());
            let (found, error, scope) = match asked {
                None => (None, None, scope),
                Some(Err(e @ (Error::BadRequest(_) | Error::Forbidden(_) | Error::Unavailable(_)))) => {
                    (None, Some(e.to_string()), scope)
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(asked)) => {
                    let (found, asked) = run(&state, asked).await?;
                    (Some(found), None, asked.room.or(scope))
                }
            };
            let scope = scope.filter(|r| mine.iter().any(|m| m.room.room_id == *r && m.membership == Membership::Join));
            let view = SearchView {
                user: user.as_str(),
                since,
                rooms: &mine,
                q: p.q.trim(),
                room: scope.as_ref(),
                sender: p.sender.as_deref().unwrap_or_default(),
                since_day: p.since.as_deref().unwrap_or_default(),
                until_day: p.until.as_deref().unwrap_or_default(),
                has_file: p.files(),
                by_relevance: p.order.as_deref() == Some("relevance"),
                found: found.as_ref(),
                error: error.as_deref(),
            };
            // The names of the direct chats' people and of the results' senders.
            let mut names = std::collections::HashMap::new();
            if let Some(me) = state.store.user(user.localpart())?.and_then(|u| u.display_name) {
                names.insert(user.as_str().to_string(), me);
            }
            for m in &mine {
                if let Some(peer) = m.peer.as_deref() {
                    names.extend(state.store.member_names(&m.room.room_id, Some(&[peer]))?);
                }
            }
            for h in found.iter().flat_map(|f| &f.hits) {
                if let Ok(room) = RoomId::parse(h.stored.event.room_id.as_str()) {
                    names.extend(state.store.member_names(&room, Some(&[h.stored.event.sender.as_str()]))?);
                }
            }
            let html = views::with_names(names, || views::search_page(&view));
            Ok(Html(html.into_string()).into_response())
        }
        .await,
    )
}
