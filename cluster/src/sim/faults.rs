//! The fault profile of one scenario, drawn from its seed: how bad the network is, how often
//! members crash (process or machine), are wiped, see slow disks or clock steps, and how often
//! the operator snapshots, invalidates and purges.

use crate::sim::disk::FsyncPolicy;
use crate::sim::network::NetworkProfile;
use crate::sim::rng::SimRng;

/// Per-scenario fault rates (probabilities are per 1 ms step).
#[derive(Debug, Clone, Copy)]
pub struct FaultProfile {
    /// The log fsync policy of every member.
    pub fsync: FsyncPolicy,
    /// Network behaviour during the fault phase.
    pub network: NetworkProfile,
    /// Length of the fault phase.
    pub fault_phase_ns: i64,
    /// A partition starts (when none is active).
    pub partition: f64,
    /// A process crash.
    pub process_crash: f64,
    /// A machine crash.
    pub machine_crash: f64,
    /// A member is wiped and rejoins.
    pub wipe: f64,
    /// A disk turns slow for a while.
    pub slow_disk: f64,
    /// A member's clock steps.
    pub clock_step: f64,
    /// The operator asks for a snapshot.
    pub snapshot: f64,
    /// The operator purges a member's log.
    pub purge: f64,
    /// The operator invalidates a member's newest snapshot.
    pub invalidate: f64,
    /// Largest clock drift, parts per million.
    pub drift_ppm: i64,
}

impl FaultProfile {
    /// Draws a profile.
    pub fn draw(rng: &mut SimRng) -> Self {
        let fsync = match rng.below(3) {
            0 => FsyncPolicy::None,
            1 => FsyncPolicy::Batch,
            _ => FsyncPolicy::Every,
        };
        let harsh = rng.unit();
        let lat_min = rng.range_i64(50_000, 500_000);
        Self {
            fsync,
            network: NetworkProfile {
                drop: harsh * 0.08,
                duplicate: rng.unit() * 0.04,
                latency_min_ns: lat_min,
                latency_max_ns: lat_min + rng.range_i64(0, 5_000_000),
                spike: rng.unit() * 0.02,
                spike_max_ns: rng.range_i64(1_000_000, 150_000_000),
            },
            fault_phase_ns: rng.range_i64(3_000_000_000, 8_000_000_000),
            partition: 0.002 + harsh * 0.01,
            process_crash: 0.001 + harsh * 0.004,
            machine_crash: 0.0005 + harsh * 0.003,
            wipe: rng.unit() * 0.001,
            slow_disk: rng.unit() * 0.002,
            clock_step: rng.unit() * 0.001,
            snapshot: 0.0005 + rng.unit() * 0.003,
            purge: rng.unit() * 0.003,
            invalidate: rng.unit() * 0.0008,
            drift_ppm: rng.range_i64(0, 20_000),
        }
    }
}
