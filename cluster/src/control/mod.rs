//! The node control file, `<node-dir>/control.dat` (DESIGN §7).
//!
//! A memory-mapped file that the node writes and `cluster-tool` (another process) reads, and
//! through whose control toggle a tool asks the node to act. Every field is a 64-bit word in
//! native byte order (little-endian on every supported target) accessed only as an
//! `AtomicU64`: the node publishes with `Release`, readers load with `Acquire`.
//!
//! # Layout, format version 2 (19 328 bytes)
//!
//! ```text
//!  byte  word
//!     0     0 +---------------------------------------------------------------+
//!               | magic "TNDMCTRL" (stored last by create)                      |
//!     8     1   | format version = 2                                            |
//!    16     2   | file length in bytes = 19328                                  |
//!    24     3   | pid of the node process                                       |
//!    32     4   | cluster id                                                    |
//!    40     5   | member id (u32 in a u64)                                      |
//!    48     6   | member count (1..=16)                                         |
//!    56     7   | start timestamp, Unix epoch ns                                |
//!    64     8   | member slots = 16 | counter slots = 64 | error records = 64   |
//!    88    11   | error record length = 256 | members area length = 1024       |
//!               | 3 words reserved                                              |
//!   128    16 +- live fields (node writes) -------------------------------------+
//!               | role code (0 follower, 1 candidate, 2 leader, 3 learner)      |
//!               | term | leader id (u64::MAX = none) | election state code    |
//!               | append | commit | durable | log start | snapshot position   |
//!               | updated_ns (node clock at last update) | 6 words reserved       |
//!   256    32 +- members: 16 slots x 32 bytes, slot = member id ----------------+
//!               | append position | commit position | last heard ns | reserved  |
//!   768    96 +- counters: 64 x u64, slot = Counter index (21 named, rest spare) +
//!  1280   160 +- control toggle (64 bytes) -------------------------------------+
//!               | toggle: seq << 16 | phase << 8 | action code; 0 = NEUTRAL     |
//!               |   phase 1 claimed by a tool, 2 pending, 3 in progress         |
//!               | argument (purge position) | next request seq | 5 reserved     |
//!  1344   168 +- results: 8 slots x 64 bytes, slot = seq % 8 -------------------+
//!               | seq (0 while written) | action code | result code | value |   |
//!               | extra | 3 words reserved                                      |
//!  1856   232 +- error log header (64 bytes) -----------------------------------+
//!               | write count (records ever written) | 7 words reserved         |
//!  1920   240 +- error ring: 64 records x 256 bytes, record = index % 64 -------+
//!               | seq = index + 1 (0 while written) | timestamp ns |            |
//!               | code (low 32 bits) + message length (high 32 bits) |          |
//!               | message: 232 bytes UTF-8, zero padded                         |
//! 18304  2288 +- members area (1024 bytes, written once by create) -------------+
//!               | members list length in bytes (1..=1016)                       |
//! 18312  2289   | members list as given to the node, UTF-8, zero padded:        |
//!               |   "0=127.0.0.1:9010,1=127.0.0.1:9020,..." (client endpoints;  |
//!               |   a member's peer endpoint is its client port + 1)            |
//! 19328  2416 +---------------------------------------------------------------+
//! ```
//!
//! # Protocols
//!
//! * **Header and members area**: written once by `create` before it stores the magic
//!   (`Release`) and renames the file into place; read-only afterwards. A members area that
//!   does not parse makes [`ControlFile::member_endpoints`] fail with
//!   [`ControlError::BadMembers`]; the rest of the file can still be read.
//! * **Live fields and counters**: the node is the only writer of live fields; counters are
//!   `fetch_add`ed, so several of a node's threads may count.
//! * **Error log**: a writer takes an index with `fetch_add` on the write count, writes the
//!   record as a seqlock (seq 0, fence, fields, seq = index + 1 with `Release`). A reader
//!   lists indices from newest to oldest, copies each record, checks its seq before and
//!   after, and re-reads the write count to drop records that were lapped meanwhile.
//! * **Control toggle**: a tool takes a sequence number, moves the toggle from NEUTRAL to
//!   *claimed* by compare-exchange (failing with `Busy` otherwise), writes the argument, then
//!   publishes *pending*. The node's `poll_request` moves *pending* to *in progress*;
//!   `complete` writes the result slot as a seqlock and sets the toggle back to NEUTRAL. The
//!   tool's `wait_for` polls the result slot for its sequence number.
//!
//! The node replaces a stale file from an earlier run by renaming a new one over it.

mod action;
mod counter;
mod error;
mod fields;
mod file;
mod layout;
mod mapping;

pub use self::action::{Action, ActionResult, RequestId, ResultCode};
pub use self::counter::Counter;
pub use self::error::ControlError;
pub use self::fields::{ControlIdent, ErrorRecord, MemberProgress, MemberRole};
pub use self::file::{CONTROL_FILE_NAME, ControlFile};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u64 = layout::VERSION;
/// The length of a control file in bytes.
pub const FILE_LEN_BYTES: usize = layout::FILE_LEN_BYTES;
/// The number of error records the ring keeps.
pub const ERROR_RECORDS: usize = layout::ERROR_RECORDS;
/// The longest error message a record holds, in bytes.
pub const ERROR_MESSAGE_MAX_BYTES: usize = layout::ERROR_MESSAGE_MAX_BYTES;
/// The most members a control file describes.
pub const MEMBERS_MAX: usize = layout::MEMBERS_MAX;
/// The longest members list (`0=HOST:PORT,...` text, in bytes) a control file holds.
pub const MEMBERS_LIST_MAX_BYTES: usize = layout::MEMBERS_LIST_MAX_BYTES;

#[cfg(test)]
mod tests;
