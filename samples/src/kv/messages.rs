//! The key-value store's messages: [`KvRequest`]s in the log, [`KvReply`]s on the session.
//!
//! rkyv 0.8 archives (format version [`FORMAT_VERSION`]), read zero-copy and validated.
//!
//! ```text
//! KvRequest::Set           { key, value }            -> KvReply::Stored   { previous }
//! KvRequest::Get           { key }                   -> KvReply::Value    { value }
//! KvRequest::Delete        { key }                   -> KvReply::Deleted  { previous }
//! KvRequest::CompareAndSet { key, expected, new }    -> KvReply::Swapped  { success, current }
//! anything invalid                                   -> KvReply::Rejected { reason }
//! ```

// rkyv's derive emits undocumented helper types for enum variants with fields; every type
// written here is documented by hand.
#![allow(missing_docs)]

use rkyv::{Archive, Deserialize, Serialize};

use crate::codec::{self, DecodeError};

/// Version of the message layout written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// A request, as it travels in the log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum KvRequest {
    /// Set `key` to `value`.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Read `key` (through the log: linearizable).
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// If `key` currently holds `expected` (`None`: is absent), make it hold `new` (`None`:
    /// remove it).
    CompareAndSet {
        /// The key.
        key: Vec<u8>,
        /// The value expected now.
        expected: Option<Vec<u8>>,
        /// The value to store.
        new: Option<Vec<u8>>,
    },
}

/// Why a request was refused.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum KvError {
    /// Not a valid request archive.
    Malformed = 0,
    /// The key is empty or longer than [`crate::kv::MAX_KEY_BYTES`].
    BadKey = 1,
    /// The value is longer than [`crate::kv::MAX_VALUE_BYTES`].
    ValueTooLarge = 2,
    /// The store holds [`crate::kv::MAX_ENTRIES`] keys.
    StoreFull = 3,
}

/// A reply on the session.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum KvReply {
    /// A set was applied.
    Stored {
        /// The value it replaced.
        previous: Option<Vec<u8>>,
    },
    /// The value read.
    Value {
        /// The value, if the key exists.
        value: Option<Vec<u8>>,
    },
    /// A delete was applied.
    Deleted {
        /// The value removed, if the key existed.
        previous: Option<Vec<u8>>,
    },
    /// A compare-and-set was applied.
    Swapped {
        /// Whether the expected value matched (and the new one was stored).
        success: bool,
        /// The key's value afterwards.
        current: Option<Vec<u8>>,
    },
    /// The request was refused; nothing changed.
    Rejected {
        /// Why.
        reason: KvError,
    },
}

impl KvRequest {
    /// Encodes the request as an rkyv archive.
    pub fn encode(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("plain data always serializes")
    }

    /// Decodes (and validates) an encoded request.
    ///
    /// # Errors
    /// [`DecodeError`] if `bytes` is not a valid archive.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode::<Self>(bytes)
    }
}

impl KvReply {
    /// Encodes the reply as an rkyv archive.
    pub fn encode(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("plain data always serializes")
    }

    /// Decodes (and validates) an encoded reply.
    ///
    /// # Errors
    /// [`DecodeError`] if `bytes` is not a valid archive.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode::<Self>(bytes)
    }
}
