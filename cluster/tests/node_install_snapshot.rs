//! A member restarted with an EMPTY directory after the others snapshotted and purged their
//! logs: it starts as a learner (no vote), receives the leader's snapshot (install-snapshot)
//! and the log after it, and ends with the same service state. Snapshot and purge are asked
//! for through the control toggle, as `cluster-tool` does. Run in the `shared` threading mode
//! and in `dedicated` (where the service restarts from the snapshot on its own thread).

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::agent::ThreadingMode;
use tandem_cluster::control::{Action, ResultCode};
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

fn nd(nodes: &[Option<ClusterNode>], i: usize) -> &ClusterNode {
    nodes[i].as_ref().unwrap()
}

fn send(client: &mut ClusterClient, from: u64, n: u64) {
    let mut got = 0;
    for i in from..from + n {
        client
            .offer_blocking(
                format!("m-{i}").as_bytes(),
                Duration::from_secs(20),
                |_, _| got += 1,
            )
            .unwrap();
    }
    wait_for("replies", Duration::from_secs(20), || {
        client.poll(|_, _| got += 1).unwrap();
        (got == n).then_some(())
    });
}

#[test]
fn wiped_member_catches_up_by_install_snapshot_without_voting() {
    wiped_member_catches_up(ThreadingMode::Shared);
}

#[test]
fn wiped_member_catches_up_by_install_snapshot_with_the_service_on_its_own_thread() {
    wiped_member_catches_up(ThreadingMode::Dedicated);
}

fn wiped_member_catches_up(threading: ThreadingMode) {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let cfg = |i: u32| {
        let mut c = config(i, &members, root.path());
        c.retained_snapshots = 1;
        c.threading = threading;
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
    send(&mut client, 0, 100);

    // A follower forwards a snapshot request to the leader (every member takes it); so does
    // the leader's own toggle.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let r = nd(&nodes, follower)
        .request(Action::Snapshot, Duration::from_secs(10))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    assert!(r.value > 0);
    let r = nd(&nodes, leader)
        .request(Action::Snapshot, Duration::from_secs(10))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    let snap = r.value;
    assert!(snap > 0);
    wait_for("every member snapshotted", Duration::from_secs(10), || {
        (0..3)
            .all(|i| nd(&nodes, i).control().snapshot_position() >= snap)
            .then_some(())
    });
    send(&mut client, 100, 50);
    for i in 0..3 {
        let r = nd(&nodes, i)
            .request(Action::Purge(u64::MAX), Duration::from_secs(10))
            .unwrap();
        assert_eq!(r.code, ResultCode::Ok, "purge on member {i}");
        assert_eq!(r.value, snap, "log now starts at the snapshot");
        assert_eq!(nd(&nodes, i).status().log_start, snap);
    }
    let term = nd(&nodes, leader).status().term;

    // Wipe a follower and restart it empty, not as a founding member.
    let wiped = (0..3).find(|&i| i != leader).unwrap();
    let dir = nd(&nodes, wiped).dir().to_path_buf();
    nodes[wiped].take().unwrap().close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut c = cfg(wiped as u32);
    c.bootstrap = false;
    nodes[wiped] = Some(ClusterNode::launch_with(c, Echo::default, hooks()).unwrap());
    assert_eq!(
        nd(&nodes, wiped).role(),
        Role::Learner,
        "an empty directory starts as a learner"
    );
    let installed = wait_for(
        "install-snapshot and catch-up",
        Duration::from_secs(30),
        || {
            let s = nd(&nodes, wiped).status();
            let h: Vec<_> = (0..3)
                .map(|i| nd(&nodes, i).state_hash().map(|x| x.1))
                .collect();
            (s.snapshots_installed >= 1
                && h.iter().all(|x| *x == h[0])
                && h[0].is_some_and(|x| count_of(x) == 150))
            .then_some(s)
        },
    );
    assert!(installed.log_start >= snap);
    assert_eq!(
        nd(&nodes, leader).status().term,
        term,
        "no election was caused"
    );
    assert_eq!(nd(&nodes, leader).role(), Role::Leader);
    wait_for("promoted to follower", Duration::from_secs(20), || {
        (nd(&nodes, wiped).role() == Role::Follower).then_some(())
    });
    send(&mut client, 150, 10);
    wait_for(
        "all agree after more traffic",
        Duration::from_secs(20),
        || {
            let h: Vec<_> = (0..3)
                .map(|i| nd(&nodes, i).state_hash().map(|x| x.1))
                .collect();
            (h.iter().all(|x| *x == h[0]) && h[0].is_some_and(|x| count_of(x) == 160)).then_some(())
        },
    );
    for n in nodes.into_iter().flatten() {
        n.close().unwrap();
    }
}
