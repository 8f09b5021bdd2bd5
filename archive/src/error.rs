//! The archive's error type.
//!
//! Every fallible public function of the archive returns [`ArchiveError`]. Each
//! variant names the file and, where it has one, the log position or byte offset
//! it concerns, so an operator can find what went wrong without a debugger.

use std::io;
use std::path::PathBuf;

/// Result alias used across the archive.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// An operating error of the archive (bugs panic instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `fallocate`, `msync`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Space for a new segment (or another pre-reserved file) could not be reserved.
    #[error("cannot reserve {len_bytes} bytes for {path}: {source} (is the disk full?)")]
    Reserve {
        /// The file that could not be created.
        path: PathBuf,
        /// How many bytes were asked for.
        len_bytes: u64,
        /// The underlying error (`ENOSPC`, `EFBIG`, ...).
        #[source]
        source: io::Error,
    },

    /// A file holds data that fails validation where data must be valid.
    #[error("corrupted {file} at position {position}: {reason}")]
    Corrupted {
        /// The corrupted file.
        file: PathBuf,
        /// Log position (for segments) or byte offset (other files) of the bad data.
        position: u64,
        /// What was wrong.
        reason: String,
    },

    /// A read was asked to start at a position that is not the start of a frame.
    #[error("position {position} is not a frame boundary in {file}")]
    NotFrameBoundary {
        /// The segment file the position falls in.
        file: PathBuf,
        /// The position asked for.
        position: u64,
    },

    /// A position lies below the log's start (purged, or before an installed snapshot).
    #[error("position {position} is below the log start {start_position}")]
    BelowLogStart {
        /// The position asked for.
        position: u64,
        /// The log's first position.
        start_position: u64,
    },

    /// A position lies beyond the end of the log.
    #[error("position {position} is beyond the append position {append_position}")]
    BeyondAppendPosition {
        /// The position asked for.
        position: u64,
        /// The log's append position.
        append_position: u64,
    },

    /// An encoded frame offered for appending (from another member) does not
    /// validate at the position it would occupy.
    #[error("invalid frame at position {position}: {reason}")]
    InvalidFrame {
        /// The log position the frame would have occupied.
        position: u64,
        /// What was wrong.
        reason: String,
    },

    /// A frame longer than the configured maximum was offered.
    #[error("frame of {len_bytes} bytes exceeds the maximum frame length {max_bytes}")]
    FrameTooLong {
        /// The frame length that was asked for (header included).
        len_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },

    /// The directory belongs to another cluster or member.
    #[error(
        "{path} belongs to cluster {found_cluster_id} member {found_member_id}, not cluster {cluster_id} member {member_id}"
    )]
    IdentityMismatch {
        /// The node-state file.
        path: PathBuf,
        /// The cluster id the caller expected.
        cluster_id: u64,
        /// The member id the caller expected.
        member_id: u32,
        /// The cluster id found on disk.
        found_cluster_id: u64,
        /// The member id found on disk.
        found_member_id: u32,
    },

    /// Another process holds the directory's writer lock.
    #[error("{dir} is locked by another writer (pid {pid:?})")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The pid recorded by the holder, when it could be read.
        pid: Option<u32>,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Something asked for does not exist (no snapshot at a position, ...).
    #[error("not found: {0}")]
    NotFound(String),
}

impl ArchiveError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArchiveError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds a [`ArchiveError::Corrupted`].
    pub fn corrupted(file: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Self {
        ArchiveError::Corrupted {
            file: file.into(),
            position,
            reason: reason.into(),
        }
    }
}
