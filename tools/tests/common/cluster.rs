//! A live 3-member cluster in the test process over loopback UDP (copied and adapted from
//! `cluster/tests/node_common`): a counting echo service, free ports, configurations, a
//! client that drives load, and waits with liveness bounds.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_cluster::agent::IdleStrategy;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode, NodeConfig, NodeHooks};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

pub const CLUSTER_ID: u64 = 42;
/// The smallest segment the archive allows, so that a few hundred messages fill several.
pub const SEGMENT_LEN: u64 = 64 * 1024;

/// Counts the messages it applies, folds them (in order) into a digest, and echoes each.
/// `restored_from` learns the count of the snapshot the service started from (`u64::MAX`:
/// none).
#[derive(Debug, Default)]
pub struct Echo {
    pub count: u64,
    pub digest: u64,
    pub restored_from: Arc<AtomicU64>,
}

/// What [`Echo::restored_from`] holds before a service started from a snapshot.
pub const NO_SNAPSHOT: u64 = u64::MAX;

impl Echo {
    /// `count << 40 | digest`: equal on two members iff they applied the same messages in
    /// the same order (up to hash collisions).
    pub fn state_hash(&self) -> u64 {
        (self.count << 40) | (self.digest & ((1 << 40) - 1))
    }
}

pub fn hooks() -> NodeHooks<Echo> {
    NodeHooks {
        state_hash: Some(Box::new(Echo::state_hash)),
        ..NodeHooks::default()
    }
}

pub fn count_of(hash: u64) -> u64 {
    hash >> 40
}

impl ClusteredService for Echo {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        if let Some(mut image) = snapshot {
            self.count = image.read_u64().expect("count");
            self.digest = image.read_u64().expect("digest");
            self.restored_from.store(self.count, Ordering::Release);
        }
    }
    fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}
    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        _: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
    }
    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _: i64,
        message: &[u8],
        _: &Header,
    ) {
        self.count += 1;
        for &b in message {
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.digest = self.digest.rotate_left(7) ^ self.count;
        if let Some(s) = session {
            let _ = cluster.offer_egress(s, message);
        }
    }
    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}
    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        writer.write_u64(self.count);
        writer.write_u64(self.digest);
    }
    fn on_role_change(&mut self, _: Role) {}
    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}
    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

/// A members list of `n` members on free loopback ports (client port P, peer port P+1).
pub fn free_members(n: u32) -> String {
    let mut parts = Vec::new();
    let mut held = Vec::new();
    let mut id = 0;
    while id < n {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)) else {
            continue;
        };
        parts.push(format!("{id}=127.0.0.1:{port}"));
        held.push((a, b));
        id += 1;
    }
    parts.join(",")
}

pub fn config(id: u32, members: &str, root: &Path) -> NodeConfig {
    let mut c = NodeConfig::new(id, members, root.join(format!("node-{id}"))).unwrap();
    c.cluster_id = CLUSTER_ID;
    c.election_timeout_ms = 400;
    c.heartbeat_interval_ms = 40;
    c.session_timeout_ms = 30_000;
    c.idle = IdleStrategy::backoff();
    c.segment_len_bytes = SEGMENT_LEN;
    c.retained_snapshots = 2;
    c.bootstrap = true;
    c
}

/// Polls `f` until it returns `Some`, at most `limit` (a liveness bound, not a timing check).
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
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
