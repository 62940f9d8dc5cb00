//! The live channel: one WebSocket per tab. The hub rings connections when events commit; each
//! connection catches up from the store by stream position whenever it falls behind.

pub mod frames;
pub mod hub;
pub mod socket;

pub use hub::Hub;
