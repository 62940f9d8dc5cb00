//! maud views. The same functions render the full page and the fragments pushed over the live
//! channel, so a live update looks exactly like a reload. maud escapes all text by default;
//! user content is never inserted as raw HTML.

use std::collections::{HashMap, HashSet};

use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::error::Error;

use crate::events::*;
use crate::ids::RoomId;
use crate::store::directory::{DirectoryPage, MAX_SEARCH_CHARS, PageToken};
use crate::store::events::StoredEvent;
use crate::store::rooms::{MyRoom, RoomRecord, UNREAD_CAP};

/// The interface's icons: strokes in the text colour on a 24-unit grid, drawn for this project
/// (no icon font; one cached sprite). Buttons that show one carry an `aria-label`.
#[derive(Clone, Copy)]
pub enum Icon {
    /// Back to the room list.
    Back,
    /// A voice call.
    Phone,
    /// A video call.
    Video,
    /// Notifications.
    Bell,
    /// Notifications off.
    BellOff,
    /// Members and room details.
    People,
    /// Pinned messages.
    Pin,
    /// Close a panel.
    Close,
    /// A microphone (on).
    Mic,
    /// A microphone, muted.
    MicOff,
    /// A camera, off.
    CameraOff,
    /// Sharing the screen.
    Screen,
    /// Device settings.
    Gear,
    /// The room's chat.
    Chat,
    /// Leaving a call.
    HangUp,
    /// Searching messages.
    Search,
    /// A raised hand.
    Hand,
}

/// An icon from the sprite (`assets/icons.svg`, cached with the other assets), hidden from
/// assistive tech (its button says what it does).
pub fn icon(which: Icon) -> Markup {
    let id = match which {
        Icon::Back => "back",
        Icon::Phone => "phone",
        Icon::Video => "video",
        Icon::Bell => "bell",
        Icon::BellOff => "bell-off",
        Icon::People => "people",
        Icon::Pin => "pin",
        Icon::Close => "close",
        Icon::Mic => "mic",
        Icon::MicOff => "mic-off",
        Icon::CameraOff => "camera-off",
        Icon::Screen => "screen",
        Icon::Gear => "gear",
        Icon::Chat => "chat",
        Icon::HangUp => "hang-up",
        Icon::Search => "search",
        Icon::Hand => "hand",
    };
    maud::PreEscaped(format!(
        "<svg class=\"icon\" width=\"20\" height=\"20\" aria-hidden=\"true\" focusable=\"false\" fill=\"none\" \
         stroke=\"currentColor\" stroke-width=\"1.8\" stroke-linecap=\"round\" stroke-linejoin=\"round\">\
         <use href=\"{}#{id}\"/></svg>",
        crate::assets::url("icons.svg")
    ))
}

/// Presence of the users a page shows (user id -> `online`/`idle`/`offline`).
pub type Presences = HashMap<String, &'static str>;

/// A presence dot that the live client keeps current.
pub fn presence_dot(user: &str, presence: &Presences) -> Markup {
    let state = presence.get(user).copied().unwrap_or("offline");
    html! { span.dot data-presence-user=(user) data-presence=(state) title=(state) {} }
}

/// A reader's avatar in a "seen by" row.
pub fn receipt_avatar(user: &str) -> Markup {
    html! {
        span class={ "receipt c" (avatar_colour(user)) } data-user=(user) title={ "Seen by " (display_name(user)) } data-initial-of=(user) {
            (initial(user))
        }
    }
}

/// A user's face until profiles have pictures: their initial on one of eight colours, the
/// same for that user everywhere (a hash of the user id picks it).
pub fn user_avatar(user: &str) -> Markup {
    html! {
        span class={ "avatar c" (avatar_colour(user)) } aria-hidden="true" data-initial-of=(user) { (initial(user)) }
    }
}

/// The letter on a user's avatar: the first of the name shown for them.
pub fn initial(user: &str) -> String {
    display_name(user).chars().next().map_or_else(|| "?".into(), |c| c.to_uppercase().collect())
}

/// The letter on a room's face: the first of its title.
fn room_initial(title: &str) -> String {
    title.chars().next().map_or_else(|| "#".into(), |c| c.to_uppercase().collect())
}

/// Which of the eight avatar colours is `user`'s.
pub fn avatar_colour(user: &str) -> u32 {
    user.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 8
}

thread_local! {
    /// The display names known to the render running on this thread (see [`with_names`]).
    static NAMES: std::cell::RefCell<HashMap<String, String>> = std::cell::RefCell::new(HashMap::new());
}

/// Restores the names of the render before (also when a render panics).
struct NamesGuard(Option<HashMap<String, String>>);

impl Drop for NamesGuard {
    fn drop(&mut self) {
        let old = self.0.take().unwrap_or_default();
        NAMES.with(|n| *n.borrow_mut() = old);
    }
}

/// Runs `f` (a render) with `names` (user id -> display name, as the room's member events say)
/// for [`display_name`]. Renders without names (the live frames) show localparts; the live
/// client puts the names in, from the page's `data-names` and the member events it receives.
pub fn with_names<R>(names: HashMap<String, String>, f: impl FnOnce() -> R) -> R {
    let old = NAMES.with(|n| std::mem::replace(&mut *n.borrow_mut(), names));
    let _guard = NamesGuard(Some(old));
    f()
}

/// The names of the render running, as JSON (for the page's `data-names`).
fn names_json() -> String {
    NAMES.with(|n| serde_json::to_string(&*n.borrow()).unwrap_or_default())
}

/// A user id's localpart (the full id is in the title where a name is shown).
pub fn localpart(user_id: &str) -> &str {
    user_id.strip_prefix('@').and_then(|s| s.split(':').next()).unwrap_or(user_id)
}

/// The name shown for a user: their display name in the render's room (see [`with_names`]),
/// else their localpart.
pub fn display_name(user_id: &str) -> String {
    NAMES.with(|n| n.borrow().get(user_id).cloned()).unwrap_or_else(|| localpart(user_id).to_string())
}

/// What to call a room in lists: its name, or for a direct chat (`peer` given) without one,
/// the other person.
pub fn room_title(room: &RoomRecord, peer: Option<&str>) -> String {
    match peer {
        Some(p) if room.direct || room.name.is_empty() => display_name(p).to_string(),
        _ if room.name.is_empty() => "Unnamed room".into(),
        _ => room.name.clone(),
    }
}

/// The page shell. `user` is set on signed-in pages; `since` is the stream position the page
/// was rendered at, from which the live client resumes.
pub fn layout(title: &str, user: Option<&str>, since: Option<u64>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · chat" }
                link rel="stylesheet" href=(crate::assets::url("app.css"));
                link rel="icon" href=(crate::assets::url("icon.svg")) type="image/svg+xml";
                link rel="manifest" href="/manifest.webmanifest";
                link rel="apple-touch-icon" href=(crate::assets::url("icon-192.png"));
                meta name="theme-color" content=(crate::assets::THEME_COLOUR);
                script type="module" src=(crate::assets::url("app.js")) {}
            }
            body data-user=[user] data-since=[since] {
                header.top {
                    a.brand href="/" { img src=(crate::assets::url("icon.svg")) alt="" width="24" height="24"; "chat" }
                    @if let Some(u) = user {
                        span.conn id="conn" data-state="connecting" title="Live connection" {}
                        a.me href="/settings" title=(u) { (display_name(u)) }
                        form.inline method="post" action="/logout" {
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                (body)
                @if user.is_some() {
                    // What the live client announces to screen readers (new messages).
                    div.sr-only #announce aria-live="polite" aria-atomic="true" {}
                }
            }
        }
    }
}

/// The page the service worker shows when the server cannot be reached (kept in its cache):
/// the messages this tab holds to send are listed by the page's script.
pub fn offline() -> Markup {
    layout(
        "Offline",
        None,
        None,
        html! {
            main.auth #offline {
                h1 { "You are offline" }
                p { "chat cannot reach its server just now. Check your connection; the page comes back when the server does." }
                h2 { "Waiting to be sent" }
                p.muted #queued-none { "Nothing: every message you sent got there." }
                ul.queued #queued {}
                button #retry type="button" { "Try again" }
            }
        },
    )
}

/// Sign-in and registration forms.
pub fn auth_page(register: bool, error: Option<&str>, username: &str, next: &str) -> Markup {
    let (title, action, other, other_label) = if register {
        ("Create account", "/register", "/login", "Have an account? Sign in")
    } else {
        ("Sign in", "/login", "/register", "New here? Create an account")
    };
    let other = if next.is_empty() { other.to_string() } else { format!("{other}?next={}", encode_query(next)) };
    layout(
        title,
        None,
        None,
        html! {
            main.auth {
                h1 { (title) }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form.signin method="post" action=(action) {
                    label { "Username" input name="username" required autocomplete="username" value=(username) autofocus; }
                    label {
                        "Password"
                        input type="password" name="password" required minlength="8"
                            autocomplete=(if register { "new-password" } else { "current-password" });
                    }
                    @if !next.is_empty() { input type="hidden" name="next" value=(next); }
                    button type="submit" { (title) }
                }
                p { a href=(other) { (other_label) } }
            }
        },
    )
}

/// Percent-encodes a local path for a query value (`/`, `!`, `:`, `@`, `$` stay as they are).
pub fn encode_query(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b'!' | b':' | b'@' | b'$' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The list of the user's rooms (sidebar), also served as a live fragment: each room's face,
/// name, newest message and badges, with a filter box (and Ctrl/Cmd+K, see keys.js).
pub fn room_list(viewer: &str, rooms: &[MyRoom], current: Option<&str>, presence: &Presences) -> Markup {
    html! {
        nav.rooms id="room-list" aria-label="Rooms" {
            div.rooms-head {
                h2 { "Rooms" }
                a.button.small.secondary href="/rooms#new" title="Create a room" { "+ New" }
            }
            form.search-box method="get" action="/search" role="search" {
                (icon(Icon::Search))
                input type="search" name="q" placeholder="Search messages" aria-label="Search messages in all your rooms"
                    maxlength=(crate::search::query::MAX_QUERY_CHARS) autocomplete="off";
            }
            @if rooms.len() > 1 {
                input.filter #room-filter type="search" placeholder="Find a room" aria-label="Find a room (Ctrl+K)"
                    autocomplete="off" aria-controls="room-items" aria-keyshortcuts="Control+K Meta+K";
            }
            ul #room-items {
                @for r in rooms {
                    @let id = &r.room.room_id;
                    @let title = room_title(&r.room, r.peer.as_deref());
                    li.active[current == Some(id.as_str())] .invited[r.membership != Membership::Join] .unread[r.unread > 0] {
                        a href={ "/rooms/" (id) } data-room-id=(id) aria-current=[(current == Some(id.as_str())).then_some("page")] {
                            @if let Some(p) = r.peer.as_deref() {
                                span class={ "avatar c" (avatar_colour(p)) } aria-hidden="true" data-initial-of=(p) {
                                    (initial(p)) (presence_dot(p, presence))
                                }
                            } @else {
                                span class={ "avatar room c" (avatar_colour(id.as_str())) } aria-hidden="true" { (room_initial(&title)) }
                            }
                            span.text {
                                span.name { (title) }
                                @if r.membership == Membership::Invite {
                                    span.preview { "Invitation" }
                                } @else if r.membership == Membership::Knock {
                                    span.preview { "Waiting to be let in" }
                                } @else if let Some(last) = &r.last {
                                    span.preview data-preview-of=(id) { (preview_line(last, r.peer.is_some(), viewer)) }
                                } @else {
                                    span.preview data-preview-of=(id) {}
                                }
                            }
                            @if r.membership == Membership::Invite {
                                span.badge.invite { "invited" }
                            } @else if r.membership == Membership::Knock {
                                span.badge.invite { "asked" }
                            } @else {
                                span.badge.mention hidden[r.mentions == 0] data-count=(r.mentions) title="Mentions" {
                                    "@" (unread_label(r.mentions))
                                }
                                span.badge.unread hidden[r.unread == 0] data-count=(r.unread) title="Unread messages" {
                                    (unread_label(r.unread))
                                }
                            }
                        }
                    }
                }
                @if rooms.is_empty() { li.empty { "No rooms yet" } }
            }
            p.empty #room-filter-none hidden { "No room matches." }
            // Shown by the page while the browser has not been told whether to notify.
            button.notify-ask #notify-ask type="button" hidden { "🔔 Turn on notifications" }
        }
    }
}

/// A room's newest message in the room list: "Name: text" ("You: text"; no name in a direct
/// chat for the other person's).
fn preview_line(last: &crate::store::rooms::LastMessage, direct: bool, viewer: &str) -> String {
    let text = if last.redacted { "Message deleted".to_string() } else { preview_text(&last.content) };
    if viewer == last.sender {
        format!("You: {text}")
    } else if direct {
        text
    } else {
        format!("{}: {text}", display_name(&last.sender))
    }
}

/// A message's start on one line, as the room list shows it (and the live client, from the
/// `preview` of an event frame).
pub fn preview_text(content: &serde_json::Value) -> String {
    crate::push::preview_of(content).split_whitespace().collect::<Vec<_>>().join(" ")
}

fn unread_label(n: u64) -> String {
    if n >= UNREAD_CAP { format!("{}+", UNREAD_CAP - 1) } else { n.to_string() }
}

/// The home page: the room list, a welcome (on the first visit: no rooms yet) with one clear
/// action, creating a room, and the others behind buttons; then the public directory.
pub fn home(user: &str, since: u64, rooms: &[MyRoom], d: &DirectoryView<'_>, presence: &Presences) -> Markup {
    let first_run = rooms.is_empty();
    layout(
        "Rooms",
        Some(user),
        Some(since),
        html! {
            div.app {
                (room_list(user, rooms, None, presence))
                main.home #main {
                    section.welcome {
                        @if first_run {
                            h1 { "Welcome, " span data-name-of=(user) { (display_name(user)) } }
                            p.lead { "Rooms are where your conversations live. Start one for your family, team or friends, or join one below." }
                        } @else {
                            h1 { "Your rooms" }
                            p.lead { "Pick a room from the list, or start something new." }
                        }
                        div.actions {
                            details.action #new open[first_run] {
                                summary.button { "Create a room" }
                                form.card method="post" action="/rooms" {
                                    label { "Name" input name="name" required maxlength="100" placeholder="Family, Book club, Team…"; }
                                    label { "Topic " span.muted { "(optional)" } input name="topic" maxlength="1000"; }
                                    label { "Address " span.muted { "(optional)" } input name="alias" maxlength="64" placeholder="lobby"; }
                                    fieldset {
                                        legend { "Who can join" }
                                        label.check { input type="radio" name="visibility" value="public" checked; " Anyone (listed in the directory)" }
                                        label.check { input type="radio" name="visibility" value="private"; " Invited people only" }
                                    }
                                    button type="submit" { "Create room" }
                                }
                            }
                            details.action #message-someone {
                                summary.button.secondary { "Message someone" }
                                form.card.row method="post" action="/dm" {
                                    input name="user" required placeholder="username or @name:server" aria-label="Who to message";
                                    button type="submit" { "Open chat" }
                                }
                            }
                            details.action #join-address {
                                summary.button.secondary { "Join by address" }
                                form.card.row method="post" action="/join" id="join-by-address" {
                                    input name="room" required placeholder="#name:server" aria-label="Room address";
                                    button type="submit" { "Join" }
                                }
                            }
                        }
                    }
                    (directory(d))
                }
            }
        },
    )
}

/// What the search page shows.
pub struct SearchView<'a> {
    /// The viewer.
    pub user: &'a str,
    /// The stream position the page was rendered at.
    pub since: u64,
    /// The viewer's rooms (the list, and the room filter's choices).
    pub rooms: &'a [MyRoom],
    /// The text searched for, as typed.
    pub q: &'a str,
    /// The one room searched, if the search is limited to one.
    pub room: Option<&'a RoomId>,
    /// The filters as given.
    pub sender: &'a str,
    /// First day (`YYYY-MM-DD`).
    pub since_day: &'a str,
    /// Last day.
    pub until_day: &'a str,
    /// Files only.
    pub has_file: bool,
    /// Best matches first.
    pub by_relevance: bool,
    /// Results, when something was searched for.
    pub found: Option<&'a crate::search::Found>,
    /// Why the search could not be made (shown with the form).
    pub error: Option<&'a str>,
}

/// The search page: the form (words and shortcuts, and the filters behind "Filters"), then
/// the results, each a link that opens the room at the message, with the words found marked.
pub fn search_page(v: &SearchView<'_>) -> Markup {
    let joined: Vec<&MyRoom> = v.rooms.iter().filter(|m| m.membership == Membership::Join).collect();
    let title_of = |id: &str| -> Option<String> {
        joined.iter().find(|m| m.room.room_id.as_str() == id).map(|m| room_title(&m.room, m.peer.as_deref()))
    };
    let scope = v.room.and_then(|r| title_of(r.as_str()));
    let filtered = !v.sender.is_empty() || !v.since_day.is_empty() || !v.until_day.is_empty() || v.has_file;
    let page_title = if v.q.is_empty() { "Search".to_string() } else { format!("{} – Search", v.q) };
    layout(
        &page_title,
        Some(v.user),
        Some(v.since),
        html! {
            div.app.in-search {
                (room_list(v.user, v.rooms, None, &Presences::new()))
                main.search-page #main data-names=(names_json()) {
                    header.search-head {
                        a.button.ghost.icon.back href="/rooms" aria-label="Back to rooms" title="Back to rooms" { (icon(Icon::Back)) }
                        h1 { "Search" }
                    }
                    form.search-form #search-form method="get" action="/search" role="search" {
                        div.search-row {
                            input #search-q type="search" name="q" value=(v.q) autofocus[v.found.is_none()]
                                maxlength=(crate::search::query::MAX_QUERY_CHARS) autocomplete="off"
                                placeholder=(match &scope { Some(t) => format!("Search in {t}"), None => "Search messages".to_string() })
                                aria-label="Search messages" aria-describedby="search-tips";
                            button type="submit" { "Search" }
                        }
                        div.search-scope {
                            @if let (Some(t), Some(r)) = (&scope, v.room) {
                                input type="hidden" name="room" value=(r);
                                span.chip { "In " strong { (t) } }
                                a href={ "/search?q=" (urlencoding(v.q)) } { "Search all rooms" }
                            }
                            label.inline {
                                "Order "
                                select name="order" {
                                    option value="recent" selected[!v.by_relevance] { "Newest first" }
                                    option value="relevance" selected[v.by_relevance] { "Best match" }
                                }
                            }
                        }
                        details.filters open[filtered] {
                            summary { "Filters" }
                            div.filter-grid {
                                @if v.room.is_none() {
                                    label { "Room"
                                        select name="room" {
                                            option value="" { "All rooms" }
                                            @for m in &joined {
                                                option value=(m.room.room_id) { (room_title(&m.room, m.peer.as_deref())) }
                                            }
                                        }
                                    }
                                }
                                label { "From" input name="sender" value=(v.sender) placeholder="name or @name:server" autocomplete="off"; }
                                label { "Since" input type="date" name="since" value=(v.since_day); }
                                label { "Until" input type="date" name="until" value=(v.until_day); }
                                label.check { input type="checkbox" name="has_file" value="1" checked[v.has_file]; " Has a file" }
                            }
                        }
                        p.muted.tips #search-tips {
                            "Use quotes for a phrase. Shortcuts: " code { "from:ana" } ", " code { "in:room" } ", "
                            code { "before:2026-01-31" } ", " code { "after:2026-01-01" } ", " code { "has:file" } "."
                        }
                    }
                    @if let Some(e) = v.error {
                        p.error role="alert" { (e) }
                    }
                    @if let Some(found) = v.found {
                        (search_results(v, found, &title_of))
                    }
                }
            }
        },
    )
}

/// Positions the index may be behind before the search page says results may be missing.
const INDEXING_NOTICE: u64 = 1_000;

fn search_results(
    v: &SearchView<'_>,
    found: &crate::search::Found,
    title_of: &dyn Fn(&str) -> Option<String>,
) -> Markup {
    let next_link = |next: usize| -> String {
        let mut url = format!("/search?q={}", urlencoding(v.q));
        let mut add = |k: &str, val: &str| {
            if !val.is_empty() {
                url.push_str(&format!("&{k}={}", urlencoding(val)));
            }
        };
        add("room", v.room.map(RoomId::as_str).unwrap_or_default());
        add("sender", v.sender);
        add("since", v.since_day);
        add("until", v.until_day);
        add("has_file", if v.has_file { "1" } else { "" });
        add("order", if v.by_relevance { "relevance" } else { "" });
        add("next", &next.to_string());
        url
    };
    html! {
        section.results aria-labelledby="results-title" {
            h2.count #results-title role="status" {
                @match found.count {
                    0 => "No messages found",
                    1 => "1 message",
                    n => { (n) " messages" }
                }
            }
            // A busy room keeps the index a moment behind; only a real backlog (a rebuild) is
            // worth saying.
            @if found.behind >= INDEXING_NOTICE {
                p.muted.indexing { "Messages are still being indexed: some may be missing for a while." }
            }
            @if found.count == 0 {
                p.muted { "Check the spelling, use fewer words, or search all rooms." }
            }
            ol.results-list #results {
                @for h in &found.hits {
                    @let ev = &h.stored.event;
                    @let room = title_of(ev.room_id.as_str()).unwrap_or_default();
                    li.result {
                        a href={ "/rooms/" (ev.room_id) "/events/" (ev.event_id) } data-event-id=(ev.event_id) {
                            (user_avatar(&ev.sender))
                            span.meta {
                                span.who data-name-of=(ev.sender) { (display_name(&ev.sender)) }
                                span.room { "in " (room) }
                                time.date data-date-ts=(ev.origin_server_ts) { (clock(ev.origin_server_ts)) }
                            }
                            span.snippet {
                                @if crate::search::is_file(h.stored.content_now()) { span.kind aria-hidden="true" { "📎 " } }
                                @for piece in &h.snippet {
                                    @if piece.hit { mark { (piece.text) } } @else { (piece.text) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = found.next {
                a.button.secondary.more href=(next_link(next)) rel="next" { "More results" }
            }
        }
    }
}

/// Characters of a topic shown in the directory (the room shows it all).
const DIRECTORY_TOPIC_CHARS: usize = 200;

/// One page of the public directory as the home page shows it.
pub struct DirectoryView<'a> {
    /// The page.
    pub page: &'a DirectoryPage,
    /// The search text as typed (empty: none).
    pub q: &'a str,
    /// Rooms the viewer has joined (they get "View" rather than "Join").
    pub joined: &'a HashSet<&'a str>,
}

/// `/rooms?since=TOKEN&q=TEXT#directory`.
fn directory_link(token: &PageToken, q: &str) -> String {
    let mut url = format!("/rooms?since={}", token.encode());
    if !q.is_empty() {
        url.push_str("&q=");
        url.push_str(&urlencoding(q));
    }
    url.push_str("#directory");
    url
}

/// Percent-encodes a query parameter value.
fn urlencoding(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The public directory: a search form (a GET form, no script needed), one page of rooms and
/// the links to the pages around it.
pub fn directory(d: &DirectoryView<'_>) -> Markup {
    let page = d.page;
    html! {
        section.directory id="directory" aria-labelledby="directory-title" {
            div.section-head {
                h2 id="directory-title" { "Public rooms" }
                @if let Some(n) = page.total { span.muted.count { (n) " room" @if n != 1 { "s" } } }
            }
            form.row.search method="get" action="/rooms#directory" role="search" {
                input type="search" name="q" value=(d.q) maxlength=(MAX_SEARCH_CHARS)
                    placeholder="Search by name, topic or address" aria-label="Search public rooms";
                button type="submit" { "Search" }
            }
            @if !d.q.is_empty() {
                p.muted.searching { "Rooms matching “" (d.q) "” · " a href="/rooms#directory" { "Show all" } }
            }
            ul.directory id="public-rooms" {
                @for r in &page.rooms {
                    @let title = if r.name.trim().is_empty() { "Unnamed room" } else { r.name.as_str() };
                    li {
                        span class={ "avatar room c" (avatar_colour(r.room_id.as_str())) } aria-hidden="true" { (room_initial(title)) }
                        div.info {
                            a.name href={ "/rooms/" (r.room_id) } { (title) }
                            div.meta {
                                @if let Some(a) = &r.alias { span.alias { (a) } " · " }
                                (r.joined) " member" @if r.joined != 1 { "s" }
                            }
                            @if !r.topic.is_empty() {
                                p.topic {
                                    (r.topic.chars().take(DIRECTORY_TOPIC_CHARS).collect::<String>())
                                    @if r.topic.chars().count() > DIRECTORY_TOPIC_CHARS { "…" }
                                }
                            }
                        }
                        @if d.joined.contains(r.room_id.as_str()) {
                            a.button.small.secondary href={ "/rooms/" (r.room_id) } { "View" }
                        } @else {
                            form.inline method="post" action={ "/rooms/" (r.room_id) "/join" } {
                                button.button.small type="submit" aria-label={ "Join " (title) } { "Join" }
                            }
                        }
                    }
                }
                @if page.rooms.is_empty() {
                    li.empty {
                        @if d.q.is_empty() { "No public rooms yet — create one." }
                        @else if page.search_cut { "No matches among the rooms searched so far." }
                        @else { "No public rooms match." }
                    }
                }
            }
            @if page.search_cut && !page.rooms.is_empty() {
                p.muted { "Only part of the directory was searched for this page." }
            }
            @if page.prev.is_some() || page.next.is_some() {
                nav.pager aria-label="Directory pages" {
                    @if let Some(t) = &page.prev { a.button.small.secondary rel="prev" href=(directory_link(t, d.q)) { "← Previous" } }
                    @if let Some(t) = &page.next {
                        a.button.small.secondary rel="next" href=(directory_link(t, d.q)) {
                            @if page.search_cut { "Search further →" } @else { "More rooms →" }
                        }
                    }
                }
            }
        }
    }
}

/// What the viewer may do in the room shown.
pub enum Access {
    /// A member: full room.
    Member,
    /// Invited: preview with accept/decline.
    Invited,
    /// Public room, not a member: join button.
    CanJoin,
}

/// Everything the room page shows.
pub struct RoomView<'a> {
    /// What the room settings offer for who can join.
    pub join_choices: JoinChoices,
    /// Viewer.
    pub user: &'a str,
    /// Stream position the page is rendered at.
    pub since: u64,
    /// The room.
    pub room: &'a RoomRecord,
    /// For direct rooms, the other person.
    pub peer: Option<&'a str>,
    /// Sidebar.
    pub rooms: &'a [MyRoom],
    /// Newest page of events, oldest first.
    pub events: &'a [StoredEvent],
    /// Cursor for older events.
    pub next: Option<u64>,
    /// Cursor of the page after the events shown, when they stop short of the newest (a room
    /// opened at a message): the timeline is detached from the live end until it reaches it.
    pub newer: Option<u64>,
    /// The room's pinned messages that are stored here, in pinning order.
    pub pins: &'a [StoredEvent],
    /// Members (joined and invited).
    pub members: &'a [(String, Membership)],
    /// Viewer's access.
    pub access: Access,
    /// Presence of members and direct-message peers.
    pub presence: &'a Presences,
    /// The viewer's read marker before this visit: a "new messages" divider goes after it.
    pub read_before: u64,
    /// Readers whose receipt sits on an event, by that event's position ("seen by").
    pub receipts: &'a HashMap<u64, Vec<String>>,
    /// Who is typing now.
    pub typing: &'a [String],
    /// Calls running in the room: (conference id, people in it).
    pub calls: &'a [crate::calls::CallPeople],
    /// The message a link to it opened the page at (its id and position): the client scrolls
    /// to it, loading history as far back as it is.
    pub jump: Option<(&'a str, u64)>,
    /// Largest file an upload may be, bytes (the client refuses bigger ones before sending).
    pub max_upload: u64,
    /// The viewer's notification setting for this room.
    pub notify: crate::store::push::RoomPref,
    /// Who invited the viewer (an invitation).
    pub inviter: Option<&'a str>,
    /// Who removed the viewer from this public room, if someone did.
    pub removed_by: Option<&'a str>,
}

/// The room page.
pub fn room_page(v: &RoomView<'_>) -> Markup {
    let id = &v.room.room_id;
    let title = room_title(v.room, v.peer);
    // What the viewer may do, for the client's toolbar and composer.
    let (pl, level) = (&v.room.power_levels, v.room.power_levels.level_of(v.room.creators(), v.user));
    layout(
        &title,
        Some(v.user),
        Some(v.since),
        html! {
            div.app.in-room {
                (room_list(v.user, v.rooms, Some(id.as_str()), v.presence))
                main.room id="room" data-room-id=(id) data-names=(names_json())
                    data-can-redact=(level >= pl.redact)
                    data-can-mention-room=(level >= pl.room_notification_level())
                    data-can-pin=(level >= pl.event_level(M_ROOM_PINNED_EVENTS, true))
                    data-can-kick=(level >= pl.kick) data-can-ban=(level >= pl.ban)
                    data-jump=[v.jump.map(|j| j.0)] data-jump-pos=[v.jump.map(|j| j.1)]
                    data-max-upload=(v.max_upload) {
                    div.room-head {
                        a.back href="/rooms" title="All rooms" {
                            (icon(Icon::Back)) span.sr-only { "All rooms" }
                            @let elsewhere: u64 = v.rooms.iter().filter(|r| r.room.room_id != *id).map(|r| r.unread).sum();
                            span.badge.unread #back-unread hidden[elsewhere == 0] { (unread_label(elsewhere)) }
                        }
                        div.title {
                            h1 {
                                @if let Some(p) = v.peer { (presence_dot(p, v.presence)) " " }
                                (title)
                            }
                            @if !v.room.topic.is_empty() { p.topic title=(v.room.topic) { (v.room.topic) } }
                        }
                        @if matches!(v.access, Access::Member) {
                            div.head-actions {
                                (pinned_list(v.pins))
                                a.button.ghost.icon #room-search href={ "/search?room=" (id) } aria-label="Search this room" title="Search this room" { (icon(Icon::Search)) }
                                button.ghost.icon.call type="button" data-call="voice" data-room-id=(id) aria-label="Start a voice call" title="Voice call" { (icon(Icon::Phone)) }
                                button.ghost.icon.call type="button" data-call="video" data-room-id=(id) aria-label="Start a video call" title="Video call" { (icon(Icon::Video)) }
                                (notify_menu(id.as_str(), v.room.direct || v.room.joined == 2, v.notify))
                                button.ghost.icon #room-info type="button" aria-controls="members" aria-expanded="false"
                                    aria-label="Room info and members" title="Room info and members" { (icon(Icon::People)) }
                            }
                        }
                    }
                    @match v.access {
                        Access::Member => {
                            (call_bar(v.calls))
                            (timeline_with(v.events, v.next, v.newer, v.user, v.read_before, v.receipts))
                            button.jump-latest id="jump-latest" type="button" hidden aria-label="Jump to the latest message" {
                                span.count {} span { "Jump to latest ↓" }
                            }
                            p.typing id="typing" aria-live="polite" { (typing_text(v.user, v.typing)) }
                            p.notice id="notice" role="status" hidden {}
                            (pending_item(v.user))
                            (message_actions())
                            template id="reaction-chip" { (reaction_chip("", &[])) }
                            template id="reaction-row" { (reactions(&[])) }
                            (emoji_picker())
                            (profile_card())
                            ul.suggest id="mention-suggest" role="listbox" aria-label="People to mention" hidden {}
                            div.composer-mode id="composer-mode" hidden {
                                span.what { "Editing message" } span.muted { " · Esc to cancel" }
                                button.link type="button" { "Cancel" }
                            }
                            ul.uploads id="uploads" aria-label="Files to send" hidden {}
                            form.composer id="composer" method="post" action={ "/rooms/" (id) "/send" } {
                                input type="hidden" name="txn_id" value=(crate::auth::random_id().unwrap_or_default());
                                button.ghost.attach id="attach" type="button" aria-label="Attach files" title="Attach files (or paste, or drop them here)" { "+" }
                                input id="attach-input" type="file" multiple hidden;
                                button.ghost.record id="record" type="button" aria-pressed="false" aria-label="Record a voice message"
                                    title="Record a voice message (click to start and send, or hold)" { "🎤" }
                                textarea name="body" rows="1" required placeholder="Message" aria-label="Message" maxlength="16384" {}
                                button type="submit" { "Send" }
                            }
                        }
                        Access::Invited => {
                            @let joined = v.members.iter().filter(|(_, m)| *m == Membership::Join).count();
                            div.invitation {
                                @if let Some(by) = v.inviter {
                                    p.invited-by {
                                        (user_avatar(by)) " "
                                        strong data-name-of=(by) { (display_name(by)) }
                                        @if v.room.direct { " wants to chat with you." } @else { " invited you to " strong { (title) } "." }
                                    }
                                } @else {
                                    p { "You are invited to " strong { (title) } "." }
                                }
                                @if !v.room.topic.is_empty() { p.topic { (v.room.topic) } }
                                p.muted { (joined) @if joined == 1 { " member" } @else { " members" } }
                                form.inline method="post" action={ "/rooms/" (id) "/join" } { button type="submit" { "Accept" } }
                                form.inline method="post" action={ "/rooms/" (id) "/leave" } { button.link type="submit" { "Decline" } }
                            }
                        }
                        Access::CanJoin => {
                            div.invitation {
                                @if let Some(by) = v.removed_by {
                                    p { strong data-name-of=(by) { (display_name(by)) } " removed you from this room." }
                                    p.muted { "It is public: you can join again." }
                                } @else {
                                    p { "You are not in this room yet." }
                                }
                                form.inline method="post" action={ "/rooms/" (id) "/join" } { button type="submit" { "Join room" } }
                            }
                        }
                    }
                }
                @if matches!(v.access, Access::Member) {
                    (member_list(v.user, v.room, v.members, v.presence, &v.join_choices))
                }
            }
        },
    )
}

/// The call screen and a call tile, as templates the call client fetches (`/fragments/call`)
/// and clones: a header with who and how long, the tiles, the ended state ("Ben
/// declined"), a bar of controls with icons, labels and shortcuts, and the device settings.
pub fn call_templates() -> Markup {
    html! {
        template #call-template {
            section.call #call aria-label="Call" {
                header.call-head {
                    div.call-title {
                        h2 {}
                        span.timer role="timer" { "Calling…" }
                    }
                    p.hands aria-live="polite" title="Hands raised" hidden { (icon(Icon::Hand)) span.who {} }
                    div.pager hidden {
                        button.prev type="button" aria-label="Previous page of people" { "‹" }
                        span.where {}
                        button.next type="button" aria-label="Next page of people" { "›" }
                    }
                    p.status aria-live="polite" {}
                }
                div.grid data-count="1" {}
                div.ended hidden {
                    p.ended-text role="status" {}
                    div.actions {
                        button.secondary.close-call type="button" { "Close" }
                        button.call-again type="button" { "Call again" }
                    }
                }
                div.controls role="toolbar" aria-label="Call controls" {
                    button.ctl.mute type="button" aria-pressed="false" aria-keyshortcuts="M" title="Mute (M)" {
                        span.on { (icon(Icon::Mic)) } span.off { (icon(Icon::MicOff)) } span.label { "Mute" }
                    }
                    button.ctl.camera type="button" aria-pressed="false" aria-keyshortcuts="V" title="Camera off (V)" {
                        span.on { (icon(Icon::Video)) } span.off { (icon(Icon::CameraOff)) } span.label { "Camera" }
                    }
                    button.ctl.share type="button" aria-pressed="false" title="Share your screen" {
                        (icon(Icon::Screen)) span.label { "Share" }
                    }
                    button.ctl.hand type="button" aria-pressed="false" aria-keyshortcuts="H" title="Raise your hand (H)" {
                        (icon(Icon::Hand)) span.label { "Raise hand" }
                    }
                    button.ctl.devices type="button" aria-haspopup="dialog" title="Camera and microphone" {
                        (icon(Icon::Gear)) span.label { "Devices" }
                    }
                    button.ctl.chat type="button" aria-pressed="false" title="The room's messages" {
                        (icon(Icon::Chat)) span.label { "Chat" }
                    }
                    button.ctl.end-all type="button" hidden title="End the call for everyone" {
                        (icon(Icon::Close)) span.label { "End for all" }
                    }
                    button.ctl.hangup type="button" aria-keyshortcuts="Escape" title="Leave the call (Esc)" {
                        (icon(Icon::HangUp)) span.label { "Leave" }
                    }
                }
                dialog.call-settings aria-labelledby="call-settings-title" {
                    form method="dialog" {
                        h2 #call-settings-title { "Camera and microphone" }
                        label { "Camera" select.camera {} }
                        label { "Microphone" select.microphone {} }
                        div.actions { button type="submit" { "Done" } }
                    }
                }
            }
        }
        template #call-tile {
            figure.tile data-video="on" data-audio="on" {
                video autoplay playsinline {}
                div.placeholder aria-hidden="true" { span.avatar.big {} }
                button.hand-badge type="button" hidden { (icon(Icon::Hand)) span.order {} }
                button.host-mute type="button" hidden { (icon(Icon::MicOff)) span { "Mute" } }
                figcaption {
                    span.muted-mic title="Muted" { (icon(Icon::MicOff)) span.sr-only { "muted" } }
                    span.name {}
                    span.quality {}
                }
            }
        }
    }
}

/// A room's call bar: who is in each of its calls (conference id, people in joining order),
/// hidden while there is none. The room page and the live `call_roster` frame both use it. Each
/// call has a Join button that the live client shows to tabs not in a call; `data-rosters`
/// carries the user ids it needs to join.
pub fn call_bar(calls: &[crate::calls::CallPeople]) -> Markup {
    let rosters: Vec<serde_json::Value> = calls
        .iter()
        .map(
            |c| serde_json::json!({ "conf_id": c.conf_id, "user_ids": c.user_ids, "hands": c.hands, "muted": c.muted }),
        )
        .collect();
    html! {
        div.callbar id="callbar" data-rosters=(serde_json::Value::from(rosters)) hidden[calls.is_empty()] {
            @for c in calls {
                span.who title=(c.user_ids.join(", ")) {
                    "In call: " (c.user_ids.iter().map(|u| display_name(u)).collect::<Vec<_>>().join(", "))
                }
                @if !c.hands.is_empty() {
                    span.hands title="Hands raised" {
                        (icon(Icon::Hand)) span.sr-only { "Hands raised: " }
                        (c.hands.iter().map(|u| display_name(u)).collect::<Vec<_>>().join(", "))
                    }
                }
                button.join type="button" data-conf-id=(c.conf_id) hidden { "Join call" }
            }
        }
    }
}

/// The timeline list with a "new messages" divider after the viewer's previous read marker and
/// "seen by" avatars; `next` is the cursor for loading older events.
pub fn timeline_with(
    events: &[StoredEvent],
    next: Option<u64>,
    newer: Option<u64>,
    viewer: &str,
    read_before: u64,
    receipts: &HashMap<u64, Vec<String>>,
) -> Markup {
    let first_new = events
        .iter()
        .find(|e| e.pos > read_before && e.event.kind == M_ROOM_MESSAGE && e.event.sender != viewer)
        .map(|e| e.pos);
    // The room's setup (its creation and the creator's first state changes: permissions, join
    // rule, name, topic…) shows as one line, "ana created the room", with the rest on demand.
    let setup = match events.first() {
        Some(first) if next.is_none() && first.event.kind == M_ROOM_CREATE => events
            .iter()
            .take_while(|e| {
                e.event.sender == first.event.sender && e.event.state_key.is_some() && e.event.kind != M_ROOM_MESSAGE
            })
            .count(),
        _ => 0,
    };
    html! {
        ol.timeline id="timeline" data-next=[next] data-newer=[newer] {
            @if next.is_none() { li.ev.start { "This is the beginning of the conversation." } }
            @if setup > 1 {
                @let first = &events[0].event;
                li.note.setup-summary data-ts=(first.origin_server_ts) {
                    (person(&first.sender)) " created the room · "
                    button.link.show-setup type="button" aria-expanded="false" aria-controls="timeline" {
                        "Show " (setup - 1) @if setup == 2 { " setup change" } @else { " setup changes" }
                    }
                }
            }
            @for (i, e) in events.iter().enumerate() {
                @if first_new == Some(e.pos) { li.divider id="new-divider" { span { "New messages" } } }
                (event_item_in(e, setup > 1 && i < setup))
                @if let Some(readers) = receipts.get(&e.pos) {
                    li.seen data-pos=(e.pos) { @for r in readers { (receipt_avatar(r)) } }
                }
            }
        }
    }
}

/// "Ana is typing…" for the users typing (the viewer left out).
pub fn typing_text(viewer: &str, typing: &[String]) -> String {
    let names: Vec<String> = typing.iter().filter(|u| *u != viewer).map(|u| display_name(u)).collect();
    match names.as_slice() {
        [] => String::new(),
        [a] => format!("{a} is typing…"),
        [a, b] => format!("{a} and {b} are typing…"),
        _ => "Several people are typing…".into(),
    }
}

/// Newer events after a message opened in the middle of history (oldest first), as a template
/// whose `data-newer` is the cursor of the page after (none: these reach the newest).
pub fn newer_fragment(events: &[StoredEvent], newer: Option<u64>) -> Markup {
    html! {
        template data-newer=[newer] {
            @for e in events { (event_item(e)) }
        }
    }
}

/// Older events, as a fragment for infinite scroll.
pub fn history_fragment(events: &[StoredEvent], next: Option<u64>) -> Markup {
    html! {
        template data-next=[next] {
            @if next.is_none() { li.ev.start { "This is the beginning of the conversation." } }
            @for e in events { (event_item(e)) }
        }
    }
}

/// The row of the viewer's own message while it is being sent: a template the live client
/// clones and fills with the text (so this markup, like every other, comes from here).
pub fn pending_item(viewer: &str) -> Markup {
    html! {
        template id="pending-item" {
            li.ev.msg.mine.pending {
                span.who { (display_name(viewer)) }
                div.body {}
                span.why {}
            }
        }
    }
}

/// The reactions the message toolbar offers in one click.
pub const QUICK_REACTIONS: [&str; 3] = ["👍", "❤️", "😂"];

/// The toolbar on a message (quick reactions, react, reply, edit, delete): a template the live client puts into the row a
/// pointer or the keyboard is on, with the buttons that viewer may use.
pub fn message_actions() -> Markup {
    html! {
        template id="msg-actions" {
            div.actions role="toolbar" aria-label="Message actions" {
                @for key in QUICK_REACTIONS {
                    button.ghost.quick type="button" data-act="quick" data-key=(key) aria-label={ "React with " (key) } title={ "React with " (key) } { (key) }
                }
                button.ghost type="button" data-act="react" aria-label="React: add a reaction" title="Add reaction" { "React" }
                button.ghost type="button" data-act="reply" aria-label="Reply" title="Reply" { "Reply" }
                button.ghost type="button" data-act="pin" aria-label="Pin message" title="Pin to the room's header" { "Pin" }
                button.ghost type="button" data-act="link" aria-label="Copy link to message" title="Copy a link to this message" { "Link" }
                button.ghost type="button" data-act="edit" aria-label="Edit message" title="Edit (↑ in an empty composer)" { "Edit" }
                button.ghost.danger type="button" data-act="delete" aria-label="Delete message" title="Delete" { "Delete" }
            }
        }
    }
}

/// One event in the timeline.
pub fn event_item(stored: &StoredEvent) -> Markup {
    event_item_in(stored, false)
}

/// An event's row; `setup` marks a note of the room's setup (hidden behind one line, see
/// [`timeline_with`]).
fn event_item_in(stored: &StoredEvent, setup: bool) -> Markup {
    let ev = &stored.event;
    let who = display_name(&ev.sender);
    html! {
        @if (stored.hidden && stored.redacted_because.is_some())
            || (ev.kind == crate::store::relations::M_REACTION && crate::store::relations::annotation(ev).is_none())
        {
            // A deleted edit or reaction, or a reaction that names nothing: nothing to show.
            (unseen_row(stored))
        } @else if ev.kind == M_ROOM_MESSAGE && stored.redacted_because.is_some() {
            li.ev.msg.redacted id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-sender=(ev.sender) data-event-id=(ev.event_id)
                data-ts=(ev.origin_server_ts) {
                (user_avatar(&ev.sender))
                span.who title=(ev.sender) data-name-of=(ev.sender) { (who) }
                time data-ts=(ev.origin_server_ts) { (clock(ev.origin_server_ts)) }
                div.body { em { "Message deleted" } }
            }
        } @else if let Some(original) = crate::store::edits::edited_event_id(ev) {
            // An edit: the edited message's row changes (on a page, it shows the newest text;
            // live, the client moves this row's body into it, see `timeline.js`). The row
            // keeps positions contiguous for history paging.
            li.ev.signal id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-kind="m.replace" data-sender=(ev.sender)
                data-event-id=(ev.event_id) data-replaces=(original) data-ts=(ev.origin_server_ts) hidden {
                @if let Some(new) = ev.content.get("m.new_content") { template { (message_body(new)) } }
            }
        } @else if ev.kind == M_ROOM_MESSAGE {
            li.ev.msg id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-sender=(ev.sender) data-event-id=(ev.event_id)
                data-ts=(ev.origin_server_ts) data-mentions=[mentions_attr(&ev.content)] tabindex="0" {
                (user_avatar(&ev.sender))
                span.who title=(ev.sender) data-name-of=(ev.sender) { (who) }
                time data-ts=(ev.origin_server_ts) { (clock(ev.origin_server_ts)) }
                @if let Some(to) = crate::store::relations::reply_target(ev) { (reply_quote(to, stored.quote.as_ref())) }
                @match &stored.edit {
                    Some(edit) => {
                        (message_body(&edit.content))
                        (edited_mark(edit.ts))
                    }
                    None => (message_body(&ev.content)),
                }
                @if !stored.reactions.is_empty() { (reactions(&stored.reactions)) }
            }
        } @else if let Some((target, key)) = crate::store::relations::annotation(ev) {
            // A reaction: the reacted message's row counts it (live, the client adds it there,
            // see `timeline.js`); the row keeps positions contiguous for history paging.
            li.ev.signal id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-kind=(ev.kind) data-sender=(ev.sender)
                data-event-id=(ev.event_id) data-reacts-to=(target) data-key=(key) hidden {}
        } @else if ev.kind == M_ROOM_REDACTION || ev.kind == DUMMY_EVENT {
            // The redacted event's own row changes (live: the client drops it, see `app.js`);
            // a dummy event only joins branches.
            (unseen_row(stored))
        } @else if ev.kind == crate::events::call::CALL_ENDED {
            li.ev.note.call id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-sender=(ev.sender)
                data-kind=(ev.kind) data-event-id=(ev.event_id) data-ts=(ev.origin_server_ts) { (call_record(ev)) }
        } @else if crate::events::call::is_call_event(&ev.kind) {
            @if let Some(summary) = call_summary(ev) {
                li.ev.note.call id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-sender=(ev.sender)
                    data-kind=(ev.kind) data-event-id=(ev.event_id) data-ts=(ev.origin_server_ts) { (summary) }
            } @else {
                // Signalling has no row of its own.
                (unseen_row(stored))
            }
        } @else {
            li.ev.note.setup[setup] id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-sender=(ev.sender) data-kind=(ev.kind)
                data-state-key=[ev.state_key.as_deref()] data-event-id=(ev.event_id) data-ts=(ev.origin_server_ts) {
                (note(stored))
            }
        }
    }
}

/// The row of an event that shows nothing of its own (a redaction, a dummy event, a call
/// signal, a deleted edit or reaction): hidden, it keeps positions contiguous for history
/// paging; a redaction's names what it took back.
fn unseen_row(stored: &StoredEvent) -> Markup {
    let ev = &stored.event;
    html! {
        li.ev.signal id={ "ev-" (stored.pos) } data-pos=(stored.pos) data-kind=(ev.kind)
            data-event-id=(ev.event_id) data-redacts=[ev.redacts()] hidden {}
    }
}

/// Whom a message mentions, for the client to mark a message that mentions the viewer: the
/// user ids of its `m.mentions`, and `@room` for everyone.
fn mentions_attr(content: &serde_json::Value) -> Option<String> {
    let (mut out, everyone) = mentions_of(content);
    if everyone {
        out.push("@room");
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// The room's pinned messages, in its header: a button with their count that opens the list
/// (who and how each starts; a click goes to the message). `data-pinned` lists their ids for
/// the message toolbar's Pin and Unpin. Also the `/rooms/{id}/pins` fragment the client swaps
/// in when the pins change.
pub fn pinned_list(pins: &[StoredEvent]) -> Markup {
    let ids: Vec<&str> = pins.iter().map(|p| p.event.event_id.as_str()).collect();
    html! {
        details.pins id="pins" data-pinned=(ids.join(" ")) hidden[pins.is_empty()] {
            summary aria-label={ (pins.len()) " pinned messages" } title="Pinned messages" { (icon(Icon::Pin)) span.count { (pins.len()) } }
            ol {
                @for p in pins {
                    li {
                        a.pin href={ "#ev-" (p.pos) } data-jump=(p.event.event_id) data-pos=(p.pos) {
                            span.who data-name-of=(p.event.sender) { (display_name(&p.event.sender)) }
                            span.text { (crate::store::relations::quote_text(p.content_now())) }
                        }
                    }
                }
            }
        }
    }
}

/// The quote above a reply: who wrote the answered message and how it starts; a link to it
/// (the client scrolls there, loading older history as far as `data-pos`).
pub fn reply_quote(to: &str, quote: Option<&crate::store::relations::Quote>) -> Markup {
    html! {
        @match quote {
            Some(q) => a.quote href={ "#ev-" (q.pos) } data-quote-of=(to) data-pos=(q.pos) title="Go to the message" {
                span.who data-name-of=(q.sender) { (display_name(&q.sender)) }
                @if q.deleted { em.text { "Message deleted" } } @else { span.text { (q.text) } }
            },
            None => div.quote.missing data-quote-of=(to) { em.text { "In reply to a message not on this server" } },
        }
    }
}

/// The reactions under a message: one button per key with its count, who reacted on hover
/// (`data-by` lists `[sender, reaction id]` pairs: the client marks the viewer's own and
/// takes one back by redacting it), and a button to add one.
pub fn reactions(list: &[crate::store::relations::Reaction]) -> Markup {
    html! {
        div.reactions {
            @for r in list {
                (reaction_chip(&r.key, &r.by))
            }
            button.ghost.add-reaction type="button" data-act="react" aria-label="Add reaction" title="Add reaction" { "+" }
        }
    }
}

/// A person's card (a template the client fills and opens when a name or a face is clicked):
/// their face, name and id, and buttons to write to them directly or mention them.
pub fn profile_card() -> Markup {
    html! {
        template id="profile-card" {
            div.profile-card role="dialog" aria-label="Profile" {
                div.head {
                    span.avatar.big aria-hidden="true" {}
                    div { strong.name {} div.id {} }
                }
                div.buttons {
                    form method="post" action="/dm" {
                        input type="hidden" name="user" value="";
                        button type="submit" { "Message" }
                    }
                    button.secondary type="button" data-act="mention" { "Mention" }
                }
                p.muted.self hidden { "This is you · " a href="/settings" { "Change your name" } }
                // For moderators (the room page's data-can-kick / data-can-ban), asked first.
                div.moderate hidden {
                    button.secondary.small.danger-text type="button" data-act="kick" hidden { "Remove from room" }
                    button.danger.small type="button" data-act="ban" hidden { "Ban" }
                }
            }
        }
    }
}

/// The reaction picker (a template the client opens by a message): a search box, then the
/// emoji the viewer used recently and the rest, filtered by name as they type.
pub fn emoji_picker() -> Markup {
    html! {
        template id="emoji-picker" {
            div.picker role="dialog" aria-label="Add reaction" {
                input type="search" placeholder="Search emoji" aria-label="Search emoji" autocomplete="off";
                p.section.recent-title hidden { "Recently used" }
                div.grid.recent role="listbox" aria-label="Recently used emoji" {}
                p.section { "Emoji" }
                div.grid.all role="listbox" aria-label="Emoji" {}
                p.empty hidden { "No emoji found" }
            }
        }
    }
}

/// One reaction button (also cloned by the client, from the `reaction-chip` template).
pub fn reaction_chip(key: &str, by: &[(String, String)]) -> Markup {
    let names: Vec<String> = by.iter().map(|(u, _)| display_name(u)).collect();
    let title = if names.is_empty() { String::new() } else { format!("{} reacted with {key}", names.join(", ")) };
    html! {
        button.reaction type="button" data-key=(key) data-by=(serde_json::to_string(by).unwrap_or_default())
            title=(title) aria-label={ (key) " " (by.len()) } {
            span.key { (key) } " " span.count { (by.len()) }
        }
    }
}

/// A message's body: the file it shares, if any, and its text.
pub fn message_body(content: &serde_json::Value) -> Markup {
    if let Some(file) = attachment(content) {
        // A file, with its caption when it has one (a body other than the file's name).
        let name = content.get("filename").and_then(|v| v.as_str());
        let body = content.get("body").and_then(|v| v.as_str());
        let captioned = body.is_some_and(|b| !b.trim().is_empty() && Some(b) != name);
        return html! {
            (file)
            @if captioned { (text_body(content)) }
        };
    }
    text_body(content)
}

/// Largest box an image or video is shown in within the timeline, CSS pixels.
const MEDIA_BOX: (u64, u64) = (360, 320);

/// The file a message shares (`m.image`, `m.video`, `m.audio`, `m.file` with an `mxc://`
/// `url`): an image (its size reserved from `info.w`/`info.h`, so nothing moves when it
/// loads; click to view it large), a player, or a card with the name, size and a download.
fn attachment(content: &serde_json::Value) -> Option<Markup> {
    let msgtype = content.get("msgtype").and_then(|v| v.as_str())?;
    if !matches!(msgtype, "m.image" | "m.video" | "m.audio" | "m.file") {
        return None;
    }
    let uri = content.get("url").and_then(|v| v.as_str())?;
    let key = crate::store::media::key_of(uri)?;
    let (server, id) = key.split_once('/')?;
    let path = format!("{}/{}", crate::federation::urlencode(server), crate::federation::urlencode(id));
    let src = format!("/api/v1/media/download/{path}");
    let thumb = format!("/api/v1/media/thumbnail/{path}");
    let info = content.get("info");
    let num = |k: &str| info.and_then(|i| i.get(k)).and_then(|v| v.as_u64());
    let name = content
        .get("filename")
        .or_else(|| content.get("body"))
        .and_then(|v| v.as_str())
        .map(|n| capped_text(n, 120))
        .unwrap_or_else(|| "file".into());
    let size = num("size").map(crate::store::media::human_bytes);
    // Shown at most MEDIA_BOX, keeping the proportions the sender measured.
    let fitted = match (num("w"), num("h")) {
        (Some(w), Some(h)) if w > 0 && h > 0 => {
            let scale = (MEDIA_BOX.0 as f64 / w as f64).min(MEDIA_BOX.1 as f64 / h as f64).min(1.0);
            Some((((w as f64) * scale).round().max(1.0) as u64, ((h as f64) * scale).round().max(1.0) as u64))
        }
        _ => None,
    };
    // Blurred in its place until it is in (the sender's BlurHash, from whichever server).
    let placeholder = info
        .and_then(|i| i.get(crate::rooms::BLURHASH))
        .and_then(|v| v.as_str())
        .filter(|_| msgtype == "m.image")
        .and_then(crate::media::images::blurhash_png)
        .map(|png| format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)));
    Some(html! {
        @match msgtype {
            "m.image" => a.file.image href=(src) target="_blank" rel="noopener" data-viewer="image" title=(name) {
                img src=(thumb) alt=(name) loading="lazy" decoding="async"
                    width=[fitted.map(|f| f.0)] height=[fitted.map(|f| f.1)];
                @if let Some(ph) = &placeholder { img.ph src=(ph) alt="" aria-hidden="true"; }
            },
            "m.video" => video.file.video controls preload="metadata" src=(src)
                width=[fitted.map(|f| f.0)] height=[fitted.map(|f| f.1)] aria-label=(name) {},
            "m.audio" => @if let Some(wave) = waveform(content) {
                div.file.audio.voice {
                    span.label { "Voice message" @if let Some(ms) = num("duration") { " · " (clock_length(ms)) } }
                    (wave)
                    audio controls preload="metadata" src=(src) aria-label={ "Voice message " (name) } {}
                }
            } @else {
                div.file.audio {
                    audio controls preload="metadata" src=(src) aria-label=(name) {}
                }
            },
            _ => a.file.card href=(src) download=(name) title={ "Download " (name) } {
                span.icon aria-hidden="true" { (file_icon(info.and_then(|i| i.get("mimetype")).and_then(|m| m.as_str()).unwrap_or_default())) }
                span.meta {
                    span.fname { (name) }
                    @if let Some(size) = &size { span.size { (size) } }
                }
                span.get aria-hidden="true" { "↓" }
            },
        }
    })
}

/// A voice message's waveform (`org.matrix.msc1767.audio.waveform`, values 0-1024) as bars
/// in an SVG (its attributes carry the heights: the CSP allows no inline styles).
fn waveform(content: &serde_json::Value) -> Option<Markup> {
    let values = content.get("org.matrix.msc1767.audio")?.get("waveform")?.as_array()?;
    let values: Vec<u64> = values.iter().filter_map(|v| v.as_u64()).take(256).map(|v| v.min(1024)).collect();
    if values.is_empty() {
        return None;
    }
    // At most 48 bars: the values averaged in groups.
    let bars = values.len().min(48);
    let per = values.len().div_ceil(bars);
    let heights: Vec<u64> = values.chunks(per).map(|c| c.iter().sum::<u64>() / c.len() as u64).collect();
    let width = heights.len() * 4;
    Some(html! {
        svg.wave viewBox={ "0 0 " (width) " 32" } preserveAspectRatio="none" height="32" aria-hidden="true" {
            @for (i, h) in heights.iter().enumerate() {
                @let bar = (h * 30 / 1024).max(2);
                rect x=(i * 4) y=((32 - bar) / 2) width="2.5" height=(bar) rx="1" {}
            }
        }
    })
}

/// "0:07", "12:30": a recording's length.
fn clock_length(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// A small picture of a file's kind for its card.
fn file_icon(mimetype: &str) -> &'static str {
    match mimetype.split('/').next().unwrap_or_default() {
        "image" => "🖼",
        "video" => "🎞",
        "audio" => "🎵",
        "text" => "📄",
        _ if mimetype.contains("zip") || mimetype.contains("compressed") || mimetype.contains("tar") => "🗜",
        _ if mimetype == "application/pdf" => "📕",
        _ => "📎",
    }
}

/// A message's text: its HTML (Matrix's `org.matrix.custom.html`), through the sanitiser
/// unless it is our Markdown's own (see [`crate::format::safe_formatted_html`]), else its
/// plain text.
fn text_body(content: &serde_json::Value) -> Markup {
    let html = crate::format::safe_formatted_html(content).filter(|h| !h.trim().is_empty());
    html! {
        @match html {
            Some(h) => div.body.formatted { (PreEscaped(h)) },
            None => div.body { (plain_body(content)) },
        }
    }
}

/// A message's plain text; a reply's without Matrix's reply fallback (the quote above it shows
/// what it answers).
fn plain_body(content: &serde_json::Value) -> &str {
    let body = content.get("body").and_then(|v| v.as_str()).unwrap_or_default();
    let reply = content.get("m.relates_to").and_then(|r| r.get("m.in_reply_to")).is_some();
    if reply { crate::store::relations::strip_reply_fallback(body) } else { body }
}

/// "(edited)" after an edited message; the time of the edit on hover (the client writes it
/// in local time from `data-ts`).
pub fn edited_mark(ts: u64) -> Markup {
    html! { span.edited data-ts=(ts) title="Edited" { "(edited)" } }
}

/// The timeline line for the end of a ringing call: "Video call with Ana and Ben, 3 min",
/// "Missed video call from Ana", "Ben declined the call from Ana". Other signals have none, nor
/// does a call that went on through the media server.
fn call_summary(ev: &Event) -> Option<String> {
    // A call of two that moved to the media server when a third joined: that call's record
    // (`chat.call.ended`) is its line.
    if ev.content.get("chat.moved_to").is_some() {
        return None;
    }
    let call = ev.content.get("chat.call")?;
    if !call.get("ring").and_then(|v| v.as_bool()).unwrap_or(true) {
        return None;
    }
    let name = |k: &str| display_name(call.get(k).and_then(|v| v.as_str()).unwrap_or_default()).to_string();
    let (caller, invitee) = (name("caller"), name("invitee"));
    let kind = if call.get("media").and_then(|v| v.as_str()) == Some("voice") { "voice call" } else { "video call" };
    if ev.kind == crate::events::call::REJECT {
        return Some(format!("{invitee} declined the {kind} from {caller}"));
    }
    match call.get("duration_ms").and_then(|v| v.as_u64()) {
        Some(ms) => {
            Some(format!("{}{} with {caller} and {invitee}, {}", kind[..1].to_uppercase(), &kind[1..], duration(ms)))
        }
        None => Some(format!("Missed {kind} from {caller}")),
    }
}

/// Most people a call's record names; the rest are counted.
const RECORD_NAMES: usize = 5;

/// The timeline line for a room call through a media server that ended: "Call with ana, ben
/// and cy, 12 min" (names as the page knows them; beyond [`RECORD_NAMES`], "and 4 others").
fn call_record(ev: &Event) -> Markup {
    let people: Vec<&str> = ev
        .content
        .get("user_ids")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|u| u.as_str()).filter(|u| crate::ids::UserId::parse(u).is_ok()).collect())
        .unwrap_or_default();
    let ms = ev.content.get("duration_ms").and_then(|v| v.as_u64()).unwrap_or(0);
    let shown = people.len().min(RECORD_NAMES);
    let others = people.len() - shown;
    html! {
        "Call"
        @if shown > 0 { " with " }
        @for (i, u) in people[..shown].iter().enumerate() {
            @if i > 0 && (i + 1 < shown || others > 0) { ", " } @else if i > 0 { " and " }
            (person(u))
        }
        @if others == 1 { " and 1 other" } @else if others > 1 { " and " (others) " others" }
        ", " (duration(ms))
    }
}

/// "45 s", "3 min", "1 h 5 min".
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", (secs + 30) / 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// A person in a note: their name as the page knows it, which the client keeps current.
fn person(user: &str) -> Markup {
    html! { span data-name-of=(user) { (display_name(user)) } }
}

/// What a state change's row says ("ana joined", "ben named the room …").
fn note(stored: &StoredEvent) -> Markup {
    let ev = &stored.event;
    let who = &person(&ev.sender);
    let text = |k: &str| ev.content.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    match ev.kind.as_str() {
        M_ROOM_CREATE => html! { (who) " created the room" },
        M_ROOM_NAME => html! { (who) " named the room “" (capped_text(&text("name"), MAX_NAME_CHARS)) "”" },
        M_ROOM_TOPIC => html! { (who) " set the topic: " (capped_text(&text("topic"), MAX_TOPIC_CHARS)) },
        M_ROOM_JOIN_RULES => match JoinRule::of_content(&ev.content) {
            JoinRule::Public => html! { (who) " made the room public" },
            JoinRule::Invite => html! { (who) " made the room invite-only" },
            JoinRule::Knock => html! { (who) " let people ask to join the room" },
            JoinRule::Restricted | JoinRule::KnockRestricted => {
                html! { (who) " opened the room to the members of other rooms" }
            }
        },
        M_ROOM_POWER_LEVELS => html! { (who) " changed permissions" },
        M_ROOM_PINNED_EVENTS => {
            let n = ev.content.get("pinned").and_then(|p| p.as_array()).map_or(0, Vec::len);
            match n {
                0 => html! { (who) " unpinned every message" },
                1 => html! { (who) " changed the pinned messages (1 pinned)" },
                n => html! { (who) " changed the pinned messages (" (n) " pinned)" },
            }
        }
        M_ROOM_MEMBER => {
            let target = &person(ev.state_key.as_deref().unwrap_or_default());
            let before = stored.prev_content.as_ref().and_then(Membership::of_content);
            let was_joined = before == Some(Membership::Join);
            let own = ev.state_key.as_deref() == Some(ev.sender.as_str());
            match Membership::of_content(&ev.content) {
                Some(Membership::Join) if was_joined => {
                    let name = |c: Option<&serde_json::Value>| {
                        c.and_then(|c| c.get("displayname")).and_then(|n| n.as_str()).and_then(clean_display_name)
                    };
                    let id = ev.state_key.as_deref().unwrap_or_default();
                    match (name(stored.prev_content.as_ref()), name(Some(&ev.content))) {
                        (Some(old), Some(new)) if old != new => html! { (old) " changed their name to " (new) },
                        (None, Some(new)) => html! { (localpart(id)) " set their name to " (new) },
                        (Some(old), None) => html! { (old) " removed their name" },
                        _ => html! { (target) " changed their profile" },
                    }
                }
                Some(Membership::Join) => html! { (target) " joined" },
                Some(Membership::Invite) if before == Some(Membership::Knock) => html! { (who) " let " (target) " in" },
                Some(Membership::Invite) => html! { (who) " invited " (target) },
                Some(Membership::Leave) if own && before == Some(Membership::Knock) => {
                    html! { (target) " withdrew their request to join" }
                }
                Some(Membership::Leave) if before == Some(Membership::Knock) => {
                    html! { (who) " turned down " (target) "’s request to join" }
                }
                Some(Membership::Leave) if own => html! { (target) " left" },
                Some(Membership::Leave) => html! { (who) " removed " (target) },
                Some(Membership::Ban) => html! { (who) " banned " (target) },
                Some(Membership::Knock) => {
                    let reason = capped_text(&text("reason"), MAX_TOPIC_CHARS);
                    html! { (target) " asked to join" @if !reason.is_empty() { ": “" (reason) "”" } }
                }
                None => html! { (who) " changed membership" },
            }
        }
        other => html! { (who) " sent " (other) },
    }
}

/// `hh:mm` UTC; the client rewrites it in local time from `data-ts`.
fn clock(ms: u64) -> String {
    let mins = ms / 60_000;
    format!("{:02}:{:02}", (mins / 60) % 24, mins % 60)
}

/// What the room settings offer for "who can join": the viewer's other rooms (id, title),
/// whose members the room may be opened to, and the rooms it is open to now.
#[derive(Debug, Default)]
pub struct JoinChoices {
    /// The viewer's joined rooms other than this one.
    pub rooms: Vec<(String, String)>,
    /// The rooms a restricted room lets the members of in.
    pub allowed: Vec<String>,
}

/// The member list with the invite form, also served as a live fragment.
/// The member list. `viewer` is the signed-in user: members of other servers than the
/// viewer's are shown with their server.
pub fn member_list(
    viewer: &str,
    room: &RoomRecord,
    members: &[(String, Membership)],
    presence: &Presences,
    choices: &JoinChoices,
) -> Markup {
    let local = crate::ids::server_of(viewer);
    let joined = members.iter().filter(|(_, m)| *m == Membership::Join).count();
    html! {
        aside.members id="members" aria-label="Room info and members" {
            div.drawer-head {
                h2 { "Members " span.muted { (joined) } }
                button.ghost.icon.close-drawer type="button" aria-label="Close room info" title="Close" { (icon(Icon::Close)) }
            }
            @let asking: Vec<&str> = members.iter().filter(|(_, m)| *m == Membership::Knock).map(|(u, _)| u.as_str()).collect();
            @let level = room.power_levels.level_of(room.creators(), viewer);
            @if !asking.is_empty() && level >= room.power_levels.invite {
                section.requests aria-label="Asking to join" {
                    h3 { @if asking.len() == 1 { "1 person asks to join" } @else { (asking.len()) " people ask to join" } }
                    ul {
                        @for u in &asking {
                            li title=(u) {
                                span class={ "avatar c" (avatar_colour(u)) } aria-hidden="true" { span data-initial-of=(u) { (initial(u)) } }
                                span.name data-name-of=(u) { (display_name(u)) }
                                form.answer method="post" action={ "/rooms/" (room.room_id) "/requests" } {
                                    input type="hidden" name="user" value=(u);
                                    button type="submit" name="accept" value="yes" { "Let in" }
                                    @if level >= room.power_levels.kick {
                                        button.ghost.danger-text type="submit" name="accept" value="no" { "Decline" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            ul {
                @for (u, m) in members.iter().filter(|(_, m)| *m != Membership::Knock) {
                    li.invited[*m == Membership::Invite] title=(u) {
                        span class={ "avatar c" (avatar_colour(u)) } aria-hidden="true" {
                            span data-initial-of=(u) { (initial(u)) }
                            (presence_dot(u, presence))
                        }
                        span.name data-name-of=(u) { (display_name(u)) }
                        @let server = crate::ids::server_of(u);
                        @if server != local { span.server { ":" (server) } }
                        @if room.creators().contains(u) { span.role { "owner" } } @else if room.power_levels.level_of(room.creators(), u) >= 100 { span.role { "admin" } }
                        @if *m == Membership::Invite { span.role { "invited" } }
                    }
                }
            }
            @if !room.direct && room.power_levels.level_of(room.creators(), viewer) >= room.power_levels.event_level(M_ROOM_NAME, true) {
                details.settings {
                    summary { "Room settings" }
                    form.stack method="post" action={ "/rooms/" (room.room_id) "/settings" } {
                        label { "Name" input name="name" required maxlength="100" value=(room.name); }
                        label { "Topic" input name="topic" maxlength="1000" value=(room.topic); }
                        fieldset {
                            legend { "Who can join" }
                            label.check {
                                input type="radio" name="visibility" value="public" checked[room.join_rule == JoinRule::Public];
                                " Anyone (listed)"
                            }
                            label.check {
                                input type="radio" name="visibility" value="private" checked[room.join_rule == JoinRule::Invite];
                                " Invited people only"
                            }
                            label.check {
                                input type="radio" name="visibility" value="knock" checked[matches!(room.join_rule, JoinRule::Knock | JoinRule::KnockRestricted)];
                                " Invited people, and anyone may ask to join"
                            }
                            @if !choices.rooms.is_empty() || room.join_rule == JoinRule::Restricted {
                                label.check {
                                    input type="radio" name="visibility" value="restricted" checked[room.join_rule == JoinRule::Restricted];
                                    " Members of another room"
                                }
                                label.indent { span.sr-only { "Which room" }
                                    select name="allow" aria-label="Room whose members may join" {
                                        @for (id, title) in &choices.rooms {
                                            option value=(id) selected[choices.allowed.iter().any(|a| a == id)] { (title) }
                                        }
                                        @for id in choices.allowed.iter().filter(|a| !choices.rooms.iter().any(|(r, _)| r == *a)) {
                                            option value=(id) selected { (id) }
                                        }
                                    }
                                }
                            }
                        }
                        button type="submit" { "Save" }
                    }
                }
            }
            @if !room.direct {
                form.invite method="post" action={ "/rooms/" (room.room_id) "/invite" } {
                    label { "Invite someone"
                        span.field-row {
                            input name="user" required placeholder="username or @name:server";
                            button.secondary type="submit" { "Invite" }
                        }
                    }
                }
            }
            @let peer = if room.direct { members.iter().map(|(u, _)| u.as_str()).find(|u| *u != viewer) } else { None };
            @let title = room_title(room, peer);
            form.leave method="post" action={ "/rooms/" (room.room_id) "/leave" }
                data-confirm={ "Leave " (title) "?" } data-confirm-detail=(leave_detail(room, peer))
                data-confirm-action="Leave" {
                button.secondary.danger-text type="submit" { @if room.direct { "Leave chat" } @else { "Leave room" } }
            }
        }
    }
}

/// What the settings page shows of the account.
pub struct AccountView {
    /// A server administrator.
    pub admin: bool,
    /// The name others see, if set.
    pub display_name: Option<String>,
    /// Notification settings.
    pub notify: crate::store::push::NotifyPrefs,
    /// Devices with push on.
    pub devices: Vec<crate::push::Device>,
    /// The server's VAPID public key, for the browser to subscribe with.
    pub push_key: String,
}

/// Account settings: profile, privacy, password (with the viewer's own name known to the
/// render).
pub fn settings(
    user: &str,
    me: &AccountView,
    privacy: (bool, bool),
    message: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let names = me.display_name.iter().map(|n| (user.to_string(), n.clone())).collect();
    with_names(names, || {
        let (appear_offline, hide_receipts) = privacy;
        let admin = me.admin;
        layout(
            "Settings",
            Some(user),
            None,
            html! {
                main.auth {
                    h1 { "Settings" }
                    p { "Signed in as " strong { (user) } }
                    @if let Some(m) = message { p.ok role="status" { (m) } }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/settings/profile" {
                        h2 { "Profile" }
                        div.profile-preview {
                            (user_avatar(user))
                            span { "Others see you as " strong { (me.display_name.as_deref().unwrap_or(localpart(user))) } }
                        }
                        label { "Display name"
                            input type="text" name="display_name" maxlength=(MAX_DISPLAY_NAME_CHARS) autocomplete="name"
                                value=(me.display_name.as_deref().unwrap_or_default()) placeholder=(localpart(user));
                        }
                        p.muted { "Shown in your rooms, also on other servers; leave it empty to go by your username." }
                        p { button type="submit" { "Save name" } }
                    }
                    form method="post" action="/settings/privacy" {
                    h2 { "Privacy" }
                    label.check { input type="checkbox" name="appear_offline" value="on" checked[appear_offline]; " Appear offline" }
                    label.check {
                        input type="checkbox" name="hide_receipts" value="on" checked[hide_receipts];
                        " Hide read receipts (you will not see others' either)"
                    }
                    p { button type="submit" { "Save" } }
                }
                (notification_settings(me))
                form method="post" action="/settings/password" {
                        h2 { "Change password" }
                        label { "Current password" input type="password" name="old_password" required autocomplete="current-password"; }
                        label { "New password" input type="password" name="new_password" required minlength="8" autocomplete="new-password"; }
                        button type="submit" { "Change password" }
                    }
                    p.muted { "Changing your password signs out your other devices." }
                    @if admin {
                        h2 { "Server" }
                        p { a href="/admin" { "Server administration" } " — accounts and rooms of this server." }
                    }
                }
            },
        )
    })
}

/// What leaving a room means, for its confirmation.
fn leave_detail(room: &RoomRecord, peer: Option<&str>) -> String {
    match (room.direct, peer, room.join_rule == JoinRule::Public) {
        (true, Some(p), _) => format!("You will stop getting messages from {} here.", display_name(p)),
        (true, None, _) => "You will stop getting messages here.".into(),
        (false, _, true) => "You will stop getting its messages. It is public: you can join again any time.".into(),
        (false, _, false) => {
            "You will stop getting its messages. It is private: to come back, someone in it must invite you again."
                .into()
        }
    }
}

/// Why the viewer cannot see a private room, for the page that says so.
pub enum Outside {
    /// They left it.
    Left(String),
    /// Someone removed them (the room's title, who).
    Removed(String, String),
    /// They are banned (the room's title).
    Banned(String),
    /// They never were in it.
    Never,
    /// They asked to be let in and wait for a moderator (the room's title).
    Asked(String),
}

/// The page for a private room the viewer is not in: what happened and what they can do.
/// `ask` is set for a room that takes requests to join (its title): the page then offers to
/// ask, with a message to the moderators.
pub fn outside_page(user: &str, room_id: &str, why: &Outside, ask: Option<&str>) -> Markup {
    let (heading, text): (String, String) = match why {
        Outside::Left(title) => (
            format!("You left {title}"),
            "It is a private room: to come back, ask someone in it to invite you again.".into(),
        ),
        Outside::Removed(title, by) => (
            format!("You were removed from {title}"),
            format!("{} removed you. To come back, ask someone in it to invite you again.", display_name(by)),
        ),
        Outside::Banned(title) => (
            format!("You are banned from {title}"),
            "A moderator of the room banned you; only they can lift it.".into(),
        ),
        Outside::Never => match ask {
            Some(title) => (
                format!("{title} is private"),
                "You can ask to join: a moderator of the room will see your request and can let you in.".into(),
            ),
            None => (
                "This room is private".into(),
                "Only people invited to it can see it. Ask someone in it to invite you.".into(),
            ),
        },
        Outside::Asked(title) => (
            format!("You asked to join {title}"),
            "A moderator of the room can let you in; it will then show among your rooms as an invitation.".into(),
        ),
    };
    let ask = ask.filter(|_| !matches!(why, Outside::Asked(_) | Outside::Banned(_)));
    layout(
        &heading,
        Some(user),
        None,
        html! {
            main.auth #outside {
                h1 { (heading) }
                p { (text) }
                @if ask.is_some() {
                    form.stack method="post" action="/knock" {
                        input type="hidden" name="room" value=(room_id);
                        label { "Message to the moderators (optional)"
                            input name="reason" maxlength="1000" placeholder="Say who you are, or why you would like to join";
                        }
                        button type="submit" { "Ask to join" }
                    }
                }
                @if let Outside::Asked(_) = why {
                    form method="post" action={ "/rooms/" (room_id) "/leave" } {
                        button.secondary type="submit" { "Withdraw request" }
                    }
                }
                @if ask.is_some() || matches!(why, Outside::Asked(_)) {
                    p { a href="/rooms" { "Back to your rooms" } }
                } @else {
                    p { a.button href="/rooms" { "Back to your rooms" } }
                }
            }
        },
    )
}

/// The bell in a room's header: how much of the room notifies the viewer.
fn notify_menu(room_id: &str, one_to_one: bool, pref: crate::store::push::RoomPref) -> Markup {
    use crate::store::push::Level;
    let now = crate::events::now_ms();
    let level = match pref.level {
        Level::Mute if pref.mute_until.is_some_and(|t| t <= now) => Level::Default,
        l => l,
    };
    let (bell, short) = match level {
        Level::Mute => (Icon::BellOff, "Muted"),
        Level::All => (Icon::Bell, "All"),
        Level::Mentions => (Icon::Bell, "Mentions"),
        Level::Default => (Icon::Bell, ""),
    };
    let default = if one_to_one { "Every message (default here)" } else { "Mentions, keywords and calls (default)" };
    html! {
        details.notify-menu {
            summary title="Notifications for this room" aria-label={ "Notifications for this room" @if !short.is_empty() { ": " (short) } } {
                (icon(bell)) @if !short.is_empty() { span.notify-level { (short) } }
            }
            form.stack method="post" action={ "/rooms/" (room_id) "/notifications" } {
                fieldset {
                    legend { "Notify me about" }
                    label.check { input type="radio" name="level" value="default" checked[level == Level::Default]; " " (default) }
                    label.check { input type="radio" name="level" value="all" checked[level == Level::All]; " Every message" }
                    label.check { input type="radio" name="level" value="mentions" checked[level == Level::Mentions]; " Only mentions and keywords" }
                    label.check { input type="radio" name="level" value="mute" checked[level == Level::Mute]; " Nothing (mute)" }
                }
                label.mute-for { "Mute for"
                    select name="mute_for" {
                        option value="" { "Until I turn it back on" }
                        option value="1h" { "1 hour" }
                        option value="8h" { "8 hours" }
                        option value="1d" { "1 day" }
                        option value="1w" { "1 week" }
                    }
                }
                @if let (Level::Mute, Some(until)) = (level, pref.mute_until) {
                    p.muted { "Muted for " (((until.saturating_sub(now)) / 60_000).max(1)) " more minutes." }
                }
                button type="submit" { "Save" }
            }
        }
    }
}

/// The settings page's notifications: do not disturb, sound, previews, keywords, and the
/// devices with push on (the client adds the button for this browser).
fn notification_settings(me: &AccountView) -> Markup {
    let n = &me.notify;
    let now = crate::events::now_ms();
    html! {
        form method="post" action="/settings/notifications" {
            h2 { "Notifications" }
            p.muted { "Direct chats, mentions of you, your keywords and calls notify you. Each room's bell, in its header, changes that room." }
            label.check { input type="checkbox" name="dnd" value="on" checked[n.dnd]; " Do not disturb (no notifications or pushes; unread counts still show)" }
            label.check { input type="checkbox" name="sound" value="on" checked[n.sound]; " Play a sound with notifications" }
            label.check { input type="checkbox" name="preview" value="on" checked[n.preview]; " Show the message text in pushes to phones and closed browsers" }
            label { "Keywords"
                textarea name="keywords" rows="2" maxlength="4000" placeholder="deploy, lunch" { (n.keywords.join(", ")) }
            }
            p.muted { "Separated by commas; whole words, in any case." }
            p { button type="submit" { "Save notifications" } }
        }
        section.push-devices id="push" data-key=(me.push_key) {
            h3 { "Push to closed browsers and phones" }
            p.muted { "Direct messages, mentions and calls reach this device even when no tab is open. Push needs the server on HTTPS." }
            p.push-row { button.secondary id="push-on" type="button" hidden { "Turn on push for this browser" } span.muted id="push-state" role="status" {} }
            @if me.devices.is_empty() {
                p.muted id="push-none" { "No device has push on." }
            } @else {
                ul.devices {
                    @for d in &me.devices {
                        li data-device=(d.id) data-this[d.this_session] {
                            span { strong { (d.label) } @if d.this_session { " (this browser)" } }
                            span.muted { " · " (d.service) " · " (ago(now, d.created_ts)) }
                            form.inline method="post" action={ "/settings/push/" (d.id) "/delete" } {
                                button.link type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// "today", "yesterday" or "N days ago" for a time in ms.
fn ago(now: u64, then: u64) -> String {
    match now.saturating_sub(then) / 86_400_000 {
        0 => "added today".into(),
        1 => "added yesterday".into(),
        d => format!("added {d} days ago"),
    }
}

/// An error page with a way back.
pub fn error_page(status: u16, message: &str) -> Markup {
    layout(
        "Error",
        None,
        None,
        html! {
            main.auth {
                h1 {
                    @match status {
                        404 => "Not found",
                        403 | 401 => "Not allowed",
                        400..=499 => "That did not work",
                        _ => "Something went wrong",
                    }
                }
                p.error { (message) }
                p.muted { "Error " (status) }
                p { a.button.secondary href="/rooms" { "Back to your rooms" } }
            }
        },
    )
}

/// An error as an HTML page with the right status (the cause of an internal error is logged,
/// never shown).
pub fn error_response(e: Error) -> Response {
    let status = e.status();
    if let Error::Internal(cause) = &e {
        tracing::error!(%cause, "internal error");
    }
    (status, Html(error_page(status.as_u16(), &e.public_message()).into_string())).into_response()
}
