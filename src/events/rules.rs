//! The authorization rules for room events, in one place, over a [`RoomState`] value. Every
//! event a local user creates passes through [`authorize`] inside the write batch that stores
//! it, so checks and writes see the same state; a received event passes it twice: over the
//! state its own `auth_events` name, and over the current state.

use crate::error::{Error, Result};
use crate::events::*;
use serde_json::Value;

/// What the rules read of a room: its creator, join rule and power levels, whether it is a
/// direct room and how many members have joined. Borrowed from wherever that state is kept.
#[derive(Debug, Clone, Copy)]
pub struct RoomState<'a> {
    /// Who created the room (the create event's sender and its additional creators).
    pub creators: Creators<'a>,
    /// From `m.room.join_rules`.
    pub join_rule: JoinRule,
    /// From `m.room.power_levels`.
    pub power_levels: &'a PowerLevels,
    /// A two-person direct-message room.
    pub direct: bool,
    /// Joined members.
    pub joined: u32,
}

/// Decides whether `sender` may add `new` to `room`. `membership` looks up current membership.
pub fn authorize(
    room: RoomState<'_>,
    sender: &str,
    new: &NewEvent,
    membership: impl Fn(&str) -> Result<Membership>,
) -> Result<()> {
    let pl = room.power_levels;
    let sender_m = membership(sender)?;
    let level = pl.level_of(room.creators, sender);
    if new.kind == M_ROOM_CREATE {
        return Err(Error::bad("a room is created only once"));
    }
    if new.kind == M_ROOM_MEMBER {
        let target = new.state_key.as_deref().ok_or_else(|| Error::bad("member event without a user"))?;
        let wanted =
            Membership::of_content(&new.content).ok_or_else(|| Error::bad("member event without membership"))?;
        let target_m = membership(target)?;
        return match wanted {
            Membership::Join => {
                if target != sender {
                    return Err(Error::Forbidden("you can only join for yourself".into()));
                }
                match target_m {
                    Membership::Ban => Err(Error::Forbidden("you are banned from this room".into())),
                    // A member's new display name or avatar: a join over a join.
                    Membership::Join => Ok(()),
                    Membership::Invite => Ok(()),
                    Membership::Leave | Membership::Knock => match room.join_rule {
                        JoinRule::Public => Ok(()),
                        JoinRule::Restricted | JoinRule::KnockRestricted => {
                            // Let in through a member of an allowed room: a member here who
                            // may invite vouches for it (the server that checked the other
                            // room's membership names them).
                            let via = new.content.get("join_authorised_via_users_server").and_then(Value::as_str);
                            match via {
                                Some(v) if membership(v)? == Membership::Join && pl.level_of(room.creators, v) >= pl.invite => {
                                    Ok(())
                                }
                                _ => Err(Error::Forbidden(
                                    "this room is open to the members of certain other rooms; join one of them, or ask a member to invite you"
                                        .into(),
                                )),
                            }
                        }
                        JoinRule::Knock => Err(Error::Forbidden(
                            "this room is private: ask to join, and a moderator can let you in".into(),
                        )),
                        JoinRule::Invite => Err(Error::Forbidden("this room is invite-only".into())),
                    },
                }
            }
            Membership::Knock => {
                if target != sender {
                    return Err(Error::Forbidden("you can only ask to join for yourself".into()));
                }
                if !matches!(room.join_rule, JoinRule::Knock | JoinRule::KnockRestricted) || room.direct {
                    return Err(Error::Forbidden("this room does not take requests to join".into()));
                }
                match target_m {
                    Membership::Ban => Err(Error::Forbidden("you are banned from this room".into())),
                    Membership::Join => Err(Error::Conflict("already a member".into())),
                    Membership::Invite => Err(Error::Conflict("you are invited already: join".into())),
                    Membership::Knock => Err(Error::Conflict("you have asked to join already".into())),
                    Membership::Leave => Ok(()),
                }
            }
            Membership::Invite => {
                if sender_m != Membership::Join {
                    return Err(Error::Forbidden("you are not a member of this room".into()));
                }
                if level < pl.invite {
                    return Err(Error::Forbidden("you may not invite to this room".into()));
                }
                // A direct room's creator may invite the other person while alone in it.
                if room.direct && (sender != room.creators.sender || room.joined > 1) {
                    return Err(Error::Forbidden("a direct conversation has two people".into()));
                }
                match target_m {
                    Membership::Join => Err(Error::Conflict("already a member".into())),
                    Membership::Invite => Err(Error::Conflict("already invited".into())),
                    Membership::Ban => Err(Error::Forbidden("that user is banned from this room".into())),
                    // Letting in someone who asked.
                    Membership::Leave | Membership::Knock => Ok(()),
                }
            }
            Membership::Leave if target == sender => match target_m {
                // Leaving, declining an invitation, or withdrawing a request to join.
                Membership::Join | Membership::Invite | Membership::Knock => Ok(()),
                _ => Err(Error::Forbidden("you are not a member of this room".into())),
            },
            Membership::Leave | Membership::Ban => {
                // Lifting a ban (a banned user set to leave) takes the ban level, like banning.
                let unban = wanted == Membership::Leave && target_m == Membership::Ban;
                let needed = if wanted == Membership::Ban || unban { pl.ban } else { pl.kick };
                if sender_m != Membership::Join || level < needed || level <= pl.level_of(room.creators, target) {
                    return Err(Error::Forbidden("you may not remove that member".into()));
                }
                if wanted == Membership::Leave
                    && !matches!(target_m, Membership::Join | Membership::Invite | Membership::Ban | Membership::Knock)
                {
                    return Err(Error::bad("that user is not a member"));
                }
                Ok(())
            }
        };
    }
    if sender_m != Membership::Join {
        return Err(Error::Forbidden("you are not a member of this room".into()));
    }
    // Room version 11+: the redacted event is named in content. Whether the redaction may
    // strip it is decided when it is applied ([`may_redact`]), as the spec allows.
    if new.kind == M_ROOM_REDACTION && new.content.get("redacts").and_then(serde_json::Value::as_str).is_none() {
        return Err(Error::bad("a redaction names the event it redacts in content.redacts"));
    }
    if level < pl.event_level(&new.kind, new.state_key.is_some()) {
        return Err(Error::Forbidden("you do not have permission to do that in this room".into()));
    }
    if new.kind == M_ROOM_POWER_LEVELS {
        let proposed: PowerLevels =
            serde_json::from_value(new.content.clone()).map_err(|_| Error::bad("invalid power levels"))?;
        if proposed.users.values().any(|l| *l > level) {
            return Err(Error::Forbidden("you cannot grant a level above your own".into()));
        }
        let creators = std::iter::once(room.creators.sender).chain(room.creators.additional.iter().map(String::as_str));
        for c in creators {
            if proposed.users.contains_key(c) && !pl.users.contains_key(c) {
                return Err(Error::bad("a room's creators have every right and no entry in users (room version 12)"));
            }
        }
    }
    Ok(())
}

/// Whether a redaction by `redacter` strips an event sent by `target_sender`: their own
/// events, or anyone's with the room's `redact` level.
pub fn may_redact(room: RoomState<'_>, redacter: &str, target_sender: &str) -> bool {
    redacter == target_sender || room.power_levels.level_of(room.creators, redacter) >= room.power_levels.redact
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Room(JoinRule, PowerLevels);

    fn room(rule: JoinRule) -> Room {
        Room(rule, PowerLevels::for_new_room())
    }

    fn check(r: &Room, members: &[(&str, Membership)], sender: &str, ev: NewEvent) -> Result<()> {
        let map: HashMap<String, Membership> = members.iter().map(|(u, m)| (u.to_string(), *m)).collect();
        let state = RoomState {
            creators: Creators { sender: "@a:s", additional: &[] },
            join_rule: r.0,
            power_levels: &r.1,
            direct: false,
            joined: 1,
        };
        authorize(state, sender, &ev, |u| Ok(map.get(u).copied().unwrap_or(Membership::Leave)))
    }

    fn member(user: &str, m: Membership) -> NewEvent {
        NewEvent::state(M_ROOM_MEMBER, user, member_content(m))
    }

    #[test]
    fn joining() {
        let public = room(JoinRule::Public);
        let private = room(JoinRule::Invite);
        let a = ("@a:s", Membership::Join);
        assert!(check(&public, &[a], "@b:s", member("@b:s", Membership::Join)).is_ok());
        assert!(matches!(check(&private, &[a], "@b:s", member("@b:s", Membership::Join)), Err(Error::Forbidden(_))));
        assert!(check(&private, &[a, ("@b:s", Membership::Invite)], "@b:s", member("@b:s", Membership::Join)).is_ok());
        assert!(check(&public, &[a, ("@b:s", Membership::Ban)], "@b:s", member("@b:s", Membership::Join)).is_err());
        assert!(check(&public, &[a], "@b:s", member("@c:s", Membership::Join)).is_err());
    }

    #[test]
    fn messages_and_settings() {
        let r = room(JoinRule::Public);
        let msg = || NewEvent::message(M_ROOM_MESSAGE, text_message("hi"));
        let members = [("@a:s", Membership::Join), ("@b:s", Membership::Join)];
        assert!(check(&r, &members, "@b:s", msg()).is_ok());
        assert!(matches!(check(&r, &members, "@c:s", msg()), Err(Error::Forbidden(_))));
        let topic = || NewEvent::state(M_ROOM_TOPIC, "", serde_json::json!({"topic": "x"}));
        assert!(check(&r, &members, "@a:s", topic()).is_ok());
        assert!(check(&r, &members, "@b:s", topic()).is_err());
    }

    #[test]
    fn kicking_needs_power_over_target() {
        let r = room(JoinRule::Public);
        let members = [("@a:s", Membership::Join), ("@b:s", Membership::Join)];
        assert!(check(&r, &members, "@a:s", member("@b:s", Membership::Leave)).is_ok());
        assert!(check(&r, &members, "@b:s", member("@a:s", Membership::Leave)).is_err());
        assert!(check(&r, &members, "@b:s", member("@b:s", Membership::Leave)).is_ok());
    }

    #[test]
    fn only_a_moderator_lifts_a_ban() {
        let r = room(JoinRule::Public);
        let members = [("@a:s", Membership::Join), ("@b:s", Membership::Join), ("@c:s", Membership::Ban)];
        assert!(check(&r, &members, "@a:s", member("@c:s", Membership::Leave)).is_ok());
        assert!(check(&r, &members, "@b:s", member("@c:s", Membership::Leave)).is_err());
        // The banned user cannot lift it, nor join.
        assert!(check(&r, &members, "@c:s", member("@c:s", Membership::Leave)).is_err());
        assert!(check(&r, &members, "@c:s", member("@c:s", Membership::Join)).is_err());
    }
}
