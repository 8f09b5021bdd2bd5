//! Operator actions requested through the control toggle, and their results.

use std::fmt;

/// An action a tool asks the node to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Take a snapshot (cluster-wide, through the log). Result value: the snapshot position.
    Snapshot,
    /// Suspend the service (cluster-wide).
    Suspend,
    /// Resume a suspended service (cluster-wide).
    Resume,
    /// Snapshot then shut every member down (cluster-wide).
    Shutdown,
    /// Shut every member down without a snapshot (cluster-wide).
    Abort,
    /// Stop this member only, handing over leadership first.
    Stop,
    /// Purge this member's log segments below this position. Result value: the new log start
    /// position; extra: the bytes freed.
    Purge(u64),
}

impl Action {
    /// The action's stable code in the toggle word (1..=7).
    #[must_use]
    pub fn code(self) -> u64 {
        match self {
            Self::Snapshot => 1,
            Self::Suspend => 2,
            Self::Resume => 3,
            Self::Shutdown => 4,
            Self::Abort => 5,
            Self::Stop => 6,
            Self::Purge(_) => 7,
        }
    }

    /// The action for `code`, with `argument` as the purge position.
    #[must_use]
    pub fn from_code(code: u64, argument: u64) -> Option<Self> {
        Some(match code {
            1 => Self::Snapshot,
            2 => Self::Suspend,
            3 => Self::Resume,
            4 => Self::Shutdown,
            5 => Self::Abort,
            6 => Self::Stop,
            7 => Self::Purge(argument),
            _ => return None,
        })
    }

    /// The action's name, as `cluster-tool` spells the command.
    #[must_use]
    pub fn name(self) -> &'static str {
        Self::name_of_code(self.code())
    }

    /// The name for an action code (`unknown` for a code no action has).
    #[must_use]
    pub fn name_of_code(code: u64) -> &'static str {
        match code {
            1 => "snapshot",
            2 => "suspend",
            3 => "resume",
            4 => "shutdown",
            5 => "abort",
            6 => "stop",
            7 => "purge-segments",
            _ => "unknown",
        }
    }

    fn argument(self) -> u64 {
        match self {
            Self::Purge(position) => position,
            _ => 0,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Purge(position) => write!(f, "purge-segments (position {position})"),
            other => f.write_str(other.name()),
        }
    }
}

/// Identifies one request: its sequence number (unique per control file, from 1) and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    seq: u64,
    action: Action,
}

impl RequestId {
    pub(super) fn new(seq: u64, action: Action) -> Self {
        Self { seq, action }
    }

    /// The request's sequence number.
    #[must_use]
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// The action requested.
    #[must_use]
    pub fn action(self) -> Action {
        self.action
    }

    pub(super) fn argument(self) -> u64 {
        self.action.argument()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (request {})", self.action, self.seq)
    }
}

/// How the node answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// Done.
    Ok,
    /// Refused (for example: not the leader and cannot forward, or already suspended).
    Rejected,
    /// Tried and failed; the node's error log says why.
    Failed,
    /// This node does not support the action (or the code was unknown).
    Unsupported,
}

impl ResultCode {
    /// The stable code stored in the file (0 is never a result).
    #[must_use]
    pub fn code(self) -> u64 {
        match self {
            Self::Ok => 1,
            Self::Rejected => 2,
            Self::Failed => 3,
            Self::Unsupported => 4,
        }
    }

    /// The result for a stored code.
    #[must_use]
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            1 => Self::Ok,
            2 => Self::Rejected,
            3 => Self::Failed,
            4 => Self::Unsupported,
            _ => return None,
        })
    }
}

/// The node's answer to a request: a code and two numbers whose meaning depends on the
/// action (see [`Action`]); zero where unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionResult {
    /// How it went.
    pub code: ResultCode,
    /// The main number (a snapshot position, a new log start position).
    pub value: u64,
    /// A second number (bytes freed by a purge).
    pub extra: u64,
}

impl ActionResult {
    /// Success with `value`.
    #[must_use]
    pub fn ok(value: u64) -> Self {
        Self {
            code: ResultCode::Ok,
            value,
            extra: 0,
        }
    }

    /// A result with no numbers.
    #[must_use]
    pub fn with_code(code: ResultCode) -> Self {
        Self {
            code,
            value: 0,
            extra: 0,
        }
    }
}
