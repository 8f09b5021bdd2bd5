//! A 3-member cluster driven by ONE thread (`cluster` threading mode) over the in-process
//! transport: a leader is elected, a client's N messages get N replies in order, and every
//! member applies the same messages in the same order.

#[path = "node_common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tandem_cluster::agent::{AgentInvoker, IdleStrategy};
use tandem_cluster::node::{
    ClientConfig, ClusterAgent, ClusterClient, InProcessCluster, NodeAgent, NodeHooks,
};
use tandem_cluster::transport::InProcHub;
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

/// One duty cycle of the `cluster` threading mode's agent answers a message: with a leader
/// known, a message a client flushed before the cycle is committed, applied and answered
/// within it (the leader runs, then the follower that completes its quorum, then the leader
/// again). In member order a cycle could not: the leader's second look at the
/// acknowledgements came a cycle later for every leader.
#[test]
fn one_cycle_of_the_cluster_agent_answers_a_message() {
    let root = tempfile::tempdir().unwrap();
    let members = "0=127.0.0.1:10,1=127.0.0.1:20,2=127.0.0.1:30";
    let hub = InProcHub::new(4096, 1 << 20);
    let agents = (0..3)
        .map(|i| {
            let hooks = NodeHooks {
                hub: Some(hub.clone()),
                ..NodeHooks::default()
            };
            NodeAgent::new(config(i, members, root.path()), Echo::default, hooks).unwrap()
        })
        .collect();
    let mut invoker = AgentInvoker::new(ClusterAgent::new(agents));
    invoker.start().unwrap();
    wait_for("a leader", Duration::from_secs(20), || {
        invoker.invoke();
        invoker.agent().members().iter().position(NodeAgent::leads)
    });
    let mut client = ClusterClient::in_process(ClientConfig::new(members).unwrap(), &hub).unwrap();
    // The members run on a helper while the client connects (connect waits for the answer).
    let connecting = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            while connecting.load(Ordering::Acquire) {
                invoker.invoke();
            }
        });
        let connected = client.connect(Duration::from_secs(10));
        connecting.store(false, Ordering::Release);
        connected.unwrap();
    });
    // Let the session's open settle everywhere, then one cycle per message.
    for _ in 0..1000 {
        invoker.invoke();
    }
    let mut got = Vec::new();
    for i in 0..200u32 {
        let msg = i.to_le_bytes();
        let seq = client.offer(&msg).unwrap();
        client.flush();
        invoker.invoke();
        got.clear();
        client.poll(|s, r| got.push((s, r.to_vec()))).unwrap();
        assert_eq!(
            got,
            vec![(seq, msg.to_vec())],
            "message {i}: answered in its cycle"
        );
    }
    invoker.close().unwrap();
}
