//! rkyv helpers shared by the samples: validated zero-copy access to bytes that may not be
//! aligned, decoding, and encoding into a reused buffer.
//!
//! rkyv reads an archive in place, so its bytes must be aligned for the archived root type.
//! Log payloads are 8-byte aligned in the log, which is enough for every sample message; but
//! the samples check rather than assume, and copy into a scratch [`AlignedVec`] (reused, so
//! it allocates only while it grows) when the bytes are misaligned.

use std::fmt;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{Error, Strategy};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Portable, Serialize};

/// A message or snapshot that is not a valid archive of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed archive: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// `bytes` itself when it is aligned to `align`, else a copy of it in `scratch`.
pub fn aligned<'a>(bytes: &'a [u8], align: usize, scratch: &'a mut AlignedVec) -> &'a [u8] {
    debug_assert!(align.is_power_of_two() && align <= AlignedVec::<16>::ALIGNMENT);
    if (bytes.as_ptr() as usize).is_multiple_of(align) {
        bytes
    } else {
        scratch.clear();
        scratch.extend_from_slice(bytes);
        scratch.as_slice()
    }
}

/// Validates `bytes` as an archived `T` and returns it, zero-copy where `bytes` is aligned.
///
/// # Errors
/// [`DecodeError`] if the bytes are not a valid archive (never panics).
pub fn access<'a, T>(
    bytes: &'a [u8],
    scratch: &'a mut AlignedVec,
) -> Result<&'a T::Archived, DecodeError>
where
    T: Archive,
    T::Archived: Portable + for<'b> CheckBytes<HighValidator<'b, Error>>,
{
    let bytes = aligned(bytes, align_of::<T::Archived>(), scratch);
    rkyv::access::<T::Archived, Error>(bytes).map_err(|e| DecodeError(e.to_string()))
}

/// Validates and deserializes an archived `T`.
///
/// # Errors
/// [`DecodeError`] if the bytes are not a valid archive (never panics).
pub fn decode<T>(bytes: &[u8]) -> Result<T, DecodeError>
where
    T: Archive,
    T::Archived:
        for<'b> CheckBytes<HighValidator<'b, Error>> + Deserialize<T, Strategy<Pool, Error>>,
{
    let mut scratch = AlignedVec::new();
    let bytes = aligned(bytes, align_of::<T::Archived>(), &mut scratch);
    rkyv::from_bytes::<T, Error>(bytes).map_err(|e| DecodeError(e.to_string()))
}

/// Serializes `value` into `buf` (cleared first), reusing its capacity.
pub fn encode_into<T>(value: &T, buf: &mut AlignedVec)
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, Error>>,
{
    let mut out = std::mem::take(buf);
    out.clear();
    *buf = rkyv::api::high::to_bytes_in::<_, Error>(value, out)
        .expect("sample types always serialize");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::{Event, Request, Side};

    #[test]
    fn misaligned_bytes_are_copied_and_read() {
        let req = Request::Cancel {
            instrument: 1,
            order_id: 42,
        };
        let bytes = req.encode();
        let mut shifted = AlignedVec::<16>::new();
        shifted.extend_from_slice(&[0]);
        shifted.extend_from_slice(&bytes);
        let mut scratch = AlignedVec::new();
        let archived = access::<Request>(&shifted[1..], &mut scratch).unwrap();
        assert!(matches!(archived, ArchivedRequestAlias::Cancel { .. }));
        assert_eq!(Request::decode(&shifted[1..]).unwrap(), req);
    }

    type ArchivedRequestAlias = crate::matching::messages::ArchivedRequest;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut scratch = AlignedVec::new();
        assert!(access::<Request>(&[], &mut scratch).is_err());
        assert!(access::<Request>(&[0xFF; 3], &mut scratch).is_err());
        let mut bytes = Request::Cancel {
            instrument: 1,
            order_id: 2,
        }
        .encode();
        // Any single corrupted byte decodes to something or to an error: never a panic.
        for i in 0..bytes.len() {
            for v in [0x00, 0x07, 0x80, 0xFF] {
                let keep = bytes[i];
                bytes[i] = v;
                let _ = Request::decode(&bytes);
                let _ = access::<Request>(&bytes, &mut scratch);
                bytes[i] = keep;
            }
        }
        let truncated = &bytes[..bytes.len() - 1];
        assert!(Request::decode(truncated).is_err());
        let event = Event::Filled {
            instrument: 0,
            order_id: 1,
            client_order_id: 2,
            side: Side::Sell,
            price: 3,
            quantity: 4,
            leaves: 5,
            liquidity: crate::matching::Liquidity::Maker,
        };
        let mut buf = AlignedVec::new();
        encode_into(&event, &mut buf);
        assert_eq!(Event::decode(&buf).unwrap(), event);
    }
}
