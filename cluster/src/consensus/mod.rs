//! The consensus core: a pure state machine implementing DESIGN §5 and §6.
//!
//! No clock, socket, thread or file inside (a test scans these sources for imports of the
//! standard library's `fs`, `net`, `time`, `thread`, `process` and `env` modules): every input arrives through [`Consensus::handle`] as an
//! [`Input`], and every effect leaves as a [`Command`] in an [`Outbox`], in order. Time comes
//! only from `Input::Tick`, randomness from a PRNG seeded by [`Config::seed`]. The same inputs
//! give the same outputs.
//!
//! # Driving it
//!
//! ```
//! use tandem_cluster::consensus::*;
//! let cfg = Config::new(MemberId(0), 1);
//! let mut core = Consensus::new(cfg, MemLog::new(), Some(NodeState::default()), None);
//! let (mut app, mut out) = (NoopApplication, Outbox::new());
//! core.start(0, &mut app, &mut out);
//! let mut now = 0;
//! while core.role() != tandem_service_api::Role::Leader {
//!     now += 10_000_000;
//!     let cmds: Vec<Command> = std::mem::take(&mut out.commands);
//!     for c in cmds {
//!         match c {
//!             // A real runtime fsyncs the node state file first.
//!             Command::PersistState { id, .. } => {
//!                 core.handle(Input::StatePersisted { id }, &mut app, &mut out)
//!             }
//!             Command::Appended { to, epoch, .. } => {
//!                 core.handle(Input::LogDurable { position: to, epoch }, &mut app, &mut out)
//!             }
//!             _ => {}
//!         }
//!     }
//!     core.handle(Input::Tick { now_ns: now }, &mut app, &mut out);
//! }
//! assert_eq!(core.term(), Term(1));
//! ```
//!
//! # Storage is asynchronous
//!
//! The core writes frames through its [`LogStore`] (in memory at once, like writes into a
//! mapped segment) and reports them with `Command::Appended { from, to, epoch }`; the runtime
//! makes them durable (per its fsync policy; at once under `none`) and answers
//! `Input::LogDurable { position, epoch }`. Acknowledgements and the leader's own contribution
//! to a commit use durable positions. A truncation bumps the epoch, so a late durability report
//! for truncated bytes is ignored. Term and vote changes leave as `Command::PersistState { id }`
//! and any message that depends on them (a vote, an acknowledgement in a new term, a
//! candidate's vote request and so its step-up) is held until `Input::StatePersisted { id }`.
//!
//! # Layout
//!
//! [`types`] newtypes; [`input`] and [`command`] the interface; [`core`] the main struct;
//! [`election`] (with [`ElectionState`]), [`replication`], [`clients`], [`apply`],
//! [`operator`] (cluster-wide operator actions) its behaviour;
//! [`state`], [`sessions`], [`timers`] the replicated module state; [`snapshot`] the snapshot
//! format; [`storage`] the [`LogStore`] trait and [`MemLog`]; [`bugs`] the deliberate bugs.

pub mod apply;
pub mod bugs;
pub mod clients;
pub mod command;
pub mod config;
pub mod core;
pub mod election;
pub mod input;
pub mod operator;
pub mod replication;
pub mod rng;
pub mod sessions;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod timers;
pub mod types;

pub use apply::{Application, NoopApplication};
pub use bugs::BugFlags;
pub use clients::{AllowAll, AuthDecision, Authenticator};
pub use command::{Command, NodeState, OperatorDone, Outbox};
pub use config::Config;
pub use core::{Consensus, Counters, STATE_HASH_REPORTS};
pub use election::ElectionState;
pub use input::Input;
pub use snapshot::Snapshot;
pub use state::ModuleState;
pub use storage::{LogStore, MemLog};
pub use types::{ClientAddr, LogPosition, MemberId, OperatorAction, SessionId, Term};

#[cfg(test)]
mod purity {
    /// The core must not read a clock, open a socket or file, or spawn a thread.
    #[test]
    fn no_io_imports_in_the_core() {
        let sources = [
            ("apply.rs", include_str!("apply.rs")),
            ("bugs.rs", include_str!("bugs.rs")),
            ("clients.rs", include_str!("clients.rs")),
            ("command.rs", include_str!("command.rs")),
            ("config.rs", include_str!("config.rs")),
            ("core.rs", include_str!("core.rs")),
            ("election.rs", include_str!("election.rs")),
            ("input.rs", include_str!("input.rs")),
            ("operator.rs", include_str!("operator.rs")),
            ("replication.rs", include_str!("replication.rs")),
            ("rng.rs", include_str!("rng.rs")),
            ("sessions.rs", include_str!("sessions.rs")),
            ("snapshot.rs", include_str!("snapshot.rs")),
            ("state.rs", include_str!("state.rs")),
            ("storage.rs", include_str!("storage.rs")),
            ("timers.rs", include_str!("timers.rs")),
            ("types.rs", include_str!("types.rs")),
            ("mod.rs", include_str!("mod.rs")),
        ];
        let forbidden = ["fs", "net", "time", "thread", "process", "env"];
        for (name, text) in sources {
            for f in forbidden {
                for pattern in [format!("std::{f}"), format!("std::{{{f}")] {
                    assert!(
                        !text.contains(&pattern),
                        "consensus/{name} uses {pattern}: the core must stay sans-IO"
                    );
                }
            }
            for clock in [concat!("Instant", "::now"), concat!("System", "Time")] {
                assert!(!text.contains(clock), "consensus/{name} reads a clock");
            }
        }
    }
}

#[cfg(test)]
mod tests;
