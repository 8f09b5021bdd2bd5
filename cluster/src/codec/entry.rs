//! Payloads of log entries (the frame header carries type, term, session, sequence, time).
//!
//! | type                | header session | header sequence   | payload                                          |
//! |---------------------|----------------|-------------------|--------------------------------------------------|
//! | `NewLeadershipTerm` | 0              | 0                 | leader u32, term base position u64               |
//! | `SessionOpen`       | 0 (assigned when applied) | correlation id | client addr u64, accepted u8, principal (u32 len + bytes) |
//! | `SessionClose`      | session        | 0                 | reason u8 (`CloseReason` code)                   |
//! | `SessionMessage`    | session        | client sequence   | the message, raw (handed to the service as is)   |
//! | `TimerEvent`        | 0              | timer generation  | correlation id u64                               |
//! | `SnapshotMarker`    | 0              | 0                 | empty                                            |
//! | `ServiceMessage`    | 0              | service message id| the message, raw                                 |
//! | `OperatorAction`    | 0              | 0                 | action u8 (`OperatorAction` code), origin member u32, request id u64 |
//! | `StateHash`         | 0              | 0                 | payload version u8 (1), snapshot position u64, hash u64 |
//! | `SessionMessages`   | session        | first message's client sequence | count u32 (≥ 2), then per message: length u32, bytes |
//!
//! A `SessionMessages` entry holds consecutive messages of one session (sequences
//! `sequence`, `sequence + 1`, ...): the leader appends the new messages of one client batch
//! as one frame (one header, one checksum) instead of a frame each. Each message is applied
//! exactly as a `SessionMessage` entry with its own sequence would be (see
//! [`crate::consensus::apply`]).
//!
//! Little-endian; the version is the frame's version byte.

use crate::codec::buf::{Reader, Writer, take_validated_var_bytes};
use crate::consensus::types::{ClientAddr, LogPosition, MemberId, OperatorAction};
use crate::error::CodecError;
use tandem_service_api::CloseReason;

/// Payload of a `NewLeadershipTerm` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLeadershipTermPayload {
    /// The leader.
    pub leader: MemberId,
    /// Where the term starts (the position of this entry).
    pub term_base_position: LogPosition,
}

impl NewLeadershipTermPayload {
    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.leader.0);
        out.put_u64(self.term_base_position.0);
    }
    /// Decodes a payload.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, "new leadership term");
        let v = Self {
            leader: MemberId(r.u32()?),
            term_base_position: LogPosition(r.u64()?),
        };
        r.finish()?;
        Ok(v)
    }
}

/// Payload of a `SessionOpen` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOpenPayload<'a> {
    /// Where the client's egress goes.
    pub client: ClientAddr,
    /// The authenticator's decision.
    pub accepted: bool,
    /// The principal (accepted) or the rejection detail (refused).
    pub principal: &'a [u8],
}

impl<'a> SessionOpenPayload<'a> {
    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.client.0);
        out.put_bool(self.accepted);
        out.put_var_bytes(self.principal);
    }
    /// Decodes a payload.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, "session open");
        let v = Self {
            client: ClientAddr(r.u64()?),
            accepted: r.bool()?,
            principal: r.var_bytes()?,
        };
        r.finish()?;
        Ok(v)
    }
}

/// Encodes a `SessionClose` payload.
pub fn encode_session_close(out: &mut Vec<u8>, reason: CloseReason) {
    out.put_u8(reason as u8);
}

/// Decodes a `SessionClose` payload.
///
/// # Errors
/// A [`CodecError`] on malformed input.
pub fn decode_session_close(bytes: &[u8]) -> Result<CloseReason, CodecError> {
    let mut r = Reader::new(bytes, "session close");
    let code = r.u8()?;
    r.finish()?;
    CloseReason::from_code(code).ok_or(CodecError::Invalid {
        what: "close reason",
        value: u64::from(code),
    })
}

/// Encodes a `TimerEvent` payload.
pub fn encode_timer_event(out: &mut Vec<u8>, correlation_id: u64) {
    out.put_u64(correlation_id);
}

/// Decodes a `TimerEvent` payload: the correlation id.
///
/// # Errors
/// A [`CodecError`] on malformed input.
pub fn decode_timer_event(bytes: &[u8]) -> Result<u64, CodecError> {
    let mut r = Reader::new(bytes, "timer event");
    let id = r.u64()?;
    r.finish()?;
    Ok(id)
}

/// Payload of an `OperatorAction` entry: what to do, and who asked (the member the request
/// arrived on, with its request id) so that member can report completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorActionPayload {
    /// The action.
    pub action: OperatorAction,
    /// The member the operator's request arrived on.
    pub origin: MemberId,
    /// The request id given with `Input::Operator` on the origin.
    pub id: u64,
}

impl OperatorActionPayload {
    /// Bytes of the encoded payload.
    pub const LEN: usize = 1 + 4 + 8;

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.action.code());
        out.put_u32(self.origin.0);
        out.put_u64(self.id);
    }
    /// Decodes a payload.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input or an unknown action.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, "operator action");
        let code = r.u8()?;
        let action = OperatorAction::from_code(code).ok_or(CodecError::Invalid {
            what: "operator action",
            value: u64::from(code),
        })?;
        let v = Self {
            action,
            origin: MemberId(r.u32()?),
            id: r.u64()?,
        };
        r.finish()?;
        Ok(v)
    }
}

/// Payload of a `StateHash` entry: the leader's hash of its service state at a snapshot
/// position (DESIGN §5: followers compare it with their own and report divergence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateHashPayload {
    /// The snapshot position the hash was computed at.
    pub position: LogPosition,
    /// The hash (from the node's state-hash hook).
    pub hash: u64,
}

impl StateHashPayload {
    /// Version of the payload layout written by this build.
    pub const VERSION: u8 = 1;
    /// Bytes of the encoded payload.
    pub const LEN: usize = 1 + 8 + 8;

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(Self::VERSION);
        out.put_u64(self.position.0);
        out.put_u64(self.hash);
    }
    /// Decodes a payload.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input, an unknown version or a zero position.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, "state hash");
        let version = r.u8()?;
        if version != Self::VERSION {
            return Err(CodecError::Version {
                what: "state hash",
                version,
            });
        }
        let position = r.u64()?;
        if position == 0 {
            return Err(CodecError::Invalid {
                what: "state hash position",
                value: 0,
            });
        }
        let v = Self {
            position: LogPosition(position),
            hash: r.u64()?,
        };
        r.finish()?;
        Ok(v)
    }
}

/// Bytes a `SessionMessages` payload takes before its first message (the count).
pub const SESSION_MESSAGES_HEADER_LEN: usize = 4;
/// Bytes each message of a `SessionMessages` payload takes besides its own bytes (its length).
pub const SESSION_MESSAGES_RECORD_OVERHEAD: usize = 4;

/// Starts a `SessionMessages` payload in `out` (cleared first), with no message yet.
pub fn begin_session_messages(out: &mut Vec<u8>) {
    out.clear();
    out.put_u32(0);
}

/// Appends a message to a payload begun with [`begin_session_messages`].
///
/// # Panics
/// If `out` is shorter than the count, or the count or the message's length overflows `u32`.
pub fn push_session_message(out: &mut Vec<u8>, message: &[u8]) {
    let count = u32::from_le_bytes(out[..4].try_into().expect("a begun payload"));
    out[..4].copy_from_slice(&(count.checked_add(1).expect("count fits u32")).to_le_bytes());
    out.put_var_bytes(message);
}

/// The messages of a `SessionMessages` payload, validated as a whole: iterating yields each
/// message in order.
#[derive(Debug, Clone)]
pub struct SessionMessages<'a> {
    left: u32,
    records: &'a [u8],
}

impl<'a> SessionMessages<'a> {
    /// Decodes and validates a payload: the count, then exactly that many length-prefixed
    /// messages and nothing after them.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input, or a count below 2 (one message is a
    /// `SessionMessage` entry).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, "session messages");
        let count = r.u32()?;
        if count < 2 {
            return Err(CodecError::Invalid {
                what: "session messages count",
                value: u64::from(count),
            });
        }
        let records = r.rest_of_var_bytes(count as usize, "session messages record")?;
        Ok(Self {
            left: count,
            records,
        })
    }
}

impl<'a> Iterator for SessionMessages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated in `decode`.
        Some(take_validated_var_bytes(&mut self.records))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for SessionMessages<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_messages_round_trip_and_reject_malformed_payloads() {
        let mut b = Vec::new();
        begin_session_messages(&mut b);
        assert_eq!(b, 0u32.to_le_bytes(), "a count of 0");
        let messages: [&[u8]; 3] = [b"first", b"", b"the third one"];
        for m in messages {
            push_session_message(&mut b, m);
        }
        assert_eq!(b[..4], 3u32.to_le_bytes(), "a count of 3");
        assert_eq!(
            b.len(),
            SESSION_MESSAGES_HEADER_LEN
                + messages
                    .iter()
                    .map(|m| SESSION_MESSAGES_RECORD_OVERHEAD + m.len())
                    .sum::<usize>()
        );
        let decoded = SessionMessages::decode(&b).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded.collect::<Vec<_>>(), messages.to_vec());
        // Every truncation is an error, never a panic or a short batch.
        for cut in 0..b.len() {
            assert!(SessionMessages::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        // Trailing bytes, a count above what is there, a length past the end.
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(SessionMessages::decode(&trailing).is_err());
        let mut more = b.clone();
        more[..4].copy_from_slice(&4u32.to_le_bytes());
        assert!(SessionMessages::decode(&more).is_err());
        let mut long = b.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SessionMessages::decode(&long).is_err());
        // One message (or none) is not a batch.
        for n in 0..2 {
            let mut one = Vec::new();
            begin_session_messages(&mut one);
            for _ in 0..n {
                push_session_message(&mut one, b"x");
            }
            assert!(SessionMessages::decode(&one).is_err(), "{n} message(s)");
        }
    }

    #[test]
    fn round_trips_and_errors() {
        let mut b = Vec::new();
        let nlt = NewLeadershipTermPayload {
            leader: MemberId(2),
            term_base_position: LogPosition(4096),
        };
        nlt.encode(&mut b);
        assert_eq!(NewLeadershipTermPayload::decode(&b), Ok(nlt));
        assert!(NewLeadershipTermPayload::decode(&b[..5]).is_err());

        let mut b = Vec::new();
        let open = SessionOpenPayload {
            client: ClientAddr(9),
            accepted: true,
            principal: b"alice",
        };
        open.encode(&mut b);
        assert_eq!(SessionOpenPayload::decode(&b), Ok(open));
        for cut in 0..b.len() {
            assert!(SessionOpenPayload::decode(&b[..cut]).is_err());
        }
        b[8] = 7;
        assert!(SessionOpenPayload::decode(&b).is_err());

        let mut b = Vec::new();
        encode_session_close(&mut b, CloseReason::Timeout);
        assert_eq!(decode_session_close(&b), Ok(CloseReason::Timeout));
        assert!(decode_session_close(&[9]).is_err());
        assert!(decode_session_close(&[]).is_err());

        let mut b = Vec::new();
        encode_timer_event(&mut b, 77);
        assert_eq!(decode_timer_event(&b), Ok(77));
        assert!(decode_timer_event(&b[..7]).is_err());

        for action in [
            OperatorAction::Snapshot,
            OperatorAction::Suspend,
            OperatorAction::Resume,
            OperatorAction::Shutdown,
            OperatorAction::Abort,
        ] {
            let mut b = Vec::new();
            let p = OperatorActionPayload {
                action,
                origin: MemberId(2),
                id: 0xDEAD_BEEF,
            };
            p.encode(&mut b);
            assert_eq!(b.len(), OperatorActionPayload::LEN);
            assert_eq!(OperatorActionPayload::decode(&b), Ok(p));
            for cut in 0..b.len() {
                assert!(OperatorActionPayload::decode(&b[..cut]).is_err());
            }
            let mut extra = b.clone();
            extra.push(0);
            assert!(OperatorActionPayload::decode(&extra).is_err());
        }
        let mut b = Vec::new();
        let sh = StateHashPayload {
            position: LogPosition(4096),
            hash: 0x0123_4567_89AB_CDEF,
        };
        sh.encode(&mut b);
        assert_eq!(b.len(), StateHashPayload::LEN);
        assert_eq!(StateHashPayload::decode(&b), Ok(sh));
        for cut in 0..b.len() {
            assert!(StateHashPayload::decode(&b[..cut]).is_err());
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(StateHashPayload::decode(&extra).is_err());
        let mut bad_version = b.clone();
        bad_version[0] = 2;
        assert!(matches!(
            StateHashPayload::decode(&bad_version),
            Err(CodecError::Version { .. })
        ));
        let mut zero = Vec::new();
        StateHashPayload {
            position: LogPosition(0),
            hash: 1,
        }
        .encode(&mut zero);
        assert!(StateHashPayload::decode(&zero).is_err());

        for bad in [0u8, 6, 255] {
            let mut b = vec![bad];
            b.extend_from_slice(&[0; 12]);
            assert!(OperatorActionPayload::decode(&b).is_err(), "code {bad}");
        }
    }
}
