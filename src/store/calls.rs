//! Call records (`calls`): what the server knows of each call, checked by the calls service.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tables::CALLS;
use super::writer::Tx;
use super::{Store, get_json_pair, put_json_pair};
use crate::error::Result;
use crate::ids::RoomId;

/// What the server knows about one call. Key: (room id, call id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// Who called.
    pub caller: String,
    /// The caller's tab.
    pub caller_party: String,
    /// Who was called.
    pub invitee: String,
    /// `video` or `voice`.
    pub media: String,
    /// Group call this pairwise call belongs to.
    pub conf_id: Option<String>,
    /// Whether the callee's tabs ring (a join into a running group call does not).
    pub ring: bool,
    /// When the invite was sent (ms).
    pub invite_ts: u64,
    /// How long the invite stays valid (ms).
    pub lifetime: u64,
    /// When the callee answered, and from which tab.
    pub answered: Option<(u64, String)>,
    /// When and how the call ended (`hangup reason` or `rejected`).
    pub ended: Option<(u64, String)>,
}

impl CallRecord {
    /// Whether `user` is the caller or the callee.
    pub fn party(&self, user: &str) -> bool {
        user == self.caller || user == self.invitee
    }
}

impl Tx<'_> {
    /// The record of a call in a room.
    pub fn call(&self, room_id: &RoomId, call_id: &str) -> Result<Option<CallRecord>> {
        let room_id = room_id.as_str();
        get_json_pair(&self.txn.open_table(CALLS)?, (room_id, call_id))
    }

    /// Writes the record of a call.
    pub fn put_call(&mut self, room_id: &RoomId, call_id: &str, rec: &CallRecord) -> Result<()> {
        let room_id = room_id.as_str();
        put_json_pair(&mut self.txn.open_table(CALLS)?, (room_id, call_id), rec)
    }
}

impl Store {
    /// Every call record: (room id, call id, record); records that do not decode are skipped.
    pub fn calls(&self) -> Result<Vec<(RoomId, String, CallRecord)>> {
        let r = self.read()?;
        let mut out = Vec::new();
        for row in r.open_table(CALLS)?.iter()? {
            let (k, v) = row?;
            let (room, call) = k.value();
            if let Ok(rec) = serde_json::from_slice::<CallRecord>(v.value()) {
                out.push((RoomId::from_stored(room), call.to_string(), rec));
            }
        }
        Ok(out)
    }
}
