//! Tandem cluster: the consensus core, codecs and the service container.
//!
//! * [`consensus`]: the sans-IO consensus core (DESIGN §2, §5, §6): [`consensus::Consensus`]
//!   takes [`consensus::Input`]s and leaves [`consensus::Command`]s in an
//!   [`consensus::Outbox`]; it reads and writes the log through [`consensus::LogStore`]
//!   ([`consensus::MemLog`] in memory).
//! * [`codec`]: log frames (the archive's layout and position arithmetic), entry payloads,
//!   member and client messages; every decoder returns a typed error on bad input.
//! * [`container`]: runs a `ClusteredService` (built by a `ServiceFactory`) on the committed
//!   log, identically inside the simulator and a node.
//! * [`sim`]: the deterministic simulator behind the `tandem-sim` binary: the real core and
//!   container over a simulated network, disk and clocks, with invariant checkers run after
//!   every step and a linearizability check of a key-value history.
//! * [`agent`]: agents, idle strategies, runners on (pinned) threads, threading modes.
//! * [`control`]: the memory-mapped control file `cluster-tool` reads and writes.
//! * [`transport`]: UDP (plain sockets with `sendmmsg`/`recvmmsg`, or io_uring) and
//!   in-process transports with datagram validation and fragmentation.
//! * [`node`]: the node runtime (`ClusterNode`: the core, the container, the archive-backed
//!   log, the transport and the control file on agent threads) and the `ClusterClient`.
//! * [`testkit`]: an in-process deterministic cluster (perfect or faulty in-memory network,
//!   crashes, wipes, lazy fsync) for tests and benchmarks.
//!
//! # Driving a member (runtime or simulator)
//!
//! 1. Build `Consensus::new(config, log, node_state, newest_snapshot)` and a
//!    `ServiceContainer::new(factory)`; call `start(now, &mut container, &mut outbox)`.
//! 2. Feed every event with `handle(input, &mut container, &mut outbox)`: `Tick` with the
//!    clock, `Peer`/`Client` messages (decoded with `PeerMessage::decode` / `Ingress::decode`),
//!    `Flush` at the end of a duty cycle, and the completions `LogDurable` / `StatePersisted`.
//! 3. Carry out `outbox.commands` in order (the bytes of `SendPeer`/`SendClient` are in
//!    `outbox.bytes`), then clear the outbox.
//!
//! A crash is `Consensus::into_log` (keep what was durable) plus the last `PersistState` and
//! the stored snapshots; restart with them. A wiped directory is `node_state = None`.
//!
//! # Deliberate bugs
//!
//! [`consensus::BugFlags`] (in [`consensus::Config::bugs`]) switch on known-wrong behaviour;
//! they are honoured only in this crate's unit tests and with the cargo feature `bugs`
//! (`tandem-cluster = { workspace = true, features = ["bugs"] }` in a dev-dependency). See
//! [`consensus::bugs`] for what each does; `tests/bugs_found.rs`
//! (`cargo test -p tandem-cluster --features bugs --test bugs_found`) shows the test cluster's
//! checks catch every one.
#![warn(missing_docs)]

pub mod agent;
pub mod codec;
pub mod consensus;
pub mod container;
pub mod control;
mod error;
pub mod node;
pub mod sim;
pub mod testkit;
pub mod transport;

pub use error::{CodecError, SplitError};
