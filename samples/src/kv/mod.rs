//! A replicated key-value store: the classic first Raft program. Every operation, reads
//! included, goes through the log, so the history clients see is linearizable.

pub mod messages;
mod store;

pub use messages::{KvError, KvReply, KvRequest};
pub use store::{KvEntry, KvSnapshot, KvStore, MAX_ENTRIES, MAX_KEY_BYTES, MAX_VALUE_BYTES};
