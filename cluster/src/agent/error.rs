//! Errors of the agent module.

use thiserror::Error;

/// Why an agent, a runner or one of their settings failed.
#[derive(Debug, Error)]
pub enum AgentError {
    /// A core named for pinning is not one this process may run on.
    #[error("core {core} is not available to this process (available: {available:?})")]
    UnknownCore {
        /// The core asked for.
        core: usize,
        /// The cores this process may run on.
        available: Vec<usize>,
    },
    /// The operating system refused to pin the thread.
    #[error("could not pin thread '{thread}' to core {core}")]
    PinFailed {
        /// The thread's name.
        thread: String,
        /// The core asked for.
        core: usize,
    },
    /// The runner's thread could not be spawned.
    #[error("could not spawn agent thread '{thread}': {source}")]
    Spawn {
        /// The thread's name.
        thread: String,
        /// The error from the operating system.
        source: std::io::Error,
    },
    /// The agent panicked; `message` is the panic payload when it was a string.
    #[error("agent '{role}' on thread '{thread}' panicked: {message}")]
    Panicked {
        /// The agent's role name.
        role: String,
        /// The thread's name.
        thread: String,
        /// The panic message.
        message: String,
    },
    /// The runner's thread ended before reporting that the agent had started.
    #[error("agent thread '{thread}' ended before the agent started")]
    NotStarted {
        /// The thread's name.
        thread: String,
    },
    /// An idle strategy name could not be parsed.
    #[error(
        "invalid idle strategy '{input}': {reason} (expected spin, noop, yield, backoff, backoff=SPINS,YIELDS,MIN_PARK_NS,MAX_PARK_NS, sleep-ns=N or sleep-ms=N)"
    )]
    InvalidIdleStrategy {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A threading mode name could not be parsed.
    #[error("invalid threading mode '{input}' (expected dedicated, shared or cluster)")]
    InvalidThreadingMode {
        /// The text given.
        input: String,
    },
    /// A core list could not be parsed.
    #[error("invalid core list '{input}': {reason}")]
    InvalidCoreList {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An agent failed; the source says why. Agents wrap their own errors in this.
    #[error("agent '{role}' failed: {source}")]
    Failed {
        /// The agent's role name.
        role: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl AgentError {
    /// Wraps any error as the failure of the agent named `role`.
    pub fn failed(
        role: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Failed {
            role: role.into(),
            source: source.into(),
        }
    }
}
