//! A live cluster whose log rolls over several 64 KiB segments: the archive pads segment tails
//! (padding frames, and tails shorter than a frame header), padding is never replicated (each
//! member's archive pads where the leader's did, and the core takes positions from the store),
//! positions agree and every member applies the same messages; a follower restarted afterwards
//! catches up across the rolls.

#[path = "node_common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tandem_archive::{LOG_DIR_NAME, Log, LogConfig};
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

const SEG: u64 = 64 * 1024;

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

/// Where each segment padding in a member's (closed) log begins, and how long it is.
fn paddings(root: &Path, id: u32) -> Vec<(u64, u64)> {
    let cfg = LogConfig {
        segment_len_bytes: SEG,
        prepare_next_segment: false,
        prefault: false,
        max_frame_len_bytes: SEG as usize,
        ..LogConfig::default()
    };
    let dir = root.join(format!("node-{id}")).join(LOG_DIR_NAME);
    let (log, _) = Log::open(&dir, cfg, 0).unwrap();
    let mut found = Vec::new();
    let mut prev_end = log.start_position();
    for f in log.frames(prev_end, log.append_position()).unwrap() {
        if f.position != prev_end {
            found.push((prev_end, f.position - prev_end));
        }
        prev_end = f.next_position();
    }
    found
}

#[test]
fn tiny_segment_tails_replicate_in_a_live_cluster() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let cfg = |i: u32| {
        let mut c = config(i, &members, root.path());
        c.segment_len_bytes = SEG;
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
    let mut sent = 0u64;
    let mut got = 0u64;
    // Until the log holds every tail from 8 to 40 bytes: fill a segment up to the tail, then
    // send a frame that does not fit in it. One follower restarts half-way.
    let mut tails = vec![8u64, 16, 24, 32, 40, 8, 16, 24, 32, 40];
    let mut rounds = 0;
    while let Some(&tail) = tails.first() {
        rounds += 1;
        assert!(rounds < 400, "tails left: {tails:?}");
        // Wait until every member holds what was sent, so the leader's end is current.
        let end = wait_for("a quiet log", Duration::from_secs(30), || {
            client.poll(|_, _| got += 1).unwrap();
            let s: Vec<_> = nodes.iter().flatten().map(|n| n.status()).collect();
            (got == sent
                && s.iter()
                    .all(|x| x.log_end == s[0].log_end && x.applied_position == x.log_end))
            .then(|| s[0].log_end)
        });
        let room = SEG - end % SEG;
        let len = if room >= tail + 48 && room - tail - 48 <= 8_000 {
            tails.remove(0);
            (room - tail - 48) as usize
        } else if room > 8_000 {
            4_000
        } else {
            // Roll over with an ordinary frame.
            room as usize
        };
        for len in [len, 200] {
            let body = vec![b'y'; len];
            client
                .offer_blocking(&body, Duration::from_secs(20), |_, _| got += 1)
                .unwrap();
            sent += 1;
        }
        if tails.len() == 5 && rounds % 2 == 0 {
            let follower = (0..3).find(|&i| i != leader).unwrap();
            if nodes[follower].is_some() {
                nodes[follower].take().unwrap().close().unwrap();
            }
        } else if let Some(f) = nodes.iter().position(Option::is_none) {
            nodes[f] =
                Some(ClusterNode::launch_with(cfg(f as u32), Echo::default, hooks()).unwrap());
        }
    }
    wait_for("replies", Duration::from_secs(30), || {
        client.poll(|_, _| got += 1).unwrap();
        (got == sent).then_some(())
    });
    if let Some(f) = nodes.iter().position(Option::is_none) {
        nodes[f] = Some(ClusterNode::launch_with(cfg(f as u32), Echo::default, hooks()).unwrap());
    }
    wait_for("equal state everywhere", Duration::from_secs(30), || {
        let s: Vec<_> = nodes.iter().map(|n| n.as_ref().unwrap().status()).collect();
        let h: Vec<_> = s.iter().map(|s| s.state_hash.map(|x| x.1)).collect();
        (h.iter().all(|x| *x == h[0])
            && h[0].is_some_and(|x| count_of(x) == sent)
            && s.iter().all(|x| x.log_end == s[0].log_end))
        .then_some(())
    });
    for n in nodes.into_iter().flatten() {
        n.close().unwrap();
    }
    let pads: Vec<_> = (0..3).map(|i| paddings(root.path(), i)).collect();
    assert_eq!(pads[0], pads[1]);
    assert_eq!(pads[0], pads[2]);
    for t in [8, 16, 24, 32, 40] {
        assert!(
            pads[0].iter().filter(|p| p.1 == t).count() >= 2,
            "two tails of {t} bytes: {:?}",
            pads[0]
        );
    }
}
