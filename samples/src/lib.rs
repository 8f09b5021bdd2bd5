//! Sample services on Tandem, written against the public API only
//! ([`tandem_service_api`]):
//!
//! * [`matching`]: a matching engine — central limit order books for several instruments;
//! * [`kv`]: a key-value store — set, get, delete and compare-and-set through the log;
//! * [`game`]: a game server — rooms, players, a fixed simulation tick on cluster timers.
//!
//! Each service snapshots and restores its whole state and has a `state_hash` that is equal
//! on every member that applied the same log. Messages are rkyv archives, read zero-copy and
//! validated ([`codec`]); [`RecordingCluster`] runs a service without a cluster in unit tests.
#![warn(missing_docs)]

pub mod chaos;
pub mod cli;
pub mod codec;
pub mod game;
pub mod kv;
pub mod matching;
mod recording;

pub use recording::RecordingCluster;
