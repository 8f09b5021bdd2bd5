//! The `StateHash` log entry on the in-process test cluster: appended by the leader only, for
//! a snapshot position it has applied; applied by every member at the same position without
//! reaching the service; reported to each member's runtime.

use tandem_cluster::codec::entry::StateHashPayload;
use tandem_cluster::codec::frame::EntryType;
use tandem_cluster::consensus::{Input, LogPosition, LogStore};
use tandem_cluster::testkit::TestCluster;

#[test]
fn the_leader_appends_the_hash_and_every_member_applies_it_at_the_same_position() {
    let mut c = TestCluster::new(3);
    let leader = c.await_leader();
    c.input(leader, Input::TakeSnapshot);
    c.run_for(20_000_000);
    let position = c
        .core(leader)
        .latest_snapshot()
        .expect("snapshot taken")
        .position;
    let applied_before: Vec<usize> = (0..3).map(|i| c.service(i).applied.len()).collect();

    // A follower ignores the input; so does the leader for a position it has not applied.
    let follower = (leader + 1) % 3;
    let end = c.core(follower).log_end();
    c.input(follower, Input::StateHash { position, hash: 1 });
    assert_eq!(c.core(follower).log_end(), end);
    let end = c.core(leader).log_end();
    c.input(
        leader,
        Input::StateHash {
            position: LogPosition(end.0 + 4096),
            hash: 1,
        },
    );
    assert_eq!(c.core(leader).log_end(), end);

    c.input(
        leader,
        Input::StateHash {
            position,
            hash: 0xABCD,
        },
    );
    let entry_at = end;
    assert!(c.core(leader).log_end() > entry_at, "appended");
    c.run_for(50_000_000);
    for i in 0..3 {
        let core = c.core(i);
        let f = core.log().read(entry_at).expect("replicated");
        assert_eq!(f.header.entry_type, EntryType::StateHash, "member {i}");
        let p = StateHashPayload::decode(f.payload).unwrap();
        assert_eq!((p.position, p.hash), (position, 0xABCD));
        assert!(core.applied_position() > entry_at, "member {i} applied it");
        assert_eq!(
            core.state_hash_reports().collect::<Vec<_>>(),
            vec![(position, 0xABCD)],
            "member {i} reports it"
        );
        assert_eq!(
            c.service(i).applied.len(),
            applied_before[i as usize],
            "the service never sees it"
        );
    }
    c.check_consistency();

    // A restarted member replays or re-applies the entry without harm.
    c.crash(follower);
    c.restart(follower);
    c.run_for(300_000_000);
    assert!(c.core(follower).applied_position() > entry_at);
    c.check_consistency();
}
