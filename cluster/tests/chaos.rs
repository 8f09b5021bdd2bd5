//! Randomised runs of the test cluster with a lossy, duplicating, reordering network, lossy
//! client links, crashes (losing what was not durable, for odd seeds), restarts, wipes,
//! partitions, snapshots and purges, on 3 or 5 members. After healing, every member must hold
//! the same committed log and every service must have applied each client message exactly
//! once, in order.

mod common;

use tandem_cluster::testkit::test_config;

#[test]
fn chaos_seeds() {
    // CHAOS_SEEDS=a-b runs another range (default 1-20).
    let range = std::env::var("CHAOS_SEEDS").unwrap_or_else(|_| "1-20".to_string());
    let (a, b) = range.split_once('-').expect("CHAOS_SEEDS=a-b");
    for seed in a.parse::<u64>().expect("a")..=b.parse::<u64>().expect("b") {
        common::run(seed, test_config);
    }
}
