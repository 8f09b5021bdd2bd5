//! Messages between clients and the cluster.
//!
//! Same 2-byte prefix as the peer protocol (`version`, `type`), then little-endian fields.
//! Version [`CLIENT_VERSION`]. Ingress (client to cluster) and egress (cluster to client) use
//! separate type spaces.
//!
//! Ingress types: 1 `Connect`, 2 `Attach`, 3 `Message`, 4 `KeepAlive`, 5 `Close`, 6 `Batch`.
//! A batch carries up to [`MAX_BATCH_MESSAGES`] messages of one session with consecutive
//! sequences, and the client's acknowledgement of the egress it received (the leader closes a
//! session whose client falls too far behind: a slow consumer). With no messages it is a
//! keep-alive that acknowledges egress. Its layout:
//!
//! ```text
//!  0       1       2                               10                              18
//!  +-------+-------+-------------------------------+-------------------------------+
//!  |version| 6     |        session (u64)          |   acked_egress_seq (u64)      |
//!  +-------+-------+-------------------------------+---------------+---------------+
//!  18                              26              28
//!  |     first_sequence (u64)      |  count (u16)  |  count records: len (u32), bytes
//!  +-------------------------------+---------------+----------------------------------
//! ```
//!
//! Egress types: 1 `SessionEvent`, 2 `Reply`, 3 `Ack`, 4 `NewLeader`, 5 `Replies`. A
//! `Replies` batch carries up to [`MAX_BATCH_MESSAGES`] replies of one session with
//! consecutive egress sequences: the leader joins each reply to the one it queued just before
//! for the same client when it follows it in the same session ([`extend_replies`]), within
//! one datagram, so the replies of a step travel together; a lone reply goes as `Reply`.
//! [`egress_messages`] reads either as `Reply` messages, one per reply. Its layout:
//!
//! ```text
//!  0       1       2                               10                              18
//!  +-------+-------+-------------------------------+-------------------------------+
//!  |version| 5     |        session (u64)          |     committed_seq (u64)       |
//!  +-------+-------+-------------------------------+---------------+---------------+
//!  18                              26              28
//!  |   first_egress_seq (u64)      |  count (u16)  |  count records: request_seq (u64),
//!  +-------------------------------+---------------+  len (u32), bytes
//! ```

use crate::codec::buf::{Reader, Writer, take_validated_var_bytes};
use crate::consensus::types::{MemberId, SessionId, Term};
use crate::error::CodecError;

/// Version of the client protocol written by this build.
pub const CLIENT_VERSION: u8 = 1;

/// Most messages in one [`Ingress::Batch`].
pub const MAX_BATCH_MESSAGES: usize = 64;
/// Bytes of a batch before its records.
pub const BATCH_HEADER_LEN: usize = 28;
/// Bytes a record adds to a batch besides its message (its length).
pub const BATCH_RECORD_OVERHEAD: usize = 4;
const BATCH_TYPE: u8 = 6;
/// Bytes of a reply batch before its records.
pub const REPLY_BATCH_HEADER_LEN: usize = 28;
/// Bytes a record adds to a reply batch besides its reply (request sequence and length).
pub const REPLY_RECORD_OVERHEAD: usize = 12;
const REPLIES_TYPE: u8 = 5;
/// Bytes of a `Reply` before its payload.
const REPLY_HEADER_LEN: usize = 34;
const BATCH_ACK_AT: usize = 10;
const BATCH_COUNT_AT: usize = 26;

/// Why the cluster refused a connect (the `value` of a `Rejected` session event answering a
/// connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The authenticator refused the credentials.
    Authentication,
    /// The cluster holds its maximum number of sessions.
    TooManySessions,
    /// A code this build does not know.
    Other(u64),
}

impl RejectCode {
    /// The code on the wire.
    pub fn code(self) -> u64 {
        match self {
            Self::Authentication => 1,
            Self::TooManySessions => 2,
            Self::Other(c) => c,
        }
    }

    /// The reason for a code on the wire.
    pub fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Authentication,
            2 => Self::TooManySessions,
            c => Self::Other(c),
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Authentication => f.write_str("refused by the authenticator"),
            Self::TooManySessions => f.write_str("the cluster holds its maximum of sessions"),
            Self::Other(c) => write!(f, "reason code {c}"),
        }
    }
}

/// Messages of one session with consecutive sequences, validated when decoded (see the module
/// docs for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageBatch<'a> {
    /// The session.
    pub session: SessionId,
    /// The highest egress sequence the client received without a gap.
    pub acked_egress_seq: u64,
    /// The sequence of the first message (the others follow one by one).
    pub first_sequence: u64,
    count: u16,
    records: &'a [u8],
}

impl<'a> MessageBatch<'a> {
    /// Messages in the batch (0 for a keep-alive).
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether the batch holds no message (a keep-alive).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The messages with their sequences, in order.
    pub fn iter(&self) -> MessageBatchIter<'a> {
        MessageBatchIter {
            next_sequence: self.first_sequence,
            left: self.count,
            records: self.records,
        }
    }

    fn decode(r: &mut Reader<'a>) -> Result<Self, CodecError> {
        let session = SessionId(r.u64()?);
        let acked_egress_seq = r.u64()?;
        let first_sequence = r.u64()?;
        let count = r.u16()?;
        if usize::from(count) > MAX_BATCH_MESSAGES {
            return Err(CodecError::Invalid {
                what: "batch message count",
                value: u64::from(count),
            });
        }
        if first_sequence.checked_add(u64::from(count)).is_none() {
            return Err(CodecError::Invalid {
                what: "batch first sequence",
                value: first_sequence,
            });
        }
        let records = r.rest_of_var_bytes(usize::from(count), "batch record")?;
        Ok(Self {
            session,
            acked_egress_seq,
            first_sequence,
            count,
            records,
        })
    }
}

/// Iterates a [`MessageBatch`]: `(sequence, message)`.
#[derive(Debug, Clone)]
pub struct MessageBatchIter<'a> {
    next_sequence: u64,
    left: u16,
    records: &'a [u8],
}

impl<'a> Iterator for MessageBatchIter<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Validated when the batch was decoded.
        let payload = take_validated_var_bytes(&mut self.records);
        self.left -= 1;
        let seq = self.next_sequence;
        self.next_sequence += 1;
        Some((seq, payload))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for MessageBatchIter<'_> {}

/// Starts a batch in `out` (cleared first) with no messages: a keep-alive until
/// [`push_batch_message`] adds some.
pub fn begin_batch(out: &mut Vec<u8>, session: SessionId, first_sequence: u64) {
    out.clear();
    out.put_u8(CLIENT_VERSION);
    out.put_u8(BATCH_TYPE);
    out.put_u64(session.0);
    out.put_u64(0);
    out.put_u64(first_sequence);
    out.extend_from_slice(&0u16.to_le_bytes());
    debug_assert_eq!(out.len(), BATCH_HEADER_LEN);
}

/// Appends the next message to a batch started with [`begin_batch`].
///
/// # Panics
/// If the batch already holds [`MAX_BATCH_MESSAGES`], or `out` does not hold a batch.
pub fn push_batch_message(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(out.len() >= BATCH_HEADER_LEN && out[1] == BATCH_TYPE);
    let count = batch_count(out);
    assert!(count < MAX_BATCH_MESSAGES, "batch full");
    out.put_var_bytes(payload);
    out[BATCH_COUNT_AT..BATCH_COUNT_AT + 2].copy_from_slice(&(count as u16 + 1).to_le_bytes());
}

/// Messages in the batch `out` holds.
///
/// # Panics
/// If `out` does not hold a batch.
pub fn batch_count(out: &[u8]) -> usize {
    assert!(out.len() >= BATCH_HEADER_LEN && out[1] == BATCH_TYPE);
    usize::from(u16::from_le_bytes([
        out[BATCH_COUNT_AT],
        out[BATCH_COUNT_AT + 1],
    ]))
}

/// The sequence of the first message of the batch `out` holds.
///
/// # Panics
/// If `out` does not hold a batch.
pub fn batch_first_sequence(out: &[u8]) -> u64 {
    assert!(out.len() >= BATCH_HEADER_LEN && out[1] == BATCH_TYPE);
    u64::from_le_bytes(out[18..26].try_into().expect("8 bytes"))
}

/// Sets the egress acknowledgement of the batch `out` holds (done last, just before sending).
///
/// # Panics
/// If `out` does not hold a batch.
pub fn set_batch_ack(out: &mut [u8], acked_egress_seq: u64) {
    assert!(out.len() >= BATCH_HEADER_LEN && out[1] == BATCH_TYPE);
    out[BATCH_ACK_AT..BATCH_ACK_AT + 8].copy_from_slice(&acked_egress_seq.to_le_bytes());
}

/// A message from a client to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress<'a> {
    /// Open a session. The leader runs the authenticator on `credentials`.
    Connect {
        /// Chosen by the client; echoed in the answer.
        correlation_id: u64,
        /// Given to the authenticator.
        credentials: &'a [u8],
    },
    /// Re-attach to an existing session after failover (from the address that opened it: a
    /// session belongs to that address; anything naming it from another is refused): the leader
    /// answers with the highest committed sequence and resends cached replies after
    /// `last_egress_seq`.
    Attach {
        /// The session.
        session: SessionId,
        /// The highest reply sequence the client has received.
        last_egress_seq: u64,
    },
    /// A message for the service.
    Message {
        /// The session.
        session: SessionId,
        /// The client's sequence number, 1, 2, 3, ... per session.
        sequence: u64,
        /// The message.
        payload: &'a [u8],
    },
    /// Keeps the session alive.
    KeepAlive {
        /// The session.
        session: SessionId,
    },
    /// Close the session.
    Close {
        /// The session.
        session: SessionId,
    },
    /// Messages with consecutive sequences and an egress acknowledgement (a keep-alive when
    /// empty).
    Batch(MessageBatch<'a>),
}

/// What a session event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventCode {
    /// Connected or re-attached; `value` = highest committed sequence.
    Ok = 0,
    /// The connect was refused (`value`: a [`RejectCode`]), or the message `value` was too
    /// large.
    Rejected = 1,
    /// This member does not lead: talk to `leader` (or retry if unknown).
    Redirect = 2,
    /// The session was closed; for a timeout, the outcome of messages after sequence `value`
    /// is unknown ("session expired").
    Closed = 3,
    /// The message's sequence is too far ahead; resend from `value` + 1.
    SequenceGap = 4,
    /// No such session.
    UnknownSession = 5,
    /// The leader is busy (too many sessions or pending messages, or an operator suspended
    /// the cluster: nothing new is appended until resumed); retry later.
    Busy = 6,
}

impl EventCode {
    fn from_code(code: u8) -> Result<Self, CodecError> {
        Ok(match code {
            0 => Self::Ok,
            1 => Self::Rejected,
            2 => Self::Redirect,
            3 => Self::Closed,
            4 => Self::SequenceGap,
            5 => Self::UnknownSession,
            6 => Self::Busy,
            _ => {
                return Err(CodecError::Invalid {
                    what: "event code",
                    value: u64::from(code),
                });
            }
        })
    }
}

/// A message from a member to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress<'a> {
    /// The outcome of a connect, attach or message, or a session's closing.
    SessionEvent {
        /// The connect's correlation id (0 when not answering a connect).
        correlation_id: u64,
        /// The session (0 if none).
        session: SessionId,
        /// What happened.
        code: EventCode,
        /// The leader, if known.
        leader: Option<MemberId>,
        /// The sender's term.
        term: Term,
        /// Code-specific value (see [`EventCode`]).
        value: u64,
    },
    /// A reply the service offered, from the session's reply cache.
    Reply {
        /// The session.
        session: SessionId,
        /// The reply's sequence in the session's egress stream (1, 2, 3, ...).
        egress_seq: u64,
        /// The client sequence whose application produced the reply (0 if none).
        request_seq: u64,
        /// Highest client sequence committed and applied for this session.
        committed_seq: u64,
        /// The reply.
        payload: &'a [u8],
    },
    /// The highest client sequence committed and applied for the session.
    Ack {
        /// The session.
        session: SessionId,
        /// Highest committed sequence.
        committed_seq: u64,
    },
    /// A new leader took over: send to it from now on.
    NewLeader {
        /// The session.
        session: SessionId,
        /// The new leader.
        leader: MemberId,
        /// Its term.
        term: Term,
    },
    /// Replies of one session with consecutive egress sequences.
    Replies(ReplyBatch<'a>),
}

/// Replies of one session with consecutive egress sequences, validated when decoded (see the
/// module docs for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyBatch<'a> {
    /// The session.
    pub session: SessionId,
    /// Highest client sequence committed and applied for the session.
    pub committed_seq: u64,
    /// The egress sequence of the first reply (the others follow one by one).
    pub first_egress_seq: u64,
    count: u16,
    records: &'a [u8],
}

impl<'a> ReplyBatch<'a> {
    /// Replies in the batch.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether the batch holds no reply.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The replies, in egress order, each as an [`Egress::Reply`].
    pub fn iter(&self) -> ReplyBatchIter<'a> {
        ReplyBatchIter {
            session: self.session,
            committed_seq: self.committed_seq,
            next_egress_seq: self.first_egress_seq,
            left: self.count,
            records: self.records,
        }
    }

    fn decode(r: &mut Reader<'a>) -> Result<Self, CodecError> {
        let session = SessionId(r.u64()?);
        let committed_seq = r.u64()?;
        let first_egress_seq = r.u64()?;
        let count = r.u16()?;
        if count == 0 || usize::from(count) > MAX_BATCH_MESSAGES {
            return Err(CodecError::Invalid {
                what: "reply batch count",
                value: u64::from(count),
            });
        }
        if first_egress_seq.checked_add(u64::from(count)).is_none() {
            return Err(CodecError::Invalid {
                what: "reply batch first egress sequence",
                value: first_egress_seq,
            });
        }
        let records = r.rest();
        let mut check = Reader::new(records, "reply batch record");
        for _ in 0..count {
            check.u64()?;
            check.var_bytes()?;
        }
        check.finish()?;
        Ok(Self {
            session,
            committed_seq,
            first_egress_seq,
            count,
            records,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        begin_reply_batch(out, self.session, self.first_egress_seq, self.committed_seq);
        out.extend_from_slice(self.records);
        out[start + BATCH_COUNT_AT..start + BATCH_COUNT_AT + 2]
            .copy_from_slice(&self.count.to_le_bytes());
    }
}

/// Iterates a [`ReplyBatch`]: each reply as an [`Egress::Reply`].
#[derive(Debug, Clone)]
pub struct ReplyBatchIter<'a> {
    session: SessionId,
    committed_seq: u64,
    next_egress_seq: u64,
    left: u16,
    records: &'a [u8],
}

impl<'a> Iterator for ReplyBatchIter<'a> {
    type Item = Egress<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Validated when the batch was decoded.
        let request_seq = u64::from_le_bytes(self.records[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(self.records[8..12].try_into().expect("4 bytes")) as usize;
        let payload = &self.records[12..12 + len];
        self.records = &self.records[12 + len..];
        self.left -= 1;
        let egress_seq = self.next_egress_seq;
        self.next_egress_seq += 1;
        Some(Egress::Reply {
            session: self.session,
            egress_seq,
            request_seq,
            committed_seq: self.committed_seq,
            payload,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for ReplyBatchIter<'_> {}

/// Starts a reply batch at the end of `out` (which may hold other messages before it), with
/// no reply yet: add at least one with [`push_reply_record`] before sending it.
pub fn begin_reply_batch(
    out: &mut Vec<u8>,
    session: SessionId,
    first_egress_seq: u64,
    committed_seq: u64,
) {
    out.put_u8(CLIENT_VERSION);
    out.put_u8(REPLIES_TYPE);
    out.put_u64(session.0);
    out.put_u64(committed_seq);
    out.put_u64(first_egress_seq);
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// Appends the next reply to the batch that starts at `out[start..]`
/// ([`begin_reply_batch`]); returns the replies it now holds.
///
/// # Panics
/// If the batch already holds [`MAX_BATCH_MESSAGES`] replies, or `out[start..]` does not hold a
/// reply batch.
pub fn push_reply_record(
    out: &mut Vec<u8>,
    start: usize,
    request_seq: u64,
    payload: &[u8],
) -> usize {
    assert!(out.len() >= start + REPLY_BATCH_HEADER_LEN && out[start + 1] == REPLIES_TYPE);
    let at = start + BATCH_COUNT_AT;
    let count = usize::from(u16::from_le_bytes([out[at], out[at + 1]]));
    assert!(count < MAX_BATCH_MESSAGES, "reply batch full");
    out.put_u64(request_seq);
    out.put_var_bytes(payload);
    out[at..at + 2].copy_from_slice(&(count as u16 + 1).to_le_bytes());
    count + 1
}

/// Joins a reply to the reply message that starts at `out[start..]` and runs to the end of
/// `out` — a `Reply` (made a `Replies` batch of two) or a `Replies` batch — when it belongs to
/// the same session, is next in egress order, and the batch stays within
/// [`MAX_BATCH_MESSAGES`] and `max_bytes`; the batch then reports `committed_seq`. Returns
/// whether it did (if not, `out` is unchanged).
#[allow(clippy::too_many_arguments)]
pub fn extend_replies(
    out: &mut Vec<u8>,
    start: usize,
    session: SessionId,
    egress_seq: u64,
    request_seq: u64,
    committed_seq: u64,
    payload: &[u8],
    max_bytes: usize,
) -> bool {
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
    let msg = &out[start..];
    if msg.len() < 2 || msg[0] != CLIENT_VERSION {
        return false;
    }
    let record = REPLY_RECORD_OVERHEAD + payload.len();
    match msg[1] {
        2 if msg.len() >= REPLY_HEADER_LEN => {
            let old_len = msg.len() - REPLY_HEADER_LEN;
            if u64_at(msg, 2) != session.0
                || u64_at(msg, 10).checked_add(1) != Some(egress_seq)
                || REPLY_BATCH_HEADER_LEN + REPLY_RECORD_OVERHEAD + old_len + record > max_bytes
            {
                return false;
            }
            let (first, old_request) = (u64_at(msg, 10), u64_at(msg, 18));
            // Batch header and first record take 6 bytes more than the reply's header.
            let end = out.len();
            let shift = REPLY_BATCH_HEADER_LEN + REPLY_RECORD_OVERHEAD - REPLY_HEADER_LEN;
            out.resize(end + shift, 0);
            out.copy_within(
                start + REPLY_HEADER_LEN..end,
                start + REPLY_HEADER_LEN + shift,
            );
            let b = &mut out[start..];
            b[1] = REPLIES_TYPE;
            b[10..18].copy_from_slice(&committed_seq.to_le_bytes());
            b[18..26].copy_from_slice(&first.to_le_bytes());
            b[26..28].copy_from_slice(&1u16.to_le_bytes());
            b[28..36].copy_from_slice(&old_request.to_le_bytes());
            b[36..40].copy_from_slice(&(old_len as u32).to_le_bytes());
            push_reply_record(out, start, request_seq, payload);
            true
        }
        REPLIES_TYPE if msg.len() >= REPLY_BATCH_HEADER_LEN => {
            let count = u16::from_le_bytes([msg[BATCH_COUNT_AT], msg[BATCH_COUNT_AT + 1]]);
            if u64_at(msg, 2) != session.0
                || u64_at(msg, 18).checked_add(u64::from(count)) != Some(egress_seq)
                || usize::from(count) >= MAX_BATCH_MESSAGES
                || msg.len() + record > max_bytes
            {
                return false;
            }
            out[start + 10..start + 18].copy_from_slice(&committed_seq.to_le_bytes());
            push_reply_record(out, start, request_seq, payload);
            true
        }
        _ => false,
    }
}

/// The messages of one egress datagram, a [`Egress::Replies`] batch read as one
/// [`Egress::Reply`] per reply: what a client acts on. See [`egress_messages`].
#[derive(Debug, Clone)]
pub enum EgressMessages<'a> {
    /// A message other than a batch (taken once).
    One(Option<Egress<'a>>),
    /// The replies of a batch.
    Batch(ReplyBatchIter<'a>),
}

impl<'a> Iterator for EgressMessages<'a> {
    type Item = Egress<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::One(m) => m.take(),
            Self::Batch(it) => it.next(),
        }
    }
}

/// Decodes one egress datagram into the messages a client acts on: a reply batch yields its
/// replies one by one as [`Egress::Reply`], any other message itself.
///
/// # Errors
/// A [`CodecError`] on malformed input (never panics).
pub fn egress_messages(bytes: &[u8]) -> Result<EgressMessages<'_>, CodecError> {
    Ok(match Egress::decode(bytes)? {
        Egress::Replies(b) => EgressMessages::Batch(b.iter()),
        m => EgressMessages::One(Some(m)),
    })
}

impl Ingress<'_> {
    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(CLIENT_VERSION);
        match *self {
            Self::Connect {
                correlation_id,
                credentials,
            } => {
                out.put_u8(1);
                out.put_u64(correlation_id);
                out.put_var_bytes(credentials);
            }
            Self::Attach {
                session,
                last_egress_seq,
            } => {
                out.put_u8(2);
                out.put_u64(session.0);
                out.put_u64(last_egress_seq);
            }
            Self::Message {
                session,
                sequence,
                payload,
            } => {
                out.put_u8(3);
                out.put_u64(session.0);
                out.put_u64(sequence);
                out.extend_from_slice(payload);
            }
            Self::KeepAlive { session } => {
                out.put_u8(4);
                out.put_u64(session.0);
            }
            Self::Close { session } => {
                out.put_u8(5);
                out.put_u64(session.0);
            }
            Self::Batch(b) => {
                out.put_u8(BATCH_TYPE);
                out.put_u64(b.session.0);
                out.put_u64(b.acked_egress_seq);
                out.put_u64(b.first_sequence);
                out.extend_from_slice(&b.count.to_le_bytes());
                out.extend_from_slice(b.records);
            }
        }
    }

    /// The session the message names (`None` for a connect).
    pub fn session(&self) -> Option<SessionId> {
        match *self {
            Self::Connect { .. } => None,
            Self::Attach { session, .. }
            | Self::Message { session, .. }
            | Self::KeepAlive { session }
            | Self::Close { session } => Some(session),
            Self::Batch(b) => Some(b.session),
        }
    }

    /// Decodes one message occupying all of `bytes`.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input (never panics).
    pub fn decode(bytes: &[u8]) -> Result<Ingress<'_>, CodecError> {
        let mut r = Reader::new(bytes, "ingress message");
        let version = r.u8()?;
        if version != CLIENT_VERSION {
            return Err(CodecError::Version {
                what: "ingress message",
                version,
            });
        }
        let msg = match r.u8()? {
            1 => Ingress::Connect {
                correlation_id: r.u64()?,
                credentials: r.var_bytes()?,
            },
            2 => Ingress::Attach {
                session: SessionId(r.u64()?),
                last_egress_seq: r.u64()?,
            },
            3 => Ingress::Message {
                session: SessionId(r.u64()?),
                sequence: r.u64()?,
                payload: r.rest(),
            },
            4 => Ingress::KeepAlive {
                session: SessionId(r.u64()?),
            },
            5 => Ingress::Close {
                session: SessionId(r.u64()?),
            },
            BATCH_TYPE => Ingress::Batch(MessageBatch::decode(&mut r)?),
            tag => {
                return Err(CodecError::UnknownType {
                    what: "ingress message",
                    tag: u16::from(tag),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Writes an egress `Reply` directly from its parts (the payload is copied once, from the
/// reply cache into `out`).
pub fn encode_reply(
    out: &mut Vec<u8>,
    session: SessionId,
    egress_seq: u64,
    request_seq: u64,
    committed_seq: u64,
    payload: &[u8],
) {
    out.put_u8(CLIENT_VERSION);
    out.put_u8(2);
    out.put_u64(session.0);
    out.put_u64(egress_seq);
    out.put_u64(request_seq);
    out.put_u64(committed_seq);
    out.extend_from_slice(payload);
}

impl Egress<'_> {
    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Self::SessionEvent {
                correlation_id,
                session,
                code,
                leader,
                term,
                value,
            } => {
                out.put_u8(CLIENT_VERSION);
                out.put_u8(1);
                out.put_u64(correlation_id);
                out.put_u64(session.0);
                out.put_u8(code as u8);
                out.put_u32(leader.map_or(MemberId::NONE_WIRE, |m| m.0));
                out.put_u64(term.0);
                out.put_u64(value);
            }
            Self::Reply {
                session,
                egress_seq,
                request_seq,
                committed_seq,
                payload,
            } => encode_reply(
                out,
                session,
                egress_seq,
                request_seq,
                committed_seq,
                payload,
            ),
            Self::Ack {
                session,
                committed_seq,
            } => {
                out.put_u8(CLIENT_VERSION);
                out.put_u8(3);
                out.put_u64(session.0);
                out.put_u64(committed_seq);
            }
            Self::NewLeader {
                session,
                leader,
                term,
            } => {
                out.put_u8(CLIENT_VERSION);
                out.put_u8(4);
                out.put_u64(session.0);
                out.put_u32(leader.0);
                out.put_u64(term.0);
            }
            Self::Replies(b) => b.encode(out),
        }
    }

    /// Decodes one message occupying all of `bytes`.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input (never panics).
    pub fn decode(bytes: &[u8]) -> Result<Egress<'_>, CodecError> {
        let mut r = Reader::new(bytes, "egress message");
        let version = r.u8()?;
        if version != CLIENT_VERSION {
            return Err(CodecError::Version {
                what: "egress message",
                version,
            });
        }
        let msg = match r.u8()? {
            1 => Egress::SessionEvent {
                correlation_id: r.u64()?,
                session: SessionId(r.u64()?),
                code: EventCode::from_code(r.u8()?)?,
                leader: match r.u32()? {
                    MemberId::NONE_WIRE => None,
                    m => Some(MemberId(m)),
                },
                term: Term(r.u64()?),
                value: r.u64()?,
            },
            2 => Egress::Reply {
                session: SessionId(r.u64()?),
                egress_seq: r.u64()?,
                request_seq: r.u64()?,
                committed_seq: r.u64()?,
                payload: r.rest(),
            },
            3 => Egress::Ack {
                session: SessionId(r.u64()?),
                committed_seq: r.u64()?,
            },
            4 => Egress::NewLeader {
                session: SessionId(r.u64()?),
                leader: MemberId(r.u32()?),
                term: Term(r.u64()?),
            },
            REPLIES_TYPE => Egress::Replies(ReplyBatch::decode(&mut r)?),
            tag => {
                return Err(CodecError::UnknownType {
                    what: "egress message",
                    tag: u16::from(tag),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_round_trips() {
        let msgs = [
            Ingress::Connect {
                correlation_id: 5,
                credentials: b"pw",
            },
            Ingress::Attach {
                session: SessionId(3),
                last_egress_seq: 9,
            },
            Ingress::Message {
                session: SessionId(3),
                sequence: 10,
                payload: b"payload",
            },
            Ingress::KeepAlive {
                session: SessionId(3),
            },
            Ingress::Close {
                session: SessionId(3),
            },
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert_eq!(Ingress::decode(&b), Ok(m));
            for cut in 0..b.len().min(18) {
                assert!(Ingress::decode(&b[..cut]).is_err(), "{m:?} {cut}");
            }
        }
        assert!(Ingress::decode(&[CLIENT_VERSION, 99]).is_err());
        assert!(Ingress::decode(&[9, 1]).is_err());
    }

    #[test]
    fn egress_round_trips() {
        let msgs = [
            Egress::SessionEvent {
                correlation_id: 1,
                session: SessionId(2),
                code: EventCode::Redirect,
                leader: Some(MemberId(1)),
                term: Term(3),
                value: 4,
            },
            Egress::SessionEvent {
                correlation_id: 1,
                session: SessionId(2),
                code: EventCode::Closed,
                leader: None,
                term: Term(3),
                value: 4,
            },
            Egress::Reply {
                session: SessionId(2),
                egress_seq: 1,
                request_seq: 7,
                committed_seq: 7,
                payload: b"ok",
            },
            Egress::Ack {
                session: SessionId(2),
                committed_seq: 7,
            },
            Egress::NewLeader {
                session: SessionId(2),
                leader: MemberId(0),
                term: Term(5),
            },
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert_eq!(Egress::decode(&b), Ok(m));
            for cut in 0..b.len().min(34) {
                assert!(Egress::decode(&b[..cut]).is_err(), "{m:?} {cut}");
            }
        }
        let mut b = Vec::new();
        Egress::SessionEvent {
            correlation_id: 1,
            session: SessionId(2),
            code: EventCode::Ok,
            leader: None,
            term: Term(3),
            value: 4,
        }
        .encode(&mut b);
        b[18] = 99;
        assert!(Egress::decode(&b).is_err());
    }

    #[test]
    fn batches_round_trip_and_bad_ones_are_refused() {
        let mut b = Vec::new();
        begin_batch(&mut b, SessionId(9), 41);
        let Ok(Ingress::Batch(empty)) = Ingress::decode(&b) else {
            panic!("an empty batch decodes");
        };
        assert!(empty.is_empty());
        assert_eq!(empty.iter().count(), 0);
        let msgs: Vec<Vec<u8>> = (0..MAX_BATCH_MESSAGES)
            .map(|i| vec![i as u8; i % 5])
            .collect();
        for m in &msgs {
            push_batch_message(&mut b, m);
        }
        set_batch_ack(&mut b, 77);
        assert_eq!(batch_count(&b), MAX_BATCH_MESSAGES);
        let decoded = Ingress::decode(&b).unwrap();
        let Ingress::Batch(batch) = decoded else {
            panic!("{decoded:?}");
        };
        assert_eq!(batch.session, SessionId(9));
        assert_eq!(batch.acked_egress_seq, 77);
        assert_eq!(batch.len(), MAX_BATCH_MESSAGES);
        let got: Vec<(u64, Vec<u8>)> = batch.iter().map(|(s, m)| (s, m.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (41 + i as u64, m.clone()))
            .collect();
        assert_eq!(got, want);
        let mut again = Vec::new();
        decoded.encode(&mut again);
        assert_eq!(again, b);
        // Every truncation, a trailing byte, a count too high or too low: refused.
        for cut in 0..b.len() {
            assert!(Ingress::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(Ingress::decode(&trailing).is_err());
        let mut over = b.clone();
        over[BATCH_COUNT_AT..BATCH_COUNT_AT + 2].copy_from_slice(&65u16.to_le_bytes());
        assert!(Ingress::decode(&over).is_err());
        let mut under = b.clone();
        under[BATCH_COUNT_AT..BATCH_COUNT_AT + 2].copy_from_slice(&3u16.to_le_bytes());
        assert!(Ingress::decode(&under).is_err());
        let mut huge_len = Vec::new();
        begin_batch(&mut huge_len, SessionId(1), 1);
        push_batch_message(&mut huge_len, b"x");
        huge_len[BATCH_HEADER_LEN..BATCH_HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Ingress::decode(&huge_len).is_err());
        let mut wrap = Vec::new();
        begin_batch(&mut wrap, SessionId(1), u64::MAX);
        push_batch_message(&mut wrap, b"x");
        assert!(Ingress::decode(&wrap).is_err());
    }

    #[test]
    fn reply_batches_round_trip_and_bad_ones_are_refused() {
        let replies: Vec<Vec<u8>> = (0..MAX_BATCH_MESSAGES)
            .map(|i| vec![i as u8; i % 7])
            .collect();
        // After another message in the same buffer, as the leader's outbox holds them.
        let mut out = vec![0xAA; 5];
        let start = out.len();
        begin_reply_batch(&mut out, SessionId(4), 10, 99);
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(push_reply_record(&mut out, start, 500 + i as u64, r), i + 1);
        }
        let b = out[start..].to_vec();
        let decoded = Egress::decode(&b).unwrap();
        let Egress::Replies(batch) = decoded else {
            panic!("{decoded:?}");
        };
        assert_eq!(batch.len(), MAX_BATCH_MESSAGES);
        let got: Vec<Egress<'_>> = egress_messages(&b).unwrap().collect();
        let want: Vec<Egress<'_>> = replies
            .iter()
            .enumerate()
            .map(|(i, r)| Egress::Reply {
                session: SessionId(4),
                egress_seq: 10 + i as u64,
                request_seq: 500 + i as u64,
                committed_seq: 99,
                payload: r,
            })
            .collect();
        assert_eq!(got, want);
        let mut again = Vec::new();
        decoded.encode(&mut again);
        assert_eq!(again, b);
        // A message other than a batch is itself.
        let mut ack = Vec::new();
        Egress::Ack {
            session: SessionId(4),
            committed_seq: 3,
        }
        .encode(&mut ack);
        assert_eq!(
            egress_messages(&ack).unwrap().collect::<Vec<_>>(),
            [Egress::Ack {
                session: SessionId(4),
                committed_seq: 3
            }]
        );
        // Every truncation, a trailing byte, a count of 0, too high or too low, a length past
        // the end, an egress sequence that wraps: refused.
        for cut in 0..b.len() {
            assert!(Egress::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(Egress::decode(&trailing).is_err());
        for bad in [0u16, 65, 3] {
            let mut c = b.clone();
            c[BATCH_COUNT_AT..BATCH_COUNT_AT + 2].copy_from_slice(&bad.to_le_bytes());
            assert!(Egress::decode(&c).is_err(), "count {bad}");
        }
        let mut huge_len = Vec::new();
        begin_reply_batch(&mut huge_len, SessionId(1), 1, 1);
        push_reply_record(&mut huge_len, 0, 1, b"x");
        let at = REPLY_BATCH_HEADER_LEN + 8;
        huge_len[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Egress::decode(&huge_len).is_err());
        let mut wrap = Vec::new();
        begin_reply_batch(&mut wrap, SessionId(1), u64::MAX, 1);
        push_reply_record(&mut wrap, 0, 1, b"x");
        assert!(Egress::decode(&wrap).is_err());
        assert_eq!(
            REPLY_BATCH_HEADER_LEN
                + MAX_BATCH_MESSAGES * REPLY_RECORD_OVERHEAD
                + replies.iter().map(Vec::len).sum::<usize>(),
            b.len()
        );
    }

    #[test]
    fn replies_join_the_batch_before_them_only_when_they_follow_it() {
        let max = 200;
        let mut out = b"other".to_vec();
        let start = out.len();
        encode_reply(&mut out, SessionId(3), 7, 70, 70, b"first");
        let before = out.clone();
        // Another session, a gap, a repeat, too big for `max`, or not a reply at `start`:
        // refused, `out` unchanged.
        let big = [0u8; 200];
        let refused: [(usize, u64, u64, &[u8]); 5] = [
            (start, 4, 8, b"x"),
            (start, 3, 9, b"x"),
            (start, 3, 7, b"x"),
            (start, 3, 8, &big),
            (0, 3, 8, b"x"),
        ];
        for (at, session, egress_seq, payload) in refused {
            let joined = extend_replies(
                &mut out,
                at,
                SessionId(session),
                egress_seq,
                71,
                71,
                payload,
                max,
            );
            assert!(!joined, "{at} {session} {egress_seq}");
        }
        assert_eq!(out, before);
        assert!(extend_replies(
            &mut out,
            start,
            SessionId(3),
            8,
            71,
            72,
            b"second",
            max
        ));
        assert!(extend_replies(
            &mut out,
            start,
            SessionId(3),
            9,
            72,
            72,
            b"",
            max
        ));
        assert!(!extend_replies(
            &mut out,
            start,
            SessionId(3),
            11,
            73,
            73,
            b"x",
            max
        ));
        assert_eq!(&out[..start], b"other");
        let got: Vec<Egress<'_>> = egress_messages(&out[start..]).unwrap().collect();
        let reply = |egress_seq, request_seq, payload| Egress::Reply {
            session: SessionId(3),
            egress_seq,
            request_seq,
            committed_seq: 72,
            payload,
        };
        assert_eq!(
            got,
            [
                reply(7, 70, &b"first"[..]),
                reply(8, 71, &b"second"[..]),
                reply(9, 72, &b""[..])
            ]
        );
        // Fills up to MAX_BATCH_MESSAGES, then refuses.
        let mut out = Vec::new();
        encode_reply(&mut out, SessionId(1), 1, 1, 1, b"r");
        for e in 2..=MAX_BATCH_MESSAGES as u64 {
            assert!(extend_replies(
                &mut out,
                0,
                SessionId(1),
                e,
                e,
                e,
                b"r",
                usize::MAX
            ));
        }
        let next = MAX_BATCH_MESSAGES as u64 + 1;
        assert!(!extend_replies(
            &mut out,
            0,
            SessionId(1),
            next,
            next,
            next,
            b"r",
            usize::MAX
        ));
        assert_eq!(egress_messages(&out).unwrap().count(), MAX_BATCH_MESSAGES);
    }

    #[test]
    fn reject_codes_round_trip() {
        for c in [
            RejectCode::Authentication,
            RejectCode::TooManySessions,
            RejectCode::Other(99),
        ] {
            assert_eq!(RejectCode::from_code(c.code()), c);
        }
    }
}
