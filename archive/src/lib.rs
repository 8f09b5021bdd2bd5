//! Tandem's archive: the replicated log in memory-mapped segments, the node
//! state, the recording log, snapshots, retention and purge.
//!
//! The archive knows nothing of Raft: it stores frames at byte positions,
//! small checksummed state files and snapshot files, and enforces the rules
//! that keep them recoverable (see `DESIGN.md` §4).
#![warn(missing_docs)]

mod error;

pub use error::{ArchiveError, Result};
