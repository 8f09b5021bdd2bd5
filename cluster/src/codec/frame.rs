//! Log frames: the unit the log stores and the leader replicates.
//!
//! The layout is exactly the archive's (`tandem_archive`'s frame module), so raw frame bytes
//! pass unchanged between the core, the archive's segments and the wire, and positions are
//! identical in memory, on disk and on the wire:
//!
//! ```text
//!  0        4        8        10   11   12       16                24                32                40                48
//!  +--------+--------+--------+----+----+--------+-----------------+-----------------+-----------------+-----------------+
//!  | frame  | crc32c | type   |flag|ver | rsvd   | term            | session id      | sequence        | timestamp       |
//!  | length | u32    | u16    | u8 | u8 | u32 =0 | u64             | u64             | u64             | i64             |
//!  +--------+--------+--------+----+----+--------+-----------------+-----------------+-----------------+-----------------+
//!  | payload (frame length - 48 bytes), then zero padding to the next multiple of 8
//! ```
//!
//! All integers are little-endian. `frame length` is 48 + payload length (unaligned); the
//! frame occupies [`frame_len_aligned`] bytes. Version [`FRAME_VERSION`]. The CRC field is
//! owned by the archive (it covers the frame's own position, which only the store knows);
//! [`encode_frame`] leaves it zero and the core never reads it.

use crate::codec::buf::Reader;
use crate::consensus::types::{SessionId, Term};
use crate::error::CodecError;

/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 48;
/// Frame alignment in bytes.
pub const FRAME_ALIGNMENT: usize = 8;
/// Version of the frame layout written by this build.
pub const FRAME_VERSION: u8 = 1;

/// The bytes a frame with `payload_len` bytes of payload occupies in the log.
#[inline]
pub const fn frame_len_aligned(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len + FRAME_ALIGNMENT - 1) & !(FRAME_ALIGNMENT - 1)
}

/// What a log entry is. The payload encodings are in [`crate::codec::entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum EntryType {
    /// Closes the tail of an archive segment; skipped when applied.
    Padding = 0,
    /// First entry of every leadership term.
    NewLeadershipTerm = 1,
    /// The authenticator's decision on a connect request.
    SessionOpen = 2,
    /// A session closed (client, service or timeout).
    SessionClose = 3,
    /// A client message: session id and sequence in the header, payload = the message.
    SessionMessage = 4,
    /// A timer fired: sequence = the timer's generation, payload = correlation id.
    TimerEvent = 5,
    /// Snapshot request: every member snapshots at the end of this entry.
    SnapshotMarker = 6,
    /// A message the service offered into the log: sequence = service message id.
    ServiceMessage = 7,
    /// A cluster-wide operator action (snapshot, suspend, resume, shutdown, abort), carried
    /// out by every member when applied.
    OperatorAction = 8,
    /// The leader's hash of its service state at a snapshot position, compared by every
    /// member with its own; never applied to the service.
    StateHash = 9,
    /// Consecutive client messages of one session in one frame: session id and the first
    /// message's sequence in the header; the payload in [`crate::codec::entry`].
    SessionMessages = 10,
}

impl EntryType {
    /// The type for a wire code.
    ///
    /// # Errors
    /// [`CodecError::UnknownType`] for an unknown code.
    pub fn from_code(code: u16) -> Result<Self, CodecError> {
        Ok(match code {
            0 => Self::Padding,
            1 => Self::NewLeadershipTerm,
            2 => Self::SessionOpen,
            3 => Self::SessionClose,
            4 => Self::SessionMessage,
            5 => Self::TimerEvent,
            6 => Self::SnapshotMarker,
            7 => Self::ServiceMessage,
            8 => Self::OperatorAction,
            9 => Self::StateHash,
            10 => Self::SessionMessages,
            tag => return Err(CodecError::UnknownType { what: "entry", tag }),
        })
    }
}

/// The header of a log frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The entry type.
    pub entry_type: EntryType,
    /// Flags (none defined yet; 0).
    pub flags: u8,
    /// The term the entry was appended in.
    pub term: Term,
    /// The client session, where the entry has one.
    pub session_id: SessionId,
    /// Type-specific sequence (client sequence, timer generation, ...).
    pub sequence: u64,
    /// Cluster time stamped by the leader, in nanoseconds.
    pub timestamp: i64,
}

/// A frame read from the log: its header and a payload borrowed from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The payload.
    pub payload: &'a [u8],
    /// The bytes the frame occupies (aligned).
    pub len_aligned: usize,
}

/// Appends one frame (header, payload, padding) to `out`; returns the aligned length.
///
/// # Panics
/// If the payload is 4 GiB or more.
pub fn encode_frame(out: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) -> usize {
    let frame_len = u32::try_from(FRAME_HEADER_LEN + payload.len()).expect("frame < 4 GiB");
    let aligned = frame_len_aligned(payload.len());
    let start = out.len();
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&frame_len.to_le_bytes());
    // h[4..8]: the CRC, written by the archive at the frame's position.
    h[8..10].copy_from_slice(&(header.entry_type as u16).to_le_bytes());
    h[10] = header.flags;
    h[11] = FRAME_VERSION;
    // h[12..16]: reserved, zero.
    h[16..24].copy_from_slice(&header.term.0.to_le_bytes());
    h[24..32].copy_from_slice(&header.session_id.0.to_le_bytes());
    h[32..40].copy_from_slice(&header.sequence.to_le_bytes());
    h[40..48].copy_from_slice(&header.timestamp.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    out.resize(start + aligned, 0);
    aligned
}

/// Decodes the frame at the start of `bytes` (which may hold more frames after it).
///
/// # Errors
/// A [`CodecError`] if the bytes do not hold a whole valid frame.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, CodecError> {
    let mut r = Reader::new(bytes, "frame header");
    let frame_len = r.u32()? as usize;
    let _crc = r.u32()?;
    let type_code = r.u16()?;
    let flags = r.u8()?;
    let version = r.u8()?;
    let _reserved = r.u32()?;
    let term = Term(r.u64()?);
    let session_id = SessionId(r.u64()?);
    let sequence = r.u64()?;
    let timestamp = r.i64()?;
    if version != FRAME_VERSION {
        return Err(CodecError::Version {
            what: "frame",
            version,
        });
    }
    if frame_len < FRAME_HEADER_LEN {
        return Err(CodecError::Invalid {
            what: "frame length",
            value: frame_len as u64,
        });
    }
    let entry_type = EntryType::from_code(type_code)?;
    let payload_len = frame_len - FRAME_HEADER_LEN;
    let len_aligned = frame_len_aligned(payload_len);
    if bytes.len() < len_aligned {
        return Err(CodecError::Truncated {
            what: "frame",
            needed: len_aligned,
            available: bytes.len(),
        });
    }
    Ok(Frame {
        header: FrameHeader {
            entry_type,
            flags,
            term,
            session_id,
            sequence,
            timestamp,
        },
        payload: &bytes[FRAME_HEADER_LEN..frame_len],
        len_aligned,
    })
}

/// Iterates over the whole frames in a byte run (as carried by an append). Stops with an error
/// at the first invalid frame.
#[derive(Debug, Clone)]
pub struct FrameIter<'a> {
    bytes: &'a [u8],
}

impl<'a> FrameIter<'a> {
    /// Frames in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

impl<'a> Iterator for FrameIter<'a> {
    type Item = Result<(Frame<'a>, &'a [u8]), CodecError>;

    /// Yields each frame with its raw aligned bytes.
    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        match decode_frame(self.bytes) {
            Ok(frame) => {
                let (raw, rest) = self.bytes.split_at(frame.len_aligned);
                self.bytes = rest;
                Some(Ok((frame, raw)))
            }
            Err(e) => {
                self.bytes = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            entry_type: EntryType::SessionMessage,
            flags: 0,
            term: Term(3),
            session_id: SessionId(7),
            sequence: 9,
            timestamp: -5,
        }
    }

    #[test]
    fn layout_is_the_archives() {
        let mut ours = Vec::new();
        encode_frame(&mut ours, &header(), b"same bytes");
        let mut theirs = Vec::new();
        let h = tandem_archive::FrameHeader {
            frame_type: EntryType::SessionMessage as u16,
            flags: 0,
            term: 3,
            session_id: 7,
            sequence: 9,
            timestamp: -5,
        };
        tandem_archive::encode_frame(&mut theirs, 4096, &h, b"same bytes");
        theirs.resize(ours.len(), 0);
        assert_eq!(ours[..4], theirs[..4]);
        assert_eq!(ours[8..], theirs[8..], "all but the CRC");
        assert_eq!(FRAME_HEADER_LEN, tandem_archive::HEADER_LEN);
    }

    #[test]
    fn aligned_lengths() {
        assert_eq!(frame_len_aligned(0), 48);
        assert_eq!(frame_len_aligned(1), 56);
        assert_eq!(frame_len_aligned(8), 56);
        assert_eq!(frame_len_aligned(64), 112);
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let n = encode_frame(&mut buf, &header(), b"hello");
        assert_eq!(n, 56);
        assert_eq!(buf.len(), 56);
        let f = decode_frame(&buf).unwrap();
        assert_eq!(f.header, header());
        assert_eq!(f.payload, b"hello");
        assert_eq!(f.len_aligned, 56);
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header(), b"hello world");
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = buf.clone();
        bad[11] = 99;
        assert!(matches!(
            decode_frame(&bad),
            Err(CodecError::Version { .. })
        ));
        let mut bad = buf.clone();
        bad[8] = 200;
        assert!(matches!(
            decode_frame(&bad),
            Err(CodecError::UnknownType { .. })
        ));
        let mut bad = buf;
        bad[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(decode_frame(&bad).is_err());
    }
}
