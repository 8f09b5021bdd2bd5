//! What goes into the core.

use crate::codec::client::Ingress;
use crate::codec::peer::PeerMessage;
use crate::consensus::types::{ClientAddr, LogPosition, MemberId};

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
}
