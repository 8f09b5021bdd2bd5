//! The tool's error type: every failure exits with status 2 and one line on stderr that
//! names the directory, file, position or action concerned.

use std::path::PathBuf;
use std::time::Duration;

use tandem_archive::ArchiveError;
use tandem_cluster::control::ControlError;

/// Result alias of the tool.
pub type Result<T, E = ToolError> = std::result::Result<T, E>;

/// Why a command failed (exit status 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The node directory does not exist.
    #[error("no such directory: {}", dir.display())]
    NoSuchDirectory {
        /// The path given.
        dir: PathBuf,
    },

    /// The path given is not a directory.
    #[error("{} is not a directory", dir.display())]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },

    /// The directory holds none of a node's files.
    #[error(
        "{} is not a node directory (no control.dat, node-state.dat, recording.log, tandem.lock or log/)",
        dir.display()
    )]
    NotNodeDirectory {
        /// The path given.
        dir: PathBuf,
    },

    /// The command needs a running node and none runs in the directory.
    #[error("node is not running in {}: {command} needs a running node ({detail})", dir.display())]
    NotRunning {
        /// The node directory.
        dir: PathBuf,
        /// The command refused.
        command: &'static str,
        /// What was found (no control file, process gone, ...).
        detail: String,
    },

    /// The command must not run while a node runs in the directory.
    #[error(
        "node is running in {} (pid {pid}): {command} works only on a stopped node; stop it first",
        dir.display()
    )]
    Running {
        /// The node directory.
        dir: PathBuf,
        /// The command refused.
        command: &'static str,
        /// The node's pid.
        pid: u64,
    },

    /// The node did not complete a request in time.
    #[error(
        "timed out after {:.1}s waiting for the node to complete {action} (request {request}, {})",
        waited.as_secs_f64(),
        path.display()
    )]
    Timeout {
        /// The control file.
        path: PathBuf,
        /// The action's name.
        action: &'static str,
        /// The request's sequence number.
        request: u64,
        /// How long the tool waited.
        waited: Duration,
    },

    /// The node answered a request with something other than success.
    #[error("{action} {outcome} by the node (request {request}, {})", path.display())]
    Refused {
        /// The control file.
        path: PathBuf,
        /// The action's name.
        action: &'static str,
        /// The request's sequence number.
        request: u64,
        /// `rejected`, `failed (see the node's error log)` or `not supported`.
        outcome: &'static str,
    },

    /// A file holds data that fails validation.
    #[error("corrupted {} at position {position}: {reason}", file.display())]
    Corrupted {
        /// The file.
        file: PathBuf,
        /// Log position (segments) or byte offset (other files).
        position: u64,
        /// What is wrong.
        reason: String,
    },

    /// An I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An argument does not fit the directory (position not a frame boundary, nothing to
    /// invalidate, ...).
    #[error("{0}")]
    Invalid(String),

    /// An archive error (it names its file and position).
    #[error(transparent)]
    Archive(ArchiveError),

    /// A control-file error (it names the file).
    #[error(transparent)]
    Control(ControlError),
}

impl ToolError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ToolError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds a [`ToolError::Corrupted`].
    pub fn corrupted(file: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Self {
        ToolError::Corrupted {
            file: file.into(),
            position,
            reason: reason.into(),
        }
    }
}

impl From<ArchiveError> for ToolError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Corrupted {
                file,
                position,
                reason,
            } => ToolError::Corrupted {
                file,
                position,
                reason,
            },
            other => ToolError::Archive(other),
        }
    }
}

impl From<ControlError> for ToolError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Timeout {
                path,
                action,
                request,
                waited,
            } => ToolError::Timeout {
                path,
                action,
                request,
                waited,
            },
            ControlError::BadMembers {
                path,
                offset,
                reason,
            } => ToolError::Corrupted {
                file: path,
                position: offset,
                reason: format!("members list: {reason}"),
            },
            other => ToolError::Control(other),
        }
    }
}
