//! `tandem-chaos`: a fault harness with real hosts.
//!
//! It runs 3 or 5 members as separate OS processes of the key-value or matching-engine
//! sample, each in its own network namespace with its own address ([`net`]), drives a client
//! load from the root namespace recording every operation ([`load`]), injects faults on a
//! schedule drawn from one seed ([`FaultKind`]), watches availability through the members'
//! control files ([`monitor`]), and checks at the end that no acknowledged operation was lost
//! or applied twice, that the members' state hashes agree, and (kv) that the history is
//! linearizable ([`check`]). Everything it creates is named after its pid and removed at the
//! end, also on failure; a run removes what dead runs left behind.

pub mod check;
pub mod error;
pub mod load;
pub mod members;
pub mod monitor;
pub mod net;
pub mod proxy;
mod run;

pub use error::{ChaosError, Result};
pub use run::{ChaosArgs, Service, main, run};

/// A kind of fault the harness injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL the leader, restart it after a moment.
    KillLeader,
    /// SIGKILL a follower, restart it after a moment.
    KillFollower,
    /// SIGSTOP the leader for 2.5-4 election timeouts, then SIGCONT.
    PauseLeader,
    /// Drop all traffic between the leader and the other members (both directions).
    IsolateLeader,
    /// Split the members into a minority and a majority.
    Partition,
    /// One direction only: the leader's datagrams to the others are dropped, or theirs to it.
    Asymmetric,
    /// Random loss of 5-30% of the datagrams every member receives.
    Loss,
    /// Peer traffic through the fault proxy: delay, jitter, reordering, duplication.
    Proxy,
    /// Fill a member's disk (its tmpfs) and ask for a snapshot; free it and restart the
    /// member if it stopped.
    DiskFull,
    /// Snapshot and purge, then kill a follower, wipe its directory and restart it: it
    /// rejoins as a learner through install-snapshot.
    Wipe,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [Self; 10] = [
        Self::KillLeader,
        Self::KillFollower,
        Self::PauseLeader,
        Self::IsolateLeader,
        Self::Partition,
        Self::Asymmetric,
        Self::Loss,
        Self::Proxy,
        Self::DiskFull,
        Self::Wipe,
    ];

    /// The kind's name (as `--faults` spells it).
    pub fn name(self) -> &'static str {
        match self {
            Self::KillLeader => "kill-leader",
            Self::KillFollower => "kill-follower",
            Self::PauseLeader => "pause-leader",
            Self::IsolateLeader => "isolate-leader",
            Self::Partition => "partition",
            Self::Asymmetric => "asymmetric",
            Self::Loss => "loss",
            Self::Proxy => "proxy",
            Self::DiskFull => "disk-full",
            Self::Wipe => "wipe",
        }
    }
}
