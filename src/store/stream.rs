//! The stream: every timeline event by its position, across rooms (`STREAM`), for what
//! follows all of the server's events in commit order (the search index).

use redb::ReadableTable;

use super::Store;
use super::tables::*;
use crate::error::Result;

/// One row of the stream: a room's event at a position, or (`event_id` empty) the room's
/// deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    /// Its position.
    pub pos: u64,
    /// The room.
    pub room_id: String,
    /// The event (empty: the room was deleted).
    pub event_id: String,
}

impl StreamRow {
    /// Whether the row says the room was deleted.
    pub fn is_room_deletion(&self) -> bool {
        self.event_id.is_empty()
    }
}

impl Store {
    /// Up to `limit` rows after position `after` (exclusive), oldest first.
    pub fn stream_after(&self, after: u64, limit: usize) -> Result<Vec<StreamRow>> {
        let r = self.read()?;
        let stream = r.open_table(STREAM)?;
        let mut out = Vec::new();
        for row in stream.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = row?;
            let (room_id, event_id) = v.value();
            out.push(StreamRow { pos: k.value(), room_id: room_id.to_string(), event_id: event_id.to_string() });
        }
        Ok(out)
    }

    /// The rows at `positions` that are still in the stream (in the order asked).
    pub fn stream_rows(&self, positions: &[u64]) -> Result<Vec<StreamRow>> {
        let r = self.read()?;
        let stream = r.open_table(STREAM)?;
        let mut out = Vec::with_capacity(positions.len());
        for pos in positions {
            if let Some(v) = stream.get(*pos)? {
                let (room_id, event_id) = v.value();
                out.push(StreamRow { pos: *pos, room_id: room_id.to_string(), event_id: event_id.to_string() });
            }
        }
        Ok(out)
    }

    /// The newest row's position (0 for an empty stream).
    pub fn stream_last(&self) -> Result<u64> {
        let r = self.read()?;
        let stream = r.open_table(STREAM)?;
        Ok(stream.last()?.map_or(0, |(k, _)| k.value()))
    }
}
