//! WebSocket text frames from a client, one per line, as `live::socket` handles them: each is
//! parsed as a `ClientFrame`, then goes to the same checks and hub calls as in `socket::handle`
//! (presence, typing and call rosters on a real `Hub`; room ids, mention parsing of message
//! bodies and call content cleaning for the parts that would go on to the store).
//!
//! Checks: every frame the server would send back (errors, pongs, presence, typing, rosters) is
//! JSON with a type; an error echoes the client's `txn_id`; the hub lets users type and join calls
//! only in rooms they are in; mentions are unique, canonical and bounded.

#![no_main]

use std::time::Instant;

use chat::error::Error;
use chat::ids::{EventId, RoomId, ServerName};
use chat::live::frames::{self, ClientFrame};
use chat::live::hub::{Conn, Hub, Loaded, Prefs, not_member};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ANA: &str = "@ana:chat.test";
const BEN: &str = "@ben:chat.test";
const ROOM_A: &str = "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const ROOM_B: &str = "!BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

fn server_frame(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("server frame is not JSON ({e}): {text}"));
    assert!(v["t"].is_string(), "frame without a type: {text}");
    v
}

fn refused(txn_id: Option<&str>, e: &Error) {
    assert!(e.status().is_client_error(), "a client frame caused {}", e.status());
    let v = server_frame(&frames::error(txn_id, e));
    assert_eq!(v["txn_id"].as_str(), txn_id, "error does not echo the txn_id");
}

fn drain(conn: &mut Conn) {
    while let Ok(t) = conn.eph.try_recv() {
        server_frame(&t);
    }
    while let Ok(t) = conn.call.try_recv() {
        server_frame(&t);
    }
}

/// `call_join` / `call_leave` as `socket::in_call` handles them.
fn in_call(hub: &Hub, conn: &Conn, room_id: &str, conf_id: &str, joined: bool) {
    let out = chat::calls::check_conf_id(conf_id)
        .and_then(|()| RoomId::parse(room_id).map_err(|_| not_member()))
        .and_then(|rid| hub.set_in_call(ANA, conn.id(), &rid, conf_id, joined).map(|()| rid));
    match out {
        Ok(rid) => {
            assert!(room_id == ROOM_A || room_id == ROOM_B, "call joined in {room_id:?}");
            for call in hub.calls_in(&rid) {
                assert!(call.user_ids.len() <= chat::calls::MAX_PARTICIPANTS);
                assert!(call.hands.iter().chain(&call.muted).all(|u| call.user_ids.contains(u)));
            }
        }
        Err(e) => refused(None, &e),
    }
}

/// What the server checks before a media server frame reaches the media server: the
/// conference id, the room, and this tab on the call's roster.
fn on_roster(hub: &Hub, conn: &Conn, room_id: &str, conf_id: &str) -> Result<(), Error> {
    chat::calls::check_conf_id(conf_id)?;
    let rid = RoomId::parse(room_id).map_err(|_| not_member())?;
    if hub.in_call(conn.id(), &rid, conf_id).is_none() {
        return Err(Error::Forbidden("join the call first (call_join)".into()));
    }
    assert!(room_id == ROOM_A || room_id == ROOM_B, "a call in {room_id:?}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let server = ServerName::parse("chat.test").expect("a valid server name");
    let hub = Hub::new(16, 4);
    let connect = |user: &str, rooms: &[&str]| {
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        hub.connect(user, "sid", || {
            Ok(Loaded { rooms, prefs: Prefs { appear_offline: false, share_receipts: true }, pos: 0, guest: false })
        })
        .expect("connect")
    };
    let mut ana = connect(ANA, &[ROOM_A, ROOM_B]);
    let mut ben = connect(BEN, &[ROOM_A]);

    for line in text.lines().take(64) {
        let frame: ClientFrame = match serde_json::from_str(line) {
            Ok(f) => f,
            Err(e) => {
                refused(None, &Error::bad(format!("invalid frame: {e}")));
                continue;
            }
        };
        match frame {
            ClientFrame::Ping => {
                server_frame(&frames::pong());
            }
            ClientFrame::Presence { state } => match state.as_str() {
                "online" | "idle" => hub.set_idle(ANA, ana.id(), state == "idle"),
                _ => refused(None, &Error::bad("presence state must be \"online\" or \"idle\"")),
            },
            ClientFrame::Typing { room_id, typing } => match RoomId::parse(&room_id)
                .map_err(|_| not_member())
                .and_then(|rid| hub.set_typing(ANA, &rid, typing, Instant::now()))
            {
                Ok(_) => assert!(room_id == ROOM_A || room_id == ROOM_B, "typing accepted in {room_id:?}"),
                Err(e) => refused(None, &e),
            },
            ClientFrame::Send { room_id, body, txn_id, replaces, reply_to } => match RoomId::parse(&room_id) {
                Ok(_) => {
                    // An edit or a reply names an event by id: parsed, or refused for its
                    // transaction.
                    for r in [replaces, reply_to].into_iter().flatten() {
                        if let Err(e) = EventId::parse(&r) {
                            refused(Some(&txn_id), &e);
                        }
                    }
                    let found = chat::rooms::mention_candidates(&body, &server);
                    assert!(found.len() <= 20);
                    for (i, (local, uid)) in found.iter().enumerate() {
                        assert_eq!(chat::ids::normalize_username(local).ok().as_ref(), Some(local));
                        assert!(uid.starts_with(&format!("@{local}:")), "{uid} is not {local}'s");
                        assert!(chat::ids::UserId::parse(uid).is_ok(), "{uid} is no user id");
                        assert!(!found[..i].iter().any(|(_, u)| u == uid), "{uid} mentioned twice");
                    }
                    let event = EventId::parse(&format!("${}", "e".repeat(43))).expect("an event id");
                    server_frame(&frames::ack(&txn_id, &event, 1));
                }
                Err(e) => refused(Some(&txn_id), &e),
            },
            ClientFrame::Call { room_id, kind, content, txn_id } => {
                let out = RoomId::parse(&room_id).and_then(|_| chat::calls::clean_content(&kind, &content));
                match out {
                    Ok(clean) => assert!(clean.get("chat.call").is_none(), "chat.call is the server's"),
                    Err(e) => refused(Some(&txn_id), &e),
                }
            }
            ClientFrame::CallJoin { room_id, conf_id } => in_call(&hub, &ana, &room_id, &conf_id, true),
            ClientFrame::CallLeave { room_id, conf_id } => in_call(&hub, &ana, &room_id, &conf_id, false),
            ClientFrame::Read { room_id, .. } => {
                if let Err(e) = RoomId::parse(&room_id) {
                    refused(None, &e);
                }
            }
            // The media server's frames: the checks before the media server is asked (a
            // conference id, the room, the tab on the call's roster), then the description.
            ClientFrame::SfuPublish { room_id, conf_id, sdp, .. } => {
                let out = on_roster(&hub, &ana, &room_id, &conf_id)
                    .and_then(|()| chat::calls::sfu::description(true, sdp).map(|_| ()));
                if let Err(e) = out {
                    refused(Some("sfu_publish"), &e);
                }
            }
            ClientFrame::SfuAnswer { room_id, conf_id, sdp } => {
                let out = on_roster(&hub, &ana, &room_id, &conf_id)
                    .and_then(|()| chat::calls::sfu::description(false, sdp).map(|_| ()));
                if let Err(e) = out {
                    refused(Some("sfu_answer"), &e);
                }
            }
            // A tab's own state, and a host's actions (the room's power levels are the store's,
            // not here: the hub's part as if the sender hosts).
            ClientFrame::CallState { room_id, conf_id, muted, hand } => {
                let out = chat::calls::check_conf_id(&conf_id)
                    .and_then(|()| RoomId::parse(&room_id).map_err(|_| not_member()))
                    .and_then(|rid| hub.set_call_state(ana.id(), &rid, &conf_id, muted, hand));
                if let Err(e) = out {
                    refused(Some("call_state"), &e);
                }
            }
            ClientFrame::CallHost { room_id, conf_id, action, user_id } => {
                let out = chat::calls::check_conf_id(&conf_id)
                    .and_then(|()| chat::calls::HostAction::parse(&action))
                    .and_then(|a| Ok((a, RoomId::parse(&room_id).map_err(|_| not_member())?)))
                    .and_then(|(a, rid)| hub.host_action(ANA, &rid, &conf_id, a, user_id.as_deref()));
                if let Err(e) = out {
                    refused(Some("call_host"), &e);
                }
            }
            ClientFrame::SfuShow { room_id, conf_id, .. } => {
                if let Err(e) = on_roster(&hub, &ana, &room_id, &conf_id) {
                    refused(Some("sfu_show"), &e);
                }
            }
        }
        drain(&mut ana);
        drain(&mut ben);
    }
    for f in hub.presence_snapshot(ANA).iter().chain(&hub.roster_snapshot(ANA)) {
        server_frame(f);
    }
});
