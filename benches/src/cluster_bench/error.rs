//! [`BenchError`]: what can stop a `cluster-bench` run, with the process exit code for each.

use std::path::PathBuf;

use tandem_cluster::agent::AgentError;
use tandem_cluster::control::ControlError;
use tandem_cluster::node::{ClientError, NodeError};
use tandem_cluster::transport::TransportError;

/// What can stop a `cluster-bench` run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag has an invalid value, or flags contradict each other (exit code 2).
    #[error("invalid arguments: {0}")]
    Usage(String),
    /// A peer was asked for that this binary was built without (exit code 2).
    #[error(
        "--peer {peer} needs the cargo feature `{feature}`: build with \
         `cargo run --release -p tandem-benches --features {feature} --bin cluster-bench -- ...`"
    )]
    PeerNotBuilt {
        /// The peer named on the command line.
        peer: &'static str,
        /// The feature that builds it.
        feature: &'static str,
    },
    /// A member could not be configured or launched, or failed while running.
    #[error("node: {0}")]
    Node(#[from] NodeError),
    /// A client could not connect or its session failed.
    #[error("client {client}: {source}")]
    Client {
        /// Index of the client in this run.
        client: usize,
        /// What went wrong.
        source: ClientError,
    },
    /// The floor's transport failed.
    #[error("floor transport: {0}")]
    Transport(#[from] TransportError),
    /// An agent (the `cluster` threading mode's members) failed.
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    /// A member's control file could not be used (snapshot request).
    #[error("control file: {0}")]
    Control(#[from] ControlError),
    /// A file could not be written or a directory created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A member process could not be started, or exited during the run.
    #[error("member {member} process: {what}")]
    Member {
        /// The member id.
        member: u32,
        /// What happened.
        what: String,
    },
    /// The snapshot requested with `--snapshot-at` did not complete.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A peer run failed.
    #[error("peer {peer}: {what}")]
    Peer {
        /// The peer.
        peer: &'static str,
        /// Its error.
        what: String,
    },
    /// The plot could not be drawn.
    #[error("plot {path}: {what}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The plotting error.
        what: String,
    },
    /// Tandem lost messages: sent ones whose reply never reached the client.
    #[error("{lost} of {sent} messages got no reply from the cluster")]
    Lost {
        /// Messages without a reply.
        lost: u64,
        /// Messages sent.
        sent: u64,
    },
    /// The cluster stopped answering in latency mode: no reply for `waited_s` seconds with
    /// messages in flight before the last message was due (once every window is full,
    /// nothing more can be sent).
    #[error(
        "no reply from the cluster for {waited_s} s with {in_flight} messages in flight \
         ({sent} of {due} messages sent)"
    )]
    Stalled {
        /// Seconds without a reply.
        waited_s: u64,
        /// Messages sent and not answered.
        in_flight: u64,
        /// Messages sent, warm-up included.
        sent: u64,
        /// Messages the run was to send.
        due: u64,
    },
}

impl BenchError {
    /// The process exit code: 2 for a usage error, 1 for a failed run.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::PeerNotBuilt { .. } => 2,
            _ => 1,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Result of the harness.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
