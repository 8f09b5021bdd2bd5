//! Under `fsync = none` a member whose machine restarted may have lost log data it
//! acknowledged (the page cache is gone), so it must not vote until it has caught up: the
//! node detects the reboot (the kernel boot id recorded in its directory changed), rejoins as
//! a non-voting learner, keeps a mark on disk until it is promoted, and then votes again.

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_archive::Durability;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

fn send(client: &mut ClusterClient, n: u64, tag: &str) {
    for i in 0..n {
        client
            .offer_blocking(
                format!("{tag}-{i}").as_bytes(),
                Duration::from_secs(20),
                |_, _| {},
            )
            .unwrap();
    }
}

#[test]
fn a_rebooted_member_rejoins_as_a_learner_until_caught_up() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let cfg = |i| {
        let mut c = config(i, &members, root.path());
        c.fsync = Durability::None;
        c
    };
    let mut nodes: Vec<Option<ClusterNode>> = (0..3)
        .map(|i| Some(ClusterNode::launch_with(cfg(i), Echo::default, hooks()).unwrap()))
        .collect();
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes
            .iter()
            .position(|n| n.as_ref().unwrap().role() == Role::Leader)
    });
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    send(&mut client, 50, "before");

    let f = (leader + 1) % 3;
    let dir = root.path().join(format!("node-{f}"));
    assert!(dir.join("boot-id").exists(), "the node records the boot id");
    assert!(
        !dir.join("rejoin-as-learner").exists(),
        "a clean start is not a rejoin"
    );
    nodes[f].take().unwrap().close().unwrap();

    // A reboot: the boot id recorded at the last start is not this machine's boot id now.
    std::fs::write(
        dir.join("boot-id"),
        "00000000-0000-0000-0000-000000000000\n",
    )
    .unwrap();
    // Alone, the member cannot be promoted: what it does at start is all there is to see.
    drop(client);
    for i in [leader, (leader + 2) % 3] {
        nodes[i].take().unwrap().close().unwrap();
    }
    for round in 0..2 {
        let node = ClusterNode::launch_with(cfg(f as u32), Echo::default, hooks()).unwrap();
        assert!(
            dir.join("rejoin-as-learner").exists(),
            "round {round}: the mark is kept until promotion"
        );
        wait_for(
            "the rebooted member to be a learner",
            Duration::from_secs(5),
            || (node.role() == Role::Learner).then_some(()),
        );
        // Still a learner after an election timeout: it never stands or votes.
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(node.role(), Role::Learner, "round {round}");
        node.close().unwrap();
    }
    for (i, slot) in nodes.iter_mut().enumerate() {
        *slot = Some(ClusterNode::launch_with(cfg(i as u32), Echo::default, hooks()).unwrap());
    }
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes
            .iter()
            .position(|n| n.as_ref().unwrap().role() == Role::Leader)
    });
    assert_ne!(leader, f, "a learner cannot lead");
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    send(&mut client, 50, "after");
    // Caught up: promoted to a voter, and the mark is gone.
    wait_for("promotion", Duration::from_secs(20), || {
        let n = nodes[f].as_ref().unwrap();
        (n.role() == Role::Follower && !dir.join("rejoin-as-learner").exists()).then_some(())
    });
    let commit = nodes[leader].as_ref().unwrap().commit_position();
    wait_for("catch-up", Duration::from_secs(20), || {
        (nodes[f].as_ref().unwrap().commit_position() >= commit).then_some(())
    });

    // A clean restart after that: no mark, a voter at once.
    nodes[f].take().unwrap().close().unwrap();
    let node = ClusterNode::launch_with(cfg(f as u32), Echo::default, hooks()).unwrap();
    assert!(!dir.join("rejoin-as-learner").exists());
    assert_ne!(node.role(), Role::Learner);
    nodes[f] = Some(node);
    send(&mut client, 10, "again");
    for n in nodes.into_iter().flatten() {
        n.close().unwrap();
    }
}

/// Under `batch`/`every` a member acknowledges only what is on its disk: a reboot loses
/// nothing it acknowledged, so it rejoins as a voter.
#[test]
fn under_fsync_batch_a_reboot_keeps_the_vote() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let cfg = |i| {
        let mut c = config(i, &members, root.path());
        c.fsync = Durability::Batch;
        c
    };
    let node = ClusterNode::launch_with(cfg(0), Echo::default, hooks()).unwrap();
    node.close().unwrap();
    let dir = root.path().join("node-0");
    std::fs::write(
        dir.join("boot-id"),
        "00000000-0000-0000-0000-000000000000\n",
    )
    .unwrap();
    let node = ClusterNode::launch_with(cfg(0), Echo::default, hooks()).unwrap();
    assert!(!dir.join("rejoin-as-learner").exists());
    assert_ne!(node.role(), Role::Learner);
    node.close().unwrap();
}
