//! Cross-member state-hash check on a 3-member UDP cluster: at every snapshot each member
//! hashes its service; the leader appends its hash to the log and every member compares it
//! with its own. Equal services: no divergence anywhere. A member whose hook disagrees: that
//! member (only) records the divergence in its control file's error log and counter.

#[path = "node_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use tandem_cluster::control::{Action, Counter, ResultCode};
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode, NodeHooks};
use tandem_service_api::Role;

/// Launches 3 members (member `i` with `hooks_of(i)`), calls `on_leader` with the leader once
/// elected, sends 10 messages, takes a snapshot
/// through the leader's toggle, waits until every member applied the leader's `StateHash`
/// entry (a short settle after every member stored the snapshot), and returns the nodes and
/// the snapshot position.
fn run(
    hooks_of: impl Fn(u32) -> NodeHooks<Echo>,
    on_leader: impl FnOnce(usize),
) -> (tempfile::TempDir, Vec<ClusterNode>, u64) {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|i| {
            ClusterNode::launch_with(config(i, &members, root.path()), Echo::default, hooks_of(i))
                .unwrap()
        })
        .collect();
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes.iter().position(|n| n.role() == Role::Leader)
    });
    on_leader(leader);
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    let mut got = 0u64;
    for i in 0..10 {
        client
            .offer_blocking(
                format!("m{i}").as_bytes(),
                Duration::from_secs(10),
                |_, _| got += 1,
            )
            .unwrap();
    }
    wait_for("replies", Duration::from_secs(10), || {
        client.poll(|_, _| got += 1).unwrap();
        (got == 10).then_some(())
    });
    let r = nodes[leader]
        .request(Action::Snapshot, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    let position = r.value;
    assert!(position > 0);
    // The leader appends its hash right after the snapshot; everyone applies it once it
    // commits, i.e. once every member's commit moved past the snapshot position.
    let leader_commit = wait_for(
        "the leader commits its state hash entry",
        Duration::from_secs(10),
        || {
            let c = nodes[leader].commit_position();
            (c > position).then_some(c)
        },
    );
    for n in &nodes {
        wait_for("every member applies it", Duration::from_secs(10), || {
            let s = n.status();
            (n.control().snapshot_position() == position && s.applied_position >= leader_commit)
                .then_some(())
        });
    }
    // Comparison happens in the same duty cycle as the apply; give the status a moment.
    std::thread::sleep(Duration::from_millis(50));
    client.close();
    (root, nodes, position)
}

#[test]
fn equal_services_report_no_divergence() {
    let (_root, nodes, _) = run(|_| hooks(), |_| {});
    for n in &nodes {
        assert_eq!(
            n.control().counter(Counter::StateDivergences),
            0,
            "member {}",
            n.member_id()
        );
        assert!(
            n.control().errors().is_empty(),
            "member {}: {:?}",
            n.member_id(),
            n.control().errors()
        );
        assert!(
            n.control().counters().contains(&("state_divergences", 0)),
            "shown with the other counters"
        );
    }
    for n in nodes {
        n.close().unwrap();
    }
}

#[test]
fn a_member_whose_hash_differs_reports_the_divergence() {
    // Each member's hook disagrees with the others' once it is the chosen member: a follower,
    // chosen once the leader is known (a diverging leader would make everyone else report).
    let odd = Arc::new(AtomicU32::new(u32::MAX));
    let (_root, nodes, position) = run(
        |i| {
            let odd = Arc::clone(&odd);
            NodeHooks {
                state_hash: Some(Box::new(move |e: &Echo| {
                    if odd.load(Ordering::Acquire) == i {
                        e.state_hash() ^ 0xDEAD
                    } else {
                        e.state_hash()
                    }
                })),
                ..NodeHooks::default()
            }
        },
        |leader| odd.store((leader as u32 + 1) % 3, Ordering::Release),
    );
    let odd = odd.load(Ordering::Acquire);
    assert!(odd < 3);
    for n in &nodes {
        let id = n.member_id();
        let diverges = id == odd;
        let errors = n.control().errors();
        if diverges {
            wait_for("the divergence is counted", Duration::from_secs(10), || {
                (n.control().counter(Counter::StateDivergences) == 1).then_some(())
            });
            let errors = n.control().errors();
            assert_eq!(errors.len(), 1, "member {id}: {errors:?}");
            let message = &errors[0].message;
            assert!(
                message.contains("state divergence")
                    && message.contains(&format!("position {position}")),
                "member {id}: {message}"
            );
        } else {
            assert_eq!(
                n.control().counter(Counter::StateDivergences),
                0,
                "member {id}"
            );
            assert!(errors.is_empty(), "member {id}: {errors:?}");
        }
    }
    for n in nodes {
        n.close().unwrap();
    }
}
