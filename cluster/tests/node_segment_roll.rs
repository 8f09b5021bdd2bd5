//! A live cluster whose log rolls over several 64 KiB segments: the archive's segment
//! paddings are served to followers as padding frames (see `ArchiveLogStore`), positions agree
//! and every member applies the same messages; a follower restarted afterwards catches up
//! across the rolls.

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

#[test]
fn log_rolls_over_segments_in_a_live_cluster() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let cfg = |i: u32| {
        let mut c = config(i, &members, root.path());
        c.segment_len_bytes = 64 * 1024;
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
    const N: u64 = 250;
    let body = vec![b'x'; 1000];
    let mut got = 0u64;
    for _ in 0..N {
        client
            .offer_blocking(&body, Duration::from_secs(20), |_, _| got += 1)
            .unwrap();
    }
    wait_for("replies", Duration::from_secs(30), || {
        client.poll(|_, _| got += 1).unwrap();
        (got == N).then_some(())
    });
    let follower = (0..3).find(|&i| i != leader).unwrap();
    nodes[follower].take().unwrap().close().unwrap();
    nodes[follower] =
        Some(ClusterNode::launch_with(cfg(follower as u32), Echo::default, hooks()).unwrap());
    wait_for("equal state everywhere", Duration::from_secs(30), || {
        let s: Vec<_> = nodes.iter().map(|n| n.as_ref().unwrap().status()).collect();
        let h: Vec<_> = s.iter().map(|s| s.state_hash.map(|x| x.1)).collect();
        (h.iter().all(|x| *x == h[0])
            && h[0].is_some_and(|x| count_of(x) == N)
            && s.iter().all(|x| x.log_end == s[0].log_end))
        .then_some(())
    });
    let end = nodes[0].as_ref().unwrap().status().log_end;
    assert!(
        end > 3 * 64 * 1024,
        "the log rolled over segments ({end} bytes)"
    );
    for n in nodes.into_iter().flatten() {
        n.close().unwrap();
    }
}
