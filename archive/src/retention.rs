//! Retention: which snapshot sets to keep and how far the log may be purged.
//!
//! Pure functions, no IO. The newest `count` complete valid snapshot sets are
//! kept ([`DEFAULT_RETAINED_SNAPSHOT_SETS`] by default) and the log from the
//! oldest of them on, so that after `invalidate-latest-snapshot` recovery can
//! still load the set before it and replay the log from there. While fewer
//! than `count` sets exist, nothing of the log is purgeable: falling back
//! past the oldest set means a full replay from the log start.
//!
//! A purge must also respect what others still need (a lagging member's
//! position, an install-snapshot in progress, the commit position): see
//! [`purge_limit`].

use crate::error::{ArchiveError, Result};

/// How many snapshot sets are kept by default.
pub const DEFAULT_RETAINED_SNAPSHOT_SETS: usize = 2;

/// What retention allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    /// The log must be kept from this position on. It may lie below the log's
    /// current start, in which case nothing is purgeable.
    pub retain_from_position: u64,
    /// Positions of the snapshot sets beyond retention, oldest first: their
    /// snapshot files may be deleted.
    pub snapshot_sets_to_delete: Vec<u64>,
}

/// Plans retention given the positions of the complete valid snapshot sets
/// (in any order; duplicates count once), the log's start position and how
/// many sets to keep.
///
/// # Errors
///
/// [`ArchiveError::Config`] if `retained_sets` is 0.
pub fn retention_plan(
    snapshot_set_positions: &[u64],
    log_start_position: u64,
    retained_sets: usize,
) -> Result<RetentionPlan> {
    if retained_sets == 0 {
        return Err(ArchiveError::Config(
            "snapshot retention count must be at least 1".into(),
        ));
    }
    let mut positions = snapshot_set_positions.to_vec();
    positions.sort_unstable();
    positions.dedup();
    if positions.len() < retained_sets {
        return Ok(RetentionPlan {
            retain_from_position: log_start_position,
            snapshot_sets_to_delete: Vec::new(),
        });
    }
    let first_retained = positions.len() - retained_sets;
    let plan = RetentionPlan {
        retain_from_position: positions[first_retained],
        snapshot_sets_to_delete: positions[..first_retained].to_vec(),
    };
    assert!(
        plan.snapshot_sets_to_delete
            .iter()
            .all(|&p| p < plan.retain_from_position)
    );
    Ok(plan)
}

/// The highest position the log may be purged up to: the lowest of what was
/// asked (`up_to`), the retention point and every hold (positions a lagging
/// member, an install-snapshot in progress or recovery still need).
pub fn purge_limit(up_to: u64, retention_point: u64, holds: impl Iterator<Item = u64>) -> u64 {
    holds.fold(up_to.min(retention_point), u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn count_zero_is_refused() {
        assert!(matches!(
            retention_plan(&[10], 0, 0),
            Err(ArchiveError::Config(_))
        ));
    }

    #[test]
    fn fewer_sets_than_count_keep_everything() {
        let plan = retention_plan(&[100], 0, 2).unwrap();
        assert_eq!(
            plan,
            RetentionPlan {
                retain_from_position: 0,
                snapshot_sets_to_delete: vec![]
            }
        );
        let plan = retention_plan(&[], 64, 2).unwrap();
        assert_eq!(plan.retain_from_position, 64);
    }

    #[test]
    fn keeps_newest_sets_and_log_from_oldest_kept() {
        let plan = retention_plan(&[300, 100, 200, 400], 0, 2).unwrap();
        assert_eq!(
            plan,
            RetentionPlan {
                retain_from_position: 300,
                snapshot_sets_to_delete: vec![100, 200]
            }
        );
        let plan = retention_plan(&[300, 100, 200, 400, 400], 0, 1).unwrap();
        assert_eq!(
            plan,
            RetentionPlan {
                retain_from_position: 400,
                snapshot_sets_to_delete: vec![100, 200, 300]
            }
        );
        let plan = retention_plan(&[100, 200], 0, 2).unwrap();
        assert_eq!(
            plan,
            RetentionPlan {
                retain_from_position: 100,
                snapshot_sets_to_delete: vec![]
            }
        );
    }

    #[test]
    fn purge_limit_is_the_minimum() {
        assert_eq!(purge_limit(500, 300, [400, 350].into_iter()), 300);
        assert_eq!(purge_limit(500, 300, [400, 200].into_iter()), 200);
        assert_eq!(purge_limit(100, 300, std::iter::empty()), 100);
    }

    proptest! {
        #[test]
        fn purge_never_removes_what_recovery_needs(
            mut positions in proptest::collection::vec(0u64..10_000, 0..8),
            log_start in 0u64..2_000,
            count in 1usize..5,
            up_to in 0u64..20_000,
            holds in proptest::collection::vec(0u64..20_000, 0..4),
        ) {
            // Snapshots exist only within the log that held them.
            positions.retain(|&p| p >= log_start);
            let plan = retention_plan(&positions, log_start, count).unwrap();
            let limit = purge_limit(up_to, plan.retain_from_position, holds.iter().copied());

            let mut sorted = positions.clone();
            sorted.sort_unstable();
            sorted.dedup();
            // Recovery uses the newest set, or replays from the log start.
            let recovery_from = sorted.last().copied().unwrap_or(log_start);
            prop_assert!(limit <= recovery_from);
            // After one invalidate-latest-snapshot, recovery uses the set before
            // it, or replays from the log start. Guaranteed when count >= 2.
            if count >= 2 {
                let fallback_from = if sorted.len() >= 2 { sorted[sorted.len() - 2] } else { log_start };
                prop_assert!(limit <= fallback_from);
            }
            prop_assert!(limit <= up_to);
            for &hold in &holds {
                prop_assert!(limit <= hold);
            }
            // Every retained set is above the limit; every deleted set is below
            // the retention point and not among the newest `count`.
            let retained: Vec<u64> = sorted.iter().copied().filter(|p| !plan.snapshot_sets_to_delete.contains(p)).collect();
            prop_assert_eq!(retained.len(), sorted.len().min(count));
            for &p in &retained {
                prop_assert!(limit <= p);
            }
        }
    }
}
