//! The persistent outbound federation queue (`fed_queue`): rows are written in the event's own
//! transaction (see [`super::events::enqueue`]) and removed once the destination accepted them.

use std::fmt;

use redb::ReadableTable;

use super::Store;
use super::events::get_event;
use super::tables::{EVENTS, FED_QUEUE};
use crate::error::Result;
use crate::events::Event;

/// A queue of each destination: call signalling has its own, so no message backlog or long
/// retry of the other delays a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Call signalling (`m.call.*`).
    Calls,
    /// Everything else.
    Rest,
}

impl Lane {
    /// Both lanes, in key order.
    pub const ALL: [Lane; 2] = [Lane::Calls, Lane::Rest];

    /// The lane an event of type `kind` travels on.
    pub fn of(kind: &str) -> Lane {
        if crate::events::call::is_call_event(kind) { Lane::Calls } else { Lane::Rest }
    }

    /// Its number in `fed_queue` keys, in transaction ids and in metrics labels.
    pub fn index(self) -> u8 {
        match self {
            Lane::Calls => 0,
            Lane::Rest => 1,
        }
    }

    fn from_index(i: u8) -> Lane {
        if i == 0 { Lane::Calls } else { Lane::Rest }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.index())
    }
}

impl Store {
    /// Rows queued per destination and lane, in key order.
    pub fn queue_depths(&self) -> Result<Vec<(String, Lane, u64)>> {
        let r = self.read()?;
        let q = r.open_table(FED_QUEUE)?;
        let mut out: Vec<(String, Lane, u64)> = Vec::new();
        for row in q.iter()? {
            let (k, _) = row?;
            let (d, lane, _) = k.value();
            let lane = Lane::from_index(lane);
            match out.last_mut() {
                Some((ld, ll, n)) if ld == d && *ll == lane => *n += 1,
                _ => out.push((d.to_string(), lane, 1)),
            }
        }
        Ok(out)
    }

    /// The oldest `max` queued rows of one lane with their events, read in one snapshot:
    /// (stream position, the event, or `None` if it is gone because its room was deleted).
    pub fn queued(&self, dest: &str, lane: Lane, max: usize) -> Result<Vec<(u64, Option<Event>)>> {
        let r = self.read()?;
        let q = r.open_table(FED_QUEUE)?;
        let events = r.open_table(EVENTS)?;
        let l = lane.index();
        let mut out = Vec::new();
        for row in q.range((dest, l, 0)..=(dest, l, u64::MAX))?.take(max) {
            let (k, v) = row?;
            out.push((k.value().2, get_event(&events, v.value())?.map(|s| s.event)));
        }
        Ok(out)
    }

    /// Removes delivered rows.
    pub async fn dequeue(&self, dest: String, lane: Lane, positions: Vec<u64>) -> Result<()> {
        self.write(move |tx| {
            let mut q = tx.txn.open_table(FED_QUEUE)?;
            for p in positions {
                q.remove((dest.as_str(), lane.index(), p))?;
            }
            Ok(())
        })
        .await
    }
}

impl Store {
    /// Whether a transaction from `origin` with this id was processed already.
    pub fn transaction_seen(&self, origin: &str, txn_id: &str) -> Result<bool> {
        let r = self.read()?;
        Ok(r.open_table(super::tables::FED_TXNS)?.get((origin, txn_id))?.is_some())
    }

    /// Remembers a processed transaction of `origin`, and forgets its transactions older than
    /// `keep_ms`.
    pub async fn remember_transaction(&self, origin: String, txn_id: String, now: u64, keep_ms: u64) -> Result<()> {
        self.write(move |tx| {
            let mut t = tx.txn.open_table(super::tables::FED_TXNS)?;
            t.insert((origin.as_str(), txn_id.as_str()), now)?;
            t.retain_in((origin.as_str(), "")..=(origin.as_str(), "\u{10ffff}"), |_, at| at + keep_ms > now)?;
            Ok(())
        })
        .await
    }
}
