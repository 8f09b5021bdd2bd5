//! Snapshots: the module's own state and the service's state, taken at exactly the position of
//! a snapshot marker (or installed from the leader).
//!
//! ```text
//!  0        4    5         8                 16                24                32        36
//!  +--------+----+---------+-----------------+-----------------+-----------------+---------+-----------
//!  | magic  |ver | zero    | log position    | term            | timestamp       | mod len | module ...
//!  | "TNDS" | u8 | 3 bytes | u64             | u64             | i64             | u32     |
//!  +--------+----+---------+-----------------+-----------------+-----------------+---------+-----------
//!  | svc len u32 | service bytes ... | crc32c u32 of every byte before it |
//! ```
//!
//! Little-endian, version [`SNAPSHOT_VERSION`]. The module part is written by
//! `ModuleState::encode` (sessions with reply caches, timers, pending service messages, ids).

use crate::codec::buf::{Reader, Writer};
use crate::consensus::types::{LogPosition, Term};
use crate::error::CodecError;

/// Magic number at the start of every snapshot.
pub const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"TNDS");
/// Version of the snapshot layout written by this build.
pub const SNAPSHOT_VERSION: u8 = 1;

/// An encoded, checksummed snapshot (module state and service state at one log position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The log position it was taken at (just after the snapshot marker).
    pub position: LogPosition,
    /// The term of the frame ending at `position`.
    pub term: Term,
    /// Cluster time at `position`.
    pub timestamp: i64,
    /// The whole encoded snapshot, as stored and as sent in install-snapshot chunks.
    pub bytes: Vec<u8>,
}

/// The parts of a decoded snapshot, borrowing from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotParts<'a> {
    /// Log position.
    pub position: LogPosition,
    /// Term at the position.
    pub term: Term,
    /// Cluster time.
    pub timestamp: i64,
    /// The module state.
    pub module: &'a [u8],
    /// The service's bytes.
    pub service: &'a [u8],
}

impl Snapshot {
    /// Encodes a snapshot from its parts.
    pub fn encode(
        position: LogPosition,
        term: Term,
        timestamp: i64,
        module: &[u8],
        service: &[u8],
    ) -> Self {
        let mut b = Vec::with_capacity(48 + module.len() + service.len());
        b.put_u32(SNAPSHOT_MAGIC);
        b.put_u8(SNAPSHOT_VERSION);
        b.extend_from_slice(&[0, 0, 0]);
        b.put_u64(position.0);
        b.put_u64(term.0);
        b.put_i64(timestamp);
        b.put_var_bytes(module);
        b.put_var_bytes(service);
        let crc = crc32c::crc32c(&b);
        b.put_u32(crc);
        Self {
            position,
            term,
            timestamp,
            bytes: b,
        }
    }

    /// Validates and wraps encoded bytes.
    ///
    /// # Errors
    /// A [`CodecError`] if the bytes are not a valid snapshot (bad magic, version, checksum or
    /// layout).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CodecError> {
        let p = decode_parts(&bytes)?;
        Ok(Self {
            position: p.position,
            term: p.term,
            timestamp: p.timestamp,
            bytes,
        })
    }

    /// The decoded parts.
    pub fn parts(&self) -> SnapshotParts<'_> {
        decode_parts(&self.bytes).expect("a Snapshot is always valid")
    }
}

fn decode_parts(bytes: &[u8]) -> Result<SnapshotParts<'_>, CodecError> {
    if bytes.len() < 4 {
        return Err(CodecError::Truncated {
            what: "snapshot",
            needed: 4,
            available: bytes.len(),
        });
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let mut r = Reader::new(body, "snapshot");
    if r.u32()? != SNAPSHOT_MAGIC {
        return Err(CodecError::Invalid {
            what: "snapshot magic",
            value: 0,
        });
    }
    let version = r.u8()?;
    if version != SNAPSHOT_VERSION {
        return Err(CodecError::Version {
            what: "snapshot",
            version,
        });
    }
    r.bytes(3)?;
    let position = LogPosition(r.u64()?);
    let term = Term(r.u64()?);
    let timestamp = r.i64()?;
    let module = r.var_bytes()?;
    let service = r.var_bytes()?;
    r.finish()?;
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != stored {
        return Err(CodecError::Checksum { what: "snapshot" });
    }
    Ok(SnapshotParts {
        position,
        term,
        timestamp,
        module,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let s = Snapshot::encode(LogPosition(4096), Term(3), 77, b"module", b"service");
        let p = s.parts();
        assert_eq!(p.module, b"module");
        assert_eq!(p.service, b"service");
        assert_eq!(Snapshot::from_bytes(s.bytes.clone()).unwrap(), s);
        for i in 0..s.bytes.len() {
            let mut bad = s.bytes.clone();
            bad[i] ^= 0x40;
            assert!(Snapshot::from_bytes(bad).is_err(), "flip at {i}");
        }
        for cut in 0..s.bytes.len() {
            assert!(Snapshot::from_bytes(s.bytes[..cut].to_vec()).is_err());
        }
    }
}
