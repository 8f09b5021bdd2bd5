//! Errors of the node runtime and the cluster client.

use std::path::PathBuf;

use crate::agent::AgentError;
use crate::control::ControlError;
use crate::transport::TransportError;

/// What can go wrong configuring, launching or running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration file could not be read or parsed.
    #[error("configuration file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The node directory (archive) failed.
    #[error("archive in {dir}: {source}")]
    Archive {
        /// The node directory.
        dir: PathBuf,
        /// The archive's error.
        #[source]
        source: tandem_archive::ArchiveError,
    },
    /// The control file failed.
    #[error("control file in {dir}: {source}")]
    Control {
        /// The node directory.
        dir: PathBuf,
        /// The control file's error.
        #[source]
        source: ControlError,
    },
    /// The transport could not be set up.
    #[error("transport of member {member_id}: {source}")]
    Transport {
        /// This member.
        member_id: u32,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// An agent thread failed to start or ended with an error.
    #[error("agent of member {member_id}: {source}")]
    Agent {
        /// This member.
        member_id: u32,
        /// The agent's error.
        #[source]
        source: AgentError,
    },
    /// The archive failed under the consensus core's log (a full disk, an I/O error): the
    /// node stopped (see [`crate::node::ArchiveLogStore`]).
    #[error(transparent)]
    Log(#[from] super::log_store::LogStoreError),
    /// The service on its own thread (`dedicated`) could not go on: the node stopped.
    #[error("member {member_id}: service: {source}")]
    Service {
        /// The member.
        member_id: u32,
        /// What went wrong.
        #[source]
        source: crate::SplitError,
    },
    /// A stored snapshot could not be read back.
    #[error("snapshot at position {position} in {dir}: {reason}")]
    Snapshot {
        /// The node directory.
        dir: PathBuf,
        /// The snapshot's log position.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Result of node operations.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// What can go wrong for a [`crate::node::ClusterClient`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The client socket could not be set up, or a send failed hard.
    #[error("transport: {0}")]
    Transport(String),
    /// No member answered (or none led) within the timeout.
    #[error("timed out after {waited_ms} ms: {what}")]
    Timeout {
        /// What the client was waiting for.
        what: &'static str,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The cluster refused the connect.
    #[error("connect rejected by the cluster: {reason}")]
    Rejected {
        /// Why.
        reason: crate::codec::RejectCode,
    },
    /// The cluster refused a message (too large).
    #[error("message {sequence} rejected by the cluster (too large?)")]
    MessageRejected {
        /// The message's sequence.
        sequence: u64,
    },
    /// The session was closed by the cluster; the outcome of messages after
    /// `committed_seq` is unknown.
    #[error("session expired: outcome of messages after sequence {committed_seq} unknown")]
    SessionExpired {
        /// Highest sequence known committed.
        committed_seq: u64,
    },
    /// The cluster does not know the session (it was closed and forgotten).
    #[error("session {session} unknown to the cluster")]
    UnknownSession {
        /// The session id.
        session: u64,
    },
    /// The window of unacknowledged messages is full: poll, then offer again.
    #[error("back pressure: {in_flight} messages unacknowledged")]
    BackPressure {
        /// Messages in flight.
        in_flight: usize,
    },
    /// The message is larger than the client accepts.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The client is not connected (call `connect`).
    #[error("not connected")]
    NotConnected,
}
