//! Errors of the transport module.

use std::net::SocketAddr;

/// Everything that can go wrong when configuring or driving the transport.
///
/// Invalid *received* datagrams are never errors: they are dropped and counted in
/// [`super::TransportCounters`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The members list was empty.
    #[error("members list is empty")]
    EmptyMembers,
    /// A members list entry is not of the form `ID=HOST:PORT`.
    #[error("members list entry {entry:?} is malformed: {reason}")]
    MalformedEntry {
        /// The offending entry.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A member id is not a valid number (or is the reserved client id).
    #[error("member id {0:?} is not a valid member id")]
    BadMemberId(String),
    /// The same member id appears twice.
    #[error("member id {0} appears more than once")]
    DuplicateMemberId(u32),
    /// The same address appears twice.
    #[error("address {0} appears more than once")]
    DuplicateAddress(SocketAddr),
    /// The port is not a number in 1..=65534.
    #[error("port {0:?} is not valid (1..=65534, the peer socket uses PORT+1)")]
    BadPort(String),
    /// Port 65535 leaves no room for the peer port PORT+1.
    #[error("port 65535 of member {0} leaves no PORT+1 for the peer socket")]
    NoPeerPort(u32),
    /// The host is not an IP literal or `localhost`.
    #[error("host {0:?} is not an IPv4/IPv6 literal or `localhost`")]
    BadHost(String),
    /// More members than the transport supports.
    #[error("{0} members listed, at most {max} are supported", max = super::MAX_MEMBERS)]
    TooManyMembers(usize),
    /// The member id is not in the members list.
    #[error("member {0} is not in the members list")]
    UnknownMember(u32),
    /// A configuration value is out of range.
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(&'static str),
    /// An unknown IO mode name.
    #[error("unknown io mode {0:?} (expected `std` or `uring`)")]
    UnknownIoMode(String),
    /// The message is larger than the configured maximum message size.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Length of the rejected message.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The bounded send queue has no room for the message: flush / poll and retry.
    #[error("send queue full (back-pressure), retry after flush")]
    WouldBlock,
    /// The destination is not reachable through this transport.
    #[error("destination {0} is unknown to this transport")]
    UnknownDestination(String),
    /// An operating-system IO error.
    #[error("io error during {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// Wraps an IO error with the operation that failed.
    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Self {
        Self::Io { op, source }
    }

    /// True for back-pressure: the caller should flush/poll and retry later.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Self::WouldBlock)
    }
}

/// Result alias of the transport module.
pub type Result<T> = std::result::Result<T, TransportError>;
