//! `dedicated` threading, the service on its own thread: a graceful stop calls the service's
//! `on_terminate` as the in-line service's would be; a panic in the user's service stops the
//! member with an error (nothing is applied past it) and every one of its agent threads ends
//! by itself. The tests take turns (they count the process's threads).

#[path = "node_common/mod.rs"]
mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use tandem_cluster::agent::ThreadingMode;
use tandem_cluster::control::Counter;
use tandem_cluster::node::{ClientConfig, ClusterClient, ClusterNode};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

fn agent_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|n| {
            ["tandem-net-", "tandem-cons-", "tandem-svc-"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .count()
}

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Calls of `on_terminate`, all services of the process.
static TERMINATED: AtomicU32 = AtomicU32::new(0);

/// The echo service, but a message `boom` panics; counts `on_terminate` calls.
#[derive(Debug, Default)]
struct Fragile(Echo);

impl ClusteredService for Fragile {
    fn on_start(&mut self, c: &mut dyn Cluster, s: Option<SnapshotImage<'_>>) {
        self.0.on_start(c, s);
    }
    fn on_session_open(&mut self, c: &mut dyn Cluster, s: &ClientSession<'_>, t: i64) {
        self.0.on_session_open(c, s, t);
    }
    fn on_session_close(
        &mut self,
        c: &mut dyn Cluster,
        s: &ClientSession<'_>,
        t: i64,
        r: CloseReason,
    ) {
        self.0.on_session_close(c, s, t, r);
    }
    fn on_session_message(
        &mut self,
        c: &mut dyn Cluster,
        s: Option<SessionId>,
        t: i64,
        m: &[u8],
        h: &Header,
    ) {
        assert!(m != b"boom", "the service cannot handle boom");
        self.0.on_session_message(c, s, t, m, h);
    }
    fn on_timer_event(&mut self, c: &mut dyn Cluster, id: u64, t: i64) {
        self.0.on_timer_event(c, id, t);
    }
    fn on_take_snapshot(&mut self, w: &mut SnapshotWriter<'_>) {
        self.0.on_take_snapshot(w);
    }
    fn on_role_change(&mut self, r: Role) {
        self.0.on_role_change(r);
    }
    fn on_new_leadership_term_event(&mut self, c: &mut dyn Cluster, e: &LeadershipTermEvent) {
        self.0.on_new_leadership_term_event(c, e);
    }
    fn on_terminate(&mut self, c: &mut dyn Cluster) {
        TERMINATED.fetch_add(1, Ordering::SeqCst);
        self.0.on_terminate(c);
    }
}

#[test]
fn a_graceful_stop_terminates_the_service_in_every_mode() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for threading in [ThreadingMode::Shared, ThreadingMode::Dedicated] {
        for round in 0..5 {
            TERMINATED.store(0, Ordering::SeqCst);
            let root = tempfile::tempdir().unwrap();
            let members = free_members(1);
            let mut cfg = config(0, &members, root.path());
            cfg.threading = threading;
            let node = ClusterNode::launch(cfg, Fragile::default).unwrap();
            wait_for("leadership", Duration::from_secs(20), || {
                (node.role() == Role::Leader).then_some(())
            });
            node.stop(Duration::from_secs(10)).unwrap();
            assert_eq!(
                TERMINATED.load(Ordering::SeqCst),
                1,
                "{threading:?}, round {round}: on_terminate calls"
            );
            assert_eq!(agent_threads(), 0);
        }
    }
}

#[test]
fn a_panicking_service_stops_the_member_and_all_its_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let root = tempfile::tempdir().unwrap();
    let members = free_members(1);
    let mut cfg = config(0, &members, root.path());
    cfg.threading = ThreadingMode::Dedicated;
    let node = ClusterNode::launch(cfg, Fragile::default).unwrap();
    assert_eq!(agent_threads(), 3);
    wait_for("leadership", Duration::from_secs(20), || {
        (node.role() == Role::Leader).then_some(())
    });
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(10)).unwrap();
    let mut replies = 0;
    for m in [&b"one"[..], b"two"] {
        client
            .offer_blocking(m, Duration::from_secs(10), |_, _| replies += 1)
            .unwrap();
    }
    wait_for("two replies", Duration::from_secs(10), || {
        client.poll(|_, _| replies += 1).unwrap();
        (replies == 2).then_some(())
    });
    client
        .offer_blocking(b"boom", Duration::from_secs(10), |_, _| replies += 1)
        .unwrap();
    wait_for("the member stops", Duration::from_secs(20), || {
        // Polling flushes what the client batched, and counts any (wrong) reply.
        let _ = client.poll(|_, _| replies += 1);
        (!node.is_running()).then_some(())
    });
    wait_for(
        "every agent thread ends by itself",
        Duration::from_secs(20),
        || (agent_threads() == 0).then_some(()),
    );
    assert_eq!(replies, 2, "nothing was answered past the panic");
    // `boom` was committed (the service only sees committed entries) but the core never
    // applied it: it applies no further than the service has.
    let status = node.status();
    assert!(
        status.applied_position < status.commit_position,
        "{status:?}"
    );
    assert!(node.control().counter(Counter::Errors) >= 1);
    let err = node.close().unwrap_err();
    assert!(err.to_string().contains("service"), "{err}");
}
