//! Call signalling event types (Matrix VoIP v1). The rules for them are the calls service's;
//! the types live here so the store and the views can tell a call event without it.

/// The caller offers a call.
pub const INVITE: &str = "m.call.invite";
/// The callee accepts.
pub const ANSWER: &str = "m.call.answer";
/// ICE candidates of one party.
pub const CANDIDATES: &str = "m.call.candidates";
/// The caller confirms which of the callee's tabs it talks to.
pub const SELECT_ANSWER: &str = "m.call.select_answer";
/// The callee declines.
pub const REJECT: &str = "m.call.reject";
/// A new offer or answer mid-call (ICE restart, tracks added).
pub const NEGOTIATE: &str = "m.call.negotiate";
/// Either party ends the call.
pub const HANGUP: &str = "m.call.hangup";

/// A party's streams changed: what each carries (camera or screen) and whether its audio or
/// video is muted.
pub const SDP_STREAM_METADATA_CHANGED: &str = "m.call.sdp_stream_metadata_changed";

/// The record of a room call through a media server, stored by the server that held it when
/// the last person left: when it started, how long it lasted, who took part. Not a signal
/// (a timeline row of its own).
pub const CALL_ENDED: &str = "chat.call.ended";
/// Most people one call record names.
pub const MAX_RECORDED_PEOPLE: usize = 100;

/// Every signal type.
pub const TYPES: [&str; 8] =
    [INVITE, ANSWER, CANDIDATES, SELECT_ANSWER, REJECT, NEGOTIATE, HANGUP, SDP_STREAM_METADATA_CHANGED];

/// Whether an event type is call signalling (delivered on the priority lanes).
pub fn is_call_event(kind: &str) -> bool {
    kind.starts_with("m.call.")
}
