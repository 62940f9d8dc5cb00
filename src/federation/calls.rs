//! Calls across servers: asking the room's call host for a call token for one of our users
//! (`call_host`), and answering such requests from other servers (`serve_call_token`). What a
//! token admits to is in [`crate::calls::host`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{FedRequest, FedState};
use crate::error::{Error, Result};
use crate::ids::{RoomId, UserId};

/// Where one of our users joins a room's calls.
#[derive(Debug, Clone, PartialEq)]
pub enum CallHost {
    /// Here, over the user's own live socket.
    Here,
    /// At another server: its call socket's address and the token to present there.
    At {
        /// The host server's name.
        server: String,
        /// The host's call socket (`wss://…/ws/call`).
        url: String,
        /// The call token it issued for our user.
        token: String,
    },
}

/// The path of the request for a call token.
fn token_path(room: &RoomId) -> String {
    format!("/_matrix/federation/unstable/chat.call/token/{}", super::urlencode(room.as_str()))
}

/// Where `user`, joined to `room` here, joins the room's calls: the first of the room's host
/// candidates ([`crate::calls::host::host_candidates`]) that hosts calls. This server hosts
/// when it comes first and runs a media server; another server does when it answers our
/// request for a token. Servers that cannot be reached, or host no calls (a Matrix server
/// that is not ours), are passed over; when none hosts, calls are here.
pub async fn call_host(state: &FedState, user: &UserId, room: &RoomId) -> Result<CallHost> {
    if state.store.membership(room, user.as_str())? != crate::events::Membership::Join {
        return Err(Error::Forbidden("you are not a member of this room".into()));
    }
    state.rooms.messages_per_user.check(user.as_str())?;
    let ours = state.server_name.as_str();
    for server in crate::calls::host::host_candidates(&state.store, room)? {
        if server.as_str() == ours {
            if state.calls.guest_tokens.is_some() {
                return Ok(CallHost::Here);
            }
            continue;
        }
        let body = json!({ "user_id": user.as_str() });
        let asked = state
            .federation
            .client
            .signed(&state.federation.key, ours, server.as_str(), Method::POST, &token_path(room), Some(body))
            .await;
        match asked {
            Ok((StatusCode::OK, v)) => {
                let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 4096);
                match (text("url"), text("token")) {
                    (Some(url), Some(token)) if url.starts_with("wss://") => {
                        return Ok(CallHost::At {
                            server: server.to_string(),
                            url: url.to_string(),
                            token: token.to_string(),
                        });
                    }
                    _ => tracing::info!(%server, "a call token answer without a wss:// url or a token"),
                }
            }
            Ok((status, _)) => tracing::debug!(%server, %status, "server hosts no calls for this room"),
            Err(e) => tracing::info!(%server, error = %e, "cannot ask for a call token"),
        }
    }
    Ok(CallHost::Here)
}

/// `POST /_matrix/federation/unstable/chat.call/token/{roomId}` (`{"user_id"}`): a call token
/// for one of the calling server's users who is joined to the room here, and where to use it.
pub async fn serve_call_token(
    State(state): State<FedState>,
    Path(room_id): Path<String>,
    req: FedRequest,
) -> Result<Json<Value>> {
    let room = RoomId::parse(&room_id)?;
    let content = req.content.unwrap_or(Value::Null);
    let user = content.get("user_id").and_then(Value::as_str).ok_or_else(|| Error::bad("user_id is required"))?;
    let user = UserId::parse(user)?;
    let token = crate::calls::host::guest_token(&state.calls, &req.origin, &user, &room)?;
    Ok(Json(json!({
        "url": format!("wss://{}/ws/call", state.server_name),
        "token": token,
        "expires_in": crate::calls::host::CALL_TOKEN_TTL,
    })))
}
