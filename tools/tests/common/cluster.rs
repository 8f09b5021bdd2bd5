//! A live 3-member cluster in the test process over loopback UDP (the echo service, ports,
//! configuration and waits from `tandem_cluster::testkit::node`), and a client that drives
//! load.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode, NodeConfig};
use tandem_service_api::Role;

pub use tandem_cluster::testkit::node::{
    CLUSTER_ID, Echo, NO_SNAPSHOT, count_of, free_members, hooks, wait_for,
};

/// The smallest segment the archive allows, so that a few hundred messages fill several.
pub const SEGMENT_LEN: u64 = 64 * 1024;

/// The test kit's configuration with small segments and two snapshots kept.
pub fn config(id: u32, members: &str, root: &Path) -> NodeConfig {
    let mut c = tandem_cluster::testkit::node::config(id, members, root);
    c.segment_len_bytes = SEGMENT_LEN;
    c.retained_snapshots = 2;
    c
}

/// Liveness bound of every wait on the cluster.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Three members of one cluster, each on its own agent thread, in a temporary directory.
/// A member that was closed is `None`; dropping the cluster closes the rest.
pub struct LiveCluster {
    pub root: tempfile::TempDir,
    pub members: String,
    pub nodes: Vec<Option<ClusterNode>>,
    /// Per member: the message count of the snapshot its latest start restored.
    pub restored_from: Vec<Arc<AtomicU64>>,
}

fn launch_member(
    id: u32,
    members: &str,
    root: &Path,
    restored_from: &Arc<AtomicU64>,
) -> ClusterNode {
    restored_from.store(NO_SNAPSHOT, Ordering::Release);
    let probe = Arc::clone(restored_from);
    let factory = move || Echo {
        restored_from: Arc::clone(&probe),
        ..Echo::default()
    };
    ClusterNode::launch_with(config(id, members, root), factory, hooks()).unwrap()
}

impl LiveCluster {
    /// Launches 3 members and waits until one leads and every member knows it.
    pub fn launch() -> LiveCluster {
        let root = tempfile::tempdir().unwrap();
        let members = free_members(3);
        let restored_from: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::default()).collect();
        let nodes = (0..3u32)
            .map(|i| {
                Some(launch_member(
                    i,
                    &members,
                    root.path(),
                    &restored_from[i as usize],
                ))
            })
            .collect();
        let cluster = LiveCluster {
            root,
            members,
            nodes,
            restored_from,
        };
        cluster.leader();
        cluster
    }

    /// Member `id`'s directory.
    pub fn dir(&self, id: usize) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    pub fn node(&self, id: usize) -> &ClusterNode {
        self.nodes[id].as_ref().expect("member is running")
    }

    /// Waits until one running member leads and every running member knows it.
    pub fn leader(&self) -> usize {
        wait_for("a leader every running member knows", LIMIT, || {
            let running: Vec<&ClusterNode> = self.nodes.iter().flatten().collect();
            let leader = running.iter().find(|n| n.role() == Role::Leader)?;
            let id = leader.member_id();
            running
                .iter()
                .all(|n| n.leader() == Some(id))
                .then_some(id as usize)
        })
    }

    /// The running members other than `id`.
    pub fn others(&self, id: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| i != id && self.nodes[i].is_some())
            .collect()
    }

    /// A connected client.
    pub fn client(&self) -> ClusterClient {
        let mut cc = ClientConfig::new(&self.members).unwrap();
        cc.cluster_id = CLUSTER_ID;
        cc.window = 16;
        cc.resend_interval = Duration::from_millis(100);
        cc.leader_timeout = Duration::from_millis(500);
        let mut client = ClusterClient::new(cc).unwrap();
        client.connect(Duration::from_secs(20)).unwrap();
        client
    }

    /// Waits until every running member applied `count` messages and all agree.
    pub fn wait_applied(&self, count: u64) -> u64 {
        wait_for(
            &format!("{count} messages applied everywhere"),
            LIMIT,
            || {
                let h: Vec<_> = self
                    .nodes
                    .iter()
                    .flatten()
                    .map(|n| n.state_hash().map(|x| x.1))
                    .collect();
                (h.iter().all(|x| *x == h[0]) && h[0].is_some_and(|x| count_of(x) == count))
                    .then(|| h[0].unwrap())
            },
        )
    }

    /// Closes member `id` (no handover) and waits until its directory lock is free.
    pub fn close(&mut self, id: usize) {
        if let Some(n) = self.nodes[id].take() {
            n.close().unwrap();
        }
        crate::common::wait_unlocked(&self.dir(id));
    }

    /// Restarts member `id` from its directory.
    pub fn restart(&mut self, id: usize) {
        assert!(self.nodes[id].is_none(), "member {id} still runs");
        self.nodes[id] = Some(launch_member(
            id as u32,
            &self.members,
            self.root.path(),
            &self.restored_from[id],
        ));
    }

    /// The message count of the snapshot member `id`'s service started from, once started.
    pub fn restored_from(&self, id: usize) -> Option<u64> {
        wait_for(&format!("member {id}'s service started"), LIMIT, || {
            let s = self.node(id).status();
            (s.state_hash.is_some() || !s.running).then_some(())
        });
        let v = self.restored_from[id].load(Ordering::Acquire);
        (v != NO_SNAPSHOT).then_some(v)
    }

    /// Closes every member still running.
    pub fn close_all(&mut self) {
        for id in 0..self.nodes.len() {
            self.close(id);
        }
    }
}

impl Drop for LiveCluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut().filter_map(Option::take) {
            let _ = n.close();
        }
    }
}

/// The `i`-th load message: `len` bytes, starting with its index.
pub fn message(i: u64, len: usize) -> Vec<u8> {
    let mut m = format!("load-{i}-").into_bytes();
    m.resize(len.max(m.len()), b'.');
    m
}

/// Sends messages `from..from + n` of `len` bytes and waits for every reply, checking that
/// each echo came back once, in order (consecutive sequence numbers of the client's session).
pub fn send(client: &mut ClusterClient, from: u64, n: u64, len: usize) {
    let mut replies: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in from..from + n {
        client
            .offer_blocking(&message(i, len), Duration::from_secs(20), |s, r| {
                replies.push((s, r.to_vec()))
            })
            .unwrap();
    }
    wait_for("replies", LIMIT, || {
        client.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
        (replies.len() as u64 >= n).then_some(())
    });
    assert_eq!(replies.len() as u64, n, "replies doubled");
    for (k, (seq, r)) in replies.iter().enumerate() {
        let i = from + k as u64;
        assert_eq!(*seq, replies[0].0 + k as u64, "reply sequence");
        assert_eq!(r, &message(i, len), "reply {i}");
    }
}
