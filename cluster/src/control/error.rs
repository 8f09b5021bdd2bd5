//! Errors of the control-file module.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Why a control file could not be created, opened or used. Each names the file.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The node directory does not exist.
    #[error("node directory {} does not exist", dir.display())]
    DirNotFound {
        /// The directory given.
        dir: PathBuf,
    },
    /// The path given as a node directory is not a directory.
    #[error("{} is not a directory", dir.display())]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },
    /// The directory has no control file: not a node directory, or the node never started.
    #[error("{} not found: not a node directory, or the node has never started", path.display())]
    NotFound {
        /// The control file's path.
        path: PathBuf,
    },
    /// The file does not start with the control file's magic: not a Tandem control file.
    #[error("{} is not a Tandem control file (magic {found:#018x})", path.display())]
    BadMagic {
        /// The control file's path.
        path: PathBuf,
        /// The first eight bytes found.
        found: u64,
    },
    /// The file's header is all zeroes: it was created but never initialised.
    #[error("{} is not initialised (the node crashed while creating it?)", path.display())]
    Uninitialised {
        /// The control file's path.
        path: PathBuf,
    },
    /// The file has a format version this build does not read.
    #[error("{} has format version {found}; this build reads version {expected}", path.display())]
    Version {
        /// The control file's path.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The version this build reads.
        expected: u64,
    },
    /// The file is shorter than its format needs.
    #[error("{} is truncated: {len_bytes} bytes, {expected_bytes} expected", path.display())]
    Truncated {
        /// The control file's path.
        path: PathBuf,
        /// Its length.
        len_bytes: u64,
        /// The length its format needs.
        expected_bytes: u64,
    },
    /// A header field holds a value that does not fit the format.
    #[error("{} is corrupt: {what} is {value}", path.display())]
    Corrupt {
        /// The control file's path.
        path: PathBuf,
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// The members-endpoints area does not hold a valid members list (the rest of the file
    /// may still be read).
    #[error("{} is corrupt: members list at byte {offset}: {reason}", path.display())]
    BadMembers {
        /// The control file's path.
        path: PathBuf,
        /// The byte offset in the file of the first bad byte (or of the area's field).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The members list given to `create` does not fit the control file's members area.
    #[error(
        "members list {list:?} is {len_bytes} bytes; the control file holds at most {max_bytes}"
    )]
    MembersListTooLong {
        /// The members list, as it would be stored.
        list: String,
        /// Its length in bytes.
        len_bytes: usize,
        /// The most the members area holds.
        max_bytes: usize,
    },
    /// The identity given to `create` is not valid.
    #[error("invalid member identity: {reason}")]
    InvalidIdent {
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on the file.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file's path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another request is pending in the control toggle.
    #[error("{}: another request ({pending}) is pending", path.display())]
    Busy {
        /// The control file's path.
        path: PathBuf,
        /// A description of the pending request.
        pending: String,
    },
    /// The node did not complete the request in time.
    #[error("{}: no result for {action} (request {request}) after {waited:?}", path.display())]
    Timeout {
        /// The control file's path.
        path: PathBuf,
        /// The action's name.
        action: &'static str,
        /// The request's sequence number.
        request: u64,
        /// How long the tool waited.
        waited: Duration,
    },
    /// The node's process is gone while a tool waited for it.
    #[error("{}: node process {pid} is not running; {action} (request {request}) will not complete", path.display())]
    OwnerDead {
        /// The control file's path.
        path: PathBuf,
        /// The node's pid.
        pid: u64,
        /// The action's name.
        action: &'static str,
        /// The request's sequence number.
        request: u64,
    },
    /// The request's result was overwritten by later requests before the tool read it.
    #[error("{}: the result of {action} (request {request}) was overwritten by later requests", path.display())]
    ResultLost {
        /// The control file's path.
        path: PathBuf,
        /// The action's name.
        action: &'static str,
        /// The request's sequence number.
        request: u64,
    },
    /// The node tried to complete a request that is not the one in progress.
    #[error("{}: request {request} is not in progress", path.display())]
    NotInProgress {
        /// The control file's path.
        path: PathBuf,
        /// The request's sequence number.
        request: u64,
    },
}
