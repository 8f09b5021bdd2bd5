//! Messages between clients and the cluster.
//!
//! Same 2-byte prefix as the peer protocol (`version`, `type`), then little-endian fields.
//! Version [`CLIENT_VERSION`]. Ingress (client to cluster) and egress (cluster to client) use
//! separate type spaces.

use crate::codec::buf::{Reader, Writer};
use crate::consensus::types::{MemberId, SessionId, Term};
use crate::error::CodecError;

/// Version of the client protocol written by this build.
pub const CLIENT_VERSION: u8 = 1;

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
    /// Re-attach to an existing session (after failover, or from a new address): the leader
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
}

/// What a session event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventCode {
    /// Connected or re-attached; `value` = highest committed sequence.
    Ok = 0,
    /// The authenticator refused the connect.
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
}
