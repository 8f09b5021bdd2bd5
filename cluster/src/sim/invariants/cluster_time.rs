//! Invariant 5: cluster time never decreases along the committed log (the leader stamps each
//! frame with max(previous stamp, its clock), even across leaders and clock steps).

use std::collections::BTreeMap;

use crate::sim::invariants::log_matching::MirrorFrame;
use crate::sim::invariants::{Check, Violation};

/// Property name.
pub const PROPERTY: &str = "cluster-time-monotonic";

/// Checks a frame about to join the committed log against its neighbours.
pub fn check_insert(committed: &BTreeMap<u64, MirrorFrame>, f: &MirrorFrame) -> Check {
    if let Some((_, prev)) = committed.range(..f.end).next_back()
        && prev.timestamp > f.timestamp
    {
        return Err(Violation::new(
            PROPERTY,
            format!(
                "committed frame ending at {} has time {} < {} of the frame ending at {}",
                f.end, f.timestamp, prev.timestamp, prev.end
            ),
        ));
    }
    if let Some((_, next)) = committed.range(f.end + 1..).next()
        && next.timestamp < f.timestamp
    {
        return Err(Violation::new(
            PROPERTY,
            format!(
                "committed frame ending at {} has time {} > {} of the later frame ending at {}",
                f.end, f.timestamp, next.timestamp, next.end
            ),
        ));
    }
    Ok(())
}
