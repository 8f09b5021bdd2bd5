//! The recording log: appends, invalidation, recovery plans, torn tails,
//! corruption and seeding from a snapshot.

use std::path::Path;

use proptest::prelude::*;
use tandem_archive::{
    ArchiveError, CONSENSUS_MODULE_SERVICE_ID, EntryKind, RECORDING_LOG_ENTRY_LEN_BYTES,
    RECORDING_LOG_FILE_NAME, RECORDING_LOG_HEADER_LEN_BYTES, RecordingLog,
};

const CM: i32 = CONSENSUS_MODULE_SERVICE_ID;

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join(RECORDING_LOG_FILE_NAME)
}

/// Appends a complete snapshot set: the services first, the consensus module last.
fn append_set(log: &mut RecordingLog, term: u64, position: u64, services: &[i32]) {
    for &s in services {
        log.append_snapshot(term, position, position as i64, s)
            .unwrap();
    }
    log.append_snapshot(term, position, position as i64, CM)
        .unwrap();
}

/// Terms 1..=3 with three snapshot sets (positions 1000, 2000, 3000) of services 0 and 1.
fn populated(dir: &Path) -> RecordingLog {
    let mut log = RecordingLog::open(dir).unwrap();
    log.append_term(1, 0, 10).unwrap();
    append_set(&mut log, 1, 1000, &[0, 1]);
    log.append_term(2, 1500, 20).unwrap();
    append_set(&mut log, 2, 2000, &[0, 1]);
    log.append_term(3, 2500, 30).unwrap();
    append_set(&mut log, 3, 3000, &[0, 1]);
    log
}

#[test]
fn new_log_is_empty_and_plans_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = RecordingLog::open(dir.path()).unwrap();
    assert!(log.entries().is_empty());
    assert!(!log.torn_tail_detected());
    assert_eq!(
        std::fs::metadata(log_path(dir.path())).unwrap().len(),
        RECORDING_LOG_HEADER_LEN_BYTES
    );
    let plan = log.recovery_plan(0, 500).unwrap();
    assert_eq!(
        (
            plan.snapshot,
            plan.replay_from_position,
            plan.replay_to_position
        ),
        (None, 0, 500)
    );
    assert!(plan.term_history.is_empty());
    assert!(matches!(
        log.recovery_plan(64, 500),
        Err(ArchiveError::BelowLogStart {
            position: 0,
            start_position: 64
        })
    ));
}

#[test]
fn round_trip_through_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = populated(dir.path());
    let entries = log.entries().to_vec();
    assert_eq!(entries.len(), 12);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert!(e.valid);
    }
    assert_eq!(entries[0].kind, EntryKind::Term);
    assert_eq!(
        (entries[0].term, entries[0].position, entries[0].timestamp),
        (1, 0, 10)
    );
    assert_eq!(entries[3].kind, EntryKind::Snapshot);
    assert_eq!(
        (entries[3].term, entries[3].position, entries[3].service_id),
        (1, 1000, CM)
    );
    drop(log);
    assert_eq!(
        std::fs::metadata(log_path(dir.path())).unwrap().len(),
        RECORDING_LOG_HEADER_LEN_BYTES + 12 * RECORDING_LOG_ENTRY_LEN_BYTES
    );

    let log = RecordingLog::open(dir.path()).unwrap();
    assert_eq!(log.entries(), &entries[..]);
    assert!(!log.torn_tail_detected());
    let ro = RecordingLog::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.entries(), &entries[..]);

    assert_eq!(log.term_at(0), Some(1));
    assert_eq!(log.term_at(1499), Some(1));
    assert_eq!(log.term_at(1500), Some(2));
    assert_eq!(log.term_at(u64::MAX), Some(3));
    assert_eq!(log.latest_term().unwrap().term, 3);
    assert_eq!(log.term_entry(2).unwrap().position, 1500);
    let sets = log.valid_snapshot_sets();
    assert_eq!(
        sets.iter()
            .map(|s| (s.term, s.position))
            .collect::<Vec<_>>(),
        vec![(1, 1000), (2, 2000), (3, 3000)]
    );
    assert_eq!(sets[2].service_ids(), vec![0, 1]);
    assert_eq!(sets[2].consensus_module().service_id, CM);
    assert_eq!(sets[2].service(1).unwrap().position, 3000);
}

#[test]
fn invalidate_latest_snapshot_makes_recovery_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = populated(dir.path());
    let plan = log.recovery_plan(0, 4000).unwrap();
    let snapshot = plan.snapshot.unwrap();
    assert_eq!(
        (snapshot.term, snapshot.position, snapshot.entries.len()),
        (3, 3000, 3)
    );
    assert_eq!(
        (plan.replay_from_position, plan.replay_to_position),
        (3000, 4000)
    );
    assert_eq!(
        plan.term_history.iter().map(|e| e.term).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    assert!(log.invalidate_latest_snapshot().unwrap());
    let plan = log.recovery_plan(0, 4000).unwrap();
    assert_eq!(plan.snapshot.as_ref().map(|s| s.position), Some(2000));
    assert_eq!(plan.replay_from_position, 2000);

    // It survives a reopen.
    drop(log);
    let mut log = RecordingLog::open(dir.path()).unwrap();
    assert_eq!(log.entries().iter().filter(|e| !e.valid).count(), 3);
    assert_eq!(log.latest_snapshot_set().unwrap().position, 2000);

    assert!(log.invalidate_latest_snapshot().unwrap());
    assert!(log.invalidate_latest_snapshot().unwrap());
    assert!(!log.invalidate_latest_snapshot().unwrap());
    let plan = log.recovery_plan(0, 4000).unwrap();
    assert_eq!((plan.snapshot, plan.replay_from_position), (None, 0));
    // A log that no longer starts at 0 cannot be replayed without a snapshot.
    assert!(matches!(
        log.recovery_plan(1000, 4000),
        Err(ArchiveError::BelowLogStart { .. })
    ));
}

#[test]
fn a_set_without_the_consensus_module_entry_is_incomplete_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = populated(dir.path());
    // A crash while appending the set at 4000: only the services' entries made it.
    log.append_snapshot(3, 4000, 40, 0).unwrap();
    log.append_snapshot(3, 4000, 40, 1).unwrap();
    assert_eq!(log.latest_snapshot_set().unwrap().position, 3000);
    assert_eq!(log.valid_snapshot_sets().len(), 3);
    // invalidate_latest_snapshot works on complete sets.
    assert!(log.invalidate_latest_snapshot().unwrap());
    assert_eq!(log.latest_snapshot_set().unwrap().position, 2000);
}

#[test]
fn invalidate_entry_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = populated(dir.path());
    // Invalidating the consensus module's entry of the newest set makes it incomplete.
    assert!(log.invalidate_entry(11).unwrap());
    assert!(!log.invalidate_entry(11).unwrap());
    assert_eq!(log.latest_snapshot_set().unwrap().position, 2000);
    assert!(matches!(
        log.invalidate_entry(12),
        Err(ArchiveError::NotFound(_))
    ));
    drop(log);
    assert!(!RecordingLog::open(dir.path()).unwrap().entries()[11].valid);
}

#[test]
fn recovery_plan_when_the_log_ends_below_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let log = populated(dir.path());
    let plan = log.recovery_plan(3000, 3000).unwrap();
    assert_eq!(
        (plan.replay_from_position, plan.replay_to_position),
        (3000, 3000)
    );
    let plan = log.recovery_plan(0, 100).unwrap();
    assert_eq!(
        (plan.replay_from_position, plan.replay_to_position),
        (3000, 3000)
    );
    assert!(matches!(
        log.recovery_plan(3500, 4000),
        Err(ArchiveError::BelowLogStart { position: 3000, .. })
    ));
}

#[test]
fn torn_partial_last_entry_is_detected_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let entries = populated(dir.path()).entries().to_vec();
    let path = log_path(dir.path());
    let good_len = std::fs::metadata(&path).unwrap().len();
    for partial in [1u64, 7, 32, 63] {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::iter::repeat_n(0x5Au8, partial as usize));
        std::fs::write(&path, &bytes).unwrap();
        let log = RecordingLog::open(dir.path()).unwrap();
        assert!(log.torn_tail_detected());
        assert_eq!(log.entries(), &entries[..]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            good_len,
            "torn tail cut off"
        );
    }
}

#[test]
fn torn_last_full_entry_is_detected_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let entries = populated(dir.path()).entries().to_vec();
    let path = log_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - RECORDING_LOG_ENTRY_LEN_BYTES as usize;
    bytes[last + 20..].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let ro = RecordingLog::open_read_only(dir.path()).unwrap();
    assert!(ro.torn_tail_detected());
    assert_eq!(ro.entries(), &entries[..11]);
    drop(ro);

    let mut log = RecordingLog::open(dir.path()).unwrap();
    assert!(log.torn_tail_detected());
    assert_eq!(log.entries(), &entries[..11]);
    // The set at 3000 lost its consensus module entry: it is incomplete.
    assert_eq!(log.latest_snapshot_set().unwrap().position, 2000);
    // Appending again reuses the slot; the reopened log is clean.
    log.append_snapshot(3, 3000, 3000, CM).unwrap();
    drop(log);
    let log = RecordingLog::open(dir.path()).unwrap();
    assert!(!log.torn_tail_detected());
    assert_eq!(log.entries(), &entries[..]);
}

#[test]
fn corruption_in_the_middle_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    let path = log_path(dir.path());
    let good = std::fs::read(&path).unwrap();
    for index in [0u64, 5, 10] {
        let offset = RECORDING_LOG_HEADER_LEN_BYTES + index * RECORDING_LOG_ENTRY_LEN_BYTES;
        let mut bytes = good.clone();
        bytes[offset as usize + 17] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        match RecordingLog::open(dir.path()) {
            Err(ArchiveError::Corrupted { file, position, .. }) => {
                assert_eq!(file, path);
                assert_eq!(position, offset);
            }
            other => panic!("expected Corrupted, got {other:?}"),
        }
        // Open must not have changed the file.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
    // A partial entry after a bad full entry is not a torn append: corrupted.
    let mut bytes = good.clone();
    let last = bytes.len() - RECORDING_LOG_ENTRY_LEN_BYTES as usize;
    bytes[last + 3] ^= 1;
    bytes.extend([1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        RecordingLog::open(dir.path()),
        Err(ArchiveError::Corrupted { .. })
    ));
}

#[test]
fn bad_headers_are_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    let path = log_path(dir.path());
    let good = std::fs::read(&path).unwrap();
    for len in [0usize, 10, 63] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(matches!(
            RecordingLog::open(dir.path()),
            Err(ArchiveError::Corrupted { position: 0, .. })
        ));
    }
    let mut bytes = good.clone();
    bytes[9] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        RecordingLog::open(dir.path()),
        Err(ArchiveError::Corrupted { .. })
    ));
}

#[test]
fn seed_from_snapshot_keeps_the_newest_set_and_its_terms_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = populated(dir.path());
    log.append_term(4, 3500, 40).unwrap();
    log.append_snapshot(4, 3600, 41, 0).unwrap(); // incomplete set: dropped
    let before = std::fs::read(log_path(dir.path())).unwrap();
    drop(log);

    let backup = RecordingLog::seed_from_snapshot(dir.path()).unwrap();
    assert_eq!(
        backup,
        dir.path().join(format!("{RECORDING_LOG_FILE_NAME}.bak-1"))
    );
    assert_eq!(std::fs::read(&backup).unwrap(), before);
    assert!(
        !dir.path()
            .join(format!("{RECORDING_LOG_FILE_NAME}.tmp"))
            .exists()
    );

    let log = RecordingLog::open(dir.path()).unwrap();
    let summary: Vec<_> = log
        .entries()
        .iter()
        .map(|e| (e.index, e.kind, e.term, e.position, e.service_id))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, EntryKind::Term, 3, 2500, 0),
            (1, EntryKind::Snapshot, 3, 3000, 0),
            (2, EntryKind::Snapshot, 3, 3000, 1),
            (3, EntryKind::Snapshot, 3, 3000, CM),
            (4, EntryKind::Term, 4, 3500, 0),
        ]
    );
    let plan = log.recovery_plan(3000, 3000).unwrap();
    assert_eq!(plan.snapshot.unwrap().position, 3000);
    drop(log);

    // A second seed keeps a second backup.
    let backup2 = RecordingLog::seed_from_snapshot(dir.path()).unwrap();
    assert_eq!(
        backup2,
        dir.path().join(format!("{RECORDING_LOG_FILE_NAME}.bak-2"))
    );

    // Without any snapshot there is nothing to seed from.
    let empty = tempfile::tempdir().unwrap();
    let mut log = RecordingLog::open(empty.path()).unwrap();
    log.append_term(1, 0, 0).unwrap();
    drop(log);
    assert!(matches!(
        RecordingLog::seed_from_snapshot(empty.path()),
        Err(ArchiveError::NotFound(_))
    ));
}

#[test]
#[should_panic(expected = "is not above the newest term")]
fn appending_an_older_term_is_a_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RecordingLog::open(dir.path()).unwrap();
    log.append_term(2, 0, 0).unwrap();
    let _ = log.append_term(2, 10, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Bit flips and truncations anywhere give a typed error or a valid log
    /// (a torn tail cut off), never a panic, and a log that opens is a prefix
    /// of the original (or the original with one entry changed by the flip,
    /// which the CRC makes impossible).
    #[test]
    fn damaged_files_never_panic(flips in proptest::collection::vec((any::<usize>(), 0u8..8), 0..3), cut in any::<usize>(), do_cut in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let original = populated(dir.path()).entries().to_vec();
        let path = log_path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, bit) in flips {
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
        }
        if do_cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        std::fs::write(&path, &bytes).unwrap();
        match RecordingLog::open(dir.path()) {
            Ok(log) => {
                let n = log.entries().len();
                prop_assert_eq!(log.entries(), &original[..n]);
                let _ = log.recovery_plan(0, 10_000);
            }
            Err(ArchiveError::Corrupted { file, .. }) => prop_assert_eq!(file, path),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
