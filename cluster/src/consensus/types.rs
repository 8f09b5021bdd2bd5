//! Newtypes for the quantities the core must never mix up.

use std::fmt;

pub use tandem_service_api::SessionId;

/// A leadership term. Terms only grow; 0 is the term before any election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

impl Term {
    /// The next term.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "term-{}", self.0)
    }
}

/// A byte position in the log (as in Aeron): the log is a stream of 8-byte aligned frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPosition(pub u64);

impl LogPosition {
    /// Position `bytes` further on.
    pub fn advance(self, bytes: u64) -> Self {
        Self(self.0 + bytes)
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pos-{}", self.0)
    }
}

/// A member of the cluster: an index into the configured member list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemberId(pub u32);

impl MemberId {
    /// Encodes "no member" on the wire.
    pub const NONE_WIRE: u32 = u32::MAX;

    /// The member as an index into per-member arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member-{}", self.0)
    }
}

/// An opaque, stable address of a client's egress endpoint, chosen by the runtime (the
/// simulator uses a client index; the node encodes its UDP endpoint). It is recorded in the
/// log with the session, so any member that becomes leader can reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientAddr(pub u64);

/// A cluster-wide operator action (DESIGN §7, as in Aeron's `ClusterTool`). Requested on any
/// member with `Input::Operator`, forwarded to the leader, appended to the log as an
/// `OperatorAction` entry and carried out by every member when it applies that entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum OperatorAction {
    /// Every member snapshots at the entry's position.
    Snapshot = 1,
    /// The leader stops appending new ingress (client messages, connects and closes are
    /// answered `Busy`), timer events and service messages until `Resume`.
    Suspend = 2,
    /// Ends a suspension.
    Resume = 3,
    /// Every member snapshots at the entry's position, then terminates.
    Shutdown = 4,
    /// Every member terminates when it applies the entry (no snapshot).
    Abort = 5,
}

impl OperatorAction {
    /// The wire code (log entries and peer messages).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The action for a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Snapshot,
            2 => Self::Suspend,
            3 => Self::Resume,
            4 => Self::Shutdown,
            5 => Self::Abort,
            _ => return None,
        })
    }

    /// The name, as `cluster-tool` spells the command.
    pub fn name(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Shutdown => "shutdown",
            Self::Abort => "abort",
        }
    }
}

impl fmt::Display for OperatorAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
