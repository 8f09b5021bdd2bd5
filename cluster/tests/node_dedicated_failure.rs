//! `dedicated` threading: an error on the consensus agent's thread stops the member, and the
//! network agent's thread ends by itself after it (alone in its test binary, so the process's
//! threads are its own).

#[path = "node_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use tandem_cluster::agent::ThreadingMode;
use tandem_cluster::control::{Action, Counter};
use tandem_cluster::node::ClusterNode;
use tandem_service_api::Role;

fn agent_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|n| n.starts_with("tandem-net-") || n.starts_with("tandem-cons-"))
        .count()
}

#[test]
fn a_failed_consensus_agent_stops_both_threads() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(1);
    let mut cfg = config(0, &members, root.path());
    cfg.threading = ThreadingMode::Dedicated;
    let node = ClusterNode::launch_with(cfg, Echo::default, hooks()).unwrap();
    assert_eq!(agent_threads(), 2);
    wait_for("leadership", Duration::from_secs(20), || {
        (node.role() == Role::Leader).then_some(())
    });
    // The snapshot directory becomes a file: storing the next snapshot fails.
    let snapshots = node.dir().join(tandem_archive::SNAPSHOTS_DIR_NAME);
    std::fs::rename(&snapshots, node.dir().join("moved-away")).unwrap();
    std::fs::write(&snapshots, b"not a directory").unwrap();
    // Answered `Failed` when the member closes, or not at all: either way it stops.
    let _ = node.request(Action::Snapshot, Duration::from_secs(10));
    wait_for("the member stops", Duration::from_secs(20), || {
        (!node.is_running()).then_some(())
    });
    wait_for(
        "both agent threads end by themselves",
        Duration::from_secs(20),
        || (agent_threads() == 0).then_some(()),
    );
    assert!(node.control().counter(Counter::Errors) >= 1);
    let err = node.close().unwrap_err();
    assert!(err.to_string().contains("snapshot"), "{err}");
}
