//! Every thread is joined and every file and socket closed when nodes close (alone in its
//! test binary, so the process's thread and descriptor counts are this test's own).

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::Role;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn close_joins_every_thread_and_releases_every_file() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let (threads_before, fds_before) = (count("/proc/self/task"), count("/proc/self/fd"));
    {
        let nodes: Vec<ClusterNode> = (0..3)
            .map(|i| {
                ClusterNode::launch_with(config(i, &members, root.path()), Echo::default, hooks())
                    .unwrap()
            })
            .collect();
        wait_for("a leader", Duration::from_secs(20), || {
            nodes.iter().position(|n| n.role() == Role::Leader)
        });
        assert!(count("/proc/self/task") >= threads_before + 3);
        let mut cc = ClientConfig::new(&members).unwrap();
        cc.cluster_id = 42;
        let mut client = ClusterClient::new(cc).unwrap();
        client.connect(Duration::from_secs(10)).unwrap();
        let mut got = 0;
        client
            .offer_blocking(b"x", Duration::from_secs(5), |_, _| got += 1)
            .unwrap();
        wait_for("reply", Duration::from_secs(10), || {
            client.poll(|_, _| got += 1).unwrap();
            (got == 1).then_some(())
        });
        client.close();
        // One member stops gracefully (handover if it leads), the others are closed.
        let mut it = nodes.into_iter();
        it.next().unwrap().stop(Duration::from_secs(5)).unwrap();
        for n in it {
            n.close().unwrap();
        }
    }
    assert_eq!(
        count("/proc/self/task"),
        threads_before,
        "threads left running"
    );
    assert_eq!(count("/proc/self/fd"), fds_before, "descriptors left open");
    // The directories can be reopened at once (locks released).
    let n =
        ClusterNode::launch_with(config(0, &members, root.path()), Echo::default, hooks()).unwrap();
    n.close().unwrap();
}
