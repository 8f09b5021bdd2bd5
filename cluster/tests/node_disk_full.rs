//! A member whose directory is on a small tmpfs fills it under client load: it stops cleanly
//! with a typed error naming the segment it could not create ([`NodeError::Log`]), recorded in
//! its control file's error log — no panic, no corrupt log, nothing acknowledged that was not
//! appended. Once space is freed it restarts, recovers and catches up, and the cluster has
//! lost no committed message (every member applies exactly the messages the client sent).
//!
//! Needs root (it mounts tmpfs file systems); without the permission the tests say so and
//! skip.

#[path = "node_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode, NodeError};
use tandem_service_api::Role;

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_kib` on `path` (created); `None` without the permission.
    fn mount(path: &Path, size_kib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn resize(&self, size_kib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_kib}k")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Small segments, so a few hundred KiB of log need several new segment files.
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Room for the directory's small files and a handful of segments.
const SMALL_KIB: u64 = 512;
const LARGE_KIB: u64 = 64 * 1024;
const MESSAGE_BYTES: usize = 2048;
const MESSAGES: u64 = 400;

/// Whether `err`'s chain holds a [`NodeError::Log`] naming a segment file; returns its text.
fn log_error_in_chain(err: &NodeError) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(NodeError::Log(l)) = e.downcast_ref::<NodeError>() {
            return Some(l.to_string());
        }
        next = e.source();
    }
    None
}

fn message(i: u64) -> Vec<u8> {
    let mut m = format!("m-{i}-").into_bytes();
    m.resize(MESSAGE_BYTES, (i % 251) as u8);
    m
}

/// Runs a 3-member cluster with every directory on its own small tmpfs; once a leader is
/// elected, every member but the one to fill (the leader, or a follower) gets room.
fn fill_one_member(fill_leader: bool) {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let mut mounts = Vec::new();
    for i in 0..3 {
        let Some(m) = Tmpfs::mount(&root.path().join(format!("node-{i}")), SMALL_KIB) else {
            eprintln!("SKIPPED: cannot mount tmpfs (needs root)");
            return;
        };
        mounts.push(m);
    }
    let cfg = |i: u32| {
        let mut c = config(i, &members, root.path());
        c.segment_len_bytes = SEGMENT_BYTES;
        c
    };
    let mut nodes: Vec<Option<ClusterNode>> = (0..3)
        .map(|i| Some(ClusterNode::launch_with(cfg(i), Echo::default, hooks()).unwrap()))
        .collect();
    let nd = |nodes: &[Option<ClusterNode>], i: usize| -> Option<Role> {
        nodes[i].as_ref().map(|n| n.role())
    };
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        (0..3).find(|&i| nd(&nodes, i) == Some(Role::Leader))
    });
    let full = if fill_leader {
        leader
    } else {
        (0..3).find(|&i| i != leader).unwrap()
    };
    for (i, m) in mounts.iter().enumerate() {
        if i != full {
            m.resize(LARGE_KIB);
        }
    }

    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    let mut replies = 0u64;
    for i in 0..MESSAGES {
        client
            .offer_blocking(&message(i), Duration::from_secs(30), |_, _| replies += 1)
            .unwrap();
    }
    wait_for("every reply", Duration::from_secs(60), || {
        client.poll(|_, _| replies += 1).unwrap();
        (replies == MESSAGES).then_some(())
    });

    // The member with the full disk stopped by itself, with the typed error.
    let failed = nodes[full].take().unwrap();
    wait_for("the full member to stop", Duration::from_secs(20), || {
        (!failed.is_running()).then_some(())
    });
    let errors = failed.control().errors();
    assert!(
        errors.iter().any(|e| e.message.contains("log append")
            && e.message.contains(".seg")
            && e.message.contains("disk full")),
        "the control file's error log names the operation and segment: {errors:?}"
    );
    let err = failed
        .close()
        .expect_err("a node stopped by a full disk reports it");
    let text = log_error_in_chain(&err)
        .unwrap_or_else(|| panic!("not a NodeError::Log in the chain: {err:?}"));
    assert!(text.contains("position") && text.contains(".seg"), "{text}");
    assert!(!format!("{err:?}").contains("panicked"), "{err:?}");

    // Free space and restart: it recovers its log and catches up with the others.
    mounts[full].resize(LARGE_KIB);
    nodes[full] = Some(ClusterNode::launch_with(cfg(full as u32), Echo::default, hooks()).unwrap());
    for i in MESSAGES..MESSAGES + 20 {
        client
            .offer_blocking(&message(i), Duration::from_secs(30), |_, _| replies += 1)
            .unwrap();
    }
    wait_for("the last replies", Duration::from_secs(30), || {
        client.poll(|_, _| replies += 1).unwrap();
        (replies == MESSAGES + 20).then_some(())
    });
    wait_for(
        "every member applied every message exactly once",
        Duration::from_secs(30),
        || {
            let h: Vec<_> = nodes
                .iter()
                .map(|n| n.as_ref().unwrap().state_hash().map(|x| x.1))
                .collect();
            (h.iter().all(|x| *x == h[0]) && h[0].is_some_and(|x| count_of(x) == MESSAGES + 20))
                .then_some(())
        },
    );
    for n in nodes.into_iter().flatten() {
        n.close().unwrap();
    }
    drop(mounts);
}

#[test]
fn follower_with_a_full_disk_stops_cleanly_then_catches_up() {
    fill_one_member(false);
}

#[test]
fn leader_with_a_full_disk_stops_cleanly_and_loses_no_acknowledged_message() {
    fill_one_member(true);
}
