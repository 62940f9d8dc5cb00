//! HTTP: the router, security headers, the JSON API, the pages and the embedded assets.

pub mod admin;
pub mod api;
pub mod assets;
pub mod extract;
pub mod media;
pub mod notify;
pub mod pages;
pub mod search;
pub mod serve;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::error::Error;
use crate::routes::Routes;
use crate::state::AppState;

/// Every route of the web application (pages, JSON API, live socket, assets, federation), as
/// built and as listed for the authorization matrix.
pub fn routes() -> Routes<AppState> {
    let api = Routes::default()
        .post("/register", api::register)
        .post("/login", api::login)
        .post("/logout", api::logout)
        .post("/password", api::change_password)
        .get("/me", api::me)
        .post("/rooms", api::create_room)
        .get("/rooms", api::my_rooms)
        .get("/rooms/public", api::public_rooms)
        .get("/rooms/{room_id}", api::room)
        .get("/rooms/{room_id}/members", api::members)
        .post("/rooms/{room_id}/join", api::join)
        .post("/rooms/{room_id}/leave", api::leave)
        .post("/rooms/{room_id}/invite", api::invite)
        .post("/rooms/{room_id}/settings", api::update_room)
        .post("/rooms/{room_id}/power", api::set_power)
        .post("/rooms/{room_id}/kick", api::kick)
        .post("/rooms/{room_id}/ban", api::ban)
        .post("/rooms/{room_id}/unban", api::unban)
        .post("/rooms/{room_id}/messages", api::send)
        .get("/rooms/{room_id}/messages", api::messages)
        .post("/rooms/{room_id}/redact", api::redact)
        .post("/rooms/{room_id}/reactions", api::react)
        .post("/rooms/{room_id}/pins", api::pin)
        .post("/media/upload", media::upload)
        .get("/media/download/{server}/{media_id}", media::download)
        .get("/media/thumbnail/{server}/{media_id}", media::thumbnail)
        .put("/profile", api::set_profile)
        .get("/profile/{user_id}", api::profile)
        .get("/rooms/{room_id}/events/{event_id}", api::event)
        .get("/rooms/{room_id}/context/{event_id}", api::context)
        .get("/search", search::api)
        .post("/rooms/{room_id}/read", api::read)
        .post("/join/{room}", api::join_any)
        .post("/knock/{room}", api::knock)
        .post("/rooms/{room_id}/requests", api::answer_knock)
        .post("/dm", api::direct)
        .get("/settings", api::settings)
        .post("/settings", api::set_settings)
        .get("/notifications", notify::get_prefs)
        .post("/notifications", notify::set_prefs)
        .post("/rooms/{room_id}/notifications", notify::set_room_level)
        .get("/push", notify::push_info)
        .post("/push/subscriptions", notify::subscribe)
        .post("/push/subscriptions/{id}/delete", notify::unsubscribe)
        .get("/turn", api::turn)
        .post("/rooms/{room_id}/call/host", api::call_host);

    Routes::default()
        .get("/", pages::index)
        .get("/login", pages::login_form)
        .post("/login", pages::login)
        .get("/register", pages::register_form)
        .post("/register", pages::register)
        .post("/logout", pages::logout)
        .get("/rooms", pages::home)
        .post("/rooms", pages::create_room)
        .get("/rooms/{room_id}", pages::room)
        .get("/rooms/{room_id}/history", pages::history)
        .get("/search", search::page)
        .get("/rooms/{room_id}/members", pages::members_fragment)
        .get("/rooms/{room_id}/pins", pages::pins_fragment)
        .get("/rooms/{room_id}/events/{event_id}", pages::room_event)
        .post("/rooms/{room_id}/join", pages::join)
        .post("/rooms/{room_id}/leave", pages::leave)
        .post("/rooms/{room_id}/invite", pages::invite)
        .post("/rooms/{room_id}/send", pages::send)
        .post("/rooms/{room_id}/settings", pages::room_settings)
        .get("/fragments/rooms", pages::room_list_fragment)
        .get("/fragments/call", pages::call_fragment)
        .post("/join", pages::join_any)
        .post("/knock", pages::knock)
        .post("/rooms/{room_id}/requests", pages::answer_knock)
        .post("/dm", pages::direct)
        .get("/settings", pages::settings)
        .post("/settings/password", pages::change_password)
        .post("/settings/privacy", pages::set_privacy)
        .post("/settings/profile", pages::set_profile)
        .post("/settings/notifications", notify::set_prefs_form)
        .post("/settings/push/{id}/delete", notify::unsubscribe_form)
        .post("/rooms/{room_id}/notifications", notify::set_room_level_form)
        .get("/admin", admin::page)
        .post("/admin/users", admin::create_user)
        .post("/admin/users/{name}/disabled", admin::set_disabled)
        .post("/admin/users/{name}/admin", admin::set_admin)
        .post("/admin/users/{name}/password", admin::reset_password)
        .post("/admin/rooms/{room_id}/delete", admin::delete_room)
        .get("/ws", crate::live::socket::upgrade)
        .get("/ws/call", crate::live::guest::upgrade)
        .get("/healthz", || async { "ok" })
        .get("/readyz", readyz)
        .get("/assets/{*path}", assets::serve)
        .get("/manifest.webmanifest", assets::manifest)
        .get("/sw.js", assets::service_worker)
        .get("/offline", pages::offline)
        .nest("/api/v1", api, |r| r.fallback(api::not_found).method_not_allowed_fallback(api::method_not_allowed))
        .merge(crate::federation::routes())
}

/// Builds the whole HTTP application.
pub fn router(state: AppState) -> Router {
    routes()
        .into_router()
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), refresh_cookie))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), known_host))
        .with_state(state)
}

/// The host names the web app answers to: the server name's host, `localhost` and `extra`; for
/// a bare machine name (`mybox`, the default on `0.0.0.0`), its mDNS name `mybox.local` too.
pub fn hostnames(server_name: &crate::ids::ServerName, extra: &[String]) -> Vec<String> {
    let host = host_of(server_name.as_str()).to_ascii_lowercase();
    let mut names = vec![host.clone(), "localhost".to_string()];
    if !host.contains(['.', ':']) && host.parse::<std::net::IpAddr>().is_err() {
        names.push(format!("{host}.local"));
    }
    names.extend(extra.iter().map(|n| host_of(n).to_ascii_lowercase()));
    names.dedup();
    names
}

/// `host` of `host:port`, `[v6]:port` or `host`.
fn host_of(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
}

/// Refuses requests naming a host this server is not (DNS rebinding: a page of another site
/// whose name was made to point here). An IP address is always accepted: the browser then
/// talks to that address under that address's own origin, which no other site controls.
async fn known_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Health checks (load balancers use whatever name or address they like) carry nothing.
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let host = host_of(authority).trim_end_matches('.').to_ascii_lowercase();
    let known = host.parse::<std::net::IpAddr>().is_ok() || state.hostnames.contains(&host);
    if !known {
        let err = Error::Misdirected(format!(
            "this server does not answer for {host:?}; an operator can add it to extra_hostnames"
        ));
        return axum::response::IntoResponse::into_response(err);
    }
    next.run(req).await
}

/// `GET /readyz`: `200 ready` while the server takes traffic (the store reads and the writer
/// runs), `503` with the reason otherwise (shutting down, writer stopped, store unreadable).
/// `/healthz` only says the process answers.
async fn readyz(State(state): State<AppState>) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if !state.store.writer_alive() {
        return (StatusCode::SERVICE_UNAVAILABLE, "store writer stopped");
    }
    if state.store.stream_pos().is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unreadable");
    }
    (StatusCode::OK, "ready")
}

/// Headers on every response: a strict CSP (no inline script or style; connections to this
/// origin, and secure WebSockets for a call another server hosts), no sniffing, no framing;
/// on HTTPS, HSTS when the certificate is a real one (HSTS with a self-signed certificate would
/// stop people from accepting it). Cookies get `Secure` where they are made
/// ([`pages::session_cookie`]).
async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if state.https && state.hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self' wss:; \
         media-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    res
}

/// Keeps a browser signed in: when the cookie's token is past half its lifetime and its session
/// is alive, the response carries a fresh one.
async fn refresh_cookie(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let fresh = crate::auth::session::cookie(req.headers(), crate::auth::COOKIE)
        .and_then(|t| state.accounts.tokens.verify(t).ok())
        .filter(|c| {
            let now = jsonwebtoken::get_current_timestamp();
            now.saturating_sub(c.iat) > state.accounts.tokens.ttl / 2
        })
        .filter(|c| matches!(state.store.session(&c.sid), Ok(Some(_))))
        .and_then(|c| state.accounts.tokens.issue(&c.sub, &c.sid).ok());
    let mut res = next.run(req).await;
    if let Some(token) = fresh
        && !res.headers().contains_key(header::SET_COOKIE)
        && let Ok(v) = HeaderValue::from_str(&pages::session_cookie(&token, state.accounts.tokens.ttl, state.https))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
