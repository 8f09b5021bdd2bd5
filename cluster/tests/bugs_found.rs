//! Each deliberate bug (see `tandem_cluster::consensus::bugs`) is caught by the randomised
//! checks of the test cluster within a bounded number of seeds: the checks are not vacuous.
//!
//! Needs the `bugs` feature: `cargo test -p tandem-cluster --features bugs --test bugs_found`.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use tandem_cluster::codec::client::Ingress;
use tandem_cluster::codec::peer::PeerMessage;
use tandem_cluster::consensus::{BugFlags, Config, Input, MemberId, Term};
use tandem_cluster::testkit::{TestCluster, test_config};

fn with(f: fn(&mut BugFlags), id: MemberId, n: u32) -> Config {
    let mut c = test_config(id, n);
    f(&mut c.bugs);
    c
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs seeds until one fails; returns the failing seed and what failed.
fn first_failing_seed(
    config: fn(MemberId, u32) -> Config,
    max_seeds: u64,
) -> Option<(u64, String)> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = (1..=max_seeds).find_map(|seed| {
        catch_unwind(AssertUnwindSafe(|| common::run(seed, config)))
            .err()
            .map(|e| (seed, panic_text(e.as_ref())))
    });
    std::panic::set_hook(hook);
    found
}

macro_rules! bug_test {
    ($name:ident, $flag:ident, $seeds:expr) => {
        #[test]
        fn $name() {
            fn cfg(id: MemberId, n: u32) -> Config {
                with(|b| b.$flag = true, id, n)
            }
            const { assert!(BugFlags::HONOURED, "build with --features bugs") };
            let found = first_failing_seed(cfg, $seeds);
            let (seed, what) = found.unwrap_or_else(|| {
                panic!("{} was not caught in {} seeds", stringify!($flag), $seeds)
            });
            eprintln!("{} caught at seed {seed}: {what}", stringify!($flag));
        }
    };
}

bug_test!(catches_vote_twice_in_term, vote_twice_in_term, 200);
bug_test!(
    catches_commit_without_majority,
    commit_without_majority,
    200
);
bug_test!(catches_skip_prev_term_check, skip_prev_term_check, 200);
bug_test!(
    catches_replay_past_commit_bound,
    replay_past_commit_bound,
    200
);
bug_test!(catches_wiped_member_votes, wiped_member_votes, 200);
bug_test!(catches_truncate_below_commit, truncate_below_commit, 200);
bug_test!(catches_apply_duplicates, apply_duplicates, 200);

/// A follower acknowledging beyond its matched position needs a stale suffix and an empty
/// append whose previous position lies before it, which random runs rarely produce with this
/// eager-truncating protocol; this scenario produces it directly. Without the bug the checks
/// pass; with it the stale member applies a message that was never committed.
fn stale_suffix_scenario(config: fn(MemberId, u32) -> Config) {
    let mut c = TestCluster::with_config(3, config);
    let old = c.await_leader();
    let s = c.connect(1);
    let send = |c: &mut TestCluster, to: u32, seq: u64, payload: &[u8]| {
        c.client_send(
            1,
            to,
            Ingress::Message {
                session: s,
                sequence: seq,
                payload,
            },
        );
    };
    send(&mut c, old, 1, b"committed");
    c.flush();
    c.run_for(20_000_000);
    let matched = c.core(old).commit_position();
    c.partition(&[old]);
    for seq in 2..=5 {
        send(&mut c, old, seq, b"never committed");
    }
    c.flush();
    assert!(c.run_until(1_000_000_000, |c| c.leader().is_some_and(|l| l != old)));
    let new = c.leader().expect("new leader");
    for seq in 2..=5 {
        send(&mut c, new, seq, b"kept");
    }
    c.flush();
    c.run_for(20_000_000);
    // The new leader's heartbeat, proving a match only up to `matched`, reaches the old one.
    let commit = c.core(new).commit_position();
    let term = c.core(new).term();
    c.input(
        old,
        Input::Peer {
            from: MemberId(new),
            msg: PeerMessage::Append {
                term,
                leader: MemberId(new),
                prev_position: matched,
                prev_term: Term(1),
                commit,
                frames: &[],
            },
        },
    );
    c.check_consistency();
}

#[test]
fn catches_ack_beyond_match() {
    fn cfg(id: MemberId, n: u32) -> Config {
        with(|b| b.ack_beyond_match = true, id, n)
    }
    const { assert!(BugFlags::HONOURED, "build with --features bugs") };
    stale_suffix_scenario(test_config);
    let caught = catch_unwind(AssertUnwindSafe(|| stale_suffix_scenario(cfg)));
    let message = caught.expect_err("ack_beyond_match was not caught");
    let text = panic_text(message.as_ref());
    eprintln!("ack_beyond_match caught: {text}");
    let diverged = text.contains("differ") || text.contains("diverged");
    assert!(diverged, "caught for the wrong reason: {text}");
}
