//! `/admin`: the server administrator's page. The same operations as `chat admin` (accounts:
//! create, disable, reset password, administration; rooms: list, delete), for accounts marked
//! as server administrators only.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::extract::Form;
use super::extract::PageSession;
use crate::admin::ops::{Ctx, RoomInfo, UserInfo};
use crate::auth::Session;
use crate::error::{Error, Result};
use crate::ids::RoomId;
use crate::render::error_response;
use crate::render::{display_name, layout};
use crate::state::AppState;

/// A signed-in server administrator. Others get 403 (and the sign-in page without a session).
pub struct AdminSession(pub Session);

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let PageSession(s) = PageSession::from_request_parts(parts, state).await?;
        match state.store.user(s.user.localpart()) {
            Ok(Some(u)) if u.admin && !u.disabled => Ok(AdminSession(s)),
            Ok(_) => Err(error_response(Error::Forbidden("this page is for server administrators".into()))),
            Err(e) => Err(error_response(e)),
        }
    }
}

fn ctx(state: &AppState) -> Ctx<'_> {
    Ctx { store: &state.store, server_name: &state.server_name, hub: Some(&state.hub) }
}

/// What the page says after an action.
enum Notice {
    None,
    Ok(String),
    Err(Error),
}

fn render(state: &AppState, me: &Session, notice: Notice) -> Response {
    let c = ctx(state);
    let lists = c.list_users().and_then(|u| Ok((u, c.list_rooms()?)));
    match lists {
        Ok((users, rooms)) => {
            let status = match &notice {
                Notice::Err(e) => e.status(),
                _ => axum::http::StatusCode::OK,
            };
            let peers = federation_peers(state);
            let calls = state.live.sfu.as_ref().map(|s| s.figures());
            let page = admin_page(me.user.as_str(), &users, &rooms, &peers, calls.as_ref(), &notice);
            (status, Html(page.into_string())).into_response()
        }
        Err(e) => error_response(e),
    }
}

/// `GET /admin`.
pub async fn page(State(state): State<AppState>, AdminSession(me): AdminSession) -> Response {
    render(&state, &me, Notice::None)
}

/// The create-account form.
#[derive(Deserialize)]
pub struct CreateForm {
    username: String,
    #[serde(default)]
    password: String,
    admin: Option<String>,
}

/// `POST /admin/users`.
pub async fn create_user(
    State(state): State<AppState>,
    AdminSession(me): AdminSession,
    form: Result<Form<CreateForm>>,
) -> Response {
    let done = async {
        let Form(f) = form?;
        let password = Some(f.password).filter(|p| !p.is_empty());
        let (user, generated) = ctx(&state).create_user(&f.username, password, f.admin.is_some()).await?;
        Ok(match generated {
            Some(pw) => format!("Created {}. Password (shown once): {pw}", user.user_id),
            None => format!("Created {}.", user.user_id),
        })
    }
    .await;
    render(&state, &me, notice(done))
}

/// A yes/no switch from a form button.
#[derive(Deserialize)]
pub struct SwitchForm {
    on: String,
}

impl SwitchForm {
    fn on(&self) -> Result<bool> {
        match self.on.as_str() {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(Error::bad("on must be 1 or 0")),
        }
    }
}

/// `POST /admin/users/{name}/disabled`: disable (on=1) or enable (on=0). Not oneself.
pub async fn set_disabled(
    State(state): State<AppState>,
    AdminSession(me): AdminSession,
    Path(name): Path<String>,
    form: Result<Form<SwitchForm>>,
) -> Response {
    let done = async {
        let on = form?.0.on()?;
        not_self(&me, &name)?;
        let u = ctx(&state).set_disabled(&name, on).await?;
        Ok(format!("{} {}.", u.user_id, if on { "disabled and signed out" } else { "enabled" }))
    }
    .await;
    render(&state, &me, notice(done))
}

/// `POST /admin/users/{name}/admin`: grant (on=1) or revoke (on=0). Not oneself.
pub async fn set_admin(
    State(state): State<AppState>,
    AdminSession(me): AdminSession,
    Path(name): Path<String>,
    form: Result<Form<SwitchForm>>,
) -> Response {
    let done = async {
        let on = form?.0.on()?;
        not_self(&me, &name)?;
        let u = ctx(&state).set_admin(&name, on).await?;
        Ok(format!(
            "{} {}.",
            u.user_id,
            if on { "is now a server administrator" } else { "is no longer an administrator" }
        ))
    }
    .await;
    render(&state, &me, notice(done))
}

/// `POST /admin/users/{name}/password`: a generated password, shown once; every session ends.
pub async fn reset_password(
    State(state): State<AppState>,
    AdminSession(me): AdminSession,
    Path(name): Path<String>,
) -> Response {
    let done = async {
        not_self(&me, &name)?;
        let pw = ctx(&state).reset_password(&name, None).await?.unwrap_or_default();
        Ok(format!("New password for {name} (shown once; they are signed out everywhere): {pw}"))
    }
    .await;
    render(&state, &me, notice(done))
}

/// The delete-room form: the box must be ticked.
#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: Option<String>,
}

/// `POST /admin/rooms/{room_id}/delete`.
pub async fn delete_room(
    State(state): State<AppState>,
    AdminSession(me): AdminSession,
    Path(room_id): Path<String>,
    form: Result<Form<DeleteForm>>,
) -> Response {
    let done = async {
        let Form(f) = form?;
        let room_id = RoomId::parse(&room_id)?;
        if f.confirm.as_deref() != Some("yes") {
            return Err(Error::bad("tick the box to confirm deleting the room"));
        }
        let d = ctx(&state).delete_room(&room_id).await?;
        Ok(format!("Deleted {room_id}: {} events, {} memberships.", d.events, d.members))
    }
    .await;
    render(&state, &me, notice(done))
}

fn not_self(me: &Session, name: &str) -> Result<()> {
    if me.user.localpart().eq_ignore_ascii_case(name) {
        return Err(Error::bad("use the command line (chat admin) to change your own account"));
    }
    Ok(())
}

fn notice(r: Result<String>) -> Notice {
    match r {
        Ok(m) => Notice::Ok(m),
        Err(e) => Notice::Err(e),
    }
}

/// One other server as the federation sender sees it.
struct PeerInfo {
    name: String,
    status: crate::federation::sender::PeerStatus,
    queued: u64,
}

/// Every destination with a sender or queued events, with its status and queue depth.
fn federation_peers(state: &AppState) -> Vec<PeerInfo> {
    let mut peers: Vec<PeerInfo> = state
        .federation()
        .outbox
        .statuses()
        .into_iter()
        .map(|(name, status)| PeerInfo { name, status, queued: 0 })
        .collect();
    for (dest, _, n) in state.store.queue_depths().unwrap_or_default() {
        match peers.iter_mut().find(|p| p.name == dest) {
            Some(p) => p.queued += n,
            None => peers.push(PeerInfo { name: dest, status: Default::default(), queued: n }),
        }
    }
    peers
}

/// A time in ms since the epoch as "N s/min/h ago".
fn ago(ms: u64) -> String {
    let secs = crate::events::now_ms().saturating_sub(ms) / 1000;
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// A length of time in seconds as "M:SS" or "H:MM:SS".
fn clock(secs: u64) -> String {
    match secs {
        0..3600 => format!("{}:{:02}", secs / 60, secs % 60),
        _ => format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    }
}

fn admin_page(
    me: &str,
    users: &[UserInfo],
    rooms: &[RoomInfo],
    peers: &[PeerInfo],
    calls: Option<&crate::calls::sfu::Figures>,
    notice: &Notice,
) -> Markup {
    let room_name = |id: &str| {
        rooms.iter().find(|r| r.room_id == id).map_or_else(
            || id.to_string(),
            |r| {
                if r.direct {
                    "(direct)".to_string()
                } else if r.name.is_empty() {
                    "(unnamed)".to_string()
                } else {
                    r.name.clone()
                }
            },
        )
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    layout(
        "Server administration",
        Some(me),
        None,
        html! {
            main.admin {
                h1 { "Server administration" }
                @match notice {
                    Notice::Ok(m) => p.ok role="status" { (m) },
                    Notice::Err(e) => p.error role="alert" { (e.public_message()) },
                    Notice::None => {},
                }
                h2 { "Accounts (" (users.len()) ")" }
                table #users {
                    thead { tr { th { "Username" } th { "User id" } th { "Admin" } th { "Disabled" } th { "Sessions" } th { "Files" } th { "Actions" } } }
                    tbody {
                        @for u in users {
                            @let path = format!("/admin/users/{}", u.username);
                            tr data-username=(u.username) {
                                td.key data-label="Username" { (u.username) }
                                td data-label="User id" { (u.user_id) }
                                td data-label="Admin" { (yes(u.admin)) }
                                td data-label="Disabled" { (yes(u.disabled)) }
                                td data-label="Sessions" { (u.sessions) }
                                td data-label="Files" { (crate::store::media::human_bytes(u.file_bytes)) }
                                td.actions {
                                    @if display_name(me) != u.username {
                                        @if u.disabled {
                                            form.inline method="post" action={ (path) "/disabled" } {
                                                input type="hidden" name="on" value="0";
                                                button.secondary.small type="submit" { "Enable" }
                                            }
                                        } @else {
                                            form.inline method="post" action={ (path) "/disabled" }
                                                data-confirm={ "Disable " (u.username) "?" }
                                                data-confirm-detail="They are signed out on every device at once and cannot sign in until an administrator enables the account again. Their messages stay."
                                                data-confirm-action="Disable account" {
                                                input type="hidden" name="on" value="1";
                                                button.danger.small type="submit" { "Disable" }
                                            }
                                        }
                                        form.inline method="post" action={ (path) "/admin" } {
                                            input type="hidden" name="on" value=(if u.admin { "0" } else { "1" });
                                            button.secondary.small type="submit" { (if u.admin { "Revoke admin" } else { "Make admin" }) }
                                        }
                                        form.inline method="post" action={ (path) "/password" } {
                                            button.secondary.small type="submit" { "Reset password" }
                                        }
                                    } @else {
                                        span.muted { "you" }
                                    }
                                }
                            }
                        }
                    }
                }
                form #create-user method="post" action="/admin/users" {
                    h3 { "Create an account" }
                    label { "Username" input type="text" name="username" required maxlength="64" autocomplete="off"; }
                    label { "Password (empty: generate one)" input type="password" name="password" autocomplete="new-password"; }
                    label.check { input type="checkbox" name="admin" value="on"; " Server administrator" }
                    button type="submit" { "Create" }
                }
                h2 { "Rooms (" (rooms.len()) ")" }
                table #rooms {
                    thead { tr { th { "Name" } th { "Room id" } th { "Kind" } th { "Joined" } th { "Creator" } th { "Delete" } } }
                    tbody {
                        @for r in rooms {
                            tr data-room-id=(r.room_id) {
                                td.key data-label="Name" { (if r.direct { "(direct)" } else if r.name.is_empty() { "(unnamed)" } else { &r.name }) }
                                td data-label="Room id" { code { (r.room_id) } }
                                td data-label="Kind" { (if r.direct { "direct" } else { &r.join_rule }) }
                                td data-label="Joined" { (r.joined) }
                                td data-label="Creator" { (r.creator) }
                                td.actions {
                                    @let name = if r.direct { "this direct chat" } else if r.name.is_empty() { "this room" } else { &r.name };
                                    form.inline method="post" action={ "/admin/rooms/" (r.room_id) "/delete" }
                                        data-confirm={ "Delete " (name) " and all its history?" }
                                        data-confirm-detail={ "Every message and file in it is removed from this server, for its " (r.joined) " members too. This cannot be undone." }
                                        data-confirm-action="Delete room" {
                                        label.check { input type="checkbox" name="confirm" value="yes" required; " sure" }
                                        button.danger.small type="submit" { "Delete room and history" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(f) = calls {
                    h2 { "Calls in progress (" (f.calls) ")" }
                    p.muted {
                        (f.participants) " people in calls, " (f.forward_bps / 1000) " kbit/s forwarded now; "
                        (f.lost_upstream) " of " (f.received_packets) " packets from senders lost on the way."
                    }
                    @if !f.each.is_empty() {
                        table #calls {
                            thead { tr { th { "Room" } th { "People" } th { "Running" } } }
                            tbody {
                                @for (room, conf, people, secs) in &f.each {
                                    tr data-room-id=(room) data-conf-id=(conf) {
                                        td.key data-label="Room" { (room_name(room.as_str())) }
                                        td data-label="People" {
                                            (people.len()) ": "
                                            @for (i, u) in people.iter().enumerate() {
                                                @if i > 0 { ", " }
                                                (u.as_str())
                                            }
                                        }
                                        td data-label="Running" { (clock(*secs)) }
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { "Federation (" (peers.len()) " servers)" }
                @if peers.is_empty() { p.muted { "No other server shares a room with this one." } }
                @else {
                    table #federation {
                        thead { tr { th { "Server" } th { "Status" } th { "Queued events" } th { "Last delivery" } } }
                        tbody {
                            @for p in peers {
                                tr data-server=(p.name) {
                                    td.key data-label="Server" { code { (p.name) } }
                                    td.status data-label="Status" {
                                        @match (p.status.failing_since, &p.status.last_error) {
                                            (Some(since), err) => {
                                                span.bad { "retrying since " (ago(since)) }
                                                " (" (p.status.failures) " failed attempts"
                                                @if let Some(e) = err { ": " (e) }
                                                ")"
                                            }
                                            (None, _) if p.status.last_ok.is_some() => span.good { "ok" },
                                            _ => span.muted { "not contacted yet" },
                                        }
                                    }
                                    td data-label="Queued events" { (p.queued) }
                                    td data-label="Last delivery" { (p.status.last_ok.map(ago).unwrap_or_else(|| "never".into())) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
