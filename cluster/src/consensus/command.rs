//! What comes out of the core: [`Command`]s in an [`Outbox`].

use std::ops::Range;
use std::sync::Arc;

use crate::codec::client::{Egress, encode_reply, extend_replies};
use crate::codec::peer::PeerMessage;
use crate::consensus::election::ElectionState;
use crate::consensus::snapshot::Snapshot;
use crate::consensus::types::{ClientAddr, LogPosition, MemberId, OperatorAction, SessionId, Term};
use tandem_service_api::Role;

/// What the node state file holds (DESIGN §4): written and made durable before any message
/// that depends on it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeState {
    /// The current term.
    pub term: Term,
    /// The vote cast in `term`, if any.
    pub voted_for: Option<MemberId>,
    /// A lower bound of the commit position (recovery replays up to here).
    pub commit_lower_bound: LogPosition,
}

/// An effect the runtime must carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `outbox.bytes[bytes]` (an encoded [`PeerMessage`]) to member `to`.
    SendPeer {
        /// Destination.
        to: MemberId,
        /// Range in [`Outbox::bytes`].
        bytes: Range<usize>,
    },
    /// Send `outbox.bytes[bytes]` (an encoded [`Egress`]) to the client at `to`.
    SendClient {
        /// Destination.
        to: ClientAddr,
        /// Range in [`Outbox::bytes`].
        bytes: Range<usize>,
    },
    /// Frames `from..to` were written to the log store; make them durable (per the fsync
    /// policy) and answer `Input::LogDurable { position: to, epoch }`.
    Appended {
        /// First byte.
        from: LogPosition,
        /// End.
        to: LogPosition,
        /// Truncation epoch the write belongs to.
        epoch: u64,
    },
    /// The log store was truncated at `position` (the archive zeroes what it discards); later
    /// writes belong to `epoch`.
    Truncated {
        /// New end.
        position: LogPosition,
        /// The new epoch.
        epoch: u64,
    },
    /// Write and fsync the node state; answer `Input::StatePersisted { id }`.
    PersistState {
        /// Completion id (increasing).
        id: u64,
        /// What to write.
        state: NodeState,
    },
    /// The role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The leader, if known.
        leader: Option<MemberId>,
    },
    /// The election state changed (for the control file and tools).
    ElectionStateChanged {
        /// The new state.
        state: ElectionState,
    },
    /// The commit position advanced (at most once per `handle` call).
    CommitAdvanced {
        /// New commit position.
        position: LogPosition,
    },
    /// A snapshot was taken at a snapshot marker: store it and add it to the recording log.
    SnapshotTaken {
        /// The snapshot.
        snapshot: Arc<Snapshot>,
    },
    /// A snapshot received from the leader was installed: store it, add it to the recording
    /// log; the log store was reset to start at its position (epoch advanced).
    SnapshotInstalled {
        /// The snapshot.
        snapshot: Arc<Snapshot>,
        /// The new epoch.
        epoch: u64,
    },
    /// The log below `position` was purged from the store.
    Purged {
        /// New log start.
        position: LogPosition,
    },
    /// The member stopped (after handing over leadership if it led).
    Terminated,
}

/// The completion of an operator request made on this member with `Input::Operator`, taken
/// with [`crate::consensus::Consensus::take_operator_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorDone {
    /// The action.
    pub action: OperatorAction,
    /// The request id given with `Input::Operator`.
    pub id: u64,
    /// End of the `OperatorAction` entry: for `Snapshot` and `Shutdown` the snapshot position.
    pub position: LogPosition,
}

/// Where the core writes its output: commands, and the encoded messages they refer to.
/// The caller clears it (or drains it) between calls; it never shrinks, so steady state does not
/// allocate.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The commands, in the order they must be carried out.
    pub commands: Vec<Command>,
    /// Encoded messages referred to by `SendPeer` and `SendClient`.
    pub bytes: Vec<u8>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all commands and bytes (keeps the capacity).
    pub fn clear(&mut self) {
        self.commands.clear();
        self.bytes.clear();
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The bytes of a message range.
    pub fn slice(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }

    /// Encodes `msg` and queues it for `to`.
    pub(crate) fn send_peer(&mut self, to: MemberId, msg: &PeerMessage<'_>) {
        let start = self.bytes.len();
        msg.encode(&mut self.bytes);
        let end = self.bytes.len();
        self.commands.push(Command::SendPeer {
            to,
            bytes: start..end,
        });
    }

    /// Queues already-encoded peer bytes for `to`.
    pub(crate) fn send_peer_raw(&mut self, to: MemberId, raw: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(raw);
        let end = self.bytes.len();
        self.commands.push(Command::SendPeer {
            to,
            bytes: start..end,
        });
    }

    /// Encodes `msg` and queues it for client `to`.
    pub(crate) fn send_client(&mut self, to: ClientAddr, msg: &Egress<'_>) {
        let start = self.bytes.len();
        msg.encode(&mut self.bytes);
        let end = self.bytes.len();
        self.commands.push(Command::SendClient {
            to,
            bytes: start..end,
        });
    }

    /// Queues a reply for client `to`: joined to the reply message queued last when that one
    /// goes to `to`, is of the same session and just before it in egress order, and the batch
    /// stays within `max_batch_bytes` (see [`extend_replies`]); otherwise a `Reply` of its own.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_reply(
        &mut self,
        to: ClientAddr,
        session: SessionId,
        egress_seq: u64,
        request_seq: u64,
        committed_seq: u64,
        payload: &[u8],
        max_batch_bytes: usize,
    ) {
        if let Some(Command::SendClient { to: last_to, bytes }) = self.commands.last_mut()
            && *last_to == to
            && bytes.end == self.bytes.len()
            && extend_replies(
                &mut self.bytes,
                bytes.start,
                session,
                egress_seq,
                request_seq,
                committed_seq,
                payload,
                max_batch_bytes,
            )
        {
            bytes.end = self.bytes.len();
            return;
        }
        let start = self.bytes.len();
        encode_reply(
            &mut self.bytes,
            session,
            egress_seq,
            request_seq,
            committed_seq,
            payload,
        );
        self.finish_client(to, start);
    }

    /// Queues the bytes written since `start` for client `to`.
    pub(crate) fn finish_client(&mut self, to: ClientAddr, start: usize) {
        let end = self.bytes.len();
        self.commands.push(Command::SendClient {
            to,
            bytes: start..end,
        });
    }

    /// Queues the bytes written since `start` for member `to`.
    pub(crate) fn finish_peer(&mut self, to: MemberId, start: usize) {
        let end = self.bytes.len();
        self.commands.push(Command::SendPeer {
            to,
            bytes: start..end,
        });
    }

    /// Decoded peer messages with their destination (for tests and tools).
    pub fn peer_messages(&self) -> impl Iterator<Item = (MemberId, PeerMessage<'_>)> + '_ {
        self.commands.iter().filter_map(|c| match c {
            Command::SendPeer { to, bytes } => Some((
                *to,
                PeerMessage::decode(&self.bytes[bytes.clone()]).expect("core encodes valid"),
            )),
            _ => None,
        })
    }

    /// Decoded client messages with their destination (for tests and tools).
    pub fn client_messages(&self) -> impl Iterator<Item = (ClientAddr, Egress<'_>)> + '_ {
        self.commands.iter().filter_map(|c| match c {
            Command::SendClient { to, bytes } => Some((
                *to,
                Egress::decode(&self.bytes[bytes.clone()]).expect("core encodes valid"),
            )),
            _ => None,
        })
    }
}
