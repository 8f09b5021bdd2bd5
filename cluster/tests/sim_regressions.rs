//! Seeds the simulator once failed, kept as regression tests, and the
//! simulator's determinism.

use tandem_cluster::sim::{SimOptions, run_seed};

fn check(seed: u64, cluster_size: u32) {
    let opts = SimOptions {
        cluster_size,
        ..SimOptions::default()
    };
    let outcome = run_seed(seed, &opts);
    assert!(outcome.passed(), "seed {seed}: {:?}", outcome.violation);
}

/// Machine crashes under `fsync none`: the crashed member had acknowledged a
/// frame that made it committed, lost it with its page cache, and (before the
/// core could rejoin as a learner) voted for a member that lacked it:
/// leader-completeness. Fixed by `Consensus::rejoin_as_learner`.
#[test]
fn fsync_none_machine_crash_rejoins_as_learner() {
    for seed in [1357, 4527, 9596] {
        check(seed, 3);
    }
}

/// A liveness failure seen while the core's learner promotion did not yet
/// require a commit position from the current leader's term.
#[test]
fn learner_promotion_liveness() {
    check(592, 3);
}

/// `fsync batch` with slow syncs: a follower that answered an append of new entries only
/// once they were durable left the leader without word from it for as long as a sync took,
/// and the cluster never caught up after the faults (liveness). It now answers at least
/// once a heartbeat interval whatever its syncs do.
#[test]
fn slow_sync_follower_still_answers_each_heartbeat_interval() {
    check(7_001_861, 3);
}

#[test]
fn same_seed_same_trace() {
    let opts = SimOptions::default();
    for seed in [3, 592, 1357] {
        let a = run_seed(seed, &opts);
        let b = run_seed(seed, &opts);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.passed(), b.passed());
    }
}

/// The service split as in the `dedicated` threading mode (engine applies and records, core
/// replays) passes every check the in-line service does, under the same faults, and is as
/// deterministic. (`.ci/run` runs more seeds with `tandem-sim --service remote`.)
#[test]
fn the_split_service_passes_every_check_and_is_deterministic() {
    let opts = SimOptions {
        remote_service: true,
        ..SimOptions::default()
    };
    for seed in 0..25 {
        let outcome = run_seed(seed, &opts);
        assert!(outcome.passed(), "seed {seed}: {:?}", outcome.violation);
    }
    let a = run_seed(592, &opts);
    let b = run_seed(592, &opts);
    assert_eq!(a.trace_hash, b.trace_hash);
}
