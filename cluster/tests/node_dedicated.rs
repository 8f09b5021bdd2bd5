//! A 3-member cluster over loopback UDP in the `dedicated` threading mode (each member's
//! network, consensus and service agents on threads of their own, backing off when idle,
//! member 0's pinned): every member runs the expected named agent threads; every member applies the same
//! messages in the same order; a snapshot is taken everywhere with matching state hashes; the
//! leader is killed, a new one takes over and the old one restarts and catches up; on close
//! every thread is joined. Alone in its test binary, so the process's threads are its own.

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::agent::{CoreList, ThreadingMode, available_cores};
use tandem_cluster::control::{Action, Counter, ResultCode};
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode, NodeConfig};
use tandem_service_api::Role;

/// The names of this process's threads (`/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|s| s.trim_end().to_owned())
        .collect()
}

fn agent_threads(names: &[String], member: u32) -> (usize, usize, usize, usize) {
    let count = |prefix: &str| {
        names
            .iter()
            .filter(|n| **n == format!("{prefix}-{member}"))
            .count()
    };
    (
        count("tandem-net"),
        count("tandem-cons"),
        count("tandem-svc"),
        count("tandem-node"),
    )
}

fn dedicated(id: u32, members: &str, root: &std::path::Path) -> NodeConfig {
    let mut c = config(id, members, root);
    c.threading = ThreadingMode::Dedicated;
    if id == 0 {
        // Network agent on the first available core, consensus and service agents on the
        // last.
        let cores = available_cores();
        let last = *cores.last().unwrap();
        c.cores = Some(CoreList::from(vec![cores[0], last, last]));
    }
    c
}

fn send(client: &mut ClusterClient, from: u64, n: u64, replies: &mut Vec<(u64, Vec<u8>)>) {
    for i in from..from + n {
        client
            .offer_blocking(
                format!("ded-{i}").as_bytes(),
                Duration::from_secs(20),
                |s, r| replies.push((s, r.to_vec())),
            )
            .unwrap();
    }
    wait_for("replies", Duration::from_secs(30), || {
        client.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
        (replies.len() as u64 >= from + n).then_some(())
    });
}

/// Waits until the given members report the same state hash, of `count` messages.
fn agree(nodes: &[Option<ClusterNode>], count: u64, what: &str) {
    wait_for(what, Duration::from_secs(30), || {
        let h: Vec<_> = nodes
            .iter()
            .flatten()
            .map(|n| n.state_hash().map(|x| x.1))
            .collect();
        (h.iter().all(|x| *x == h[0]) && h[0].is_some_and(|x| count_of(x) == count)).then_some(())
    });
}

#[test]
fn dedicated_threads_apply_the_same_log_survive_a_leader_kill_and_are_joined() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let threads_before = thread_names().len();
    let mut nodes: Vec<Option<ClusterNode>> = (0..3)
        .map(|i| {
            Some(
                ClusterNode::launch_with(
                    dedicated(i, &members, root.path()),
                    Echo::default,
                    hooks(),
                )
                .unwrap(),
            )
        })
        .collect();

    // Three named agent threads per member, no composed one.
    let names = thread_names();
    for i in 0..3 {
        assert_eq!(
            agent_threads(&names, i),
            (1, 1, 1, 0),
            "member {i}: {names:?}"
        );
        assert_eq!(
            nodes[i as usize].as_ref().unwrap().thread_names(),
            [
                format!("tandem-cons-{i}"),
                format!("tandem-svc-{i}"),
                format!("tandem-net-{i}")
            ]
        );
    }
    // Besides, each member's archive has its segment-preparing thread.
    let segment = names
        .iter()
        .filter(|n| n.starts_with("tandem-segment"))
        .count();
    assert_eq!(segment, 3, "{names:?}");
    // And its node-state writer (fsyncs off the consensus thread).
    for i in 0..3 {
        let writers = names
            .iter()
            .filter(|n| **n == format!("tandem-state-{i}"))
            .count();
        assert_eq!(writers, 1, "member {i}: {names:?}");
    }
    assert_eq!(names.len(), threads_before + 9 + segment + 3, "{names:?}");

    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes
            .iter()
            .position(|n| n.as_ref().unwrap().role() == Role::Leader)
    });
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    cc.resend_interval = Duration::from_millis(100);
    cc.leader_timeout = Duration::from_millis(500);
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    let mut replies = Vec::new();
    send(&mut client, 0, 100, &mut replies);
    agree(&nodes, 100, "every member applied the first 100");

    // A snapshot, taken by every member's service at the same position; the consensus side
    // learns it is done (the answer carries the position) and the hashes match.
    let r = nodes[leader]
        .as_ref()
        .unwrap()
        .request(Action::Snapshot, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok);
    for n in nodes.iter().flatten() {
        wait_for("every member's snapshot", Duration::from_secs(20), || {
            (n.control().snapshot_position() == r.value).then_some(())
        });
    }

    // Kill the leader (no handover); a new leader carries on.
    nodes[leader].take().unwrap().close().unwrap();
    let names = thread_names();
    assert_eq!(
        agent_threads(&names, leader as u32),
        (0, 0, 0, 0),
        "a closed member's threads are joined: {names:?}"
    );
    let new_leader = wait_for("a new leader", Duration::from_secs(20), || {
        nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.role() == Role::Leader))
    });
    assert_ne!(new_leader, leader);
    send(&mut client, 100, 100, &mut replies);
    // Exactly once, in order, across the failover.
    assert_eq!(replies.len(), 200);
    for (i, (seq, r)) in replies.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "reply order");
        assert_eq!(r, format!("ded-{i}").as_bytes());
    }
    agree(&nodes, 200, "the survivors applied all 200");

    // The old leader restarts from its directory, in the same mode, and catches up.
    let mut cfg = dedicated(leader as u32, &members, root.path());
    cfg.bootstrap = false;
    nodes[leader] = Some(ClusterNode::launch_with(cfg, Echo::default, hooks()).unwrap());
    agree(&nodes, 200, "the restarted member caught up");
    send(&mut client, 200, 20, &mut replies);
    agree(&nodes, 220, "every member applied all 220");
    for n in nodes.iter().flatten() {
        assert!(n.is_running());
        assert_eq!(n.control().counter(Counter::StateDivergences), 0);
        assert!(n.control().counter(Counter::DatagramsIn) > 0);
    }
    let names = thread_names();
    for i in 0..3 {
        assert_eq!(
            agent_threads(&names, i),
            (1, 1, 1, 0),
            "member {i}: {names:?}"
        );
    }
    client.close();

    // One member stops gracefully (handing over if it leads), the others close.
    let mut it = nodes.into_iter().flatten();
    it.next().unwrap().stop(Duration::from_secs(10)).unwrap();
    for n in it {
        n.close().unwrap();
    }
    let names = thread_names();
    assert_eq!(
        names.len(),
        threads_before,
        "threads left running: {names:?}"
    );
    for i in 0..3 {
        assert_eq!(agent_threads(&names, i), (0, 0, 0, 0));
    }
}
