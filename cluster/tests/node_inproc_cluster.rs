//! A 3-member cluster driven by ONE thread (`cluster` threading mode) over the in-process
//! transport: a leader is elected, a client's N messages get N replies in order, and every
//! member applies the same messages in the same order.

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::agent::IdleStrategy;
use tandem_cluster::node::{ClientConfig, ClusterClient, InProcessCluster};
use tandem_service_api::Role;

#[test]
fn three_members_on_one_thread_apply_the_same_messages() {
    let root = tempfile::tempdir().unwrap();
    let members = "0=127.0.0.1:10,1=127.0.0.1:20,2=127.0.0.1:30";
    let configs = (0..3).map(|i| config(i, members, root.path())).collect();
    let cluster = InProcessCluster::launch(
        configs,
        |_| Echo::default,
        || Some(Box::new(Echo::state_hash) as _),
        IdleStrategy::backoff(),
    )
    .unwrap();
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        (0..3).find(|&i| cluster.status(i).role == Role::Leader)
    });
    let mut client =
        ClusterClient::in_process(ClientConfig::new(members).unwrap(), cluster.hub()).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    assert_eq!(client.leader(), leader);
    const N: u64 = 300;
    let mut replies = Vec::new();
    for i in 0..N {
        let msg = format!("message-{i}");
        client
            .offer_blocking(msg.as_bytes(), Duration::from_secs(10), |seq, r| {
                replies.push((seq, r.to_vec()))
            })
            .unwrap();
    }
    wait_for("all replies", Duration::from_secs(20), || {
        client
            .poll(|seq, r| replies.push((seq, r.to_vec())))
            .unwrap();
        (replies.len() as u64 == N).then_some(())
    });
    for (i, (seq, r)) in replies.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(r, format!("message-{i}").as_bytes());
    }
    let hashes = wait_for(
        "equal state on every member",
        Duration::from_secs(20),
        || {
            let h: Vec<_> = (0..3).map(|i| cluster.status(i).state_hash).collect();
            (h.iter().all(|x| x.map(|(_, h)| h) == h[0].map(|(_, h)| h))
                && h[0].is_some_and(|(_, h)| count_of(h) == N))
            .then_some(h)
        },
    );
    assert!(hashes.iter().all(Option::is_some));

    // Crash the leader inside the shared thread: the other two elect a new leader and the
    // client re-attaches and carries on.
    cluster.kill(leader);
    wait_for("the killed member stops", Duration::from_secs(10), || {
        (!cluster.status(leader).running).then_some(())
    });
    for i in N..N + 50 {
        let msg = format!("message-{i}");
        client
            .offer_blocking(msg.as_bytes(), Duration::from_secs(20), |seq, r| {
                replies.push((seq, r.to_vec()))
            })
            .unwrap();
    }
    wait_for("replies after failover", Duration::from_secs(30), || {
        client
            .poll(|seq, r| replies.push((seq, r.to_vec())))
            .unwrap();
        (replies.len() as u64 == N + 50).then_some(())
    });
    assert_ne!(client.leader(), leader);
    for (i, (seq, r)) in replies.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(r, format!("message-{i}").as_bytes());
    }
    let survivors: Vec<u32> = (0..3).filter(|&i| i != leader).collect();
    wait_for("survivors agree", Duration::from_secs(20), || {
        let h: Vec<_> = survivors
            .iter()
            .map(|&i| cluster.status(i).state_hash.map(|x| x.1))
            .collect();
        (h[0] == h[1] && h[0].is_some_and(|x| count_of(x) == N + 50)).then_some(())
    });
    cluster.close().unwrap();
}
