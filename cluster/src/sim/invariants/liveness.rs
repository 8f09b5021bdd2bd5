//! Liveness: once faults stop (the quiet phase: every member up, network perfect, disks
//! fast), a leader is elected and every pending client operation completes within
//! [`LIVENESS_BOUND_NS`] of virtual time.

use crate::sim::invariants::{Check, Violation};

/// Property name.
pub const PROPERTY: &str = "liveness";

/// The bound, from the start of the quiet phase: a few election timeouts for the election,
/// plus client failover and catch-up (including an install-snapshot for a wiped member).
pub const LIVENESS_BOUND_NS: i64 = 10_000_000_000;

/// Checks the state at the end of the quiet phase.
pub fn check(quiet_for_ns: i64, leader: Option<u32>, pending_clients: &[u32]) -> Check {
    if leader.is_none() {
        return Err(Violation::new(
            PROPERTY,
            format!(
                "no leader {} ms after faults stopped",
                quiet_for_ns / 1_000_000
            ),
        ));
    }
    if let Some(c) = pending_clients.first() {
        return Err(Violation::new(
            PROPERTY,
            format!(
                "client {c} (of {} unfinished) still waiting {} ms after faults stopped",
                pending_clients.len(),
                quiet_for_ns / 1_000_000
            ),
        ));
    }
    Ok(())
}
