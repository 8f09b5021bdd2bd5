//! The log frame: the unit the log stores, addressed by its byte position.
//!
//! # Format (version 1)
//!
//! Every frame starts on an 8-byte aligned log position and occupies
//! `align_up(frame_len, 8)` bytes. All integers are little-endian.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                  frame_len (header + payload)                 |  0
//! +---------------------------------------------------------------+
//! |                           crc32c                              |  4
//! +-------------------------------+---------------+---------------+
//! |          frame_type           |     flags     |    version    |  8
//! +-------------------------------+---------------+---------------+
//! |                     reserved (must be zero)                   | 12
//! +---------------------------------------------------------------+
//! |                           term (u64)                          | 16
//! +---------------------------------------------------------------+
//! |                        session_id (u64)                       | 24
//! +---------------------------------------------------------------+
//! |                         sequence (u64)                        | 32
//! +---------------------------------------------------------------+
//! |                     timestamp (i64, cluster time)             | 40
//! +---------------------------------------------------------------+
//! |                      payload (frame_len - 48)  ...            | 48
//! +---------------------------------------------------------------+
//! ```
//!
//! * `frame_len == 0` marks the end of the written log: segments are zero
//!   filled when created and everything discarded is zeroed again.
//! * `crc32c` is CRC-32C over the frame's **log position** (u64 LE), then bytes
//!   `0..4` (the length) and `8..frame_len` of the frame. Covering the position
//!   means a frame copied to (or read at) the wrong position never validates,
//!   and a read that starts inside a frame is detected.
//! * `frame_type == 0` is a padding frame: it closes the tail of a segment so
//!   that no frame straddles two segments. Its CRC covers the header only. When
//!   fewer than [`HEADER_LEN`] bytes remain in a segment they are left zero and
//!   are implicitly padding.

use crc32c::{crc32c, crc32c_append};

/// Version of the frame format written by this code.
pub const FRAME_FORMAT_VERSION: u8 = 1;
/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 48;
/// Every frame starts on a multiple of this many bytes.
pub const FRAME_ALIGNMENT: usize = 8;
/// The frame type of padding frames; user frame types must be non-zero.
pub const PADDING_FRAME_TYPE: u16 = 0;

const LEN_OFFSET: usize = 0;
const CRC_OFFSET: usize = 4;
const TYPE_OFFSET: usize = 8;
const FLAGS_OFFSET: usize = 10;
const VERSION_OFFSET: usize = 11;
const RESERVED_OFFSET: usize = 12;
const TERM_OFFSET: usize = 16;
const SESSION_OFFSET: usize = 24;
const SEQUENCE_OFFSET: usize = 32;
const TIMESTAMP_OFFSET: usize = 40;

/// Rounds `len` up to the frame alignment.
#[inline]
pub const fn align_frame_len(len: usize) -> usize {
    (len + FRAME_ALIGNMENT - 1) & !(FRAME_ALIGNMENT - 1)
}

/// The space a frame with `payload_len` bytes of payload takes in the log.
#[inline]
pub const fn aligned_frame_len(payload_len: usize) -> usize {
    align_frame_len(HEADER_LEN + payload_len)
}

/// The fields of a frame header a writer chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Frame type, owned by the layer above; must not be [`PADDING_FRAME_TYPE`].
    pub frame_type: u16,
    /// Free flags for the layer above.
    pub flags: u8,
    /// The leadership term the frame was appended in.
    pub term: u64,
    /// Client session id (0 when not from a session).
    pub session_id: u64,
    /// Sequence number within the session.
    pub sequence: u64,
    /// Cluster timestamp.
    pub timestamp: i64,
}

/// A frame read from the log: its position, header and payload, borrowed
/// straight out of the memory mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Log position of the frame's first byte.
    pub position: u64,
    /// The frame's header.
    pub header: FrameHeader,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Position just after this frame (where the next frame may start).
    #[inline]
    pub fn next_position(&self) -> u64 {
        self.position + aligned_frame_len(self.payload.len()) as u64
    }

    /// Bytes the frame occupies in the log, alignment included.
    #[inline]
    pub fn aligned_len(&self) -> usize {
        aligned_frame_len(self.payload.len())
    }
}

#[inline]
fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

#[inline(always)]
fn h_u16(h: &[u8; HEADER_LEN], offset: usize) -> u16 {
    u16::from_le_bytes([h[offset], h[offset + 1]])
}

#[inline(always)]
fn h_u32(h: &[u8; HEADER_LEN], offset: usize) -> u32 {
    u32::from_le_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]])
}

#[inline(always)]
fn h_u64(h: &[u8; HEADER_LEN], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[offset..offset + 8]);
    u64::from_le_bytes(b)
}

#[inline(always)]
fn header_fields(h: &[u8; HEADER_LEN], frame_type: u16) -> FrameHeader {
    FrameHeader {
        frame_type,
        flags: h[FLAGS_OFFSET],
        term: h_u64(h, TERM_OFFSET),
        session_id: h_u64(h, SESSION_OFFSET),
        sequence: h_u64(h, SEQUENCE_OFFSET),
        timestamp: h_u64(h, TIMESTAMP_OFFSET) as i64,
    }
}

/// Reads the frame length field at the start of `bytes` (which must hold at
/// least 4 bytes). Zero means "no frame here".
#[inline]
pub(crate) fn read_frame_len(bytes: &[u8]) -> u32 {
    get_u32(bytes, LEN_OFFSET)
}

/// Writes the header of a frame of `frame_len` bytes (header + payload) into
/// `buf[..HEADER_LEN]` except the CRC and the length, which [`seal`] writes.
#[inline]
pub(crate) fn write_header(buf: &mut [u8], header: &FrameHeader) {
    debug_assert!(buf.len() >= HEADER_LEN);
    buf[TYPE_OFFSET..TYPE_OFFSET + 2].copy_from_slice(&header.frame_type.to_le_bytes());
    buf[FLAGS_OFFSET] = header.flags;
    buf[VERSION_OFFSET] = FRAME_FORMAT_VERSION;
    buf[RESERVED_OFFSET..RESERVED_OFFSET + 4].copy_from_slice(&[0; 4]);
    buf[TERM_OFFSET..TERM_OFFSET + 8].copy_from_slice(&header.term.to_le_bytes());
    buf[SESSION_OFFSET..SESSION_OFFSET + 8].copy_from_slice(&header.session_id.to_le_bytes());
    buf[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 8].copy_from_slice(&header.sequence.to_le_bytes());
    buf[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8].copy_from_slice(&header.timestamp.to_le_bytes());
}

/// Computes the CRC of the frame in `frame` (exactly `frame_len` bytes for a
/// data frame, [`HEADER_LEN`] bytes for padding) at `position`.
#[inline]
pub(crate) fn frame_crc(position: u64, frame: &[u8]) -> u32 {
    // Position and length in one 12-byte block: two CRC calls per frame.
    let mut prefix = [0u8; 12];
    prefix[..8].copy_from_slice(&position.to_le_bytes());
    prefix[8..].copy_from_slice(&frame[LEN_OFFSET..LEN_OFFSET + 4]);
    crc32c_append(crc32c(&prefix), &frame[TYPE_OFFSET..])
}

/// Writes the length and the CRC of a frame whose header and payload are in
/// place. `frame` is the whole frame (`frame_len` bytes; for padding, the
/// header only, with `frame_len` the padded length).
#[inline]
pub(crate) fn seal(frame: &mut [u8], frame_len: u32, position: u64) {
    frame[LEN_OFFSET..LEN_OFFSET + 4].copy_from_slice(&frame_len.to_le_bytes());
    let crc = frame_crc(position, frame);
    frame[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// What was found at a position while scanning.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid data frame.
    Frame(Frame<'a>),
    /// A valid padding frame of the given aligned length.
    Padding(u64),
    /// No frame: the length field is zero.
    End,
    /// Something that is not a valid frame, with the reason.
    Invalid(&'static str),
}

/// Decodes and validates the frame at `position`, whose bytes start at
/// `bytes[0]`; `bytes` extends to the end of the segment.
pub(crate) fn decode(bytes: &[u8], position: u64, max_frame_len: usize) -> Decoded<'_> {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        // Implicit padding: too short for a header. Only zeros may be here.
        return if bytes.iter().all(|&b| b == 0) {
            Decoded::Padding(bytes.len() as u64)
        } else {
            Decoded::Invalid("non-zero bytes in a segment tail too short for a frame")
        };
    };
    let frame_len = h_u32(h, LEN_OFFSET) as usize;
    if frame_len == 0 {
        return Decoded::End;
    }
    if frame_len < HEADER_LEN {
        return Decoded::Invalid("frame length shorter than the header");
    }
    let frame_type = h_u16(h, TYPE_OFFSET);
    if h[VERSION_OFFSET] != FRAME_FORMAT_VERSION {
        return Decoded::Invalid("unknown frame format version");
    }
    if h_u32(h, RESERVED_OFFSET) != 0 {
        return Decoded::Invalid("reserved header bytes are not zero");
    }
    let stored_crc = h_u32(h, CRC_OFFSET);
    if frame_type == PADDING_FRAME_TYPE {
        if frame_len != bytes.len() || !frame_len.is_multiple_of(FRAME_ALIGNMENT) {
            return Decoded::Invalid("padding frame does not close the segment");
        }
        if frame_crc(position, h) != stored_crc {
            return Decoded::Invalid("checksum mismatch");
        }
        return Decoded::Padding(frame_len as u64);
    }
    if frame_len > max_frame_len {
        return Decoded::Invalid("frame length above the configured maximum");
    }
    if align_frame_len(frame_len) > bytes.len() {
        return Decoded::Invalid("frame extends past the end of its segment");
    }
    let frame = &bytes[..frame_len];
    if frame_crc(position, frame) != stored_crc {
        return Decoded::Invalid("checksum mismatch");
    }
    Decoded::Frame(Frame {
        position,
        header: header_fields(h, frame_type),
        payload: &frame[HEADER_LEN..],
    })
}

/// Decodes a frame whose bytes were validated before (by recovery or by the
/// writer), skipping the CRC. Returns `None` at the end of the written log,
/// `Some(Err(n))` for `n` bytes of padding.
#[inline]
pub(crate) fn decode_trusted(bytes: &[u8], position: u64) -> Option<Result<Frame<'_>, u64>> {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        return Some(Err(bytes.len() as u64));
    };
    let frame_len = h_u32(h, LEN_OFFSET) as usize;
    if frame_len == 0 {
        return None;
    }
    let frame_type = h_u16(h, TYPE_OFFSET);
    if frame_type == PADDING_FRAME_TYPE {
        return Some(Err(frame_len as u64));
    }
    assert!(
        frame_len >= HEADER_LEN && align_frame_len(frame_len) <= bytes.len(),
        "trusted frame at {position} has length {frame_len}"
    );
    Some(Ok(Frame {
        position,
        header: header_fields(h, frame_type),
        payload: &bytes[HEADER_LEN..frame_len],
    }))
}

/// Encodes a complete frame into `out` (cleared first), as it would be
/// stored at `position`. Used to ship frames to another member, whose
/// [`crate::Log::append_encoded`] checks the CRC against its own position.
pub fn encode_frame(out: &mut Vec<u8>, position: u64, header: &FrameHeader, payload: &[u8]) {
    let frame_len = HEADER_LEN + payload.len();
    out.clear();
    out.resize(frame_len, 0);
    write_header(out, header);
    out[HEADER_LEN..].copy_from_slice(payload);
    seal(out, frame_len as u32, position);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            frame_type: 7,
            flags: 3,
            term: 9,
            session_id: 11,
            sequence: 13,
            timestamp: -5,
        }
    }

    fn padded(frame: &[u8]) -> Vec<u8> {
        let mut v = frame.to_vec();
        v.resize(align_frame_len(frame.len()) + 64, 0);
        v
    }

    #[test]
    fn round_trip_and_position_is_covered() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 4096, &header(), b"hello");
        let bytes = padded(&buf);
        match decode(&bytes, 4096, 1 << 20) {
            Decoded::Frame(f) => {
                assert_eq!(f.header, header());
                assert_eq!(f.payload, b"hello");
                assert_eq!(f.next_position(), 4096 + 56);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            decode(&bytes, 4104, 1 << 20),
            Decoded::Invalid("checksum mismatch")
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 0, &header(), &[0xAB; 21]);
        for bit in 0..buf.len() * 8 {
            let mut b = padded(&buf);
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&b, 0, 1 << 20), Decoded::Frame(_)),
                "bit {bit} undetected"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 0, &header(), &[1; 100]);
        let b = padded(&buf);
        assert_eq!(
            decode(&b, 0, 64),
            Decoded::Invalid("frame length above the configured maximum")
        );
        assert_eq!(
            decode(&b[..120], 0, 1 << 20),
            Decoded::Invalid("frame extends past the end of its segment")
        );
        assert_eq!(decode(&[0u8; 64], 0, 1 << 20), Decoded::End);
        assert_eq!(decode(&[0u8; 16], 0, 1 << 20), Decoded::Padding(16));
    }
}
