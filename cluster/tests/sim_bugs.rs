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
// NOT FOUND within 200 seeds (3 or 5 members) as of this writing. For the bug to show, a
// follower must hold a stale suffix (from a leader that lost it in a machine crash) and accept
// an append, or learn a commit, while that suffix is still there; the core truncates the
// suffix on the first append carrying frames, so the window is tiny. Kept as a target: run with
// `cargo test --test bugs -- --ignored` after making scenarios more aggressive.
#[test]
#[ignore = "ack_beyond_match is not yet found within 200 seeds"]
fn finds_ack_beyond_match() {
    let bugs = BugFlags {
        ack_beyond_match: true,
        ..BugFlags::default()
    };
    find(bugs, 5);
}
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
