//! Errors of the cluster crate.

use thiserror::Error;

/// A message, frame, log entry or snapshot that could not be decoded. Decoders never panic on
/// bad input; they return one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The input ended before the named field.
    #[error("truncated input: {what} needs {needed} bytes, {available} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The version byte is not one this build understands.
    #[error("unsupported {what} version {version}")]
    Version {
        /// What was being read.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// The type tag is unknown.
    #[error("unknown {what} type {tag}")]
    UnknownType {
        /// What was being read.
        what: &'static str,
        /// The tag found.
        tag: u16,
    },
    /// A field holds a value outside its domain.
    #[error("invalid {what}: {value}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// Bytes were left over after a complete message.
    #[error("{extra} trailing bytes after {what}")]
    Trailing {
        /// What was read.
        what: &'static str,
        /// Bytes left.
        extra: usize,
    },
    /// A checksum did not match.
    #[error("checksum mismatch in {what}")]
    Checksum {
        /// What was read.
        what: &'static str,
    },
}

/// Why a service split as in the `dedicated` threading mode ([`crate::container::remote`])
/// cannot go on: the core's module state could no longer be trusted to equal the service's,
/// so the member stops. A bug or a stopped service, never the result of user input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SplitError {
    /// The core applies one callback where the engine recorded another.
    #[error("the core applies {expected} where the service engine recorded {recorded} (at {at})")]
    Mismatch {
        /// The callback the core applies.
        expected: &'static str,
        /// The callback the engine recorded.
        recorded: &'static str,
        /// The log position the engine recorded it at.
        at: u64,
    },
    /// The core applies a callback at another log position than the engine recorded it.
    #[error("the core applies {callback} at {expected_at}, the service engine recorded it at {at}")]
    Position {
        /// The callback.
        callback: &'static str,
        /// Where the core applies it.
        expected_at: u64,
        /// Where the engine recorded it.
        at: u64,
    },
    /// The core applies a callback the engine has not recorded yet.
    #[error("no recorded {callback} to replay (the core ran ahead of the service engine)")]
    NothingRecorded {
        /// The callback.
        callback: &'static str,
    },
    /// An effect the core cannot replay where it was recorded.
    #[error("effect {tag} recorded in {callback}, where it cannot be replayed")]
    Effect {
        /// The effect's tag.
        tag: u8,
        /// The callback it was recorded in.
        callback: &'static str,
    },
    /// Effects or input that do not decode.
    #[error("malformed service split data: {0}")]
    Codec(#[from] CodecError),
    /// The engine answered with a restart nobody asked for.
    #[error("the service engine restarted unasked")]
    UnaskedRestart,
    /// The engine answered a restart with something else.
    #[error("the service engine answered a restart with no start")]
    NoStart,
    /// The service did not restart from a snapshot in time.
    #[error("the service did not restart within {seconds} s")]
    RestartTimeout {
        /// The time allowed.
        seconds: u64,
    },
    /// The service agent stopped (its thread ended: the service failed or panicked).
    #[error("the service agent has stopped")]
    ServiceStopped,
    /// No engine was placed behind an in-line link.
    #[error("no service engine placed behind the link")]
    NoEngine,
}
