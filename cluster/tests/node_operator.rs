//! Cluster-wide operator actions through a FOLLOWER's control toggle on a 3-member UDP
//! cluster: `snapshot` is forwarded to the leader and taken by every member at the same
//! position; `suspend` / `resume`; `shutdown` snapshots, then every member's agent exits.

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::control::{Action, ResultCode};
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

#[test]
fn snapshot_suspend_resume_and_shutdown_from_a_follower() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|i| {
            ClusterNode::launch_with(config(i, &members, root.path()), Echo::default, hooks())
                .unwrap()
        })
        .collect();
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes.iter().position(|n| n.role() == Role::Leader)
    });
    let follower = (leader + 1) % 3;
    wait_for(
        "the follower knows the leader",
        Duration::from_secs(20),
        || (nodes[follower].leader() == Some(leader as u32)).then_some(()),
    );

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

    // Snapshot through the follower: forwarded, taken everywhere at the same position.
    let r = nodes[follower]
        .request(Action::Snapshot, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    let position = r.value;
    assert!(position > 0);
    assert_eq!(
        nodes[follower].control().snapshot_position(),
        position,
        "the follower stored it before answering"
    );
    for n in &nodes {
        wait_for("every member's snapshot", Duration::from_secs(10), || {
            (n.control().snapshot_position() == position).then_some(())
        });
    }

    // Suspend through the follower: the leader takes nothing new; resume lets it through.
    let r = nodes[follower]
        .request(Action::Suspend, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    let commit = nodes[leader].commit_position();
    client.offer(b"held").unwrap();
    for _ in 0..40 {
        client.poll(|_, _| got += 1).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(got, 10, "no reply while suspended");
    assert_eq!(
        nodes[leader].commit_position(),
        commit,
        "nothing appended while suspended"
    );
    let r = nodes[follower]
        .request(Action::Resume, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    wait_for("the held message's reply", Duration::from_secs(20), || {
        client.poll(|_, _| got += 1).unwrap();
        (got == 11).then_some(())
    });
    client.close();

    // Shutdown through the follower: every member snapshots at the same position, then its
    // agent exits.
    let r = nodes[follower]
        .request(Action::Shutdown, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    let position = r.value;
    assert!(position > 0);
    for n in &nodes {
        wait_for("every member stops", Duration::from_secs(20), || {
            (!n.is_running()).then_some(())
        });
        assert_eq!(n.control().snapshot_position(), position);
    }
    for n in nodes {
        n.close().unwrap();
    }

    // Restarted, the cluster comes back from the shutdown snapshot and serves again.
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|i| {
            ClusterNode::launch_with(config(i, &members, root.path()), Echo::default, hooks())
                .unwrap()
        })
        .collect();
    wait_for(
        "a leader after the restart",
        Duration::from_secs(20),
        || nodes.iter().position(|n| n.role() == Role::Leader),
    );
    let hashes = wait_for("state restored", Duration::from_secs(20), || {
        let h: Vec<_> = nodes.iter().map(ClusterNode::state_hash).collect();
        h.iter()
            .all(|x| x.is_some_and(|(_, h)| count_of(h) == 11))
            .then_some(h)
    });
    assert!(
        hashes
            .iter()
            .all(|h| h.map(|(_, h)| h) == hashes[0].map(|(_, h)| h))
    );
    for n in &nodes {
        assert!(n.is_running());
    }
    for n in nodes {
        n.close().unwrap();
    }
}

#[test]
fn abort_from_a_follower_stops_every_member() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|i| {
            ClusterNode::launch_with(config(i, &members, root.path()), Echo::default, hooks())
                .unwrap()
        })
        .collect();
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes.iter().position(|n| n.role() == Role::Leader)
    });
    let follower = (leader + 2) % 3;
    wait_for(
        "the follower knows the leader",
        Duration::from_secs(20),
        || (nodes[follower].leader() == Some(leader as u32)).then_some(()),
    );
    let r = nodes[follower]
        .request(Action::Abort, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    for n in &nodes {
        wait_for("every member stops", Duration::from_secs(20), || {
            (!n.is_running()).then_some(())
        });
        assert_eq!(n.control().snapshot_position(), 0, "no snapshot on abort");
    }
    for n in nodes {
        n.close().unwrap();
    }
}
