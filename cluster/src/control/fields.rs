//! Small value types read from and written to the control file.

/// Who a control file belongs to; given to [`ControlFile::create`](super::ControlFile::create).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlIdent {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id, below `member_count`.
    pub member_id: u32,
    /// Members in the cluster, 1 to 16.
    pub member_count: u32,
}

/// A member's role as published in the control file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Follows a leader (code 0, also a new file's role).
    Follower,
    /// Standing for election (code 1).
    Candidate,
    /// Leads (code 2).
    Leader,
    /// Receives the log without voting (code 3).
    Learner,
}

impl MemberRole {
    /// The stable code stored in the file.
    #[must_use]
    pub fn code(self) -> u64 {
        match self {
            Self::Follower => 0,
            Self::Candidate => 1,
            Self::Leader => 2,
            Self::Learner => 3,
        }
    }

    /// The role for a stored code.
    #[must_use]
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Follower,
            1 => Self::Candidate,
            2 => Self::Leader,
            3 => Self::Learner,
            _ => return None,
        })
    }

    /// The role's name for tools.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Follower => "follower",
            Self::Candidate => "candidate",
            Self::Leader => "leader",
            Self::Learner => "learner",
        }
    }
}

/// What this member last knew of another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MemberProgress {
    /// The member's last known append position.
    pub append_position: u64,
    /// The member's last known commit position.
    pub commit_position: u64,
    /// When this member last heard from it (node clock, ns; 0 = never).
    pub last_heard_ns: u64,
}

/// One record of the error log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorRecord {
    /// The record's position in the log: 0 for the first error ever written.
    pub index: u64,
    /// When it happened (Unix epoch ns, as given by the node).
    pub timestamp_ns: u64,
    /// An error code of the node's choosing.
    pub code: u32,
    /// The message, cut to at most [`ERROR_MESSAGE_MAX_BYTES`](super::ERROR_MESSAGE_MAX_BYTES)
    /// bytes on a character boundary.
    pub message: String,
}
