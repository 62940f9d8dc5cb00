//! Membership that may cross servers: the one entry point for joining, leaving, inviting and
//! opening a direct chat. Each decides whether the room service does it here or the
//! handshakes of [`super::rooms`] do it through another server.

use super::FedState;
use crate::error::Result;
use crate::ids::UserId;
use crate::rooms::{self, JoinPlan};

/// Joins a public room, or a private one the user was invited to.
pub async fn join(state: &FedState, user: &UserId, room_id: &str) -> Result<()> {
    join_via(state, user, room_id, &[]).await
}

/// Joins a room by id or `#alias:server`; returns the room id.
pub async fn join_by_name(state: &FedState, user: &UserId, name: &str, via: &[String]) -> Result<String> {
    if name.starts_with('#') {
        let (rid, servers) = super::rooms::resolve_alias(state, name).await?;
        let via: Vec<String> = servers.into_iter().chain(via.iter().cloned()).collect();
        join_via(state, user, &rid, &via).await?;
        return Ok(rid);
    }
    let rid = crate::ids::parse_room_id(name)?;
    join_via(state, user, rid, via).await?;
    Ok(rid.to_string())
}

/// Joins a room here if this server is in it (or it is ours); otherwise through another
/// server: `via`, then the servers the room is known to be on.
pub async fn join_via(state: &FedState, user: &UserId, room_id: &str, via: &[String]) -> Result<()> {
    match rooms::join_plan(&state.rooms, room_id, via)? {
        JoinPlan::Here => rooms::join_here(&state.rooms, user, room_id).await,
        JoinPlan::Through(servers) => super::rooms::join_remote(state, user, room_id, &servers).await,
    }
}

/// Leaves a room, or declines an invitation. The server of an invitation to a room this
/// server is not in is told when it can be reached; the decline holds here either way.
pub async fn leave(state: &FedState, user: &UserId, room_id: &str) -> Result<()> {
    if let Some(via) = rooms::remote_invitation(&state.rooms, user, room_id)?
        && let Err(e) = super::rooms::decline_remote(state, user, room_id, &via).await
    {
        tracing::info!(room_id, error = %e, "the inviting server was not told of the decline");
    }
    rooms::leave(&state.rooms, user, room_id).await
}

/// Invites a user into a room; a user of another server through their server, which co-signs.
pub async fn invite(state: &FedState, sender: &UserId, room_id: &str, target: &UserId) -> Result<()> {
    if target.server() != state.server_name.as_str() {
        return super::rooms::invite_remote(state, sender, room_id, target).await;
    }
    rooms::invite_local(&state.rooms, sender, room_id, target).await
}

/// Opens the direct-message room between `user` and `other` (see [`rooms::open_direct`]);
/// returns the room id.
pub async fn open_direct(state: &FedState, user: &UserId, other: &UserId) -> Result<String> {
    let direct = rooms::open_direct(&state.rooms, user, other).await?;
    if direct.invite_remote {
        // The peer's server co-signs the invite; if it cannot be reached, the room stays with
        // its creator alone and a later attempt invites again.
        super::rooms::invite_remote(state, user, &direct.room_id, other).await?;
    }
    Ok(direct.room_id)
}
