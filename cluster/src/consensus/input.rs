//! What goes into the core.

use crate::codec::client::Ingress;
use crate::codec::peer::PeerMessage;
use crate::consensus::types::{ClientAddr, LogPosition, MemberId, OperatorAction};

/// One input to [`crate::consensus::Consensus::handle`]. Messages borrow their bytes from the
/// caller's receive buffer (decode them with [`PeerMessage::decode`] and [`Ingress::decode`]).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Time passes: `now_ns` from the runtime's monotonic clock (the simulator's virtual one).
    /// Runs election, heartbeat, session and timer deadlines, and flushes buffered appends.
    /// The only source of time for the core; other inputs are handled at the last tick's time.
    Tick {
        /// The current time.
        now_ns: i64,
    },
    /// A message from another member.
    Peer {
        /// The sender.
        from: MemberId,
        /// The message.
        msg: PeerMessage<'a>,
    },
    /// A message from a client at `from` (its egress address).
    Client {
        /// Where the client listens.
        from: ClientAddr,
        /// The message.
        msg: Ingress<'a>,
    },
    /// The end of a duty cycle: send what the leader buffered (batched appends).
    Flush,
    /// The application can apply further (a service on a thread of its own made progress,
    /// see [`crate::consensus::Application::apply_limit`]): applies committed entries up to
    /// its new limit.
    Apply,
    /// Every byte of the log below `position` is durable (`position` comes from an `Appended`
    /// command of the same `epoch`; reports of an older epoch, i.e. for writes issued before a
    /// truncation, are ignored). Under `fsync = none` the runtime reports at once.
    LogDurable {
        /// Durable up to here.
        position: LogPosition,
        /// The epoch of the `Appended` command it answers.
        epoch: u64,
    },
    /// Every `PersistState` with an id up to `id` is durable.
    StatePersisted {
        /// The highest completed id.
        id: u64,
    },
    /// Operator: take a snapshot (the leader appends a snapshot marker; others ignore).
    TakeSnapshot,
    /// Operator or retention: drop the log below `position` (must not exceed the newest
    /// snapshot's position, else it is ignored).
    Purge {
        /// New log start.
        position: LogPosition,
    },
    /// Stop this member; a leader hands leadership to its most up-to-date follower first.
    Stop,
    /// Operator: a cluster-wide action (DESIGN §7), accepted on any member. The leader
    /// appends an `OperatorAction` entry; any other member forwards the request to the leader
    /// it knows (`PeerMessage::OperatorRequest`) and repeats it every election timeout, and to
    /// each new leader, until it applies the entry. Every member carries the action out when
    /// it applies the entry; on this member that also completes the request (see
    /// [`crate::consensus::Consensus::take_operator_done`]). A newer request replaces one not
    /// yet completed here.
    ///
    /// A request in flight when the leader fails may be lost, or (rarely, if the old leader
    /// appended it and the new one gets the repeat before this member applied it) carried out
    /// twice: every action is idempotent but for an extra snapshot. The runtime bounds the
    /// wait and the operator retries.
    Operator {
        /// What to do.
        action: OperatorAction,
        /// The caller's id for the request, echoed in its completion. Unique per member across
        /// restarts (the node uses wall-clock nanoseconds), so a completion is never matched
        /// to an entry appended for an earlier incarnation.
        id: u64,
    },
    /// The runtime's hash of its service state at the snapshot it took at `position` (from
    /// the state-hash hook). The leader appends a `StateHash` entry carrying it; every member
    /// reports the entry when it applies it (see
    /// [`crate::consensus::Consensus::take_state_hash_report`]) so its runtime can compare the
    /// hash with its own. Others ignore it, as does a leader that is stopping or terminating.
    StateHash {
        /// The snapshot position.
        position: LogPosition,
        /// The hash.
        hash: u64,
    },
}
