//! Helpers for tests that run real nodes ([`crate::node::ClusterNode`]) over loopback UDP, for
//! this crate's tests and the other crates' (tools, samples): a counting echo service with a
//! state hash, free ports, a test configuration, and waits with liveness bounds.
//!
//! Test support: the helpers panic (with a message naming what failed) where a test would.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

use crate::agent::IdleStrategy;
use crate::node::{NodeConfig, NodeHooks};
use crate::transport::frame;

/// The cluster id of [`config`].
pub const CLUSTER_ID: u64 = 42;

/// What [`Echo::restored_from`] holds before a service started from a snapshot.
pub const NO_SNAPSHOT: u64 = u64::MAX;

/// Counts the messages it applies, folds them (in order) into a digest, and echoes each.
/// `restored_from` learns the count of the snapshot the service started from (it is left as
/// it was when the service started empty; set it to [`NO_SNAPSHOT`] to tell).
#[derive(Debug, Default)]
pub struct Echo {
    /// Messages applied.
    pub count: u64,
    /// Digest of the messages applied, in order.
    pub digest: u64,
    /// The count of the snapshot the service started from.
    pub restored_from: Arc<AtomicU64>,
}

impl Echo {
    /// `count << 40 | digest`: equal on two members iff they applied the same messages in
    /// the same order (up to hash collisions).
    pub fn state_hash(&self) -> u64 {
        (self.count << 40) | (self.digest & ((1 << 40) - 1))
    }
}

/// Hooks with [`Echo::state_hash`] as the state hash.
pub fn hooks() -> NodeHooks<Echo> {
    NodeHooks {
        state_hash: Some(Box::new(Echo::state_hash)),
        ..NodeHooks::default()
    }
}

/// The message count in an [`Echo::state_hash`].
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
///
/// # Panics
/// If no loopback socket can be bound.
pub fn free_members(n: u32) -> String {
    let mut parts = Vec::new();
    let mut held = Vec::new();
    let mut id = 0;
    while id < n {
        let a = UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP port");
        let port = a.local_addr().expect("a bound socket's address").port();
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

/// A test configuration for member `id` of `members`, its directory `node-ID` under `root`:
/// cluster [`CLUSTER_ID`], 400 ms election timeout, 40 ms heartbeats, 30 s session timeout,
/// `backoff` idling, 1 MiB segments, a founding member.
///
/// # Panics
/// If `members` is not a valid members list holding `id`.
pub fn config(id: u32, members: &str, root: &Path) -> NodeConfig {
    let mut c = NodeConfig::new(id, members, root.join(format!("node-{id}")))
        .expect("a valid members list");
    c.cluster_id = CLUSTER_ID;
    c.election_timeout_ms = 400;
    c.heartbeat_interval_ms = 40;
    c.session_timeout_ms = 30_000;
    c.idle = IdleStrategy::backoff();
    c.segment_len_bytes = 1 << 20;
    c.bootstrap = true;
    c
}

/// Polls `f` until it returns `Some`, at most `limit` (a liveness bound, not a timing check).
///
/// # Panics
/// When `limit` passes first.
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

/// A datagram with a valid transport header and checksum around `payload` (one fragment), as
/// a member or client would send it: for tests that forge or mangle traffic.
pub fn framed_datagram(cluster_id: u64, source_id: u32, stream_id: u16, payload: &[u8]) -> Vec<u8> {
    let h = frame::Header {
        flags: 0,
        cluster_id,
        source_id,
        stream_id,
        message_id: 7,
        message_len: u32::try_from(payload.len()).expect("a test payload below 4 GiB"),
        frag_offset: 0,
        frag_index: 0,
        frag_count: 1,
    };
    let mut buf = vec![0u8; frame::HEADER_LEN + payload.len()];
    let n = frame::encode(&h, payload, &mut buf);
    buf.truncate(n);
    buf
}
