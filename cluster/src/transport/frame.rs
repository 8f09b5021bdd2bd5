//! Datagram framing, version 1.
//!
//! Every datagram is a 40-byte little-endian header followed by the payload:
//!
//! ```text
//!  0       2       3       4               8
//!  +-------+-------+-------+---------------+
//!  | magic |version| flags |    crc32c     |   magic = 0x4454 ("TD"), version = 1
//!  +-------+-------+-------+---------------+
//!  8                                       16
//!  |             cluster_id (u64)          |
//!  +---------------+-------+---------------+
//!  16              20      22              24
//!  | source_id u32 |stream |payload_len u16|   source_id 0xFFFF_FFFF = a client
//!  +---------------+-------+---------------+
//!  24              28                      32
//!  | message_id u32|  message_len u32      |   message_len = whole message length
//!  +---------------+-------+---------------+
//!  32              36      38              40
//!  | frag_offset   |frag_ix|frag_count     |   byte offset of this fragment, index, count
//!  +---------------+-------+---------------+
//!  40 .. 40+payload_len: payload
//! ```
//!
//! `flags` bit 0 (`FLAG_FRAGMENT`) marks a fragment of a larger message; other bits must be 0.
//! An unfragmented datagram has `frag_offset = 0, frag_index = 0, frag_count = 1,
//! message_len = payload_len`. The CRC-32C covers bytes `0..4` and `8..end` (header without
//! the checksum field, then the payload), so any single-bit flip is detected.

use super::counters::TransportCounters;

/// Size of the datagram header.
pub const HEADER_LEN: usize = 40;
/// Magic at offset 0 ("TD" little-endian).
pub const MAGIC: u16 = 0x4454;
/// Wire format version.
pub const VERSION: u8 = 1;
/// Flag: this datagram carries one fragment of a larger message.
pub const FLAG_FRAGMENT: u8 = 0x01;
/// Reserved source id of clients.
pub const CLIENT_SOURCE_ID: u32 = u32::MAX;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// Stream of member-to-member (consensus/replication) traffic, on the peer sockets.
pub const STREAM_PEER: u16 = 1;
/// Stream of client<->member traffic, on the client sockets.
pub const STREAM_CLIENT: u16 = 2;

/// Decoded header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flags (`FLAG_FRAGMENT`).
    pub flags: u8,
    /// Cluster id.
    pub cluster_id: u64,
    /// Source member id or [`CLIENT_SOURCE_ID`].
    pub source_id: u32,
    /// Stream id.
    pub stream_id: u16,
    /// Message id (per source, for reassembly).
    pub message_id: u32,
    /// Length of the whole message.
    pub message_len: u32,
    /// Byte offset of this fragment in the message.
    pub frag_offset: u32,
    /// Index of this fragment.
    pub frag_index: u16,
    /// Number of fragments of the message.
    pub frag_count: u16,
}

impl Header {
    /// True when this datagram carries a fragment of a larger message.
    pub fn is_fragment(&self) -> bool {
        self.flags & FLAG_FRAGMENT != 0
    }
}

/// A validated datagram borrowing the receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Header.
    pub header: Header,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a header, or length field disagrees with the datagram length.
    BadLength,
    /// CRC-32C mismatch.
    BadChecksum,
    /// Wrong magic or version.
    BadVersion,
    /// Inconsistent flags / fragment fields / stream.
    BadHeader,
    /// Another cluster's traffic.
    WrongCluster,
    /// Source member unknown, or member id not matching the source address.
    UnknownMember,
}

impl DropReason {
    /// Bumps the matching counter.
    pub fn count(self, c: &mut TransportCounters) {
        match self {
            Self::BadLength => c.dropped_bad_length += 1,
            Self::BadChecksum => c.dropped_bad_checksum += 1,
            Self::BadVersion => c.dropped_bad_version += 1,
            Self::BadHeader => c.dropped_bad_header += 1,
            Self::WrongCluster => c.dropped_wrong_cluster += 1,
            Self::UnknownMember => c.dropped_unknown_member += 1,
        }
    }
}

fn crc(buf: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&buf[..4]), &buf[8..])
}

/// Writes header + payload into `out`, returning the datagram length.
///
/// # Panics
/// If `out` is shorter than `HEADER_LEN + payload.len()` or the payload exceeds `u16::MAX`
/// (callers size their buffers from the configured MTU).
pub fn encode(h: &Header, payload: &[u8], out: &mut [u8]) -> usize {
    let len = HEADER_LEN + payload.len();
    let payload_len = u16::try_from(payload.len()).expect("payload fits u16");
    let o = &mut out[..len];
    o[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    o[2] = VERSION;
    o[3] = h.flags;
    o[8..16].copy_from_slice(&h.cluster_id.to_le_bytes());
    o[16..20].copy_from_slice(&h.source_id.to_le_bytes());
    o[20..22].copy_from_slice(&h.stream_id.to_le_bytes());
    o[22..24].copy_from_slice(&payload_len.to_le_bytes());
    o[24..28].copy_from_slice(&h.message_id.to_le_bytes());
    o[28..32].copy_from_slice(&h.message_len.to_le_bytes());
    o[32..36].copy_from_slice(&h.frag_offset.to_le_bytes());
    o[36..38].copy_from_slice(&h.frag_index.to_le_bytes());
    o[38..40].copy_from_slice(&h.frag_count.to_le_bytes());
    o[HEADER_LEN..].copy_from_slice(payload);
    let c = crc(o);
    o[4..8].copy_from_slice(&c.to_le_bytes());
    len
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Validates and decodes one datagram. Never panics, whatever the bytes.
///
/// Checks, in order: length >= header, magic/version, length field, checksum, flags and
/// fragment-field consistency, cluster id. Source address checks are the caller's job.
pub fn decode(buf: &[u8], cluster_id: u64) -> Result<Frame<'_>, DropReason> {
    if buf.len() < HEADER_LEN {
        return Err(DropReason::BadLength);
    }
    if u16_at(buf, 0) != MAGIC || buf[2] != VERSION {
        return Err(DropReason::BadVersion);
    }
    let payload_len = usize::from(u16_at(buf, 22));
    if HEADER_LEN + payload_len != buf.len() {
        return Err(DropReason::BadLength);
    }
    if u32_at(buf, 4) != crc(buf) {
        return Err(DropReason::BadChecksum);
    }
    let header = Header {
        flags: buf[3],
        cluster_id: u64::from_le_bytes(buf[8..16].try_into().unwrap_or([0; 8])),
        source_id: u32_at(buf, 16),
        stream_id: u16_at(buf, 20),
        message_id: u32_at(buf, 24),
        message_len: u32_at(buf, 28),
        frag_offset: u32_at(buf, 32),
        frag_index: u16_at(buf, 36),
        frag_count: u16_at(buf, 38),
    };
    let consistent = if header.flags & !FLAG_FRAGMENT != 0 {
        false
    } else if header.is_fragment() {
        header.frag_count >= 1
            && header.frag_index < header.frag_count
            && u64::from(header.frag_offset) + payload_len as u64 <= u64::from(header.message_len)
            && (payload_len > 0 || header.message_len == 0)
    } else {
        header.frag_count == 1
            && header.frag_index == 0
            && header.frag_offset == 0
            && header.message_len as usize == payload_len
    };
    if !consistent {
        return Err(DropReason::BadHeader);
    }
    if header.cluster_id != cluster_id {
        return Err(DropReason::WrongCluster);
    }
    Ok(Frame {
        header,
        payload: &buf[HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(payload: &[u8]) -> Vec<u8> {
        let h = Header {
            flags: 0,
            cluster_id: 7,
            source_id: 2,
            stream_id: STREAM_PEER,
            message_id: 99,
            message_len: payload.len() as u32,
            frag_offset: 0,
            frag_index: 0,
            frag_count: 1,
        };
        let mut out = vec![0u8; HEADER_LEN + payload.len()];
        let n = encode(&h, payload, &mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn round_trip() {
        let d = sample(b"hello tandem");
        let f = decode(&d, 7).unwrap();
        assert_eq!(f.payload, b"hello tandem");
        assert_eq!(f.header.source_id, 2);
        assert_eq!(f.header.message_id, 99);
        assert_eq!(decode(&d, 8).unwrap_err(), DropReason::WrongCluster);
        assert_eq!(
            decode(&d[..d.len() - 1], 7).unwrap_err(),
            DropReason::BadLength
        );
        assert_eq!(decode(&d[..10], 7).unwrap_err(), DropReason::BadLength);
        let mut v2 = d.clone();
        v2[2] = 2;
        assert_eq!(decode(&v2, 7).unwrap_err(), DropReason::BadVersion);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        for payload in [&b""[..], b"x", &[0xA5; 300][..]] {
            let d = sample(payload);
            for bit in 0..d.len() * 8 {
                let mut m = d.clone();
                m[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&m, 7).is_err(), "flip of bit {bit} undetected");
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, 7);
        }

        #[test]
        fn mutated_valid_datagrams_never_panic_or_pass_unchanged(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let orig = sample(&payload);
            let mut m = orig.clone();
            for (pos, val) in edits {
                let i = pos % m.len();
                m[i] = val;
            }
            if let Some(c) = cut {
                m.truncate(c % (m.len() + 1));
            }
            match decode(&m, 7) {
                // Accepted only if the mutation happened to be a no-op.
                Ok(f) => prop_assert_eq!(&m[..], &orig[..], "accepted {:?}", f.header),
                Err(_) => prop_assert!(m != orig),
            }
        }
    }
}
