//! Leader killed under client load (its agent stopped and everything dropped, no handover):
//! a new leader is elected within a generous bound, the client re-attaches to its session and
//! carries on, no acknowledged message is lost or applied twice, and the old leader restarts
//! from its directory and catches up. Prints the measured failover times.

#[path = "node_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

#[test]
fn leader_killed_under_load_then_restarted() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let mut nodes: Vec<Option<ClusterNode>> = (0..3)
        .map(|i| {
            Some(
                ClusterNode::launch_with(config(i, &members, root.path()), Echo::default, hooks())
                    .unwrap(),
            )
        })
        .collect();
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        nodes
            .iter()
            .position(|n| n.as_ref().unwrap().role() == Role::Leader)
    });
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    cc.window = 16;
    cc.resend_interval = Duration::from_millis(100);
    cc.leader_timeout = Duration::from_millis(500);
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();

    const N: u64 = 600;
    const KILL_AT: u64 = 250;
    let mut replies: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = 0u64;
    let mut killed_at: Option<Instant> = None;
    let mut acked_before_kill = 0;
    let mut first_reply_after_kill: Option<Duration> = None;
    let mut new_leader_after: Option<(usize, Duration)> = None;
    let start = Instant::now();
    while (replies.len() as u64) < N {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "load did not finish: {} replies",
            replies.len()
        );
        if next < N {
            match client.offer(format!("load-{next}").as_bytes()) {
                Ok(seq) => {
                    assert_eq!(seq, next + 1);
                    next += 1;
                }
                Err(tandem_cluster::node::ClientError::BackPressure { .. }) => {}
                Err(e) => panic!("offer failed: {e}"),
            }
        }
        let before = replies.len();
        client.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
        if killed_at.is_none() && replies.len() as u64 >= KILL_AT {
            acked_before_kill = replies.len();
            nodes[leader].take().unwrap().close().unwrap();
            killed_at = Some(Instant::now());
        }
        if let Some(k) = killed_at {
            if first_reply_after_kill.is_none()
                && replies.len() > before
                && before >= acked_before_kill
            {
                first_reply_after_kill = Some(k.elapsed());
            }
            if new_leader_after.is_none()
                && let Some(i) = nodes
                    .iter()
                    .position(|n| n.as_ref().is_some_and(|n| n.role() == Role::Leader))
            {
                new_leader_after = Some((i, k.elapsed()));
            }
        }
        if replies.len() == before {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let (new_leader, elected) = new_leader_after.expect("a new leader");
    assert_ne!(new_leader, leader);
    let first = first_reply_after_kill.expect("a reply after the kill");
    eprintln!(
        "FAILOVER: kill -> new leader elected {:.1} ms; kill -> first reply (committed under the new leader) {:.1} ms",
        elected.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3
    );
    // Exactly once, in order.
    for (i, (seq, r)) in replies.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "reply order");
        assert_eq!(r, format!("load-{i}").as_bytes());
    }
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    wait_for(
        "survivors agree, each message applied once",
        Duration::from_secs(20),
        || {
            let h: Vec<_> = survivors
                .iter()
                .map(|&i| nodes[i].as_ref().unwrap().state_hash().map(|x| x.1))
                .collect();
            (h[0] == h[1] && h[0].is_some_and(|x| count_of(x) == N)).then_some(())
        },
    );
    // The old leader restarts from its directory and catches up.
    let mut cfg = config(leader as u32, &members, root.path());
    cfg.bootstrap = false;
    nodes[leader] = Some(ClusterNode::launch_with(cfg, Echo::default, hooks()).unwrap());
    assert_ne!(
        nodes[leader].as_ref().unwrap().role(),
        Role::Learner,
        "its directory makes it a voter"
    );
    wait_for(
        "the restarted member catches up",
        Duration::from_secs(30),
        || {
            let h: Vec<_> = nodes
                .iter()
                .map(|n| n.as_ref().unwrap().state_hash().map(|x| x.1))
                .collect();
            (h.iter().all(|x| *x == h[0]) && h[0].is_some_and(|x| count_of(x) == N)).then_some(())
        },
    );
    // And the cluster keeps serving with it.
    let mut more = Vec::new();
    client
        .offer_blocking(b"after-restart", Duration::from_secs(10), |s, r| {
            more.push((s, r.to_vec()))
        })
        .unwrap();
    wait_for("reply after restart", Duration::from_secs(20), || {
        client.poll(|s, r| more.push((s, r.to_vec()))).unwrap();
        (!more.is_empty()).then_some(())
    });
    assert_eq!(more[0], (N + 1, b"after-restart".to_vec()));
    for n in nodes.into_iter().flatten() {
        n.close().unwrap();
    }
}
