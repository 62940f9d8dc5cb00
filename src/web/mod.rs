//! HTTP: the router, security headers, the JSON API, the pages and the embedded assets.

pub mod admin;
pub mod api;
pub mod assets;
pub mod extract;
pub mod pages;
pub mod serve;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::state::AppState;

/// Builds the whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/register", post(api::register))
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/password", post(api::change_password))
        .route("/me", get(api::me))
        .route("/rooms", post(api::create_room).get(api::my_rooms))
        .route("/rooms/public", get(api::public_rooms))
        .route("/rooms/{room_id}", get(api::room))
        .route("/rooms/{room_id}/members", get(api::members))
        .route("/rooms/{room_id}/join", post(api::join))
        .route("/rooms/{room_id}/leave", post(api::leave))
        .route("/rooms/{room_id}/invite", post(api::invite))
        .route("/rooms/{room_id}/settings", post(api::update_room))
        .route("/rooms/{room_id}/power", post(api::set_power))
        .route("/rooms/{room_id}/kick", post(api::kick))
        .route("/rooms/{room_id}/ban", post(api::ban))
        .route("/rooms/{room_id}/unban", post(api::unban))
        .route("/rooms/{room_id}/messages", post(api::send).get(api::messages))
        .route("/rooms/{room_id}/read", post(api::read))
        .route("/join/{room}", post(api::join_any))
        .route("/dm", post(api::direct))
        .route("/settings", get(api::settings).post(api::set_settings))
        .route("/turn", get(api::turn))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed);

    Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/register", get(pages::register_form).post(pages::register))
        .route("/logout", post(pages::logout))
        .route("/rooms", get(pages::home).post(pages::create_room))
        .route("/rooms/{room_id}", get(pages::room))
        .route("/rooms/{room_id}/history", get(pages::history))
        .route("/rooms/{room_id}/members", get(pages::members_fragment))
        .route("/rooms/{room_id}/join", post(pages::join))
        .route("/rooms/{room_id}/leave", post(pages::leave))
        .route("/rooms/{room_id}/invite", post(pages::invite))
        .route("/rooms/{room_id}/send", post(pages::send))
        .route("/rooms/{room_id}/settings", post(pages::room_settings))
        .route("/fragments/rooms", get(pages::room_list_fragment))
        .route("/join", post(pages::join_any))
        .route("/dm", post(pages::direct))
        .route("/settings", get(pages::settings))
        .route("/settings/password", post(pages::change_password))
        .route("/settings/privacy", post(pages::set_privacy))
        .route("/admin", get(admin::page))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/users/{name}/disabled", post(admin::set_disabled))
        .route("/admin/users/{name}/admin", post(admin::set_admin))
        .route("/admin/users/{name}/password", post(admin::reset_password))
        .route("/admin/rooms/{room_id}/delete", post(admin::delete_room))
        .route("/ws", get(crate::live::socket::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/assets/{*path}", get(assets::serve))
        .nest("/api/v1", api)
        .merge(crate::federation::routes())
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), refresh_cookie))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
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

/// Headers on every response: a strict CSP (no inline script or style), no sniffing, no framing;
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
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
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
