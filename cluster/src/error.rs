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
