//! Shared test helpers: a counting echo service, free ports, configurations, waits.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_cluster::agent::IdleStrategy;
use tandem_cluster::node::{NodeConfig, NodeHooks};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

/// Counts the messages it applies, folds them (in order) into a digest, and echoes each.
#[derive(Debug, Default)]
pub struct Echo {
    pub count: u64,
    pub digest: u64,
}

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
    c.cluster_id = 42;
    c.election_timeout_ms = 400;
    c.heartbeat_interval_ms = 40;
    c.session_timeout_ms = 30_000;
    c.idle = IdleStrategy::backoff();
    c.segment_len_bytes = 1 << 20;
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
