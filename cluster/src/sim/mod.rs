//! The deterministic simulator (DESIGN §2): the real consensus core and service container over
//! a simulated network, disk and clocks, one thread, one seeded PRNG, virtual time.
//!
//! A scenario is derived entirely from its seed ([`run_seed`]): its fault profile, the fsync
//! policy, clock drifts, client workloads and every random choice. Safety invariants are
//! checked after every input any core handles (see [`invariants`]); at the end come
//! exactly-once completeness, liveness within
//! [`invariants::liveness::LIVENESS_BOUND_NS`] of the quiet phase, and linearizability of the
//! key-value history with stateright's checker.
//!
//! Files: [`rng`] the PRNG; [`trace`] the trace hash; [`network`] the network; [`disk`] a
//! member's disk; [`kv`] the replicated service; [`app`] the recording wrapper around the
//! service container; [`client`] the clients; [`faults`] the fault profile; [`stale`] the stale-suffix fault; [`world`] the
//! world and its step loop; [`invariants`] the checkers, one per file.

pub mod app;
pub mod client;
pub mod disk;
pub mod faults;
pub mod invariants;
pub mod kv;
pub mod network;
pub mod rng;
pub mod stale;
pub mod trace;
pub mod world;

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::consensus::BugFlags;

pub use invariants::Violation;
pub use world::{SeedStats, World};

/// What a run simulates.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Members (3 or 5).
    pub cluster_size: u32,
    /// Clients.
    pub clients: u32,
    /// Most operations per client (each runs between half that and that many).
    pub ops_per_client: u32,
    /// Deliberate core bugs to switch on (honoured only with tandem-cluster's `bugs` feature).
    pub bugs: BugFlags,
    /// Run every member's service split as in the `dedicated` threading mode: a service
    /// engine applies committed frames and records the service's effects, the core replays
    /// them ([`crate::container::remote`]). The engine lags the core as a thread would: after
    /// each input it takes a random number (0 to 2) of the messages held for it.
    pub remote_service: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            cluster_size: 3,
            clients: 3,
            ops_per_client: 40,
            bugs: BugFlags::default(),
            remote_service: false,
        }
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// `None` if every check passed, else the first violation.
    pub violation: Option<Violation>,
    /// Hash of everything delivered and every command (reproducibility).
    pub trace_hash: u64,
    /// What the scenario did.
    pub stats: SeedStats,
    /// The fsync policy drawn.
    pub fsync: &'static str,
}

impl SeedOutcome {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }
}

/// Property name reported when the core (or the simulator) panics: a core assertion caught a
/// broken invariant before a checker did.
pub const PANIC_PROPERTY: &str = "core-assertion";

/// Runs the scenario of `seed`.
pub fn run_seed(seed: u64, opts: &SimOptions) -> SeedOutcome {
    let mut world = World::new(seed, opts);
    let fsync = world.faults().fsync.name();
    let result = catch_unwind(AssertUnwindSafe(|| world.run()));
    let violation = match result {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(v),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "panic".to_string());
            Some(Violation::new(PANIC_PROPERTY, msg))
        }
    };
    SeedOutcome {
        seed,
        violation,
        trace_hash: world.trace.value(),
        stats: world.stats,
        fsync,
    }
}
