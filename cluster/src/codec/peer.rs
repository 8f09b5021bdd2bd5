//! Messages between members.
//!
//! Every message starts with a 2-byte prefix, then type-specific little-endian fields:
//!
//! ```text
//!  0         1         2
//!  +---------+---------+-------------------------------
//!  | version | type    | fields (see PeerMessage)
//!  +---------+---------+-------------------------------
//! ```
//!
//! Version [`PEER_VERSION`]. `Append` carries whole log frames (see [`crate::codec::frame`])
//! after its fixed fields; `InstallSnapshot` carries a chunk of a snapshot.

use crate::codec::buf::{Reader, Writer};
use crate::consensus::types::{LogPosition, MemberId, OperatorAction, Term};
use crate::error::CodecError;

/// Version of the member-to-member protocol written by this build.
pub const PEER_VERSION: u8 = 1;

/// Bytes of an `Append` before its frames.
pub const APPEND_FIXED_LEN: usize = 2 + 8 + 4 + 8 + 8 + 8;

/// A message between members, borrowing variable parts from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMessage<'a> {
    /// Pre-vote (canvass, `pre_vote`) or vote request. For a pre-vote, `term` is the term the
    /// candidate would stand in; nothing is persisted. `transfer` marks an election started by
    /// a leadership hand-over, which voters grant even while they hear a live leader.
    VoteRequest {
        /// Whether this is a pre-vote.
        pre_vote: bool,
        /// Whether the old leader asked for this election (leadership transfer).
        transfer: bool,
        /// The candidate's (proposed) term.
        term: Term,
        /// The candidate.
        candidate: MemberId,
        /// Term of the candidate's last frame.
        last_term: Term,
        /// The candidate's append position.
        last_position: LogPosition,
    },
    /// Answer to a `VoteRequest`.
    VoteResponse {
        /// Whether it answers a pre-vote.
        pre_vote: bool,
        /// The voter's term (for a granted pre-vote: the proposed term).
        term: Term,
        /// The voter.
        voter: MemberId,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Frames to append after (`prev_position`, `prev_term`); empty frames = heartbeat.
    Append {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: MemberId,
        /// Position the frames follow.
        prev_position: LogPosition,
        /// Term of the frame ending at `prev_position`.
        prev_term: Term,
        /// The leader's commit position.
        commit: LogPosition,
        /// Whole frames, as they are in the leader's log.
        frames: &'a [u8],
    },
    /// Answer to an `Append` or an installed snapshot.
    AppendResponse {
        /// The follower's term.
        term: Term,
        /// The follower.
        follower: MemberId,
        /// Whether the append matched.
        success: bool,
        /// Whether the follower is a learner (its position does not count toward a quorum).
        learner: bool,
        /// On success the follower's matched (and durable) position; on failure where the
        /// leader should resume sending.
        position: LogPosition,
        /// On failure, the follower's term of the frame ending at `position`.
        hint_term: Term,
    },
    /// A chunk of the leader's snapshot, for a follower below the leader's log start.
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: MemberId,
        /// The snapshot's log position.
        snapshot_position: LogPosition,
        /// Term at the snapshot position.
        snapshot_term: Term,
        /// Total snapshot length in bytes.
        total_len: u64,
        /// Offset of this chunk.
        offset: u64,
        /// The chunk.
        chunk: &'a [u8],
    },
    /// Acknowledges snapshot chunks: the follower has everything before `next_offset`.
    SnapshotResponse {
        /// The follower's term.
        term: Term,
        /// The follower.
        follower: MemberId,
        /// The snapshot being installed.
        snapshot_position: LogPosition,
        /// The next offset wanted.
        next_offset: u64,
    },
    /// The leader hands leadership over: start an election now.
    TimeoutNow {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: MemberId,
    },
    /// A learner asks for a member's commit position.
    CommitQuery {
        /// The learner's term.
        term: Term,
        /// The learner.
        from: MemberId,
    },
    /// Answer to a `CommitQuery`.
    CommitReply {
        /// The replier's term.
        term: Term,
        /// The replier.
        from: MemberId,
        /// Its commit position.
        commit: LogPosition,
        /// Whether it is itself a learner (then its answer does not count).
        learner: bool,
    },
    /// A member forwards an operator's cluster-wide action to the leader it knows, which
    /// appends it to the log (once per `(from, id)` in its term). Repeated by the member until
    /// it applies the entry.
    OperatorRequest {
        /// The sender's term.
        term: Term,
        /// The member the request arrived on (it reports completion).
        from: MemberId,
        /// The action.
        action: OperatorAction,
        /// The request id on `from`.
        id: u64,
    },
    /// A member applied a shutdown or abort entry ending at `position` and is terminating:
    /// the leader waits for these (or a timeout) before it terminates itself, so that every
    /// member learns the entry is committed.
    TerminationAck {
        /// The sender's term.
        term: Term,
        /// The sender.
        from: MemberId,
        /// End of the applied shutdown or abort entry.
        position: LogPosition,
    },
}

impl PeerMessage<'_> {
    /// The term the message carries.
    pub fn term(&self) -> Term {
        match *self {
            Self::VoteRequest { term, .. }
            | Self::VoteResponse { term, .. }
            | Self::Append { term, .. }
            | Self::AppendResponse { term, .. }
            | Self::InstallSnapshot { term, .. }
            | Self::SnapshotResponse { term, .. }
            | Self::TimeoutNow { term, .. }
            | Self::CommitQuery { term, .. }
            | Self::CommitReply { term, .. }
            | Self::OperatorRequest { term, .. }
            | Self::TerminationAck { term, .. } => term,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Self::VoteRequest { .. } => 1,
            Self::VoteResponse { .. } => 2,
            Self::Append { .. } => 3,
            Self::AppendResponse { .. } => 4,
            Self::InstallSnapshot { .. } => 5,
            Self::SnapshotResponse { .. } => 6,
            Self::TimeoutNow { .. } => 7,
            Self::CommitQuery { .. } => 8,
            Self::CommitReply { .. } => 9,
            Self::OperatorRequest { .. } => 10,
            Self::TerminationAck { .. } => 11,
        }
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Self::Append {
            term,
            leader,
            prev_position,
            prev_term,
            commit,
            frames,
        } = *self
        {
            encode_append_header(out, term, leader, prev_position, prev_term, commit);
            out.extend_from_slice(frames);
            return;
        }
        out.put_u8(PEER_VERSION);
        out.put_u8(self.tag());
        match *self {
            Self::VoteRequest {
                pre_vote,
                transfer,
                term,
                candidate,
                last_term,
                last_position,
            } => {
                out.put_bool(pre_vote);
                out.put_bool(transfer);
                out.put_u64(term.0);
                out.put_u32(candidate.0);
                out.put_u64(last_term.0);
                out.put_u64(last_position.0);
            }
            Self::VoteResponse {
                pre_vote,
                term,
                voter,
                granted,
            } => {
                out.put_bool(pre_vote);
                out.put_u64(term.0);
                out.put_u32(voter.0);
                out.put_bool(granted);
            }
            Self::Append { .. } => unreachable!("encoded above"),
            Self::AppendResponse {
                term,
                follower,
                success,
                learner,
                position,
                hint_term,
            } => {
                out.put_u64(term.0);
                out.put_u32(follower.0);
                out.put_bool(success);
                out.put_bool(learner);
                out.put_u64(position.0);
                out.put_u64(hint_term.0);
            }
            Self::InstallSnapshot {
                term,
                leader,
                snapshot_position,
                snapshot_term,
                total_len,
                offset,
                chunk,
            } => {
                out.put_u64(term.0);
                out.put_u32(leader.0);
                out.put_u64(snapshot_position.0);
                out.put_u64(snapshot_term.0);
                out.put_u64(total_len);
                out.put_u64(offset);
                out.put_var_bytes(chunk);
            }
            Self::SnapshotResponse {
                term,
                follower,
                snapshot_position,
                next_offset,
            } => {
                out.put_u64(term.0);
                out.put_u32(follower.0);
                out.put_u64(snapshot_position.0);
                out.put_u64(next_offset);
            }
            Self::TimeoutNow { term, leader } => {
                out.put_u64(term.0);
                out.put_u32(leader.0);
            }
            Self::CommitQuery { term, from } => {
                out.put_u64(term.0);
                out.put_u32(from.0);
            }
            Self::CommitReply {
                term,
                from,
                commit,
                learner,
            } => {
                out.put_u64(term.0);
                out.put_u32(from.0);
                out.put_u64(commit.0);
                out.put_bool(learner);
            }
            Self::OperatorRequest {
                term,
                from,
                action,
                id,
            } => {
                out.put_u64(term.0);
                out.put_u32(from.0);
                out.put_u8(action.code());
                out.put_u64(id);
            }
            Self::TerminationAck {
                term,
                from,
                position,
            } => {
                out.put_u64(term.0);
                out.put_u32(from.0);
                out.put_u64(position.0);
            }
        }
    }

    /// Decodes one message occupying all of `bytes`.
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input (never panics).
    pub fn decode(bytes: &[u8]) -> Result<PeerMessage<'_>, CodecError> {
        let mut r = Reader::new(bytes, "peer message");
        let version = r.u8()?;
        if version != PEER_VERSION {
            return Err(CodecError::Version {
                what: "peer message",
                version,
            });
        }
        let tag = r.u8()?;
        let msg = match tag {
            1 => PeerMessage::VoteRequest {
                pre_vote: r.bool()?,
                transfer: r.bool()?,
                term: Term(r.u64()?),
                candidate: MemberId(r.u32()?),
                last_term: Term(r.u64()?),
                last_position: LogPosition(r.u64()?),
            },
            2 => PeerMessage::VoteResponse {
                pre_vote: r.bool()?,
                term: Term(r.u64()?),
                voter: MemberId(r.u32()?),
                granted: r.bool()?,
            },
            3 => {
                let term = Term(r.u64()?);
                let leader = MemberId(r.u32()?);
                let prev_position = LogPosition(r.u64()?);
                let prev_term = Term(r.u64()?);
                let commit = LogPosition(r.u64()?);
                let frames = r.rest();
                if !frames
                    .len()
                    .is_multiple_of(crate::codec::frame::FRAME_ALIGNMENT)
                {
                    return Err(CodecError::Invalid {
                        what: "append frames length",
                        value: frames.len() as u64,
                    });
                }
                PeerMessage::Append {
                    term,
                    leader,
                    prev_position,
                    prev_term,
                    commit,
                    frames,
                }
            }
            4 => PeerMessage::AppendResponse {
                term: Term(r.u64()?),
                follower: MemberId(r.u32()?),
                success: r.bool()?,
                learner: r.bool()?,
                position: LogPosition(r.u64()?),
                hint_term: Term(r.u64()?),
            },
            5 => PeerMessage::InstallSnapshot {
                term: Term(r.u64()?),
                leader: MemberId(r.u32()?),
                snapshot_position: LogPosition(r.u64()?),
                snapshot_term: Term(r.u64()?),
                total_len: r.u64()?,
                offset: r.u64()?,
                chunk: r.var_bytes()?,
            },
            6 => PeerMessage::SnapshotResponse {
                term: Term(r.u64()?),
                follower: MemberId(r.u32()?),
                snapshot_position: LogPosition(r.u64()?),
                next_offset: r.u64()?,
            },
            7 => PeerMessage::TimeoutNow {
                term: Term(r.u64()?),
                leader: MemberId(r.u32()?),
            },
            8 => PeerMessage::CommitQuery {
                term: Term(r.u64()?),
                from: MemberId(r.u32()?),
            },
            9 => PeerMessage::CommitReply {
                term: Term(r.u64()?),
                from: MemberId(r.u32()?),
                commit: LogPosition(r.u64()?),
                learner: r.bool()?,
            },
            10 => {
                let term = Term(r.u64()?);
                let from = MemberId(r.u32()?);
                let code = r.u8()?;
                let action = OperatorAction::from_code(code).ok_or(CodecError::Invalid {
                    what: "operator action",
                    value: u64::from(code),
                })?;
                PeerMessage::OperatorRequest {
                    term,
                    from,
                    action,
                    id: r.u64()?,
                }
            }
            11 => PeerMessage::TerminationAck {
                term: Term(r.u64()?),
                from: MemberId(r.u32()?),
                position: LogPosition(r.u64()?),
            },
            tag => {
                return Err(CodecError::UnknownType {
                    what: "peer message",
                    tag: u16::from(tag),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Writes the prefix and fixed fields of an `Append`; the caller appends the frames.
pub fn encode_append_header(
    out: &mut Vec<u8>,
    term: Term,
    leader: MemberId,
    prev_position: LogPosition,
    prev_term: Term,
    commit: LogPosition,
) {
    out.put_u8(PEER_VERSION);
    out.put_u8(3);
    out.put_u64(term.0);
    out.put_u32(leader.0);
    out.put_u64(prev_position.0);
    out.put_u64(prev_term.0);
    out.put_u64(commit.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<PeerMessage<'static>> {
        vec![
            PeerMessage::VoteRequest {
                pre_vote: true,
                transfer: false,
                term: Term(4),
                candidate: MemberId(1),
                last_term: Term(3),
                last_position: LogPosition(640),
            },
            PeerMessage::VoteResponse {
                pre_vote: false,
                term: Term(4),
                voter: MemberId(2),
                granted: true,
            },
            PeerMessage::Append {
                term: Term(4),
                leader: MemberId(0),
                prev_position: LogPosition(64),
                prev_term: Term(2),
                commit: LogPosition(8),
                frames: &[0u8; 16],
            },
            PeerMessage::AppendResponse {
                term: Term(4),
                follower: MemberId(2),
                success: false,
                learner: true,
                position: LogPosition(48),
                hint_term: Term(1),
            },
            PeerMessage::InstallSnapshot {
                term: Term(4),
                leader: MemberId(0),
                snapshot_position: LogPosition(4096),
                snapshot_term: Term(3),
                total_len: 10,
                offset: 5,
                chunk: b"abcde",
            },
            PeerMessage::SnapshotResponse {
                term: Term(4),
                follower: MemberId(1),
                snapshot_position: LogPosition(4096),
                next_offset: 5,
            },
            PeerMessage::TimeoutNow {
                term: Term(4),
                leader: MemberId(0),
            },
            PeerMessage::CommitQuery {
                term: Term(4),
                from: MemberId(2),
            },
            PeerMessage::CommitReply {
                term: Term(4),
                from: MemberId(1),
                commit: LogPosition(96),
                learner: false,
            },
            PeerMessage::OperatorRequest {
                term: Term(4),
                from: MemberId(2),
                action: OperatorAction::Shutdown,
                id: 77,
            },
            PeerMessage::TerminationAck {
                term: Term(4),
                from: MemberId(1),
                position: LogPosition(4160),
            },
        ]
    }

    #[test]
    fn round_trip_every_message_and_reject_every_truncation() {
        for msg in samples() {
            let mut b = Vec::new();
            msg.encode(&mut b);
            assert_eq!(PeerMessage::decode(&b), Ok(msg));
            let cut_ok = matches!(msg, PeerMessage::Append { .. });
            for cut in 0..b.len() {
                let r = PeerMessage::decode(&b[..cut]);
                if !cut_ok {
                    assert!(r.is_err(), "{msg:?} cut at {cut}");
                }
            }
            let mut extra = b.clone();
            extra.push(0);
            if !cut_ok {
                assert!(PeerMessage::decode(&extra).is_err());
            }
            let mut bad = b;
            bad[0] = 77;
            assert!(PeerMessage::decode(&bad).is_err());
        }
        assert!(PeerMessage::decode(&[PEER_VERSION, 200]).is_err());
    }

    #[test]
    fn an_unknown_operator_action_is_an_error() {
        let mut b = Vec::new();
        PeerMessage::OperatorRequest {
            term: Term(1),
            from: MemberId(0),
            action: OperatorAction::Snapshot,
            id: 1,
        }
        .encode(&mut b);
        // version, tag, term (8), from (4), then the action code.
        b[14] = 9;
        assert!(matches!(
            PeerMessage::decode(&b),
            Err(CodecError::Invalid {
                what: "operator action",
                ..
            })
        ));
    }
}
