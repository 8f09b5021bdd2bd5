//! The harness's errors.

use std::path::PathBuf;

/// Why the harness could not set up, drive or tear down its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A system command (`ip`, `nft`, `mount`) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, or why it did not run.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Network namespaces cannot be created here (not root, or no `ip`).
    #[error(
        "cannot create network namespaces ({0}); tandem-chaos must run as root with iproute2 \
         and nftables installed"
    )]
    NoNamespaces(String),
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A member process could not be started.
    #[error("member {member}: cannot start {}: {source}", bin.display())]
    Spawn {
        /// The member.
        member: u32,
        /// The binary.
        bin: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// The cluster did not reach a state the harness waits for.
    #[error("{0}")]
    Stuck(String),
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, ChaosError>;

/// An `Io` error for `path`.
pub(crate) fn io(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ChaosError {
    let path = path.to_path_buf();
    move |source| ChaosError::Io { what, path, source }
}
