//! The archive's fuzz entry points (`fuzz/src/archive_targets.rs`, run by cargo-fuzz; see
//! `fuzz/README.md`) in the normal test suite: every input that ever failed a target, kept in
//! `fuzz/regressions/<target>/`, and a bounded proptest byte-fuzz of the same entry points,
//! over random bytes and over valid files with bits flipped and tails cut.

#[allow(dead_code)]
#[path = "../../fuzz/src/archive_targets.rs"]
mod archive_targets;

use std::path::PathBuf;

use archive_targets::*;
use proptest::prelude::*;
use tandem_archive::{
    NODE_STATE_FILE_NAME, NodeStateFile, RECORDING_LOG_FILE_NAME, RecordingLog, SNAPSHOTS_DIR_NAME,
    SnapshotStore,
};

fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
                .map(|p| {
                    let bytes = std::fs::read(&p).unwrap();
                    (p, bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn kept_failures_of_every_archive_target_pass() {
    for (target, f) in [
        ("log_recovery", recovery_scan as fn(&[u8])),
        ("node_state", node_state),
        ("recording_log", recording_log),
        ("snapshot", snapshot),
    ] {
        for (path, bytes) in regressions(target) {
            eprintln!("{target}: {}", path.display());
            f(&bytes);
        }
    }
}

/// A valid node-state file (two updates: both slots written).
fn valid_node_state() -> Vec<u8> {
    let dir = scratch("valid-state");
    let mut f = NodeStateFile::open_or_create(&dir, 42, 1).unwrap();
    f.update(|s| {
        s.current_term = 5;
        s.voted_for = Some(2);
    })
    .unwrap();
    f.update(|s| s.commit_position_lower_bound = 4096).unwrap();
    std::fs::read(dir.join(NODE_STATE_FILE_NAME)).unwrap()
}

/// A valid recording log with terms and a snapshot set.
fn valid_recording_log() -> Vec<u8> {
    let dir = scratch("valid-rlog");
    let mut r = RecordingLog::open(&dir).unwrap();
    r.append_term(1, 0, 10).unwrap();
    r.append_term(2, 4096, 20).unwrap();
    r.append_snapshot(2, 8192, 30, 0).unwrap();
    r.append_snapshot(2, 8192, 30, -1).unwrap();
    r.append_term(3, 9000, 40).unwrap();
    std::fs::read(dir.join(RECORDING_LOG_FILE_NAME)).unwrap()
}

/// A valid snapshot file of the consensus module at position 4096 in term 3 (the target's).
fn valid_snapshot() -> Vec<u8> {
    use std::io::Write;
    let dir = scratch("valid-snap");
    let store = SnapshotStore::open(&dir).unwrap();
    let mut w = store.writer(3, 4096, -1, 77).unwrap();
    w.write_all(&[9u8; 300]).unwrap();
    w.finish().unwrap();
    std::fs::read(
        dir.join(SNAPSHOTS_DIR_NAME)
            .join(SnapshotStore::file_name(3, 4096, -1)),
    )
    .unwrap()
}

fn damage(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, bit) in flips {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] ^= 1 << (bit % 8);
        }
    }
    if let Some(c) = cut {
        bytes.truncate(c % (bytes.len() + 1));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn log_recovery_survives_any_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        recovery_scan(&data);
    }

    #[test]
    fn node_state_parser_survives_any_bytes(data in prop::collection::vec(any::<u8>(), 0..9000)) {
        node_state(&data);
    }

    #[test]
    fn node_state_parser_survives_damage(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<usize>()),
    ) {
        node_state(&damage(valid_node_state(), &flips, cut));
    }

    #[test]
    fn recording_log_parser_survives_any_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        recording_log(&data);
    }

    #[test]
    fn recording_log_parser_survives_damage(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<usize>()),
    ) {
        recording_log(&damage(valid_recording_log(), &flips, cut));
    }

    #[test]
    fn snapshot_reader_survives_any_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        snapshot(&data);
    }

    #[test]
    fn snapshot_reader_survives_damage(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<usize>()),
    ) {
        snapshot(&damage(valid_snapshot(), &flips, cut));
    }
}
