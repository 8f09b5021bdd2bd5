//! The archive directory as a whole: retention, purge, holds, the recovery
//! plan after invalidation, and the writer lock.

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use tandem_archive::{
    Archive, ArchiveConfig, ArchiveError, CONSENSUS_MODULE_SERVICE_ID, Durability, FrameHeader,
    LogConfig,
};

const SEG: u64 = 64 * 1024;

fn config() -> ArchiveConfig {
    ArchiveConfig {
        log: LogConfig {
            segment_len_bytes: SEG,
            max_frame_len_bytes: 8192,
            durability: Durability::None,
            prepare_next_segment: true,
            prefault: false,
        },
        ..ArchiveConfig::default()
    }
}

fn open(dir: &Path) -> Archive {
    Archive::open(dir, 7, 1, config()).expect("open archive").0
}

fn append(archive: &mut Archive, frames: usize) {
    let term = archive.log().last_term().max(1);
    for i in 0..frames {
        let h = FrameHeader {
            frame_type: 1,
            term,
            sequence: i as u64,
            ..FrameHeader::default()
        };
        archive.log_mut().append(&h, &[i as u8; 500]).unwrap();
    }
}

/// Takes a snapshot set (service 0, then the consensus module) at the append position.
fn snapshot(archive: &mut Archive) -> u64 {
    let position = archive.log().append_position();
    let term = archive.log().last_term();
    for service_id in [0, CONSENSUS_MODULE_SERVICE_ID] {
        let mut w = archive
            .snapshots()
            .writer(term, position, service_id, 0)
            .unwrap();
        w.write_all(&position.to_le_bytes()).unwrap();
        w.finish().unwrap();
        archive
            .recording_log_mut()
            .append_snapshot(term, position, 0, service_id)
            .unwrap();
    }
    position
}

fn read_snapshot(archive: &Archive, position: u64) -> u64 {
    let mut r = archive.snapshots().reader(position, 0).unwrap();
    let mut b = [0u8; 8];
    std::io::Read::read_exact(&mut r, &mut b).unwrap();
    u64::from_le_bytes(b)
}

#[test]
fn purge_keeps_two_snapshot_sets_and_the_log_after_the_older() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path());
    append(&mut a, 400);
    let s1 = snapshot(&mut a);
    append(&mut a, 400);
    let s2 = snapshot(&mut a);
    append(&mut a, 400);
    let s3 = snapshot(&mut a);
    append(&mut a, 100);

    let report = a.purge_segments(u64::MAX).unwrap();
    assert_eq!(report.limit_position, s2);
    assert!(report.segments_removed > 0);
    assert_eq!(report.snapshots_removed, 2, "both files of the oldest set");
    assert!(a.log().start_position() <= s2);
    assert!(a.log().start_position() > s1);
    assert!(matches!(
        a.log().frames(0, u64::MAX),
        Err(ArchiveError::BelowLogStart { .. })
    ));
    assert!(a.snapshots().reader(s1, 0).is_err());

    let plan = a.recovery_plan().unwrap();
    assert_eq!(plan.snapshot.as_ref().unwrap().position, s3);
    assert!(a.recording_log_mut().invalidate_latest_snapshot().unwrap());
    let plan = a.recovery_plan().unwrap();
    let fallback = plan.snapshot.as_ref().unwrap().position;
    assert_eq!(fallback, s2);
    assert_eq!(read_snapshot(&a, s2), s2);
    assert!(
        a.log()
            .frames(plan.replay_from_position, plan.replay_to_position)
            .unwrap()
            .count()
            > 0
    );

    // Purge again: with s3 invalidated, only one valid set: nothing more may go.
    let again = a.purge_segments(u64::MAX).unwrap();
    assert_eq!(again.segments_removed, 0);
    assert!(a.recovery_plan().is_ok());
    drop(a);
    let a = open(dir.path());
    assert_eq!(a.recovery_plan().unwrap().snapshot.unwrap().position, s2);
}

#[test]
fn holds_and_the_callers_limit_bound_purge() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path());
    append(&mut a, 400);
    let held = a.log().append_position();
    append(&mut a, 400);
    snapshot(&mut a);
    append(&mut a, 400);
    snapshot(&mut a);
    append(&mut a, 400);
    snapshot(&mut a);
    {
        let hold = a.hold(held);
        let r = a.purge_segments(u64::MAX).unwrap();
        assert_eq!(r.limit_position, held);
        assert!(a.log().start_position() <= hold.position());
        assert!(a.log().frame_at(held).is_ok());
    }
    let up_to = a.log().start_position() + 3 * SEG;
    let r = a.purge_segments(up_to).unwrap();
    assert!(r.limit_position <= up_to);
    assert!(a.log().start_position() <= up_to);
    assert!(a.lowest_hold().is_none());
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _a = open(dir.path());
    match Archive::open(dir.path(), 7, 1, config()) {
        Err(ArchiveError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_directory_of_another_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, recovery) = Archive::open(dir.path(), 7, 1, config()).unwrap();
    assert!(recovery.node_state_created);
    drop(a);
    assert!(matches!(
        Archive::open(dir.path(), 7, 2, config()),
        Err(ArchiveError::IdentityMismatch { .. })
    ));
    let (_, recovery) = Archive::open(dir.path(), 7, 1, config()).unwrap();
    assert!(!recovery.node_state_created);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the snapshots, holds and limits, purge never removes what the
    /// recovery plan, one invalidate-latest-snapshot, or a hold needs.
    #[test]
    fn purge_never_removes_what_recovery_needs(
        steps in proptest::collection::vec((1usize..300, any::<bool>()), 1..12),
        hold_at in proptest::option::of(any::<prop::sample::Index>()),
        up_to in proptest::option::of(any::<u64>()),
        purges in 1usize..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(dir.path());
        let mut boundaries = vec![0u64];
        for (frames, snap) in &steps {
            append(&mut a, *frames);
            boundaries.push(a.log().append_position());
            if *snap {
                snapshot(&mut a);
            }
        }
        let hold_position = hold_at.map(|i| boundaries[i.index(boundaries.len())]);
        let hold = hold_position.map(|p| a.hold(p));
        for _ in 0..purges {
            a.purge_segments(up_to.unwrap_or(u64::MAX)).unwrap();
        }
        if let Some(h) = &hold {
            prop_assert!(a.log().start_position() <= h.position());
            prop_assert!(a.log().frames(h.position(), u64::MAX).is_ok());
        }
        let plan = a.recovery_plan().unwrap();
        if let Some(s) = &plan.snapshot {
            prop_assert_eq!(read_snapshot(&a, s.position), s.position);
        }
        prop_assert!(a.log().frames(plan.replay_from_position, plan.replay_to_position).is_ok());
        if a.recording_log_mut().invalidate_latest_snapshot().unwrap() {
            let plan = a.recovery_plan().unwrap();
            if let Some(s) = &plan.snapshot {
                prop_assert_eq!(read_snapshot(&a, s.position), s.position);
            }
            prop_assert!(a.log().frames(plan.replay_from_position, plan.replay_to_position).is_ok());
        }
    }
}
