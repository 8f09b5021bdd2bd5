//! The node-state file: durable term, vote and commit lower bound, identity
//! checks, and proof against torn updates.

use std::path::Path;

use proptest::prelude::*;
use tandem_archive::{
    ArchiveError, NODE_STATE_FILE_LEN_BYTES, NODE_STATE_FILE_NAME, NODE_STATE_SLOT_LEN_BYTES,
    NODE_STATE_SLOT_OFFSETS, NodeState, NodeStateFile,
};

const CLUSTER_ID: u64 = 0xC1u64 << 32 | 7;
const MEMBER_ID: u32 = 2;

fn file_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(NODE_STATE_FILE_NAME)).unwrap()
}

fn write_bytes(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join(NODE_STATE_FILE_NAME), bytes).unwrap();
}

/// Simulates `store(next)` interrupted by a crash: the slot the update targets
/// gets only the first `prefix_len` bytes of its new contents, followed by
/// `garbage` (what else the disk happened to hold). Works through the public API
/// only: the update is done on a copy, and the changed slot is found by diffing.
fn interrupted_store(dir: &Path, next: &NodeState, prefix_len: usize, garbage: &[u8]) {
    let old = file_bytes(dir);
    let scratch = tempfile::tempdir().unwrap();
    write_bytes(scratch.path(), &old);
    let mut copy =
        NodeStateFile::open_or_create(scratch.path(), next.cluster_id, next.member_id).unwrap();
    copy.store(next).unwrap();
    drop(copy);
    let new = file_bytes(scratch.path());
    assert_eq!(new.len(), old.len());

    let changed: Vec<usize> = NODE_STATE_SLOT_OFFSETS
        .iter()
        .map(|&o| o as usize)
        .filter(|&o| old[o..o + NODE_STATE_SLOT_LEN_BYTES] != new[o..o + NODE_STATE_SLOT_LEN_BYTES])
        .collect();
    assert_eq!(changed.len(), 1, "an update writes exactly one slot");
    let slot = changed[0];

    let mut torn = old;
    let prefix_len = prefix_len.min(NODE_STATE_SLOT_LEN_BYTES);
    torn[slot..slot + prefix_len].copy_from_slice(&new[slot..slot + prefix_len]);
    let garbage_len = garbage.len().min(NODE_STATE_SLOT_LEN_BYTES - prefix_len);
    torn[slot + prefix_len..slot + prefix_len + garbage_len]
        .copy_from_slice(&garbage[..garbage_len]);
    write_bytes(dir, &torn);
}

#[test]
fn create_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    assert!(f.created());
    assert_eq!(*f.state(), NodeState::new(CLUSTER_ID, MEMBER_ID));
    assert_eq!(f.path(), dir.path().join(NODE_STATE_FILE_NAME));
    assert_eq!(
        std::fs::metadata(f.path()).unwrap().len(),
        NODE_STATE_FILE_LEN_BYTES
    );
    assert!(
        !dir.path()
            .join(format!("{NODE_STATE_FILE_NAME}.tmp"))
            .exists()
    );

    f.update(|s| {
        s.current_term = 3;
        s.voted_for = Some(1);
    })
    .unwrap();
    f.update(|s| s.commit_position_lower_bound = 4096).unwrap();
    f.update(|s| {
        s.current_term = 5;
        s.voted_for = None;
    })
    .unwrap();
    let expected = NodeState {
        current_term: 5,
        voted_for: None,
        commit_position_lower_bound: 4096,
        cluster_id: CLUSTER_ID,
        member_id: MEMBER_ID,
    };
    assert_eq!(*f.state(), expected);
    let sequence = f.sequence();
    drop(f);

    let f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    assert!(!f.created());
    assert_eq!(*f.state(), expected);
    assert_eq!(f.sequence(), sequence);
    let ro = NodeStateFile::open_existing(dir.path()).unwrap();
    assert_eq!(*ro.state(), expected);
}

#[test]
fn every_update_is_visible_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    for term in 1..=20u64 {
        f.update(|s| {
            s.current_term = term;
            s.voted_for = Some((term % 3) as u32);
            s.commit_position_lower_bound = term * 64;
        })
        .unwrap();
        let reopened = NodeStateFile::open_existing(dir.path()).unwrap();
        assert_eq!(reopened.state(), f.state());
    }
}

#[test]
fn identity_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap());
    match NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID + 1) {
        Err(ArchiveError::IdentityMismatch {
            cluster_id,
            member_id,
            found_cluster_id,
            found_member_id,
            path,
        }) => {
            assert_eq!((cluster_id, member_id), (CLUSTER_ID, MEMBER_ID + 1));
            assert_eq!((found_cluster_id, found_member_id), (CLUSTER_ID, MEMBER_ID));
            assert_eq!(path, dir.path().join(NODE_STATE_FILE_NAME));
        }
        other => panic!("expected IdentityMismatch, got {other:?}"),
    }
    assert!(matches!(
        NodeStateFile::open_or_create(dir.path(), CLUSTER_ID + 1, MEMBER_ID),
        Err(ArchiveError::IdentityMismatch { .. })
    ));
    // Tools read it whatever the identity.
    assert_eq!(
        NodeStateFile::open_existing(dir.path())
            .unwrap()
            .state()
            .member_id,
        MEMBER_ID
    );
}

#[test]
fn open_existing_of_a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        NodeStateFile::open_existing(dir.path()),
        Err(ArchiveError::Io { .. })
    ));
}

#[test]
fn interrupted_update_yields_the_last_completed_or_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    f.update(|s| {
        s.current_term = 4;
        s.voted_for = Some(0);
    })
    .unwrap();
    let completed = *f.state();
    drop(f);
    let next = NodeState {
        current_term: 5,
        voted_for: Some(2),
        ..completed
    };
    for prefix_len in 0..=NODE_STATE_SLOT_LEN_BYTES {
        let dir_copy = tempfile::tempdir().unwrap();
        write_bytes(dir_copy.path(), &file_bytes(dir.path()));
        interrupted_store(dir_copy.path(), &next, prefix_len, &[0xA5; 17]);
        let state = *NodeStateFile::open_or_create(dir_copy.path(), CLUSTER_ID, MEMBER_ID)
            .unwrap()
            .state();
        assert!(
            state == completed || state == next,
            "prefix {prefix_len}: {state:?}"
        );
        if prefix_len == NODE_STATE_SLOT_LEN_BYTES {
            assert_eq!(state, next);
        }
    }
}

#[test]
fn corrupted_newest_slot_falls_back_and_both_corrupted_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    f.update(|s| s.current_term = 1).unwrap();
    let older = *f.state();
    f.update(|s| s.current_term = 2).unwrap();
    drop(f);
    let good = file_bytes(dir.path());

    // Find the newest slot: flipping a bit in it changes what is read.
    let mut fell_back = 0;
    for &offset in &NODE_STATE_SLOT_OFFSETS {
        let mut bytes = good.clone();
        bytes[offset as usize + 30] ^= 0x10;
        write_bytes(dir.path(), &bytes);
        let state = *NodeStateFile::open_existing(dir.path()).unwrap().state();
        if state == older {
            fell_back += 1;
        } else {
            assert_eq!(state.current_term, 2);
        }
    }
    assert_eq!(fell_back, 1);

    let mut bytes = good.clone();
    for &offset in &NODE_STATE_SLOT_OFFSETS {
        bytes[offset as usize + 3] ^= 0x01;
    }
    write_bytes(dir.path(), &bytes);
    assert!(matches!(
        NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID),
        Err(ArchiveError::Corrupted { .. })
    ));
}

#[test]
fn garbage_and_truncated_files_are_typed_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    drop(NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap());
    let good = file_bytes(dir.path());
    for len in [0, 1, 8, 40, 59] {
        write_bytes(dir.path(), &good[..len]);
        assert!(
            matches!(
                NodeStateFile::open_existing(dir.path()),
                Err(ArchiveError::Corrupted { .. })
            ),
            "len {len}"
        );
    }
    // Slot A intact, slot B cut off: still readable.
    write_bytes(dir.path(), &good[..4096 + 30]);
    assert_eq!(
        NodeStateFile::open_existing(dir.path())
            .unwrap()
            .state()
            .cluster_id,
        CLUSTER_ID
    );

    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for len in [1usize, 100, 512, 4096, 4608, 10_000] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write_bytes(dir.path(), &garbage);
        assert!(matches!(
            NodeStateFile::open_existing(dir.path()),
            Err(ArchiveError::Corrupted { .. })
        ));
    }
}

#[test]
#[should_panic(expected = "term must not decrease")]
fn decreasing_term_is_a_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    f.update(|s| s.current_term = 3).unwrap();
    let _ = f.update(|s| s.current_term = 2);
}

#[test]
#[should_panic(expected = "vote must not change")]
fn changing_the_vote_within_a_term_is_a_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    f.update(|s| {
        s.current_term = 3;
        s.voted_for = Some(1);
    })
    .unwrap();
    let _ = f.update(|s| s.voted_for = Some(2));
}

#[test]
#[should_panic(expected = "commit position lower bound must not decrease")]
fn decreasing_commit_lower_bound_is_a_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
    f.update(|s| s.commit_position_lower_bound = 100).unwrap();
    let _ = f.update(|s| s.commit_position_lower_bound = 99);
}

#[test]
#[should_panic(expected = "read-only")]
fn storing_through_a_read_only_file_is_a_bug() {
    let dir = tempfile::tempdir().unwrap();
    drop(NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap());
    let mut f = NodeStateFile::open_existing(dir.path()).unwrap();
    let _ = f.update(|s| s.current_term = 1);
}

#[derive(Debug, Clone)]
enum Op {
    Update {
        term_bump: u64,
        vote: Option<u32>,
        commit_bump: u64,
    },
    Torn {
        term_bump: u64,
        vote: Option<u32>,
        commit_bump: u64,
        prefix_len: usize,
        garbage: Vec<u8>,
    },
    Reopen,
}

fn next_state(
    current: &NodeState,
    term_bump: u64,
    vote: Option<u32>,
    commit_bump: u64,
) -> NodeState {
    let voted_for = if term_bump == 0 && current.voted_for.is_some() {
        current.voted_for
    } else {
        vote
    };
    NodeState {
        current_term: current.current_term + term_bump,
        voted_for,
        commit_position_lower_bound: current.commit_position_lower_bound + commit_bump,
        ..*current
    }
}

fn op() -> impl Strategy<Value = Op> {
    let update = (0u64..3, proptest::option::of(0u32..5), 0u64..1000);
    prop_oneof![
        4 => update.clone().prop_map(|(term_bump, vote, commit_bump)| Op::Update { term_bump, vote, commit_bump }),
        3 => (update, 0usize..=NODE_STATE_SLOT_LEN_BYTES, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(
            |((term_bump, vote, commit_bump), prefix_len, garbage)| Op::Torn {
                term_bump,
                vote,
                commit_bump,
                prefix_len,
                garbage
            }
        ),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever sequence of completed and interrupted updates, the state read
    /// back is the last completed update or the interrupted one, never older.
    #[test]
    fn torn_updates_never_lose_a_completed_update(ops in proptest::collection::vec(op(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let mut file = Some(NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap());
        let mut completed = NodeState::new(CLUSTER_ID, MEMBER_ID);
        for op in ops {
            match op {
                Op::Update { term_bump, vote, commit_bump } => {
                    let next = next_state(&completed, term_bump, vote, commit_bump);
                    file.as_mut().unwrap().store(&next).unwrap();
                    completed = next;
                }
                Op::Torn { term_bump, vote, commit_bump, prefix_len, garbage } => {
                    let next = next_state(&completed, term_bump, vote, commit_bump);
                    drop(file.take());
                    interrupted_store(dir.path(), &next, prefix_len, &garbage);
                    let reopened = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
                    let state = *reopened.state();
                    prop_assert!(state == completed || state == next, "read {:?}, completed {:?}, next {:?}", state, completed, next);
                    completed = state;
                    file = Some(reopened);
                }
                Op::Reopen => {
                    drop(file.take());
                    let reopened = NodeStateFile::open_or_create(dir.path(), CLUSTER_ID, MEMBER_ID).unwrap();
                    prop_assert_eq!(*reopened.state(), completed);
                    file = Some(reopened);
                }
            }
            prop_assert_eq!(*file.as_ref().unwrap().state(), completed);
        }
    }
}
