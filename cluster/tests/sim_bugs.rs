//! Each deliberate core bug (tandem-cluster feature `bugs`, see `consensus::bugs`) must be
//! found by the simulator within a bounded number of seeds; with no bug, a batch passes.

use tandem_cluster::consensus::BugFlags;
use tandem_cluster::sim::{SimOptions, run_seed};

/// Seeds tried per bug before giving up.
const MAX_SEEDS: u64 = 200;

fn find(bugs: BugFlags, cluster_size: u32) -> (u64, String) {
    const {
        assert!(
            BugFlags::HONOURED,
            "build tandem-cluster with the `bugs` feature"
        )
    };
    let opts = SimOptions {
        cluster_size,
        bugs,
        ..SimOptions::default()
    };
    for seed in 0..MAX_SEEDS {
        let o = run_seed(seed, &opts);
        if let Some(v) = o.violation {
            eprintln!("{bugs:?}: found at seed {seed} ({} seeds): {v}", seed + 1);
            return (seed, v.property.to_string());
        }
    }
    panic!("{bugs:?} not found in {MAX_SEEDS} seeds");
}

macro_rules! bug_test {
    ($name:ident, $flag:ident) => {
        bug_test!($name, $flag, 3);
    };
    ($name:ident, $flag:ident, $size:expr) => {
        #[test]
        fn $name() {
            let mut bugs = BugFlags::default();
            bugs.$flag = true;
            find(bugs, $size);
        }
    };
}

bug_test!(finds_vote_twice_in_term, vote_twice_in_term);
bug_test!(finds_commit_without_majority, commit_without_majority);
bug_test!(finds_skip_prev_term_check, skip_prev_term_check);
// Needs a follower holding a stale suffix (frames of an older term past what the new leader's
// log shares with it) when an append that matches below the suffix, without reaching it,
// arrives: the stale-suffix fault (`sim::stale`: one frame per append, and with five members a
// split timed to leave such a suffix).
bug_test!(finds_ack_beyond_match, ack_beyond_match, 5);
bug_test!(finds_ack_beyond_match_3, ack_beyond_match, 3);
bug_test!(finds_replay_past_commit_bound, replay_past_commit_bound);
bug_test!(finds_wiped_member_votes, wiped_member_votes);
bug_test!(finds_truncate_below_commit, truncate_below_commit);
bug_test!(finds_apply_duplicates, apply_duplicates);

#[test]
fn no_bug_batch_passes_3_and_5() {
    for size in [3, 5] {
        let opts = SimOptions {
            cluster_size: size,
            ..SimOptions::default()
        };
        for seed in 0..60 {
            let o = run_seed(seed, &opts);
            assert!(o.passed(), "size {size} seed {seed}: {:?}", o.violation);
        }
    }
}

#[test]
fn a_seed_reproduces_bit_for_bit() {
    let opts = SimOptions::default();
    for seed in [3, 17, 99] {
        assert_eq!(
            run_seed(seed, &opts).trace_hash,
            run_seed(seed, &opts).trace_hash
        );
    }
}
